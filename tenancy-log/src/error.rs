//! The error type of `tenancy-log`.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A classification pattern is malformed.
    InvalidPolicy,
    /// The filter directives (`RUST_LOG` or [`LogConfig::filter`](crate::LogConfig::filter))
    /// do not parse.
    InvalidFilter,
    /// The configuration is inconsistent (a naming prefix, a missing directory).
    Config,
    /// The tenant sink's directory could not be created or opened.
    Sink,
    /// A global subscriber was already installed in this process.
    AlreadyInstalled,
}

/// The error type of `tenancy-log`: match on [`Error::kind`]; read the message for what
/// went wrong and what to do; find the underlying error through
/// [`std::error::Error::source`]. Messages never carry logged values.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
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
            message: message.into(),
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
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
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
/// escaped and long values are cut.
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
    fn the_cause_is_reached_through_source_only() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = Error::with_source(ErrorKind::Sink, "cannot create the sink directory", io);
        assert_eq!(err.to_string(), "cannot create the sink directory");
        assert_eq!(err.source().unwrap().to_string(), "denied");
    }

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        assert!(quote(&"x".repeat(1000)).ends_with("(1000 characters)"));
    }
}
