//! The error type of `tenancy-db`.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The catalog has no such tenant.
    UnknownTenant,
    /// The tenant is suspended.
    TenantSuspended,
    /// The tenant is archived.
    TenantArchived,
    /// The catalog already has a tenant with this id.
    TenantExists,
    /// The catalog could not be read or written.
    CatalogUnavailable,
    /// The configuration does not allow this: an unknown server, an isolation mode its
    /// backend does not offer, a missing secret.
    Config,
    /// The server has not been prepared for tenancy (`Platform::prepare` has not run).
    NotPrepared,
    /// No connection within the acquire timeout.
    PoolTimeout,
    /// The tenant's database is down, or was recently found down.
    DatabaseUnavailable,
    /// A statement failed; [`Error::sql_state`] and the source say how.
    Query,
    /// A statement broke a unique, foreign-key, not-null or check constraint.
    Constraint,
    /// A value could not be converted to or from the database's type.
    Conversion,
    /// The transaction is finished, or its connection was lost.
    Transaction,
    /// A provisioning step failed; the message names the step.
    Provision,
    /// A migration is malformed, or failed for a tenant.
    Migration,
    /// The isolation check found a table or role that does not keep tenants apart.
    Isolation,
}

/// The error type of `tenancy-db`: match on [`Error::kind`]; read the message for what
/// went wrong and what to do; find the driver's error through
/// [`std::error::Error::source`]. Messages never carry credentials.
pub struct Error {
    kind: ErrorKind,
    message: String,
    sql_state: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            sql_state: None,
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
            sql_state: None,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The SQLSTATE of a PostgreSQL error (`23505` for a unique violation), or SQLite's
    /// extended result code in decimal; `None` when the failure did not come from the
    /// database.
    pub fn sql_state(&self) -> Option<&str> {
        self.sql_state.as_deref()
    }

    /// A failed PostgreSQL statement: constraint violations get their own kind.
    pub(crate) fn postgres(context: &str, error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            let kind = if error.is_closed() {
                ErrorKind::Transaction
            } else {
                ErrorKind::Query
            };
            return Error::with_source(kind, format!("{context}: {error}"), error);
        };
        let code = db.code().code().to_owned();
        let kind = if code.starts_with("23") {
            ErrorKind::Constraint
        } else {
            ErrorKind::Query
        };
        let message = format!("{context}: {}", db.message());
        Error {
            kind,
            message,
            sql_state: Some(code),
            source: Some(Box::new(error)),
        }
    }

    /// A failed SQLite statement: constraint violations get their own kind.
    pub(crate) fn sqlite(context: &str, error: rusqlite::Error) -> Self {
        let (kind, code) = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => {
                let kind = if failure.code == rusqlite::ErrorCode::ConstraintViolation {
                    ErrorKind::Constraint
                } else {
                    ErrorKind::Query
                };
                (kind, Some(failure.extended_code.to_string()))
            }
            _ => (ErrorKind::Query, None),
        };
        Error {
            kind,
            message: format!("{context}: {error}"),
            sql_state: code,
            source: Some(Box::new(error)),
        }
    }

    pub(crate) fn from_pool(error: tenancy_pool::Error) -> Self {
        let kind = match error.kind() {
            tenancy_pool::ErrorKind::Timeout | tenancy_pool::ErrorKind::Exhausted => {
                ErrorKind::PoolTimeout
            }
            tenancy_pool::ErrorKind::Config => ErrorKind::Config,
            _ => ErrorKind::DatabaseUnavailable,
        };
        Error::with_source(kind, error.to_string(), error)
    }

    pub(crate) fn from_core(error: tenancy_core::Error) -> Self {
        use tenancy_core::ErrorKind as Core;
        let kind = match error.kind() {
            Core::UnknownTenant => ErrorKind::UnknownTenant,
            Core::TenantSuspended => ErrorKind::TenantSuspended,
            Core::TenantArchived => ErrorKind::TenantArchived,
            Core::TenantExists => ErrorKind::TenantExists,
            Core::CatalogUnavailable => ErrorKind::CatalogUnavailable,
            _ => ErrorKind::Config,
        };
        Error::with_source(kind, error.to_string(), error)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("sql_state", &self.sql_state)
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
