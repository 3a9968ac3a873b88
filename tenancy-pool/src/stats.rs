//! Counters a user can read: [`PoolStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`TenantPools`](crate::TenantPools)' gauges and counters.
///
/// Gauges (`open_connections`, `idle_connections`, `pools`) are current values; counters
/// count since the pools were created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections open now, in use or idle: never above the budget.
    pub open_connections: usize,
    /// Connections open and idle in their pools now.
    pub idle_connections: usize,
    /// Pools now.
    pub pools: usize,
    /// Checkouts asked for.
    pub checkouts: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connection attempts that failed or timed out.
    pub connect_failures: u64,
    /// Checkouts that had to wait for the global budget.
    pub waits: u64,
    /// Checkouts that gave up at the acquire timeout.
    pub timeouts: u64,
    /// Idle connections closed to make room or because they idled too long.
    pub evicted_connections: u64,
    /// Pools dropped to stay under the pool limit or because they idled too long.
    pub evicted_pools: u64,
    /// Connections closed instead of returned, because their state was unknown.
    pub discarded: u64,
}

impl std::ops::Add for PoolStats {
    type Output = PoolStats;

    /// The stats of two sets of pools taken together (several budgets of one server).
    fn add(self, other: PoolStats) -> PoolStats {
        PoolStats {
            open_connections: self.open_connections + other.open_connections,
            idle_connections: self.idle_connections + other.idle_connections,
            pools: self.pools + other.pools,
            checkouts: self.checkouts + other.checkouts,
            connects: self.connects + other.connects,
            connect_failures: self.connect_failures + other.connect_failures,
            waits: self.waits + other.waits,
            timeouts: self.timeouts + other.timeouts,
            evicted_connections: self.evicted_connections + other.evicted_connections,
            evicted_pools: self.evicted_pools + other.evicted_pools,
            discarded: self.discarded + other.discarded,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) checkouts: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) evicted_connections: AtomicU64,
    pub(crate) evicted_pools: AtomicU64,
    pub(crate) discarded: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, open: usize, idle: usize, pools: usize) -> PoolStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PoolStats {
            open_connections: open,
            idle_connections: idle,
            pools,
            checkouts: read(&self.checkouts),
            connects: read(&self.connects),
            connect_failures: read(&self.connect_failures),
            waits: read(&self.waits),
            timeouts: read(&self.timeouts),
            evicted_connections: read(&self.evicted_connections),
            evicted_pools: read(&self.evicted_pools),
            discarded: read(&self.discarded),
        }
    }
}
