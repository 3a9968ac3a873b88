#![doc = include_str!("../README.md")]

mod budget;
mod config;
mod connection;
mod error;
mod pools;
mod shares;
mod stats;

pub use deadpool;

pub use budget::Lease;
pub use config::PoolsConfig;
pub use connection::Connection;
pub use error::{Error, ErrorKind};
pub use pools::TenantPools;
pub use shares::{Share, Shares};
pub use stats::PoolStats;
