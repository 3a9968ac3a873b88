//! Fixtures shared by the integration tests: every backend, built the same way, and a
//! guard that deletes what a test wrote.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tenancy_cache::redis::{self, AsyncCommands};
use tenancy_cache::{Cache, CacheConfig, PoolsConfig, RedisConfig, Secret};
use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_test::{Service, TEST_PREFIX, operator, unique_tenant};

/// The backends every behavioural test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InProcess,
    Redis,
    Cluster,
    /// A cluster with each tenant's keys in one hash slot.
    ClusterHashTag,
}

pub const ALL: [Kind; 4] = [
    Kind::InProcess,
    Kind::Redis,
    Kind::Cluster,
    Kind::ClusterHashTag,
];

pub fn secret() -> Secret {
    Secret::new("tenancy-cache-test-secret-0123456789abcdef").unwrap()
}

pub fn small_pool() -> PoolsConfig {
    let mut pool = PoolsConfig::with_max_connections(16);
    pool.max_connections_per_pool = 4;
    pool
}

pub fn redis_config(kind: Kind) -> Option<RedisConfig> {
    let config = match kind {
        Kind::InProcess => return None,
        Kind::Redis => RedisConfig::standalone(Service::Redis.require()),
        Kind::Cluster => RedisConfig::cluster(Service::RedisCluster.require_all()),
        Kind::ClusterHashTag => {
            RedisConfig::cluster(Service::RedisCluster.require_all()).hash_tag_per_tenant(true)
        }
    };
    Some(config.pool(small_pool()))
}

pub fn config(kind: Kind) -> CacheConfig {
    let config = match redis_config(kind) {
        None => CacheConfig::in_process(),
        Some(redis) => CacheConfig::new(redis),
    };
    config.naming_prefix(TEST_PREFIX)
}

pub fn cache(kind: Kind) -> Cache {
    Cache::new(config(kind)).unwrap()
}

pub fn ctx(tenant: &TenantId, user: &str) -> TenantContext {
    TenantContext::new(tenant.clone(), Actor::user(user, "Test User").unwrap())
}

/// Purges the tenants of a test when dropped, also when the test fails, and removes their
/// ACL users in strict mode.
pub struct Cleanup {
    cache: Cache,
    tenants: Vec<TenantId>,
}

impl Cleanup {
    pub fn new(cache: &Cache) -> Self {
        Cleanup {
            cache: cache.clone(),
            tenants: Vec::new(),
        }
    }

    /// A new unique tenant, purged at the end.
    pub fn tenant(&mut self, label: &str) -> TenantId {
        let id = unique_tenant(label);
        self.tenants.push(id.clone());
        id
    }

    /// A tenant chosen by the test (not unique: use with care), purged at the end.
    pub fn adopt(&mut self, id: TenantId) -> TenantId {
        self.tenants.push(id.clone());
        id
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cache = self.cache.clone();
        let tenants = std::mem::take(&mut self.tenants);
        // A runtime of its own: this may run inside a test's runtime, or during a panic.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let op = operator();
                for tenant in &tenants {
                    let _ = cache.platform().deprovision(&op, tenant).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A plain Redis connection to the standalone test server, as the platform user.
pub async fn raw_standalone() -> redis::aio::MultiplexedConnection {
    redis::Client::open(Service::Redis.require())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A plain cluster connection, as the platform user.
pub async fn raw_cluster() -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(Service::RedisCluster.require_all())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// Every key of the backend `kind` that matches `pattern` (SCAN on every primary).
pub async fn keys_matching(kind: Kind, pattern: &str) -> Vec<String> {
    let urls = match kind {
        Kind::InProcess => return Vec::new(),
        Kind::Redis => vec![Service::Redis.require()],
        Kind::Cluster | Kind::ClusterHashTag => Service::RedisCluster.require_all(),
    };
    let mut found = Vec::new();
    for url in urls {
        let mut conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut iter: redis::AsyncIter<'_, String> = conn
            .scan_options(
                redis::ScanOptions::default()
                    .with_pattern(pattern)
                    .with_count(1000),
            )
            .await
            .unwrap();
        while let Some(key) = iter.next_item().await {
            found.push(key.unwrap());
        }
    }
    found
}

/// Writes `value` raw at `key` on the backend `kind`, as if a desynced connection or
/// another process had.
pub async fn plant(kind: Kind, key: &str, value: &[u8]) {
    match kind {
        Kind::InProcess => unreachable!("the in-process backend has no raw access"),
        Kind::Redis => {
            let mut conn = raw_standalone().await;
            let () = conn.set_ex(key, value, 60).await.unwrap();
        }
        Kind::Cluster | Kind::ClusterHashTag => {
            let mut conn = raw_cluster().await;
            let () = conn.set_ex(key, value, 60).await.unwrap();
        }
    }
}

pub const MINUTE: Duration = Duration::from_secs(60);
