//! The error type of `tenancy-storage`.
//!
//! Every failure is an [`Error`] whose [`ErrorKind`] code can match on and whose message a
//! person can act on. A message describes this layer's failure only: the cause (an S3
//! error, an I/O error) is reached through [`std::error::Error::source`], never pasted into
//! the message too, so a chain printed by `anyhow` or `tracing` shows each cause once.
//! Messages quote at most the caller's own key, escaped and shortened; never another
//! tenant's name, a credential, or a presigned URL.

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An object key, or a list prefix, was refused: empty, too long, a `.` or `..`
    /// segment, a leading `/`, a backslash, a control character, or encoded traversal.
    InvalidKey,
    /// Content type, metadata, retention date or another argument was refused.
    InvalidInput,
    /// The configuration cannot work: a bad naming prefix, a missing credential, an
    /// out-of-range lifetime or part size.
    Config,
    /// [`TenantStorage::current_bucket`](crate::TenantStorage::current_bucket) was called
    /// outside any tenant's scope.
    NoCurrentTenant,
    /// The tenant's bucket (or directory) does not exist: the tenant has not been
    /// provisioned, or was deleted. Nothing was written anywhere.
    NotProvisioned,
    /// There is no object with this key.
    NotFound,
    /// The bucket still holds objects (or versions) and was not deleted.
    NotEmpty,
    /// The bucket name is taken by another account.
    AlreadyExists,
    /// An object version is under retention or a legal hold and cannot be deleted yet.
    Retained,
    /// The server refused the credentials, or the bucket has another owner than
    /// `expected_bucket_owner`.
    Denied,
    /// The storage could not be reached in time, or failed on its side (S3 down, 5xx, a
    /// dropped connection, a full disk).
    Unavailable,
    /// The body stream handed to a put failed; nothing was stored.
    Body,
    /// The backend does not offer this: presigned URLs and retention on the local
    /// directory backend.
    Unsupported,
    /// The server refused the request for another reason; the source says which.
    Request,
}

tenancy_core::error_type! {
    /// The error type of `tenancy-storage`: match on [`Error::kind`]; read the message for
    /// what went wrong and what to do; find the backend's error through
    /// [`std::error::Error::source`].
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

pub(crate) use tenancy_core::quote;

#[cfg(feature = "axum")]
impl tenancy_core::http::HttpError for Error {
    fn class(&self) -> tenancy_core::http::ErrorClass {
        use tenancy_core::http::ErrorClass;
        match self.kind() {
            ErrorKind::InvalidKey | ErrorKind::InvalidInput | ErrorKind::Body => {
                ErrorClass::BadRequest
            }
            ErrorKind::NotFound => ErrorClass::NotFound,
            ErrorKind::NotEmpty | ErrorKind::AlreadyExists | ErrorKind::Retained => {
                ErrorClass::Conflict
            }
            ErrorKind::Unavailable => ErrorClass::Unavailable,
            // `Denied` is the server refusing *our* credentials: a fault of the service.
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
        (ErrorKind::NotFound, 404),
        (ErrorKind::InvalidKey, 400),
        (ErrorKind::Retained, 409),
        (ErrorKind::Unavailable, 503),
        (ErrorKind::Denied, 500),
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
