//! The error type of `tenancy-pool`.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be had within the acquire timeout: the pool's cap or the global
    /// budget stayed in use. The message says which.
    Timeout,
    /// Connecting failed or timed out; the source is the backend's error.
    Connect,
    /// A recent connection attempt for this pool failed, so this checkout failed at once
    /// rather than queue behind a server that is down.
    Unavailable,
    /// The pool was removed (its tenant suspended or dropped) while this checkout waited.
    Closed,
    /// The configuration is not usable; the message says why.
    Config,
    /// The pool limit is reached and every pool has connections in use.
    Exhausted,
}

/// The error type of `tenancy-pool`: match on [`Error::kind`], read the message, and find a
/// backend's own error through [`std::error::Error::source`].
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
        source: Box<dyn StdError + Send + Sync>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source),
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
