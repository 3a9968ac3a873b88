//! The error type of `tenancy-db`, on the skeleton every `tenancy` crate shares
//! ([`tenancy_core::error_type!`]): each message says what failed at this layer; the
//! driver's, the pool's or the catalog's error is reached through `source()` only.

#[cfg(feature = "postgres")]
use std::error::Error as StdError;

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
    /// backend does not offer, a missing secret, a value that does not parse.
    Config,
    /// The server has not been prepared for tenancy (`Platform::prepare` has not run).
    NotPrepared,
    /// No connection within the acquire timeout.
    PoolTimeout,
    /// The tenant's database is down, or was recently found down.
    DatabaseUnavailable,
    /// A statement failed; [`Error::sql_state`] and the source say how.
    Query,
    /// A query that must return a row returned none.
    RowNotFound,
    /// A statement broke a unique (or primary key) constraint.
    UniqueViolation,
    /// A statement broke a foreign key.
    ForeignKeyViolation,
    /// A statement wrote `NULL` into a `NOT NULL` column.
    NotNullViolation,
    /// A statement broke a check constraint.
    CheckViolation,
    /// A statement broke another integrity constraint (an exclusion constraint, say).
    Constraint,
    /// A value could not be converted to or from the database's type, or a row could not
    /// be read into the type asked for.
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

impl ErrorKind {
    /// Whether this is one of the integrity-constraint kinds: a conflict with data already
    /// there (HTTP 409), not a broken statement.
    pub fn is_constraint(self) -> bool {
        matches!(
            self,
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
                | ErrorKind::Constraint
        )
    }
}

tenancy_core::error_type! {
    /// The error type of `tenancy-db`: match on [`Error::kind`]; read the message for what
    /// failed here; find the driver's error (with the database's own message) through
    /// [`std::error::Error::source`]. Messages never carry credentials or another tenant's
    /// data.
    pub struct Error(ErrorKind);
    constructors: pub(crate) fn;
}

/// The kind of a PostgreSQL SQLSTATE.
#[cfg(feature = "postgres")]
fn postgres_kind(code: &str) -> ErrorKind {
    match code {
        "23505" => ErrorKind::UniqueViolation,
        "23503" => ErrorKind::ForeignKeyViolation,
        "23502" => ErrorKind::NotNullViolation,
        "23514" => ErrorKind::CheckViolation,
        code if code.starts_with("23") => ErrorKind::Constraint,
        _ => ErrorKind::Query,
    }
}

/// The kind of a SQLite extended result code.
#[cfg(feature = "sqlite")]
fn sqlite_kind(failure: &rusqlite::ffi::Error) -> ErrorKind {
    use rusqlite::ffi;
    match failure.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            ErrorKind::UniqueViolation
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
        ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
        ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
        _ if failure.code == rusqlite::ErrorCode::ConstraintViolation => ErrorKind::Constraint,
        _ => ErrorKind::Query,
    }
}

impl Error {
    /// The SQLSTATE of the PostgreSQL error behind this one (`23505` for a unique
    /// violation), found through the source chain; `None` when the failure did not come
    /// from PostgreSQL.
    pub fn sql_state(&self) -> Option<&str> {
        #[cfg(feature = "postgres")]
        {
            let mut cause = self.source();
            while let Some(error) = cause {
                if let Some(db) = error
                    .downcast_ref::<tokio_postgres::Error>()
                    .and_then(tokio_postgres::Error::as_db_error)
                {
                    return Some(db.code().code());
                }
                cause = error.source();
            }
        }
        None
    }

    #[cfg(feature = "postgres")]
    /// A failed PostgreSQL step: `doing` says what this crate was doing ("executing a
    /// statement"); integrity violations get their own kinds.
    pub(crate) fn postgres(doing: &str, error: tokio_postgres::Error) -> Self {
        let kind = match error.as_db_error() {
            Some(db) => postgres_kind(db.code().code()),
            None if error.is_closed() => ErrorKind::Transaction,
            None => ErrorKind::Query,
        };
        Error::with_source(kind, format!("{doing} failed"), error)
    }

    #[cfg(feature = "sqlite")]
    /// A failed SQLite step, as `Error::postgres`.
    pub(crate) fn sqlite(doing: &str, error: rusqlite::Error) -> Self {
        let kind = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => sqlite_kind(failure),
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::InvalidColumnType(..) => ErrorKind::Conversion,
            _ => ErrorKind::Query,
        };
        Error::with_source(kind, format!("{doing} failed"), error)
    }

    /// A pool that could not lend a connection: what this layer makes of it; the pool's
    /// error says which pool and why.
    pub(crate) fn from_pool(error: tenancy_pool::Error) -> Self {
        let (kind, message) = match error.kind() {
            tenancy_pool::ErrorKind::Timeout | tenancy_pool::ErrorKind::Exhausted => (
                ErrorKind::PoolTimeout,
                "no database connection could be had in time",
            ),
            tenancy_pool::ErrorKind::Config => {
                (ErrorKind::Config, "the connection budget is not usable")
            }
            _ => (
                ErrorKind::DatabaseUnavailable,
                "the database is unavailable",
            ),
        };
        Error::with_source(kind, message, error)
    }
}

/// A refusal or failure of `tenancy-core` (an admission, a name), as this crate's error.
impl From<tenancy_core::Error> for Error {
    fn from(error: tenancy_core::Error) -> Self {
        use tenancy_core::ErrorKind as Core;
        let (kind, message) = match error.kind() {
            Core::UnknownTenant | Core::TenantSuspended | Core::TenantArchived => {
                let kind = match error.kind() {
                    Core::UnknownTenant => ErrorKind::UnknownTenant,
                    Core::TenantSuspended => ErrorKind::TenantSuspended,
                    _ => ErrorKind::TenantArchived,
                };
                (kind, "the tenant may not be served")
            }
            Core::TenantExists => (ErrorKind::TenantExists, "the tenant exists already"),
            Core::CatalogUnavailable => (
                ErrorKind::CatalogUnavailable,
                "the tenant catalog is unavailable",
            ),
            _ => (ErrorKind::Config, "the configuration is not usable"),
        };
        Error::with_source(kind, message, error)
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn integrity_violations_have_kinds_of_their_own() {
        assert_eq!(postgres_kind("23505"), ErrorKind::UniqueViolation);
        assert_eq!(postgres_kind("23503"), ErrorKind::ForeignKeyViolation);
        assert_eq!(postgres_kind("23502"), ErrorKind::NotNullViolation);
        assert_eq!(postgres_kind("23514"), ErrorKind::CheckViolation);
        assert_eq!(postgres_kind("23P01"), ErrorKind::Constraint);
        assert_eq!(postgres_kind("42P01"), ErrorKind::Query);
        assert!(ErrorKind::UniqueViolation.is_constraint());
        assert!(!ErrorKind::Query.is_constraint());
    }
}

#[cfg(feature = "axum")]
impl tenancy_core::http::HttpError for Error {
    fn class(&self) -> tenancy_core::http::ErrorClass {
        use tenancy_core::http::ErrorClass;
        match self.kind {
            ErrorKind::UnknownTenant | ErrorKind::RowNotFound => ErrorClass::NotFound,
            ErrorKind::TenantSuspended | ErrorKind::TenantArchived => ErrorClass::Forbidden,
            ErrorKind::TenantExists => ErrorClass::Conflict,
            kind if kind.is_constraint() => ErrorClass::Conflict,
            ErrorKind::CatalogUnavailable
            | ErrorKind::PoolTimeout
            | ErrorKind::DatabaseUnavailable => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

/// Answers with the status every `tenancy` crate maps this kind to
/// ([`tenancy_core::http::ErrorClass`]) and the JSON body of
/// [`tenancy_core::http::error_response`]: the message for a fault of the request (a row
/// not found, a constraint broken), a fixed sentence for a fault of the database. Feature
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
        (ErrorKind::RowNotFound, 404),
        (ErrorKind::UnknownTenant, 404),
        (ErrorKind::UniqueViolation, 409),
        (ErrorKind::ForeignKeyViolation, 409),
        (ErrorKind::CheckViolation, 409),
        (ErrorKind::NotNullViolation, 409),
        (ErrorKind::TenantSuspended, 403),
        (ErrorKind::PoolTimeout, 503),
        (ErrorKind::DatabaseUnavailable, 503),
        (ErrorKind::Query, 500),
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
