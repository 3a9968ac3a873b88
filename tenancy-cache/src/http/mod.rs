//! A tower response cache: HTTP `GET` responses cached per tenant, and per user where
//! configured (feature `http`).
//!
//! [`ResponseCacheLayer`] wraps a route so that a `GET` is answered from the cache of the
//! request's tenant when it can be, and otherwise by the inner service, whose response is
//! then stored. The tenant comes from the [`TenantContext`] that
//! [`TenantLayer`](tenancy_core::http::TenantLayer) put in the request (or the one in
//! scope), so the layer goes inside `TenantLayer` (and inside authentication, for
//! per-user caching). A request that reaches it without a tenant context is refused with
//! `500`: nothing is ever cached or served under no tenant.
//!
//! The key is built from the tenant (by the cache, always), the user when
//! [`per_user`](ResponseCacheLayer::per_user) is on, the values of the headers named by
//! [`vary_by`](ResponseCacheLayer::vary_by), and the path and query. Two tenants whose
//! users share an id and ask for the same path get their own responses: the brief's
//! dashboard widget at `user:4271:recent_activity` cannot show one firm's records to the
//! other.
//!
//! Only `200 OK` responses are stored, and only when they carry no `Set-Cookie`, no
//! `Cache-Control: no-store` (nor `private`, unless per user), no `Vary` beyond the
//! configured headers, and a body of known length within
//! [`max_body_bytes`](ResponseCacheLayer::max_body_bytes). Every response says what the
//! cache did in an `x-tenancy-cache` header: `hit`, `miss` (stored), `pass` (not
//! cacheable) or `unavailable` (the cache could not be reached; served uncached).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tenancy_cache::Cache;
//! use tenancy_cache::http::ResponseCacheLayer;
//! use tenancy_core::{Actor, TenantContext};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = Cache::in_process();
//! let widget = ServiceBuilder::new()
//!     .layer(ResponseCacheLayer::new(cache, Duration::from_secs(30)).per_user(true))
//!     .service(service_fn(|request: Request<String>| async move {
//!         let ctx = request.extensions().get::<TenantContext>().unwrap();
//!         let body = format!("recent activity of {} at {}", ctx.actor().id(), ctx.tenant());
//!         Ok::<_, Infallible>(Response::new(body))
//!     }));
//!
//! // What TenantLayer and authentication would have put in the request.
//! let ctx = TenantContext::new("acme".parse()?, Actor::user("4271", "Jane")?);
//! let mut request = Request::get("/widgets/recent").body(String::new())?;
//! request.extensions_mut().insert(ctx);
//! let response = widget.oneshot(request).await?;
//! assert_eq!(response.headers()["x-tenancy-cache"], "miss");
//! # Ok(()) }
//! ```

mod body;
mod encoding;
mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE, VARY};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tenancy_core::{ActorKind, TenantContext};
use tower_service::Service;

pub use self::body::ResponseBody;
pub use self::future::ResponseFuture;
pub use self::layer::ResponseCacheLayer;
use crate::cache::{Cache, TenantCache};
use crate::key::MAX_KEY_LEN;

/// The header that says what the cache did with a response.
pub const CACHE_STATUS_HEADER: HeaderName = HeaderName::from_static("x-tenancy-cache");

/// What a [`ResponseCacheLayer`] shares with every service it makes.
#[derive(Clone)]
struct Settings {
    cache: Cache,
    ttl: Duration,
    per_user: bool,
    vary: Vec<HeaderName>,
    max_body_bytes: usize,
    fall_through: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("ttl", &self.ttl)
            .field("per_user", &self.per_user)
            .field("vary", &self.vary)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("fall_through", &self.fall_through)
            .finish_non_exhaustive()
    }
}

/// Answers `GET` requests from the tenant's cache when it can; made by
/// [`ResponseCacheLayer`].
pub struct ResponseCache<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: Clone> Clone for ResponseCache<S> {
    fn clone(&self) -> Self {
        ResponseCache {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

/// What the cache did with a response, for [`CACHE_STATUS_HEADER`].
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Hit,
    Miss,
    Pass,
    Unavailable,
}

impl Outcome {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Unavailable => "unavailable",
        })
    }
}

fn mark<B>(mut response: Response<B>, outcome: Outcome) -> Response<B> {
    response
        .headers_mut()
        .insert(CACHE_STATUS_HEADER, outcome.header());
    response
}

fn plain<B: Body>(status: StatusCode, message: &str) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::buffered(
        Bytes::from(format!("{message}\n")),
        None,
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.method() != Method::GET {
            return ResponseFuture::running(async move {
                let response = inner.call(request).await?;
                Ok(mark(response.map(ResponseBody::inner), Outcome::Pass))
            });
        }
        let ctx = request
            .extensions()
            .get::<TenantContext>()
            .cloned()
            .or_else(|| TenantContext::current().ok());
        let Some(ctx) = ctx else {
            return ResponseFuture::ready(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response cache found no tenant context in the request: put \
                 tenancy_core::http::TenantLayer outside ResponseCacheLayer",
            ));
        };
        let settings = Arc::clone(&self.settings);
        let Some(key) = request_key(&settings, &ctx, &request) else {
            return ResponseFuture::running(async move {
                let response = inner.call(request).await?;
                Ok(mark(response.map(ResponseBody::inner), Outcome::Pass))
            });
        };
        let cache = settings
            .cache
            .tenant(&ctx)
            .fall_through_when_unavailable(settings.fall_through);
        ResponseFuture::running(async move {
            match cache.get_bytes(&key).await {
                Ok(Some(stored)) => {
                    if let Some(response) = encoding::decode(&stored) {
                        return Ok(mark(
                            response.map(|body| ResponseBody::buffered(body, None)),
                            Outcome::Hit,
                        ));
                    }
                }
                Ok(None) => {}
                Err(_) if settings.fall_through => {
                    let response = inner.call(request).await?;
                    return Ok(mark(
                        response.map(ResponseBody::inner),
                        Outcome::Unavailable,
                    ));
                }
                Err(_) => {
                    return Ok(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the response cache is unavailable; retry later",
                    ));
                }
            }
            let response = inner.call(request).await?;
            Ok(store(&settings, &cache, &key, response).await)
        })
    }
}

/// The caller's part of the cache key of `request`, or `None` when it cannot be cached
/// (its key would be too long). Every variable part is length-prefixed, so no user id,
/// header value or path can be read as another.
fn request_key<B>(
    settings: &Settings,
    ctx: &TenantContext,
    request: &Request<B>,
) -> Option<String> {
    let mut key = String::from("http:");
    if settings.per_user {
        let actor = ctx.actor();
        let kind = match actor.kind() {
            ActorKind::User => 'u',
            ActorKind::Service => 's',
            _ => 'a',
        };
        key.push(kind);
        push_part(&mut key, actor.id().as_bytes());
    } else {
        key.push('*');
    }
    for name in &settings.vary {
        let values: Vec<&[u8]> = request
            .headers()
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        push_part(&mut key, &values.join(&b","[..]));
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    push_part(&mut key, path.as_bytes());
    (key.len() <= MAX_KEY_LEN).then_some(key)
}

fn push_part(key: &mut String, part: &[u8]) {
    key.push_str(&part.len().to_string());
    key.push(':');
    key.push_str(&String::from_utf8_lossy(part));
}

/// Whether `response` may be stored.
fn cacheable<B: Body>(settings: &Settings, response: &Response<B>) -> bool {
    if response.status() != StatusCode::OK || response.headers().contains_key(SET_COOKIE) {
        return false;
    }
    for value in response.headers().get_all(CACHE_CONTROL) {
        let value = value.to_str().unwrap_or("no-store").to_ascii_lowercase();
        if value.contains("no-store") || (value.contains("private") && !settings.per_user) {
            return false;
        }
    }
    for value in response.headers().get_all(VARY) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for name in value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if !settings
                .vary
                .iter()
                .any(|ours| ours.as_str().eq_ignore_ascii_case(name))
            {
                return false;
            }
        }
    }
    response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|upper| upper <= settings.max_body_bytes as u64)
}

/// Buffers and stores `response` if it may be stored; returns it either way.
async fn store<B>(
    settings: &Settings,
    cache: &TenantCache,
    key: &str,
    response: Response<B>,
) -> Response<ResponseBody<B>>
where
    B: Body<Data = Bytes>,
{
    if !cacheable(settings, &response) {
        return mark(response.map(ResponseBody::inner), Outcome::Pass);
    }
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => return Response::from_parts(parts, ResponseBody::failed(error)),
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let response = Response::from_parts(parts, data);
    let outcome = if trailers.is_some() {
        Outcome::Pass
    } else {
        match cache
            .set_bytes(key, &encoding::encode(&response), settings.ttl)
            .await
        {
            Ok(()) => Outcome::Miss,
            Err(_) => Outcome::Unavailable,
        }
    };
    mark(
        response.map(|data| ResponseBody::buffered(data, trailers)),
        outcome,
    )
}
