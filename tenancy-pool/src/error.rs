//! The error type of `tenancy-pool`.

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

tenancy_core::error_type! {
    /// The error type of `tenancy-pool`: match on [`Error::kind`], read the message, and find a
    /// backend's own error through [`std::error::Error::source`].
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}
