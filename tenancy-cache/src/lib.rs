#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod cache;
mod config;
#[cfg(feature = "redis")]
mod credentials;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod key;
mod stats;
mod value;

#[cfg(feature = "redis")]
pub use deadpool_redis;
pub use moka;
#[cfg(feature = "redis")]
pub use redis;
#[cfg(feature = "redis")]
pub use tenancy_pool::PoolsConfig;

pub use cache::{Cache, MAX_TTL, PlatformCache, PurgeReport, TenantCache};
#[cfg(feature = "redis")]
pub use config::RedisConfig;
pub use config::{BackendConfig, CacheConfig, InProcessConfig};
#[cfg(feature = "redis")]
pub use credentials::Secret;
pub use error::{Error, ErrorKind};
pub use key::MAX_KEY_LEN;
pub use stats::CacheStats;
