//! The error type of `tenancy-log`.

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

tenancy_core::error_type! {
    /// The error type of `tenancy-log`: match on [`Error::kind`]; read the message for what
    /// went wrong and what to do; find the underlying error through
    /// [`std::error::Error::source`]. Messages never carry logged values.
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

pub(crate) use tenancy_core::quote;
