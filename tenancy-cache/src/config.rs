//! [`CacheConfig`]: which backend, which names, which limits.

use std::time::Duration;

#[cfg(feature = "redis")]
use tenancy_pool::PoolsConfig;

#[cfg(feature = "redis")]
use crate::credentials::Secret;

/// The configuration of a [`Cache`](crate::Cache).
///
/// ```
/// use std::time::Duration;
/// use tenancy_cache::CacheConfig;
///
/// // The embedded default: an in-process cache, no server.
/// let config = CacheConfig::in_process().namespace("eqms");
/// assert_eq!(config.namespace, "eqms");
/// assert_eq!(config.generation_refresh, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct CacheConfig {
    /// The deployment prefix every key starts with (`tenancy:acme:...`); see
    /// [`tenancy_core::naming::Naming`]. Default `tenancy`.
    #[cfg_attr(feature = "serde", serde(default = "default_prefix"))]
    pub naming_prefix: String,
    /// The application's namespace inside each tenant's keys: two applications sharing a
    /// Redis and a prefix keep their keys apart by it. Default `app`.
    #[cfg_attr(feature = "serde", serde(default = "default_namespace"))]
    pub namespace: String,
    /// Where values live.
    pub backend: BackendConfig,
    /// How long a node trusts the tenant generation it last read from Redis before reading
    /// it again (default 1 s). An invalidation made through this node is seen here at once;
    /// one made through another node is seen here within this time. Zero reads the
    /// generation before every operation (one more round trip each). The in-process backend
    /// always sees the current generation.
    #[cfg_attr(feature = "serde", serde(default = "default_generation_refresh"))]
    pub generation_refresh: Duration,
}

#[cfg(feature = "serde")]
fn default_prefix() -> String {
    String::from("tenancy")
}

#[cfg(feature = "serde")]
fn default_namespace() -> String {
    String::from("app")
}

#[cfg(feature = "serde")]
fn default_generation_refresh() -> Duration {
    Duration::from_secs(1)
}

impl CacheConfig {
    /// A cache on `backend`, with the default prefix (`tenancy`) and namespace (`app`).
    pub fn new(backend: impl Into<BackendConfig>) -> Self {
        CacheConfig {
            naming_prefix: String::from("tenancy"),
            namespace: String::from("app"),
            backend: backend.into(),
            generation_refresh: Duration::from_secs(1),
        }
    }

    /// The embedded default: an in-process cache of 64 MiB.
    pub fn in_process() -> Self {
        CacheConfig::new(InProcessConfig::default())
    }

    /// Redis at `url` (`redis://host:6379`), one user for every tenant.
    #[cfg(feature = "redis")]
    pub fn redis(url: impl Into<String>) -> Self {
        CacheConfig::new(RedisConfig::standalone(url))
    }

    /// Sets the deployment prefix.
    pub fn naming_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.naming_prefix = prefix.into();
        self
    }

    /// Sets the application namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets how long a read generation is trusted.
    pub fn generation_refresh(mut self, refresh: Duration) -> Self {
        self.generation_refresh = refresh;
        self
    }
}

/// Where values live.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum BackendConfig {
    /// In this process (moka): no server, nothing shared between processes.
    InProcess(InProcessConfig),
    /// Redis, standalone or a cluster.
    #[cfg(feature = "redis")]
    Redis(RedisConfig),
}

impl From<InProcessConfig> for BackendConfig {
    fn from(config: InProcessConfig) -> Self {
        BackendConfig::InProcess(config)
    }
}

#[cfg(feature = "redis")]
impl From<RedisConfig> for BackendConfig {
    fn from(config: RedisConfig) -> Self {
        BackendConfig::Redis(config)
    }
}

/// The in-process backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct InProcessConfig {
    /// The most bytes of keys and values held; beyond it the least useful entries are
    /// evicted (moka's TinyLFU). Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for InProcessConfig {
    fn default() -> Self {
        InProcessConfig {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl InProcessConfig {
    /// Sets the size bound.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

/// A Redis server or cluster.
///
/// ```
/// use tenancy_cache::{CacheConfig, RedisConfig, Secret};
///
/// // Strict mode: an ACL user per tenant, passwords derived from the secret; platform
/// // operations (provisioning, purges) log in with the URL's own user.
/// let config = CacheConfig::new(
///     RedisConfig::standalone("redis://admin:pw@127.0.0.1:6379")
///         .strict(Secret::new("0123456789abcdef0123456789abcdef")?),
/// );
/// # Ok::<(), tenancy_cache::Error>(())
/// ```
#[cfg(feature = "redis")]
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server's URL; for a cluster, one or more nodes' URLs to discover it from. The
    /// URL's user is the one platform operations (and, outside strict mode, tenants) log in
    /// as.
    pub urls: Vec<String>,
    /// Whether `urls` name nodes of a Redis Cluster (feature `cluster`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub cluster: bool,
    /// On a cluster, put each tenant's keys in one hash slot (`tenancy:{acme}:...`): a
    /// tenant's keys then live on one node (a purge still asks every primary). Off, the
    /// default, spreads every tenant over the cluster.
    #[cfg_attr(feature = "serde", serde(default))]
    pub hash_tag_per_tenant: bool,
    /// Strict mode: one ACL user per tenant, restricted to the tenant's keys and to the
    /// commands this crate sends, its password derived from this secret. `None` (the
    /// default) serves every tenant with the URL's user.
    #[cfg_attr(feature = "serde", serde(default))]
    pub strict: Option<Secret>,
    /// The connection budget: in strict mode each tenant has its own pool under it.
    #[cfg_attr(feature = "serde", serde(default = "default_pool"))]
    pub pool: PoolsConfig,
    /// The longest one command may take before it fails with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (and its connection is
    /// closed). Default 1 s.
    #[cfg_attr(feature = "serde", serde(default = "default_command_timeout"))]
    pub command_timeout: Duration,
}

#[cfg(all(feature = "redis", feature = "serde"))]
fn default_pool() -> PoolsConfig {
    RedisConfig::default_pool()
}

#[cfg(all(feature = "redis", feature = "serde"))]
fn default_command_timeout() -> Duration {
    Duration::from_secs(1)
}

#[cfg(feature = "redis")]
impl RedisConfig {
    fn default_pool() -> PoolsConfig {
        let mut pool = PoolsConfig::with_max_connections(64);
        // A Redis connection is cheap to open (no authentication round trips beyond one
        // AUTH); close idle ones sooner than PostgreSQL's.
        pool.idle_timeout = Duration::from_secs(120);
        pool.connect_timeout = Duration::from_secs(1);
        pool.acquire_timeout = Duration::from_secs(2);
        // A new Redis connection costs one or two round trips (TCP, AUTH), not the
        // milliseconds of a PostgreSQL backend: when the budget is full, a tenant without a
        // connection takes the longest-idle one at once rather than wait for one to age
        // (measured in benches/strict_density.rs: waiting 200 ms, the tenancy-pool default,
        // gave a p99 of 240 ms).
        pool.steal_idle_after = Duration::ZERO;
        pool
    }

    /// A standalone Redis server at `url`.
    pub fn standalone(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            hash_tag_per_tenant: false,
            strict: None,
            pool: Self::default_pool(),
            command_timeout: Duration::from_secs(1),
        }
    }

    /// A Redis Cluster, discovered from `urls` (feature `cluster`).
    #[cfg(feature = "cluster")]
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            cluster: true,
            ..RedisConfig::standalone(String::new())
        }
    }

    /// Strict mode, with ACL passwords derived from `secret`.
    pub fn strict(mut self, secret: Secret) -> Self {
        self.strict = Some(secret);
        self
    }

    /// Puts each tenant's keys in one cluster hash slot.
    pub fn hash_tag_per_tenant(mut self, on: bool) -> Self {
        self.hash_tag_per_tenant = on;
        self
    }

    /// Sets the connection budget.
    pub fn pool(mut self, pool: PoolsConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Sets the command timeout.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("hash_tag_per_tenant", &self.hash_tag_per_tenant)
            .field("strict", &self.strict)
            .field("pool", &self.pool)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// A URL with its password replaced, for messages and `Debug`.
#[cfg(feature = "redis")]
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("<unparsable url>");
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{host}/{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[cfg(feature = "serde")]
    #[test]
    fn configs_deserialize_with_defaults_and_refuse_unknown_fields() {
        let config: CacheConfig = serde_json::from_str(
            r#"{"namespace": "eqms", "backend": {"redis": {"urls": ["redis://127.0.0.1:6379"],
                "strict": "0123456789abcdef0123456789abcdef"}}}"#,
        )
        .unwrap();
        assert_eq!(config.naming_prefix, "tenancy");
        assert_eq!(config.namespace, "eqms");
        let BackendConfig::Redis(redis) = config.backend else {
            panic!("not redis")
        };
        assert!(redis.strict.is_some());
        assert_eq!(redis.pool.steal_idle_after, Duration::ZERO);
        let short = serde_json::from_str::<CacheConfig>(
            r#"{"backend": {"redis": {"urls": ["redis://x:1"], "strict": "short"}}}"#,
        );
        assert!(short.is_err());
        let unknown =
            serde_json::from_str::<CacheConfig>(r#"{"backend": {"in_process": {"size": 1}}}"#);
        assert!(unknown.is_err());
        let embedded: CacheConfig =
            serde_json::from_str(r#"{"backend": {"in_process": {}}}"#).unwrap();
        assert!(matches!(embedded.backend, BackendConfig::InProcess(_)));
    }

    #[test]
    fn debug_hides_passwords() {
        let config = RedisConfig::standalone("redis://admin:hunter2@127.0.0.1:6379/0");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("admin:<redacted>@127.0.0.1:6379"), "{shown}");
    }
}
