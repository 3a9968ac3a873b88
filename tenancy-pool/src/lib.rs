#![doc = include_str!("../README.md")]

mod config;
mod error;
mod pools;
mod stats;

pub use deadpool;

pub use config::PoolsConfig;
pub use error::{Error, ErrorKind};
pub use pools::{Connection, Lease, TenantPools};
pub use stats::PoolStats;
