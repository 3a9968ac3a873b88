//! axum integration (feature `axum`): [`TenantContext`] as an extractor, and [`Error`] as a
//! response through the shared status mapping ([`ErrorClass`](crate::http::ErrorClass)).
//!
//! ```
//! use axum::{Router, routing::get};
//! use tenancy_core::{InMemoryCatalog, TenantContext, http::{Json, TenantLayer, resolve::Subdomain}};
//!
//! async fn whoami(ctx: TenantContext) -> String {
//!     format!("{} acting in {}", ctx.actor().id(), ctx.tenant())
//! }
//!
//! # fn build() -> Result<Router, tenancy_core::Error> {
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(TenantLayer::new(Subdomain::of("example.com")?, InMemoryCatalog::new()).refuse_with(Json));
//! # Ok(app) }
//! ```

use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;

use crate::context::TenantContext;
use crate::error::Error;
use crate::http::error_response;

/// The tenant's context, as `TenantLayer` (and `RequireMemberLayer`, which names the actor)
/// left it in the request. A handler that takes it cannot run without a tenant: when the
/// route lacks the layer, the request is refused with [`MissingTenantLayer`].
impl<S: Send + Sync> FromRequestParts<S> for TenantContext {
    type Rejection = MissingTenantLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<TenantContext>()
            .cloned()
            .ok_or(MissingTenantLayer(()))
    }
}

/// `Option<TenantContext>`: for a handler mounted both inside and outside `TenantLayer`.
impl<S: Send + Sync> OptionalFromRequestParts<S> for TenantContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<TenantContext>().cloned())
    }
}

/// The rejection of the [`TenantContext`] extractor: the route is not behind `TenantLayer`.
/// A fault of the service's wiring, answered with 500 and a message that says so.
#[derive(Debug)]
pub struct MissingTenantLayer(());

impl fmt::Display for MissingTenantLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "this handler takes a TenantContext, but the request has none: \
             the route is not behind tenancy_core::http::TenantLayer; add the layer to it",
        )
    }
}

impl std::error::Error for MissingTenantLayer {}

impl IntoResponse for MissingTenantLayer {
    fn into_response(self) -> Response {
        let mut response = Response::new(format!("{self}\n").into());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// Answers with the status of the error's [`ErrorClass`](crate::http::ErrorClass) and the
/// JSON body of [`error_response`].
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        error_response(&self).map(Into::into)
    }
}
