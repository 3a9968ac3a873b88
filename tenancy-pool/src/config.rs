//! [`PoolsConfig`]: the limits a [`TenantPools`](crate::TenantPools) keeps to.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// The limits of a [`TenantPools`](crate::TenantPools).
///
/// The defaults suit one PostgreSQL server with `max_connections = 100`: 64 connections for
/// the application, at most 8 for any one tenant, a 5-second bound on every wait.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct PoolsConfig {
    /// Open connections across all pools, never exceeded.
    pub max_connections: usize,
    /// Open connections in any one pool (one tenant, or one shared database).
    pub max_connections_per_pool: usize,
    /// Pools kept at once; beyond it the least recently used pool with no connection in use
    /// is dropped.
    pub max_pools: usize,
    /// The longest [`TenantPools::get`](crate::TenantPools::get) waits, for the pool's
    /// cap, the global budget and connecting together.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub acquire_timeout: Duration,
    /// The longest one connection attempt may take.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub connect_timeout: Duration,
    /// Connections idle this long are closed, and pools without connections idle this long
    /// are dropped (checked at most every quarter of it, on the next checkout).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub idle_timeout: Duration,
    /// After a failed connection attempt, checkouts for the same pool fail at once for this
    /// long instead of queueing behind a server that is down.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_after_failure: Duration,
    /// When the budget is full, a checkout that needs a new connection closes another
    /// pool's connection only if it has been idle at least this long (the longest-idle
    /// first); otherwise it waits for its own
    /// pool's next idle connection or for an idle connection to reach this age. Taking
    /// connections used a moment ago makes tenants rob each other in turn, and every
    /// other checkout pays for a new connection. Zero takes any idle connection at once.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub steal_idle_after: Duration,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        PoolsConfig {
            max_connections: 64,
            max_connections_per_pool: 8,
            max_pools: 10_000,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            retry_after_failure: Duration::from_secs(1),
            // Measured with 1,000 tenant databases and with 50 behind 64 connections
            // (benches/density.rs): 200 ms beat 0, 20, 50, 60 ms and 1 s on throughput.
            steal_idle_after: Duration::from_millis(200),
        }
    }
}

impl PoolsConfig {
    /// The defaults with a global budget of `max_connections`.
    pub fn with_max_connections(max_connections: usize) -> Self {
        PoolsConfig {
            max_connections,
            max_connections_per_pool: PoolsConfig::default()
                .max_connections_per_pool
                .min(max_connections),
            ..PoolsConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let problem = if self.max_connections == 0 {
            "max_connections must be at least 1"
        } else if self.max_connections_per_pool == 0 {
            "max_connections_per_pool must be at least 1"
        } else if self.max_connections_per_pool > self.max_connections {
            "max_connections_per_pool must not exceed max_connections"
        } else if self.max_pools == 0 {
            "max_pools must be at least 1"
        } else if self.acquire_timeout.is_zero() || self.connect_timeout.is_zero() {
            "acquire_timeout and connect_timeout must be above zero: waits are always bounded"
        } else if self.idle_timeout.is_zero() {
            "idle_timeout must be above zero"
        } else {
            return Ok(());
        };
        Err(Error::new(
            ErrorKind::Config,
            format!("invalid pool configuration: {problem}"),
        ))
    }
}
