//! The error type of `tenancy-audit`.
//!
//! A message says what failed at this layer and what to do; the database's or the file
//! system's error is the [`std::error::Error::source`], never pasted into the message too.

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The event was refused before anything was written: a missing reason for a change
    /// to a regulated record, an empty record type or id, a transaction of another tenant
    /// than the context's.
    InvalidEvent,
    /// The database failed; the transaction can only be rolled back. Nothing was recorded.
    Database,
    /// The trail in the database is not what this crate writes: a row that does not
    /// decode, a head that disagrees with the last entry. Verify the trail.
    Corrupt,
    /// Reading or writing an export bundle failed (a full disk, a missing directory).
    Io,
    /// A bundle or trail did not verify: see the [`Report`](crate::Report) for the first
    /// bad sequence number.
    Verification,
}

tenancy_core::error_type! {
    /// The error type of `tenancy-audit`: match on [`Error::kind`]; read the message for
    /// what went wrong and what to do; find the cause through
    /// [`std::error::Error::source`].
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

impl From<tenancy_db::Error> for Error {
    fn from(error: tenancy_db::Error) -> Self {
        Error::with_source(
            ErrorKind::Database,
            "the audit trail could not be read or written in the tenant's database; the \
             transaction can only be rolled back",
            error,
        )
    }
}

pub(crate) fn io(what: String, error: std::io::Error) -> Error {
    Error::with_source(ErrorKind::Io, what, error)
}
