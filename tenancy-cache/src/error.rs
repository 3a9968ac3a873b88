//! The error type of `tenancy-cache`.

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is not usable; the message says why.
    Config,
    /// The caller's part of a key is empty or too long.
    InvalidKey,
    /// A time to live is zero or too long for the backend.
    InvalidTtl,
    /// The cache could not be reached, or did not answer in time: Redis is down, the pool
    /// budget is exhausted, a connection broke. The source says how.
    Unavailable,
    /// The backend refused a command (a Redis error reply); the source is the reply.
    Backend,
    /// A value could not be serialized, or a stored value could not be read back as the type
    /// asked for.
    Serialization,
    /// The compute function of `get_or_compute` failed; its error is the source.
    Compute,
    /// A provisioning step (an ACL user created or removed) failed; the message names it.
    Provision,
}

tenancy_core::error_type! {
    /// The error type of `tenancy-cache`: match on [`Error::kind`], read the message for what
    /// went wrong and what to do, and find the backend's own error through
    /// [`std::error::Error::source`]. Messages never carry a value, a password or another
    /// tenant's key.
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

impl Error {
    /// Whether the cache itself could not be reached ([`ErrorKind::Unavailable`]): the
    /// failure a caller may choose to fall through on.
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_pool(error: tenancy_pool::Error) -> Self {
        let kind = match error.kind() {
            tenancy_pool::ErrorKind::Config => ErrorKind::Config,
            _ => ErrorKind::Unavailable,
        };
        Error::with_source(
            kind,
            "no Redis connection could be had for this tenant",
            error,
        )
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_redis(doing: &str, error: redis::RedisError) -> Self {
        let kind = if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Backend
        };
        let message = match kind {
            ErrorKind::Unavailable => format!("{doing} failed: Redis could not be reached"),
            _ => format!("{doing} failed: Redis refused the command"),
        };
        Error::with_source(kind, message, error)
    }
}

#[cfg(feature = "axum")]
impl tenancy_core::http::HttpError for Error {
    fn class(&self) -> tenancy_core::http::ErrorClass {
        use tenancy_core::http::ErrorClass;
        match self.kind() {
            ErrorKind::InvalidKey => ErrorClass::BadRequest,
            ErrorKind::Unavailable => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

/// Answers with the status every `tenancy` crate maps this kind to
/// ([`tenancy_core::http::ErrorClass`]) and the JSON body of
/// [`tenancy_core::http::error_response`]; a 5xx body never carries the message. Feature
/// `axum`.
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Error {
    fn into_response(self) -> axum_core::response::Response {
        tenancy_core::http::error_response(&self).map(Into::into)
    }
}

#[cfg(all(test, feature = "axum"))]
mod http_tests {
    use axum_core::response::IntoResponse;

    use super::*;

    const CASES: &[(ErrorKind, u16)] = &[
        (ErrorKind::InvalidKey, 400),
        (ErrorKind::Unavailable, 503),
        (ErrorKind::Backend, 500),
    ];

    /// The statuses of the shared mapping, and a 5xx body that says nothing of its cause.
    #[test]
    fn kinds_answer_with_the_shared_statuses() {
        tenancy_test::http::assert_shared_statuses(
            CASES.iter().map(|(kind, status)| {
                (Error::new(*kind, tenancy_test::http::LEAKY_DETAIL), *status)
            }),
            IntoResponse::into_response,
        );
    }
}
