//! Calling a tower or axum service as a given tenant and user, in process (feature `http`).
//!
//! A [`TestClient`] knows how the service under test finds the tenant of a request (a
//! subdomain, a header) and how it authenticates a user (a header, a bearer token, any
//! function of the request builder); a test then says only who calls and what:
//!
//! ```
//! use http::{Request, Response};
//! use tenancy_test::http::TestClient;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Any `Service<Request<B>>`: an axum `Router`, a tower stack.
//! let echo = service_fn(|request: Request<String>| async move {
//!     let host = request.headers()["host"].to_str().unwrap().to_owned();
//!     let user = request.headers()["x-user"].to_str().unwrap().to_owned();
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("{user}@{host}")))
//! });
//! let client = TestClient::new(echo).tenant_by_subdomain("eqms.test").user_by_header("x-user");
//!
//! let acme = "acme".parse().unwrap();
//! let response = client.call(&acme).user("jane").get("/capas").await;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.text(), "jane@acme.eqms.test");
//! # }
//! ```
//!
//! Each call clones the service and sends one request with `oneshot`: no socket, no port,
//! and the same layers (`TenantLayer`, authentication, membership) as in production.

use std::fmt;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::request::Builder;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tenancy_core::TenantId;
use tower::{Service, ServiceExt};

type Decorate = Arc<dyn Fn(Builder, &str) -> Builder + Send + Sync>;

/// Sends requests to a service as a given tenant and user. Cheap to clone.
///
/// Request bodies are `String`s: the service must be a `Service<Request<String>>`, as an
/// axum `Router` and most tower stacks are.
#[derive(Clone)]
pub struct TestClient<S> {
    service: S,
    tenant: Decorate,
    user: Decorate,
}

impl<S> TestClient<S> {
    /// A client for `service` that names tenants as a subdomain of `localhost` and users in
    /// the header `x-user`; change either with the methods below.
    pub fn new(service: S) -> Self {
        TestClient {
            service,
            tenant: Arc::new(|builder, tenant| builder.header(HOST, format!("{tenant}.localhost"))),
            user: Arc::new(|builder, user| builder.header("x-user", user)),
        }
    }

    /// Names the tenant in the `Host` header as a subdomain of `base` (`eqms.test`, or
    /// `localhost:3000` when the service accepts that port).
    pub fn tenant_by_subdomain(mut self, base: &str) -> Self {
        let base = base.to_owned();
        self.tenant =
            Arc::new(move |builder, tenant| builder.header(HOST, format!("{tenant}.{base}")));
        self
    }

    /// Names the tenant in the header `name`.
    pub fn tenant_by_header(mut self, name: &'static str) -> Self {
        let name = HeaderName::from_static(name);
        self.tenant = Arc::new(move |builder, tenant| builder.header(name.clone(), tenant));
        self
    }

    /// Names the user in the header `name` (the service's test authentication, or a
    /// development one).
    pub fn user_by_header(mut self, name: &'static str) -> Self {
        let name = HeaderName::from_static(name);
        self.user = Arc::new(move |builder, user| builder.header(name.clone(), user));
        self
    }

    /// Names the user however the service authenticates: `authenticate(builder, user)`
    /// adds what the request needs (a bearer token, a session cookie).
    pub fn user_with(
        mut self,
        authenticate: impl Fn(Builder, &str) -> Builder + Send + Sync + 'static,
    ) -> Self {
        self.user = Arc::new(authenticate);
        self
    }

    /// A request for `tenant`, anonymous until [`Call::user`] names a user.
    pub fn call(&self, tenant: &TenantId) -> Call<'_, S> {
        Call {
            client: self,
            tenant: Some(tenant.to_string()),
            user: None,
            headers: HeaderMap::new(),
        }
    }

    /// A request that names no tenant (for routes outside `TenantLayer`, or to check that
    /// a tenant route refuses it).
    pub fn untenanted(&self) -> Call<'_, S> {
        Call {
            client: self,
            tenant: None,
            user: None,
            headers: HeaderMap::new(),
        }
    }
}

impl<S> fmt::Debug for TestClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

/// One request being built: who sends it, then [`get`](Call::get), [`post_json`](Call::post_json)
/// and so on send it.
#[must_use = "a call sends nothing until get, post_json, ... is awaited"]
pub struct Call<'a, S> {
    client: &'a TestClient<S>,
    tenant: Option<String>,
    user: Option<String>,
    headers: HeaderMap,
}

impl<S> fmt::Debug for Call<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl<S, RB> Call<'_, S>
where
    S: Service<Request<String>, Response = Response<RB>> + Clone,
    S::Error: fmt::Debug,
    RB: http_body::Body,
    RB::Error: fmt::Debug,
{
    /// Sent as `user` (the client's authentication names them).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// With the header `name: value` too.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("a test header value is printable ASCII"),
        );
        self
    }

    /// `GET path`.
    pub async fn get(self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None).await
    }

    /// `DELETE path`.
    pub async fn delete(self, path: &str) -> TestResponse {
        self.send(Method::DELETE, path, None).await
    }

    /// `POST path` with `body` as JSON.
    pub async fn post_json(self, path: &str, body: &impl serde::Serialize) -> TestResponse {
        let body = serde_json::to_string(body).expect("the test body serializes");
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with `body` as JSON.
    pub async fn put_json(self, path: &str, body: &impl serde::Serialize) -> TestResponse {
        let body = serde_json::to_string(body).expect("the test body serializes");
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `PATCH path` with `body` as JSON.
    pub async fn patch_json(self, path: &str, body: &impl serde::Serialize) -> TestResponse {
        let body = serde_json::to_string(body).expect("the test body serializes");
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// Sends `method path`, with `json` as the body if given.
    pub async fn send(self, method: Method, path: &str, json: Option<String>) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(tenant) = &self.tenant {
            builder = (self.client.tenant)(builder, tenant);
        }
        if let Some(user) = &self.user {
            builder = (self.client.user)(builder, user);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = match json {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                json
            }
            None => String::new(),
        };
        let request = builder.body(body).expect("the test request is well formed");
        let response = self
            .client
            .service
            .clone()
            .oneshot(request)
            .await
            .expect("the service answers");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("the response body can be read")
            .to_bytes()
            .to_vec();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl TestResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body read as JSON into `T`; panics with the body if it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "the response ({}) is not the JSON expected: {error}; body: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// A message with a credential in it, for errors whose 5xx answers must not show it.
#[cfg(feature = "internal")]
#[doc(hidden)]
pub const LEAKY_DETAIL: &str = "detail from postgres://app:s3cret@db.internal";

/// Checks that each `(error, status)` answers through the status mapping every `tenancy`
/// crate shares: `HttpError::class` and `respond` (the error's `IntoResponse`) give
/// `status` with a JSON body, and a 5xx body never carries the message (build the errors
/// with [`LEAKY_DETAIL`]).
///
/// # Panics
///
/// On the first case that does not hold, naming the error.
#[cfg(feature = "internal")]
#[doc(hidden)]
pub fn assert_shared_statuses<E, B>(
    cases: impl IntoIterator<Item = (E, u16)>,
    respond: impl Fn(E) -> Response<B>,
) where
    E: tenancy_core::http::HttpError + std::fmt::Debug,
{
    for (error, status) in cases {
        let name = format!("{error:?}");
        assert_eq!(error.class().status().as_u16(), status, "{name}");
        let body = tenancy_core::http::error_response(&error).into_body();
        if status >= 500 {
            assert!(
                !body.contains("s3cret"),
                "a 5xx body shows the message: {body}"
            );
        }
        let response = respond(error);
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name}"
        );
    }
}
