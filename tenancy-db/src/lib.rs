#![doc = include_str!("../README.md")]

mod catalog;
mod config;
mod credentials;
mod db;
mod error;
mod migrate;
mod platform;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod transaction;
mod value;

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!("tenancy-db needs a backend: enable the feature `postgres`, `sqlite`, or both");

#[cfg(feature = "sqlite")]
pub use rusqlite;
#[cfg(feature = "postgres")]
pub use tokio_postgres;

pub use catalog::PlatformEvent;
#[cfg(feature = "postgres")]
pub use config::PostgresServer;
#[cfg(feature = "sqlite")]
pub use config::SqliteServer;
pub use config::{DbConfig, ENV_PREFIX, ServerConfig};
pub use credentials::Secret;
pub use db::TenantDb;
pub use error::{Error, ErrorKind};
pub use migrate::{
    Dialect, Migration, MigrationOutcome, MigrationProgress, MigrationReport, MigrationTarget,
    Migrations,
};
pub use platform::Platform;
#[cfg(feature = "postgres")]
pub use postgres::{TENANT_SETTING, rls};
#[cfg(feature = "postgres")]
pub use transaction::Postgres;
pub use transaction::{RowStream, Transaction};
pub use value::{ColumnIndex, FromValue, Row, Value};

/// Not part of the API: what the benchmarks need to send exactly what this crate sends
/// when they measure it against the driver alone.
#[doc(hidden)]
#[cfg(feature = "postgres")]
pub mod __bench {
    /// The session check pipelined with `COMMIT` on a shared connection.
    pub const SESSION_CHECK: &str = crate::postgres::SESSION_CHECK;
}
