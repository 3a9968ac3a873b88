#![doc = include_str!("../README.md")]

mod catalog;
mod config;
mod credentials;
mod db;
mod error;
mod migrate;
mod platform;
mod postgres;
mod sqlite;
mod transaction;
mod value;

pub use rusqlite;
pub use tokio_postgres;

pub use catalog::PlatformEvent;
pub use config::{DbConfig, PostgresServer, ServerConfig, SqliteServer};
pub use credentials::Secret;
pub use db::TenantDb;
pub use error::{Error, ErrorKind};
pub use migrate::{
    Dialect, Migration, MigrationOutcome, MigrationProgress, MigrationReport, MigrationTarget,
    Migrations,
};
pub use platform::Platform;
pub use postgres::{TENANT_SETTING, rls};
pub use transaction::{Postgres, RowStream, Transaction};
pub use value::{ColumnIndex, FromValue, Row, Value};

/// Not part of the API: what the benchmarks need to send exactly what this crate sends
/// when they measure it against the driver alone.
#[doc(hidden)]
pub mod __bench {
    /// The session check pipelined with `COMMIT` on a shared connection.
    pub const SESSION_CHECK: &str = crate::postgres::SESSION_CHECK;
}
