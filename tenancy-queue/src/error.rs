//! The errors of this crate: [`Error`] for the producer side (pushing a job), and
//! [`Rejection`] for a job the worker refused to run.

tenancy_core::error_type! {
    /// The error type of `tenancy-queue`'s producer side and configuration.
    ///
    /// Match on [`Error::kind`]; the backend's own error is reached through
    /// [`std::error::Error::source`].
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A job could not be encoded as JSON.
    Encode,
    /// The backend refused or failed the push; the source says why.
    Push,
    /// [`TenantQueue::push_current`](crate::TenantQueue::push_current) ran outside a tenant
    /// scope: there is no default tenant, so nothing was pushed.
    NoCurrentTenant,
    /// A queue name is empty, too long, or has characters outside `[a-z0-9_.:-]`.
    InvalidQueueName,
    /// A signing key is shorter than 32 bytes.
    InvalidKey,
    /// A queue database could not be opened or given its tables; the source says why.
    Open,
}

tenancy_core::error_type! {
    /// Why the worker refused a job: the job was killed (not retried) and is kept in the
    /// backend's dead set with this message as its result.
    ///
    /// Messages name the claimed tenant where it was a valid tenant id, never the payload.
    pub struct Rejection(RejectionKind);
    constructors: pub(crate) fn;
}

/// What was wrong with a job the worker refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The payload is not a JSON object, a field other than `tenant` is given twice, or the
    /// envelope's fields are missing, unknown or of the wrong type.
    MalformedEnvelope,
    /// The payload names no tenant.
    MissingTenant,
    /// The payload names a tenant twice (a parser that keeps the first and one that keeps
    /// the last would disagree on whose job it is).
    DuplicateTenant,
    /// The tenant field is not a valid tenant id.
    MalformedTenant,
    /// The catalog has no such tenant.
    UnknownTenant,
    /// The tenant is suspended.
    TenantSuspended,
    /// The tenant is archived.
    TenantArchived,
    /// Signing is on and the job carries no signature.
    MissingSignature,
    /// Signing is on and the signature does not match the tenant, actor, correlation id
    /// and job: the payload was altered after it was pushed, or signed with another key.
    BadSignature,
    /// The envelope is sound but the job inside does not decode as the worker's job type.
    MalformedJob,
}

impl RejectionKind {
    /// A short, stable name for logs and metrics (`missing_tenant`, `bad_signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::MalformedEnvelope => "malformed_envelope",
            RejectionKind::MissingTenant => "missing_tenant",
            RejectionKind::DuplicateTenant => "duplicate_tenant",
            RejectionKind::MalformedTenant => "malformed_tenant",
            RejectionKind::UnknownTenant => "unknown_tenant",
            RejectionKind::TenantSuspended => "tenant_suspended",
            RejectionKind::TenantArchived => "tenant_archived",
            RejectionKind::MissingSignature => "missing_signature",
            RejectionKind::BadSignature => "bad_signature",
            RejectionKind::MalformedJob => "malformed_job",
        }
    }
}

impl std::fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
