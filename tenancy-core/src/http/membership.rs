//! [`RequireMemberLayer`]: who acts, and whether they may act in this tenant.
//!
//! [`TenantLayer`](super::TenantLayer) knows the tenant a request is for, not who sent it;
//! its context acts as [`Actor::anonymous`]. Authentication is the application's own (a
//! session cookie, a bearer token, mutual TLS): whatever layer does it names the caller by
//! inserting an [`Actor`] into the request's extensions. [`RequireMember`], placed inside
//! both, then refuses a request with no actor (401) or whose actor the application's
//! [`Membership`] does not place in the resolved tenant (403), and otherwise replaces the
//! context, in the extensions and in scope, with one acting as that actor. A user of tenant
//! A who sends a request to tenant B's host is therefore refused before any handler runs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{PlainText, Refusal, Refuse, ResponseFuture};
use crate::context::{Actor, ActorKind, TenantContext};
use crate::error::{Error, ErrorKind, quote};
use crate::id::TenantId;

/// Whether an actor belongs to a tenant: implemented by the application (a table of
/// memberships, the claims of a token, a directory).
///
/// ```
/// use std::collections::HashSet;
/// use tenancy_core::{Actor, Error, TenantId, http::Membership};
///
/// /// Members as (user id, tenant id) pairs.
/// struct Members(HashSet<(String, String)>);
///
/// impl Membership for Members {
///     async fn is_member(&self, actor: &Actor, tenant: &TenantId) -> Result<bool, Error> {
///         Ok(self.0.contains(&(actor.id().to_owned(), tenant.to_string())))
///     }
/// }
/// ```
pub trait Membership: Send + Sync {
    /// Whether `actor` may act in `tenant`. An error (the directory is down) refuses the
    /// request with 503; it never lets it through.
    fn is_member(
        &self,
        actor: &Actor,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
}

impl<M: Membership + ?Sized> Membership for Arc<M> {
    fn is_member(
        &self,
        actor: &Actor,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        (**self).is_member(actor, tenant)
    }
}

/// Makes [`RequireMember`] services: place it inside [`TenantLayer`](super::TenantLayer)
/// and inside the application's authentication layer.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tenancy_core::http::{Membership, RequireMemberLayer, TenantLayer, resolve::Subdomain};
/// use tenancy_core::{Actor, Error, InMemoryCatalog, PlatformContext, Tenant, TenantContext, TenantId};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// struct OnlyAcme;
/// impl Membership for OnlyAcme {
///     async fn is_member(&self, _actor: &Actor, tenant: &TenantId) -> Result<bool, Error> {
///         Ok(tenant.as_str() == "acme")
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let catalog = InMemoryCatalog::new();
/// let operator = PlatformContext::new(Actor::service("setup")?)?;
/// catalog.create(&operator, Tenant::without_placement("acme".parse()?, "Acme"))?;
/// catalog.create(&operator, Tenant::without_placement("beta".parse()?, "Beta"))?;
///
/// let service = ServiceBuilder::new()
///     .layer(TenantLayer::new(Subdomain::of("example.com")?, catalog))
///     // The application's authentication: here, anyone who sends `x-user` is that user.
///     .map_request(|mut request: Request<String>| {
///         let user = request.headers().get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned);
///         if let Some(actor) = user.and_then(|user| Actor::user(&user, &user).ok()) {
///             request.extensions_mut().insert(actor);
///         }
///         request
///     })
///     .layer(RequireMemberLayer::new(OnlyAcme))
///     .service(service_fn(|_request: Request<String>| async {
///         let ctx = TenantContext::current()?;
///         Ok::<_, Error>(Response::new(format!("{} in {}", ctx.actor().id(), ctx.tenant())))
///     }));
///
/// let request = |host: &str| Request::get("/").header("host", host).header("x-user", "jane").body(String::new());
/// let response = service.clone().oneshot(request("acme.example.com")?).await?;
/// assert_eq!(response.into_body(), "jane in acme");
/// let response = service.oneshot(request("beta.example.com")?).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # Ok(()) }
/// ```
pub struct RequireMemberLayer<M> {
    membership: Arc<M>,
    refuse: Arc<dyn Refuse>,
}

impl<M> RequireMemberLayer<M> {
    /// A layer that admits the actors `membership` places in the request's tenant.
    pub fn new(membership: M) -> Self {
        RequireMemberLayer {
            membership: Arc::new(membership),
            refuse: Arc::new(PlainText),
        }
    }

    /// Shapes refusals with `refuse` instead of [`PlainText`] (see [`Refuse`]).
    pub fn refuse_with(mut self, refuse: impl Refuse) -> Self {
        self.refuse = Arc::new(refuse);
        self
    }
}

impl<M> Clone for RequireMemberLayer<M> {
    fn clone(&self) -> Self {
        RequireMemberLayer {
            membership: Arc::clone(&self.membership),
            refuse: Arc::clone(&self.refuse),
        }
    }
}

impl<M> fmt::Debug for RequireMemberLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireMemberLayer").finish_non_exhaustive()
    }
}

impl<S, M> Layer<S> for RequireMemberLayer<M> {
    type Service = RequireMember<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireMember {
            inner,
            layer: self.clone(),
        }
    }
}

/// Refuses requests whose actor is not a member of their tenant, and names the actor in the
/// context of the others. Made by [`RequireMemberLayer`].
pub struct RequireMember<S, M> {
    inner: S,
    layer: RequireMemberLayer<M>,
}

impl<S: Clone, M> Clone for RequireMember<S, M> {
    fn clone(&self) -> Self {
        RequireMember {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, M> fmt::Debug for RequireMember<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireMember")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for RequireMember<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    M: Membership + 'static,
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
        let Some(ctx) = parts.extensions.get::<TenantContext>().cloned() else {
            // A wiring mistake of the service, not of the request: say so plainly.
            let mut response = Response::new(ResBody::from(String::from(
                "RequireMemberLayer found no TenantContext in the request: \
                 apply it inside TenantLayer\n",
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return ResponseFuture::rejected(response);
        };
        let actor = match parts.extensions.get::<Actor>() {
            Some(actor) if actor.kind() != ActorKind::Anonymous => actor.clone(),
            _ => {
                let error = Error::new(
                    ErrorKind::Unauthenticated,
                    "the request is not authenticated: sign in first",
                );
                let response = self.layer.refuse.refuse(&Refusal::new(&error, &parts));
                return ResponseFuture::rejected(response.map(ResBody::from));
            }
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::running(async move {
            let refused = match layer.membership.is_member(&actor, ctx.tenant()).await {
                Ok(true) => None,
                Ok(false) => Some(Error::new(
                    ErrorKind::NotAMember,
                    format!(
                        "{} is not a member of tenant `{}`",
                        quote(actor.id()),
                        ctx.tenant()
                    ),
                )),
                Err(error) => Some(Error::with_source(
                    ErrorKind::MembershipUnavailable,
                    "the membership check failed",
                    error,
                )),
            };
            if let Some(error) = refused {
                let response = layer.refuse.refuse(&Refusal::new(&error, &parts));
                return Ok(response.map(ResBody::from));
            }
            let ctx = ctx.with_actor(actor);
            parts.extensions.insert(ctx.clone());
            let request = Request::from_parts(parts, body);
            let call = ctx.in_scope(|| inner.call(request));
            ctx.scope(call).await
        })
    }
}
