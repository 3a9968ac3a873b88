//! A stand-in connection manager that counts the connections alive at once, so tests can
//! check the budget from the outside.

#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleResult};
use tenancy_pool::{PoolsConfig, TenantPools};

/// Live connections now and at most, and connections ever made.
#[derive(Clone, Default)]
pub struct Census {
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    created: Arc<AtomicUsize>,
}

impl Census {
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }
}

/// How connecting behaves for a key.
#[derive(Clone, Copy, Debug)]
pub enum Connect {
    Succeed,
    Fail,
    Take(Duration),
}

#[derive(Debug)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused by the fake server")
    }
}

impl std::error::Error for Refused {}

pub struct FakeManager {
    key: String,
    connect: Connect,
    census: Census,
}

/// A connection: knows which key it was made for and its serial number.
pub struct FakeConnection {
    pub key: String,
    pub serial: usize,
    census: Census,
}

impl Drop for FakeConnection {
    fn drop(&mut self) {
        self.census.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for FakeManager {
    type Type = FakeConnection;
    type Error = Refused;

    async fn create(&self) -> Result<FakeConnection, Refused> {
        match self.connect {
            Connect::Succeed => {}
            Connect::Fail => return Err(Refused),
            Connect::Take(duration) => tokio::time::sleep(duration).await,
        }
        let serial = self.census.created.fetch_add(1, Ordering::SeqCst) + 1;
        let live = self.census.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.census.peak.fetch_max(live, Ordering::SeqCst);
        Ok(FakeConnection {
            key: self.key.clone(),
            serial,
            census: self.census.clone(),
        })
    }

    async fn recycle(&self, _: &mut FakeConnection, _: &Metrics) -> RecycleResult<Refused> {
        Ok(())
    }
}

/// Pools of fake connections; keys named in `failing` refuse to connect, keys in `slow`
/// take `slow_for` to connect.
pub fn fake_pools(
    config: PoolsConfig,
    census: &Census,
    behaviour: impl Fn(&str) -> Connect + Send + Sync + 'static,
) -> TenantPools<String, FakeManager> {
    let census = census.clone();
    TenantPools::new(config, move |key: &String| FakeManager {
        key: key.clone(),
        connect: behaviour(key),
        census: census.clone(),
    })
    .expect("a valid configuration")
}

/// A configuration whose budget, when full, gives up any idle connection at once
/// (`steal_idle_after` zero); tests of the waiting policy set it themselves.
pub fn config(max_connections: usize, per_pool: usize) -> PoolsConfig {
    let mut config = PoolsConfig::with_max_connections(max_connections);
    config.max_connections_per_pool = per_pool;
    config.steal_idle_after = std::time::Duration::ZERO;
    config
}

pub fn key(s: &str) -> String {
    s.to_owned()
}
