#![doc = include_str!("../README.md")]

mod config;
mod error;
mod pools;
mod shares;
mod stats;

pub use deadpool;

pub use config::PoolsConfig;
pub use error::{Error, ErrorKind};
pub use pools::{Connection, Lease, TenantPools};
pub use shares::{Share, Shares};
pub use stats::PoolStats;
