//! Tenant resolution for HTTP services: the tower [`TenantLayer`] and its resolvers.
//!
//! [`TenantLayer`] wraps a service so that every request is resolved to a tenant, the
//! tenant is admitted by the [`Catalog`], and the inner service runs with the
//! [`TenantContext`] in the request's extensions and in scope
//! ([`TenantContext::current`]). A request that does not get that far is answered here,
//! with a short plain-text reason, and never reaches the inner service:
//!
//! | Refusal | Status |
//! |---|---|
//! | no tenant in the request; malformed host or header; invalid id; two tenants named | 400 |
//! | suspended or archived tenant | 403 |
//! | tenant not in the catalog | 404 |
//! | catalog unreachable | 503 |
//!
//! ```
//! use http::{HeaderName, Request, Response, StatusCode};
//! use tenancy_core::http::TenantLayer;
//! use tenancy_core::http::resolve::{Chain, Subdomain, TenantHeader};
//! use tenancy_core::{Actor, InMemoryCatalog, IsolationMode, Placement, PlatformContext};
//! use tenancy_core::{ServerName, Tenant, TenantContext};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let catalog = InMemoryCatalog::new();
//! let operator = PlatformContext::new(Actor::service("setup")?)?;
//! let placement = Placement::new(ServerName::new("embedded")?, IsolationMode::Database);
//! catalog.create(&operator, Tenant::new("acme".parse()?, "Acme Pharma", placement))?;
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
pub mod resolve;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tower_service::Service;

pub use self::future::ResponseFuture;
pub use self::layer::TenantLayer;
use self::resolve::Resolve;
use crate::catalog::Catalog;
use crate::context::{Actor, CorrelationId, TenantContext};
use crate::error::{Error, ErrorKind};

/// What a [`TenantLayer`] shares with every service it makes.
struct Shared<R, C> {
    resolver: R,
    catalog: C,
    correlation_header: Option<HeaderName>,
}

/// Resolves and admits the tenant of each request, then calls the inner service in the
/// tenant's scope. Made by [`TenantLayer`].
pub struct Tenant<S, R, C> {
    inner: S,
    shared: Arc<Shared<R, C>>,
}

impl<S: Clone, R, C> Clone for Tenant<S, R, C> {
    fn clone(&self) -> Self {
        Tenant {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, R, C> fmt::Debug for Tenant<S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for Tenant<S, R, C>
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
        let id = match self.shared.resolver.resolve(&parts) {
            Ok(Some(id)) => id,
            Ok(None) => {
                return ResponseFuture::rejected(refusal(&Error::new(
                    ErrorKind::MissingTenant,
                    format!(
                        "the request names no tenant: expected {}",
                        self.shared.resolver.describe()
                    ),
                )));
            }
            Err(error) => return ResponseFuture::rejected(refusal(&error)),
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
                Err(error) => return Ok(refusal(&error)),
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
fn refusal<B: From<String>>(error: &Error) -> Response<B> {
    let status = match error.kind() {
        ErrorKind::MissingTenant
        | ErrorKind::MalformedRequest
        | ErrorKind::InvalidTenantId
        | ErrorKind::ConflictingTenants => StatusCode::BAD_REQUEST,
        ErrorKind::UnknownTenant => StatusCode::NOT_FOUND,
        ErrorKind::TenantSuspended | ErrorKind::TenantArchived => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = if status == StatusCode::SERVICE_UNAVAILABLE {
        // The catalog's own error may name hosts or credentials: keep it out of responses.
        String::from("the tenant catalog is unavailable; retry later\n")
    } else {
        format!("{error}\n")
    };
    let mut response = Response::new(B::from(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
