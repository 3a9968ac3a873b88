#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
mod backends;
mod envelope;
mod error;
mod fair;
mod layer;
mod queue;
mod stop;

#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
pub use backends::*;
pub use envelope::{RawJob, SigningKey};
pub use error::{Error, ErrorKind, Rejection, RejectionKind};
pub use fair::{FairQueue, tenant_queue_name};
pub use layer::{ResponseFuture, Retenant, RetenantLayer};
pub use queue::{QueueName, TenantQueue};
pub use stop::{StopFuture, stop_gracefully};

/// The apalis version this crate is built against, re-exported so that workers and
/// backends use the same types.
pub use apalis;
#[cfg(feature = "postgres")]
pub use apalis_postgres;
#[cfg(feature = "redis")]
pub use apalis_redis;
#[cfg(feature = "sqlite")]
pub use apalis_sqlite;
