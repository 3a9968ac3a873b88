//! How a `tenancy` error answers an HTTP request: one mapping to status codes for every
//! crate ([`ErrorClass`], [`HttpError`]), one body shape ([`error_response`]), and the hook
//! that shapes the refusals of [`TenantLayer`](super::TenantLayer) and
//! [`RequireMemberLayer`](super::RequireMemberLayer) ([`Refuse`]).
//!
//! A body carries the error's own message only when the request can be blamed for the
//! error (4xx). A failure of a catalog, a database or a cache (5xx) is answered with a
//! fixed sentence: its message or its causes could name hosts, roles or another tenant's
//! resources.

use std::fmt;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};

use crate::error::{Error, ErrorKind};

/// Where an error falls in HTTP's terms: every `tenancy` crate maps its error kinds onto
/// these, and these onto status codes, so a handler's `?` answers the same way whichever
/// crate failed.
///
/// | Class | Status | For |
/// |---|---|---|
/// | `BadRequest` | 400 | no tenant in the request, a malformed host or header, an invalid id, two tenants named |
/// | `Unauthenticated` | 401 | a route that needs an actor reached with none |
/// | `Forbidden` | 403 | a suspended or archived tenant; an actor who is not a member of the tenant |
/// | `NotFound` | 404 | a tenant not in the catalog; a row that is not there |
/// | `Conflict` | 409 | a write that breaks a constraint (unique, foreign key, not null, check) |
/// | `Unavailable` | 503 | a catalog, database, cache or store that cannot be reached, a pool timeout |
/// | `Internal` | 500 | anything else: a broken statement, a misconfiguration |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: the request names no actor and needs one.
    Unauthenticated,
    /// 403: the request may not be served for this tenant or actor.
    Forbidden,
    /// 404: the tenant or the record is not there.
    NotFound,
    /// 409: the write conflicts with data already there.
    Conflict,
    /// 503: a backing service is down or saturated; retry later.
    Unavailable,
    /// 500: a fault of the service.
    Internal,
}

impl ErrorClass {
    /// The status code of this class.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client is told: the error's own message for a fault of the request, a fixed
    /// sentence for a fault of the service (whose message could name hosts or roles).
    pub fn public_message(self, error: &dyn fmt::Display) -> String {
        match self {
            ErrorClass::Unavailable => {
                String::from("a service this request needs is unavailable; retry later")
            }
            ErrorClass::Internal => String::from("the request failed on the server"),
            _ => error.to_string(),
        }
    }
}

/// An error that knows its [`ErrorClass`]: implemented by the error of every `tenancy`
/// crate (each behind its `axum` feature), and by an application's own errors if it wants
/// the same answers.
pub trait HttpError: std::error::Error {
    /// Where this error falls in HTTP's terms.
    fn class(&self) -> ErrorClass;
}

impl HttpError for Error {
    fn class(&self) -> ErrorClass {
        match self.kind() {
            ErrorKind::MissingTenant
            | ErrorKind::MalformedRequest
            | ErrorKind::InvalidTenantId
            | ErrorKind::InvalidActor
            | ErrorKind::InvalidCorrelationId
            | ErrorKind::ConflictingTenants => ErrorClass::BadRequest,
            ErrorKind::Unauthenticated => ErrorClass::Unauthenticated,
            ErrorKind::TenantSuspended | ErrorKind::TenantArchived | ErrorKind::NotAMember => {
                ErrorClass::Forbidden
            }
            ErrorKind::UnknownTenant => ErrorClass::NotFound,
            ErrorKind::TenantExists => ErrorClass::Conflict,
            ErrorKind::CatalogUnavailable | ErrorKind::MembershipUnavailable => {
                ErrorClass::Unavailable
            }
            _ => ErrorClass::Internal,
        }
    }
}

/// The JSON body every `tenancy` error answers with:
/// `{"status":404,"error":"<public message>"}`, with `content-type: application/json`.
///
/// ```
/// use tenancy_core::{Error, ErrorKind, http::error_response};
///
/// let error = Error::new(ErrorKind::UnknownTenant, "unknown tenant `beta`");
/// let response = error_response(&error);
/// assert_eq!(response.status(), 404);
/// assert_eq!(response.body(), r#"{"status":404,"error":"unknown tenant `beta`"}"#);
///
/// let down = Error::new(ErrorKind::CatalogUnavailable, "catalog at db.internal:5432 refused");
/// assert!(!error_response(&down).body().contains("db.internal"));
/// ```
pub fn error_response(error: &(impl HttpError + ?Sized)) -> Response<String> {
    let class = error.class();
    json_response(class.status(), &class.public_message(&error))
}

fn json_response(status: StatusCode, message: &str) -> Response<String> {
    let mut body = format!("{{\"status\":{},\"error\":\"", status.as_u16());
    for c in message.chars() {
        match c {
            '"' => body.push_str("\\\""),
            '\\' => body.push_str("\\\\"),
            '\n' => body.push_str("\\n"),
            '\r' => body.push_str("\\r"),
            '\t' => body.push_str("\\t"),
            // `<` too, so the body is inert if a browser ever renders it as HTML.
            c if u32::from(c) < 0x20 || c == '<' || c == '>' || c == '&' => {
                body.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => body.push(c),
        }
    }
    body.push_str("\"}");
    with_type(status, body, "application/json")
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A request refused by [`TenantLayer`](super::TenantLayer) or
/// [`RequireMemberLayer`](super::RequireMemberLayer), handed to the [`Refuse`] hook.
#[derive(Debug)]
pub struct Refusal<'a> {
    error: &'a Error,
    request: &'a Parts,
}

impl<'a> Refusal<'a> {
    pub(crate) fn new(error: &'a Error, request: &'a Parts) -> Self {
        Refusal { error, request }
    }

    /// Where the refusal falls in HTTP's terms.
    pub fn class(&self) -> ErrorClass {
        self.error.class()
    }

    /// The status code to answer with.
    pub fn status(&self) -> StatusCode {
        self.class().status()
    }

    /// Why the request was refused.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// What the client may be told: the reason for a fault of the request, a fixed
    /// sentence for a fault of the service. Plain text: escape it for HTML.
    pub fn message(&self) -> String {
        self.class().public_message(self.error)
    }

    /// The head of the refused request (to choose a format from its `Accept` header, say).
    pub fn request(&self) -> &'a Parts {
        self.request
    }

    /// The default answer: the message as `text/plain`.
    pub fn plain_text(&self) -> Response<String> {
        with_type(
            self.status(),
            format!("{}\n", self.message()),
            "text/plain; charset=utf-8",
        )
    }

    /// The answer of [`error_response`]: `{"status":..,"error":".."}`.
    pub fn json(&self) -> Response<String> {
        error_response(self.error)
    }

    /// Whether the request's `Accept` header names `media_type` (`text/html`), for a hook
    /// that answers browsers with a page and APIs with JSON.
    pub fn accepts(&self, media_type: &str) -> bool {
        self.request
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| {
                let range = item.split(';').next().unwrap_or_default().trim();
                range.eq_ignore_ascii_case(media_type)
            })
    }
}

/// Shapes the response to a refused request. The default is [`PlainText`]; [`Json`] answers
/// as [`error_response`] does; any closure `Fn(&Refusal<'_>) -> Response<String>` is a
/// hook too (a page for browsers, say). The body type of the service is made from the
/// `String`.
///
/// ```
/// use http::{Response, header::CONTENT_TYPE};
/// use tenancy_core::http::{Refusal, TenantLayer, resolve::Subdomain};
/// use tenancy_core::InMemoryCatalog;
///
/// // Browsers get a page, everything else JSON.
/// let page = |refusal: &Refusal<'_>| -> Response<String> {
///     if !refusal.accepts("text/html") {
///         return refusal.json();
///     }
///     let escaped = tenancy_core::escape_html(&refusal.message());
///     let mut response = Response::new(format!("<!doctype html><title>Refused</title><p>{escaped}</p>"));
///     *response.status_mut() = refusal.status();
///     response.headers_mut().insert(CONTENT_TYPE, "text/html; charset=utf-8".parse().unwrap());
///     response
/// };
/// let layer = TenantLayer::new(Subdomain::of("example.com")?, InMemoryCatalog::new()).refuse_with(page);
/// # Ok::<(), tenancy_core::Error>(())
/// ```
pub trait Refuse: Send + Sync + 'static {
    /// The response to `refusal`.
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<String>;
}

impl<F> Refuse for F
where
    F: Fn(&Refusal<'_>) -> Response<String> + Send + Sync + 'static,
{
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<String> {
        self(refusal)
    }
}

/// Refusals as `text/plain`: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainText;

impl Refuse for PlainText {
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<String> {
        refusal.plain_text()
    }
}

/// Refusals as JSON, the same shape as [`error_response`]: for APIs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Refuse for Json {
    fn refuse(&self, refusal: &Refusal<'_>) -> Response<String> {
        refusal.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_escape_what_they_quote() {
        let response = json_response(StatusCode::BAD_REQUEST, "a \"b\" \\ <script>\n\u{1}");
        assert_eq!(
            response.body(),
            r#"{"status":400,"error":"a \"b\" \\ \u003cscript\u003e\n\u0001"}"#
        );
    }

    #[test]
    fn service_faults_are_not_described() {
        let error = Error::new(
            ErrorKind::CatalogUnavailable,
            "postgres://admin:hunter2@db.internal failed",
        );
        let response = error_response(&error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!response.body().contains("hunter2"), "{}", response.body());
        assert!(
            !response.body().contains("db.internal"),
            "{}",
            response.body()
        );
        let error = Error::new(ErrorKind::NoCurrentTenant, "secret detail");
        assert_eq!(error_response(&error).status(), 500);
        assert!(!error_response(&error).body().contains("secret"));
    }

    #[test]
    fn accept_matches_media_ranges() {
        let error = Error::new(ErrorKind::MissingTenant, "no tenant");
        let (parts, ()) = http::Request::get("/")
            .header("accept", "text/html;q=0.9, application/json")
            .body(())
            .unwrap()
            .into_parts();
        let refusal = Refusal::new(&error, &parts);
        assert!(refusal.accepts("text/html"));
        assert!(refusal.accepts("application/json"));
        assert!(!refusal.accepts("text/plain"));
    }
}
