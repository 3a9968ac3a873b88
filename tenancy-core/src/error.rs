//! The one error type of this crate.
//!
//! Every failure is an [`Error`] whose [`ErrorKind`] says what went wrong in a way code can
//! match on, and whose message says it in a way a person can act on. Messages quote at most
//! the offending value (escaped and shortened), never anything else from the request.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A string is not a valid [`TenantId`](crate::TenantId).
    InvalidTenantId,
    /// An actor id or display name is empty, too long, or contains control characters.
    InvalidActor,
    /// A correlation id is empty, too long, or has characters outside `[A-Za-z0-9._:-]`.
    InvalidCorrelationId,
    /// A naming prefix or server name is not valid.
    InvalidName,
    /// [`TenantContext::current`](crate::TenantContext::current) was called outside a scope.
    NoCurrentTenant,
    /// No resolver found a tenant in the request.
    MissingTenant,
    /// The request names a tenant in a malformed or suspicious way (duplicate `Host`,
    /// userinfo, unexpected port, IP literal, trailing dot, ...).
    MalformedRequest,
    /// Two resolvers found two different tenants in the same request.
    ConflictingTenants,
    /// The catalog has no tenant with this id.
    UnknownTenant,
    /// The tenant exists but is suspended.
    TenantSuspended,
    /// The tenant exists but is archived.
    TenantArchived,
    /// The catalog already has a tenant with this id.
    TenantExists,
    /// The catalog could not be reached or failed; the source says why.
    CatalogUnavailable,
}

/// The error type of `tenancy-core`.
///
/// Match on [`Error::kind`]; print it with `Display` for a message that says what was wrong
/// and what to do. A backend failure (a catalog's database, say) is reached through
/// [`std::error::Error::source`].
pub struct Error {
    kind: ErrorKind,
    message: Box<str>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    /// An error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into().into_boxed_str(),
            source: None,
        }
    }

    /// An error of `kind` caused by `source`, for catalog implementations outside this crate.
    pub fn with_source(
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
/// escaped (a right-to-left override cannot reorder the message) and long values are cut,
/// so a message never carries more than a short, inert rendering of what was sent.
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
    fn quote_escapes_controls_and_lookalikes() {
        assert_eq!(quote("ab"), "`ab`");
        assert_eq!(quote("a\u{202e}b"), "`a\\u{202e}b`");
        assert_eq!(quote("\r\n"), "`\\r\\n`");
        assert_eq!(quote("\u{0430}"), "`\\u{430}`");
    }

    #[test]
    fn quote_cuts_long_values() {
        let long = "a".repeat(1000);
        let quoted = quote(&long);
        assert!(quoted.len() < 80, "{quoted}");
        assert!(quoted.ends_with("(1000 characters)"));
    }
}
