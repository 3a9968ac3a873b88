//! The error type of `tenancy-storage`.
//!
//! Every failure is an [`Error`] whose [`ErrorKind`] code can match on and whose message a
//! person can act on. A message describes this layer's failure only: the cause (an S3
//! error, an I/O error) is reached through [`std::error::Error::source`], never pasted into
//! the message too, so a chain printed by `anyhow` or `tracing` shows each cause once.
//! Messages quote at most the caller's own key, escaped and shortened; never another
//! tenant's name, a credential, or a presigned URL.

use std::error::Error as StdError;
use std::fmt;

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

/// The error type of `tenancy-storage`: match on [`Error::kind`]; read the message for
/// what went wrong and what to do; find the backend's error through
/// [`std::error::Error::source`].
pub struct Error {
    kind: ErrorKind,
    message: Box<str>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into().into_boxed_str(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Error {
            kind,
            message: message.into().into_boxed_str(),
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Quotes an untrusted value for an error message: control and non-ASCII characters are
/// escaped (a right-to-left override cannot reorder the message) and long values are cut.
pub(crate) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 48;
    let mut out = String::with_capacity(value.len().min(MAX_CHARS) + 8);
    out.push('`');
    for (n, c) in value.chars().enumerate() {
        if n == MAX_CHARS {
            out.push_str("`… (");
            out.push_str(&value.chars().count().to_string());
            out.push_str(" characters)");
            return out;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("a/b"), "`a/b`");
        assert_eq!(quote("a\u{202e}b"), "`a\\u{202e}b`");
        assert!(quote(&"x".repeat(500)).ends_with("(500 characters)"));
    }

    #[test]
    fn the_cause_is_only_a_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::with_source(ErrorKind::Unavailable, "writing failed", io);
        assert_eq!(err.to_string(), "writing failed");
        assert_eq!(err.source().unwrap().to_string(), "disk on fire");
    }
}
