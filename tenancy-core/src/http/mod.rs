//! Tenant resolution for HTTP services: the tower [`TenantLayer`] and its resolvers.
//!
//! [`TenantLayer`] wraps a service so that every request is resolved to a tenant, the
//! tenant is admitted by the [`Catalog`], and the inner service runs with the
//! [`TenantContext`] in the request's extensions and in scope
//! ([`TenantContext::current`]). A request that does not get that far is answered here,
//! with a short plain-text reason (or whatever the [`Refuse`] hook given to
//! [`TenantLayer::refuse_with`] makes of it: [`Json`] for APIs, a page for browsers), and
//! never reaches the inner service:
//!
//! | Refusal | Status |
//! |---|---|
//! | no tenant in the request; malformed host or header; invalid id; two tenants named | 400 |
//! | suspended or archived tenant | 403 |
//! | tenant not in the catalog | 404 |
//! | catalog unreachable | 503 |
//!
//! The same mapping ([`ErrorClass`]) answers for the errors of every `tenancy` crate, so
//! that a handler's `?` on a row that is not there is a 404 and on a broken unique
//! constraint a 409 (with the `axum` feature, every crate's error is an `IntoResponse`).
//!
//! The context [`TenantLayer`] makes acts as [`Actor::anonymous`]: it knows the tenant, not
//! the caller. An authentication layer inside it names the caller by inserting an
//! [`Actor`] into the request's extensions, and [`RequireMemberLayer`], inside both, checks
//! with the application's [`Membership`] that the actor belongs to the tenant (a user of
//! one tenant presenting another's host is refused with 403) and replaces the context with
//! one that names the actor. Routes that serve no tenant (sign-up, health checks, the
//! operator's endpoints) are left out by applying these layers to a sub-router only.
//!
//! ```
//! use http::{HeaderName, Request, Response, StatusCode};
//! use tenancy_core::http::TenantLayer;
//! use tenancy_core::http::resolve::{Chain, Subdomain, TenantHeader};
//! use tenancy_core::{Actor, InMemoryCatalog, PlatformContext, Tenant, TenantContext};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let catalog = InMemoryCatalog::new();
//! let operator = PlatformContext::new(Actor::service("setup")?)?;
//! // An HTTP-only service: the tenant needs no database placement.
//! catalog.create(&operator, Tenant::without_placement("acme".parse()?, "Acme Pharma"))?;
//!
//! let resolver = Chain::new()
//!     .or(Subdomain::of("example.com")?)
//!     .or(TenantHeader::new(HeaderName::from_static("x-tenant-id")));
//! let service = ServiceBuilder::new()
//!     .layer(TenantLayer::new(resolver, catalog))
//!     .service(service_fn(|_request: Request<String>| async {
//!         let ctx = TenantContext::current()?;
//!         Ok::<_, tenancy_core::Error>(Response::new(format!("hello {}", ctx.tenant())))
//!     }));
//!
//! let request = Request::get("/").header("host", "acme.example.com").body(String::new())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.into_body(), "hello acme");
//!
//! let request = Request::get("/").header("host", "nobody.example.com").body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! # Ok(()) }
//! ```

mod future;
mod layer;
mod membership;
pub mod resolve;
mod respond;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{Request, Response};
use tower_service::Service;

pub use self::future::ResponseFuture;
pub use self::layer::TenantLayer;
pub use self::membership::{Membership, RequireMember, RequireMemberLayer};
use self::resolve::Resolve;
pub use self::respond::{ErrorClass, HttpError, Json, PlainText, Refusal, Refuse, error_response};
use crate::catalog::Catalog;
use crate::context::{Actor, CorrelationId, TenantContext};
use crate::error::{Error, ErrorKind};

/// What a [`TenantLayer`] shares with every service it makes.
struct Shared<R, C> {
    resolver: R,
    catalog: C,
    correlation_header: Option<HeaderName>,
    refuse: Arc<dyn Refuse>,
}

/// Resolves and admits the tenant of each request, then calls the inner service in the
/// tenant's scope. Made by [`TenantLayer`].
///
/// (Not to be confused with the catalog's record of a tenant, [`crate::Tenant`].)
pub struct TenantService<S, R, C> {
    inner: S,
    shared: Arc<Shared<R, C>>,
}

impl<S: Clone, R, C> Clone for TenantService<S, R, C> {
    fn clone(&self) -> Self {
        TenantService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, R, C> fmt::Debug for TenantService<S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for TenantService<S, R, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Resolve + 'static,
    C: Catalog + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let refuse = &*self.shared.refuse;
        let id = match self.shared.resolver.resolve(&parts) {
            Ok(Some(id)) => id,
            Ok(None) => {
                let error = Error::new(
                    ErrorKind::MissingTenant,
                    format!(
                        "the request names no tenant: expected {}",
                        self.shared.resolver.describe()
                    ),
                );
                return ResponseFuture::rejected(refusal(refuse, &error, &parts));
            }
            Err(error) => return ResponseFuture::rejected(refusal(refuse, &error, &parts)),
        };
        let correlation_id = self
            .shared
            .correlation_header
            .as_ref()
            .and_then(|name| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| CorrelationId::new(value).ok())
            .unwrap_or_else(CorrelationId::generate);
        // The service that was polled ready is the one to call; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::running(async move {
            let tenant = match shared.catalog.admit(&id).await {
                Ok(tenant) => tenant,
                Err(error) => return Ok(refusal(&*shared.refuse, &error, &parts)),
            };
            let ctx = TenantContext::with_parts(tenant.id, Actor::anonymous(), correlation_id);
            parts.extensions.insert(ctx.clone());
            let request = Request::from_parts(parts, body);
            let call = ctx.in_scope(|| inner.call(request));
            ctx.scope(call).await
        })
    }
}

/// The response for a request refused before it reached the inner service.
fn refusal<B: From<String>>(
    refuse: &dyn Refuse,
    error: &Error,
    parts: &http::request::Parts,
) -> Response<B> {
    refuse.refuse(&Refusal::new(error, parts)).map(B::from)
}
