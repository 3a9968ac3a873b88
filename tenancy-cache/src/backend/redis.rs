//! The Redis backend: standalone (through deadpool-redis's connection manager) or a
//! cluster, every connection checked out of [`tenancy_pool::TenantPools`] under one budget.
//!
//! Connection discipline, the reason this module exists:
//! - a connection is used by one caller at a time, and goes back to its pool only after
//!   the reply to everything sent on it has been read. If the caller's future is dropped
//!   mid-command, or the command fails or times out, the connection is closed
//!   ([`Checkout`]'s `Drop`), never lent again: the next borrower can never read a reply
//!   meant for someone else (redis-rs #325, deadpool #97, the 2023 redis-py incident);
//! - this crate sends only the commands in [`ALLOWED_COMMANDS`] (and the connection
//!   handshake): no `MULTI`, `WATCH`, `SUBSCRIBE`, `SELECT`, `CLIENT TRACKING`,
//!   `CLIENT SETNAME` or `AUTH`, and there is no API to send another. A connection is
//!   therefore never in a state its next borrower did not ask for;
//! - in strict mode each tenant's connections log in as the tenant's own ACL user and live
//!   in the tenant's own pool; no connection is ever re-authenticated.
//!
//! Recycling sends nothing (deadpool-redis's manager sends `UNWATCH` and `PING` on every
//! checkout, one round trip each time): the discipline above is what keeps a returned
//! connection clean, and a connection that died while idle fails its next command, which
//! idempotent operations retry once on a new connection.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deadpool::managed::{Manager, Metrics, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisError,
    RedisFuture, RedisResult, Script, ScriptInvocation, Value,
};
use tenancy_core::TenantId;
use tenancy_pool::deadpool;
use tenancy_pool::{Connection, TenantPools};

use crate::config::{RedisConfig, redact_url};
use crate::credentials::Secret;
use crate::error::{Error, ErrorKind};
use crate::key::KeySpace;
use crate::stats::Counters;
use crate::value::{Opened, open};

/// Every command this crate sends after the handshake, and so every command a tenant's ACL
/// user is allowed in strict mode (plus `CLUSTER SLOTS`, which a cluster client needs to
/// find the cluster, and `PING`). Scripts run with the same permissions.
pub(crate) const ALLOWED_COMMANDS: &[&str] = &[
    "get",
    "set",
    "unlink",
    "incrby",
    "pexpire",
    "pttl",
    "evalsha",
    "eval",
    "script|load",
];

/// The pools of a Redis backend: one shared pool for every tenant, or one per tenant in
/// strict mode; and one for platform operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PoolKey {
    Shared,
    Platform,
    Tenant(TenantId),
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolKey::Shared => f.write_str("the shared Redis pool"),
            PoolKey::Platform => f.write_str("the platform's Redis pool"),
            PoolKey::Tenant(id) => write!(f, "tenant {id}'s Redis pool"),
        }
    }
}

/// A connection of either kind.
pub(crate) enum RedisConn {
    Standalone(MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Standalone(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Standalone(conn) => conn.req_packed_commands(cmd, offset, count),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Standalone(conn) => conn.get_db(),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Makes connections for one pool.
pub(crate) enum RedisManager {
    // Both boxed: each manager is far larger than the error variant.
    Standalone(Box<deadpool_redis::Manager>),
    #[cfg(feature = "cluster")]
    Cluster(Box<redis::cluster::ClusterClient>),
    /// The manager could not be built: every connection attempt fails with this.
    Broken(String),
}

impl Manager for RedisManager {
    type Type = RedisConn;
    type Error = RedisError;

    async fn create(&self) -> Result<RedisConn, RedisError> {
        match self {
            RedisManager::Standalone(manager) => manager.create().await.map(RedisConn::Standalone),
            #[cfg(feature = "cluster")]
            RedisManager::Cluster(client) => {
                client.get_async_connection().await.map(RedisConn::Cluster)
            }
            RedisManager::Broken(why) => Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the Redis client could not be configured",
                why.clone(),
            ))),
        }
    }

    async fn recycle(&self, _: &mut RedisConn, _: &Metrics) -> RecycleResult<RedisError> {
        // See the module docs: a connection only comes back after its last reply was read.
        Ok(())
    }
}

/// A connection checked out for one request: closed, not returned, unless
/// [`Checkout::release`] is called after the request's last reply was read.
struct Checkout<'a> {
    conn: Option<Connection<RedisManager>>,
    counters: &'a Counters,
}

impl Checkout<'_> {
    fn conn(&mut self) -> &mut RedisConn {
        self.conn
            .as_mut()
            .expect("a checkout holds its connection until released")
    }

    fn release(mut self) {
        drop(self.conn.take());
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
            Counters::bump(&self.counters.discarded_connections);
        }
    }
}

/// One request: a command or a script call.
pub(crate) enum Request<'a> {
    Cmd(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(&self, conn: &mut RedisConn) -> RedisResult<T> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Script(script) => script.invoke_async(conn).await,
        }
    }
}

/// `{key, value}`: the counter after adding ARGV[1]; a new counter expires after ARGV[2] ms.
const INCR: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {KEYS[1], v}";

/// `{key, value}`: the counter, or nil.
const COUNTER: &str = r"
return {KEYS[1], redis.call('GET', KEYS[1])}";

/// `{key, generation}`: the tenant's generation, set to ARGV[1] (a clock reading, so that a
/// generation lost to eviction or a purge never comes back smaller) if missing.
const GENERATION: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then redis.call('SET', KEYS[1], ARGV[1], 'NX'); g = redis.call('GET', KEYS[1]) end
return {KEYS[1], g}";

/// `{key, generation}`: the tenant's generation after adding one.
const BUMP: &str = r"
if not redis.call('GET', KEYS[1]) then redis.call('SET', KEYS[1], ARGV[1], 'NX') end
return {KEYS[1], redis.call('INCRBY', KEYS[1], 1)}";

pub(crate) struct Redis {
    pools: TenantPools<PoolKey, RedisManager>,
    strict: Option<Secret>,
    cluster: bool,
    command_timeout: Duration,
    platform_timeout: Duration,
    counters: Arc<Counters>,
    scripts: Scripts,
}

struct Scripts {
    incr: Script,
    counter: Script,
    generation: Script,
    bump: Script,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("strict", &self.strict.is_some())
            .field("cluster", &self.cluster)
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

/// A clock reading in microseconds: the first generation of a tenant.
fn fresh_generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Redis {
    pub(crate) fn new(
        config: &RedisConfig,
        keys: &KeySpace,
        counters: Arc<Counters>,
    ) -> Result<Self, Error> {
        if config.urls.is_empty() {
            return Err(Error::new(ErrorKind::Config, "no Redis URL is configured"));
        }
        if config.command_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "command_timeout must be above zero: every command's wait is bounded",
            ));
        }
        #[cfg(not(feature = "cluster"))]
        if config.cluster {
            return Err(Error::new(
                ErrorKind::Config,
                "a Redis Cluster is configured but tenancy-cache was built without its \
                 `cluster` feature",
            ));
        }
        if !config.cluster && config.urls.len() != 1 {
            return Err(Error::new(
                ErrorKind::Config,
                "a standalone Redis takes exactly one URL; set `cluster` for several nodes",
            ));
        }
        let mut infos = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let info = url.as_str().into_connection_info().map_err(|error| {
                Error::with_source(
                    ErrorKind::Config,
                    format!("Redis URL {} is invalid", redact_url(url)),
                    error,
                )
            })?;
            if config.strict.is_some() && info.redis_settings().db() != 0 {
                return Err(Error::new(
                    ErrorKind::Config,
                    "strict mode needs Redis database 0: tenants' ACL users may not SELECT",
                ));
            }
            infos.push(info);
        }
        let cluster = config.cluster;
        let strict = config.strict.clone();
        let command_timeout = config.command_timeout;
        let connect_timeout = config.pool.connect_timeout;
        let platform_timeout = command_timeout.max(Duration::from_secs(10));
        let secret = strict.clone();
        let naming = keys.naming().clone();
        let make = move |key: &PoolKey| -> RedisManager {
            let (infos, timeout) = match (key, &secret) {
                (PoolKey::Tenant(id), Some(secret)) => {
                    let user = naming.acl_user(id);
                    let password = secret.password_for(&user);
                    let infos: Vec<ConnectionInfo> = infos
                        .iter()
                        .map(|info| {
                            let settings = info
                                .redis_settings()
                                .clone()
                                .set_username(&user)
                                .set_password(&password)
                                .set_skip_set_lib_name();
                            info.clone().set_redis_settings(settings)
                        })
                        .collect();
                    (infos, command_timeout)
                }
                (PoolKey::Platform, _) => (infos.clone(), platform_timeout),
                _ => (infos.clone(), command_timeout),
            };
            make_manager(cluster, infos, timeout, connect_timeout)
        };
        let pools = TenantPools::new(config.pool.clone(), make).map_err(Error::from_pool)?;
        Ok(Redis {
            pools,
            strict,
            cluster,
            command_timeout,
            platform_timeout,
            counters,
            scripts: Scripts {
                incr: Script::new(INCR),
                counter: Script::new(COUNTER),
                generation: Script::new(GENERATION),
                bump: Script::new(BUMP),
            },
        })
    }

    pub(crate) fn is_strict(&self) -> bool {
        self.strict.is_some()
    }

    pub(crate) fn pool_stats(&self) -> tenancy_pool::PoolStats {
        self.pools.stats()
    }

    fn pool_of(&self, tenant: &TenantId) -> PoolKey {
        if self.strict.is_some() {
            PoolKey::Tenant(tenant.clone())
        } else {
            PoolKey::Shared
        }
    }

    /// Sends `request` on a connection of `pool` and reads its reply; see the module docs
    /// for what happens to the connection. An idempotent request that fails because its
    /// connection broke is tried once more on another.
    async fn exec<T: FromRedisValue>(
        &self,
        pool: &PoolKey,
        doing: &str,
        request: Request<'_>,
        idempotent: bool,
        in_step: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let timeout = if *pool == PoolKey::Platform {
            self.platform_timeout
        } else {
            self.command_timeout
        };
        let mut attempts = if idempotent { 2 } else { 1 };
        loop {
            attempts -= 1;
            let conn = self.pools.get(pool).await.map_err(Error::from_pool)?;
            let mut checkout = Checkout {
                conn: Some(conn),
                counters: &self.counters,
            };
            // A standalone connection times its own replies out (its response timeout is
            // the command timeout), with no timer of ours to arm on every command; a
            // cluster connection's retries can outlast its per-node timeout, so it gets one.
            let reply = if self.cluster {
                tokio::time::timeout(timeout, request.send::<T>(checkout.conn())).await
            } else {
                Ok(request.send::<T>(checkout.conn()).await)
            };
            match reply {
                Ok(Ok(value)) => {
                    // A reply that names another key than the one asked for means the
                    // connection is out of step: close it (the checkout's drop), and let
                    // the caller count the alarm.
                    if in_step(&value) {
                        checkout.release();
                    }
                    return Ok(value);
                }
                Ok(Err(error)) => {
                    // The checkout is dropped: the connection is closed. A server's error
                    // reply leaves it in step, but errors are rare and a new connection
                    // is cheap.
                    drop(checkout);
                    let broken = error.is_io_error()
                        || error.is_connection_dropped()
                        || error.is_unrecoverable_error();
                    if attempts > 0 && broken {
                        continue;
                    }
                    return Err(Error::from_redis(doing, error));
                }
                Err(_) => {
                    drop(checkout);
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("{doing} failed: Redis did not answer within {timeout:?}"),
                    ));
                }
            }
        }
    }

    pub(crate) async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, Error> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let value: Option<Vec<u8>> = self
            .exec(
                &self.pool_of(tenant),
                "reading a cached value",
                Request::Cmd(&cmd),
                true,
                |value: &Option<Vec<u8>>| {
                    value
                        .as_deref()
                        .is_none_or(|stored| open(key, stored) != Opened::Foreign)
                },
            )
            .await?;
        Ok(value.map(Bytes::from))
    }

    pub(crate) async fn set(
        &self,
        tenant: &TenantId,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms(ttl));
        self.exec::<()>(
            &self.pool_of(tenant),
            "writing a cached value",
            Request::Cmd(&cmd),
            true,
            |()| true,
        )
        .await
    }

    pub(crate) async fn delete(&self, tenant: &TenantId, key: &str) -> Result<bool, Error> {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(key);
        let removed: u64 = self
            .exec(
                &self.pool_of(tenant),
                "deleting a cached value",
                Request::Cmd(&cmd),
                true,
                |_: &u64| true,
            )
            .await?;
        Ok(removed > 0)
    }

    /// `(tag, value)`: the key the reply names, and the counter's new value.
    pub(crate) async fn incr(
        &self,
        tenant: &TenantId,
        key: &str,
        by: i64,
        ttl: Duration,
    ) -> Result<(String, i64), Error> {
        let mut invocation = self.scripts.incr.key(key);
        invocation.arg(by).arg(ttl_ms(ttl));
        self.exec(
            &self.pool_of(tenant),
            "incrementing a counter",
            Request::Script(&invocation),
            false,
            |(tag, _): &(String, i64)| tag == key,
        )
        .await
    }

    /// `(tag, value)`: the key the reply names, and the counter's value.
    pub(crate) async fn counter(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<(String, Option<i64>), Error> {
        let invocation = self.scripts.counter.key(key);
        self.exec(
            &self.pool_of(tenant),
            "reading a counter",
            Request::Script(&invocation),
            true,
            |(tag, _): &(String, Option<i64>)| tag == key,
        )
        .await
    }

    /// `(tag, generation)` of the tenant whose generation key is `key`.
    pub(crate) async fn generation(
        &self,
        tenant: &TenantId,
        key: &str,
        bump: bool,
        platform: bool,
    ) -> Result<(String, u64), Error> {
        let script = if bump {
            &self.scripts.bump
        } else {
            &self.scripts.generation
        };
        let mut invocation = script.key(key);
        invocation.arg(fresh_generation());
        let doing = if bump {
            "invalidating the tenant's cache"
        } else {
            "reading the tenant's cache generation"
        };
        let pool = if platform {
            PoolKey::Platform
        } else {
            self.pool_of(tenant)
        };
        self.exec(
            &pool,
            doing,
            Request::Script(&invocation),
            !bump,
            |(tag, _): &(String, u64)| tag == key,
        )
        .await
    }

    /// Creates (or resets) `tenant`'s ACL user on every node: its own keys only, the
    /// commands of [`ALLOWED_COMMANDS`] only.
    pub(crate) async fn provision(&self, keys: &KeySpace, tenant: &TenantId) -> Result<(), Error> {
        let Some(secret) = &self.strict else {
            return Ok(());
        };
        let user = keys.naming().acl_user(tenant);
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("on")
            .arg(format!("#{}", secret.password_hash_for(&user)))
            .arg("resetchannels")
            .arg(format!("~{}", keys.tenant_pattern(tenant)))
            .arg("-@all");
        for command in ALLOWED_COMMANDS {
            cmd.arg(format!("+{command}"));
        }
        cmd.arg("+ping");
        if self.cluster {
            cmd.arg("+cluster|slots").arg("+cluster|shards");
        }
        self.exec::<()>(
            &PoolKey::Platform,
            "creating the tenant's ACL user",
            Request::Cmd(&cmd),
            true,
            |()| true,
        )
        .await
        .map_err(|error| provision_error("creating the tenant's Redis ACL user", error))?;
        // A pool made before the user existed may have failed connections remembered.
        self.pools.remove(&PoolKey::Tenant(tenant.clone()));
        Ok(())
    }

    /// Removes `tenant`'s ACL user from every node (which closes its connections) and its
    /// pool.
    pub(crate) async fn deprovision(
        &self,
        keys: &KeySpace,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        self.pools.remove(&PoolKey::Tenant(tenant.clone()));
        if self.strict.is_none() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DELUSER").arg(keys.naming().acl_user(tenant));
        self.exec::<()>(
            &PoolKey::Platform,
            "removing the tenant's ACL user",
            Request::Cmd(&cmd),
            true,
            |()| true,
        )
        .await
        .map_err(|error| provision_error("removing the tenant's Redis ACL user", error))
    }

    /// Deletes every key matching `pattern` with `SCAN` and `UNLINK` in batches, on every
    /// primary of a cluster.
    pub(crate) async fn purge(&self, pattern: &str) -> Result<PurgeStats, Error> {
        let mut stats = PurgeStats::default();
        let conn = self
            .pools
            .get(&PoolKey::Platform)
            .await
            .map_err(Error::from_pool)?;
        let mut checkout = Checkout {
            conn: Some(conn),
            counters: &self.counters,
        };
        let nodes = self.scan_targets(checkout.conn()).await?;
        stats.nodes = nodes.len();
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(PURGE_BATCH);
                let started = Instant::now();
                let (next, keys): (u64, Vec<Vec<u8>>) = self
                    .timed(
                        send_to(checkout.conn(), &scan, node),
                        "scanning for the tenant's keys",
                    )
                    .await?;
                stats.note(started.elapsed());
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    for key in &keys {
                        unlink.arg(key);
                    }
                    let started = Instant::now();
                    let removed: u64 = self
                        .timed(
                            unlink.query_async(checkout.conn()),
                            "deleting the tenant's keys",
                        )
                        .await?;
                    stats.note(started.elapsed());
                    stats.deleted += removed;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        checkout.release();
        Ok(stats)
    }

    async fn timed<T>(
        &self,
        future: impl Future<Output = RedisResult<T>>,
        doing: &str,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.platform_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Error::from_redis(doing, error)),
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{doing} failed: Redis did not answer within {:?}",
                    self.platform_timeout
                ),
            )),
        }
    }

    /// The nodes a purge must scan: the server itself, or every primary of the cluster.
    async fn scan_targets(&self, conn: &mut RedisConn) -> Result<Vec<Node>, Error> {
        match conn {
            RedisConn::Standalone(_) => Ok(vec![Node::Itself]),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(cluster) => {
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("NODES");
                let text: String = self
                    .timed(
                        cluster.route_command(
                            cmd,
                            redis::cluster_routing::RoutingInfo::SingleNode(
                                redis::cluster_routing::SingleNodeRoutingInfo::Random,
                            ),
                        ),
                        "listing the cluster's nodes",
                    )
                    .await
                    .and_then(|value| {
                        String::from_redis_value(value).map_err(|error| {
                            Error::with_source(
                                ErrorKind::Backend,
                                "CLUSTER NODES answered something unreadable",
                                RedisError::from(error),
                            )
                        })
                    })?;
                let primaries = cluster_primaries(&text);
                if primaries.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Backend,
                        "CLUSTER NODES named no healthy primary: the purge cannot reach every \
                         node; retry when the cluster is healthy",
                    ));
                }
                Ok(primaries)
            }
        }
    }
}

/// How many keys one `SCAN` step asks for, and so the most one `UNLINK` deletes.
pub(crate) const PURGE_BATCH: usize = 250;

/// What a purge did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PurgeStats {
    pub(crate) deleted: u64,
    pub(crate) commands: u64,
    pub(crate) longest: Duration,
    pub(crate) nodes: usize,
}

impl PurgeStats {
    fn note(&mut self, took: Duration) {
        self.commands += 1;
        self.longest = self.longest.max(took);
    }
}

/// Where one `SCAN` goes.
enum Node {
    Itself,
    #[cfg(feature = "cluster")]
    Address {
        host: String,
        port: u16,
    },
}

async fn send_to<T: FromRedisValue>(
    conn: &mut RedisConn,
    cmd: &Cmd,
    node: &Node,
) -> RedisResult<T> {
    match (conn, node) {
        (conn, Node::Itself) => cmd.query_async(conn).await,
        #[cfg(feature = "cluster")]
        (RedisConn::Cluster(cluster), Node::Address { host, port }) => {
            let value = cluster
                .route_command(
                    cmd.clone(),
                    redis::cluster_routing::RoutingInfo::SingleNode(
                        redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        },
                    ),
                )
                .await?;
            T::from_redis_value(value).map_err(RedisError::from)
        }
        #[cfg(feature = "cluster")]
        (RedisConn::Standalone(_), Node::Address { .. }) => Err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "a node address on a standalone connection",
        ))),
    }
}

/// The healthy primaries in `CLUSTER NODES` output.
#[cfg(feature = "cluster")]
fn cluster_primaries(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, flags) = (fields.get(1)?, fields.get(2)?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
                return None;
            }
            let host_port = address.split('@').next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some(Node::Address {
                host: host.to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect()
}

fn provision_error(doing: &str, error: Error) -> Error {
    if error.kind() == ErrorKind::Unavailable {
        return error;
    }
    Error::with_source(
        ErrorKind::Provision,
        format!("{doing} failed: the platform's Redis user needs ACL SETUSER and ACL DELUSER"),
        error,
    )
}

fn make_manager(
    cluster: bool,
    infos: Vec<ConnectionInfo>,
    response_timeout: Duration,
    connect_timeout: Duration,
) -> RedisManager {
    if cluster {
        #[cfg(feature = "cluster")]
        {
            let first = infos[0].redis_settings().clone();
            let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                .response_timeout(response_timeout)
                .connection_timeout(connect_timeout)
                .retries(2);
            if let Some(user) = first.username() {
                builder = builder.username(user);
            }
            if let Some(password) = first.password() {
                builder = builder.password(password);
            }
            return match builder.build() {
                Ok(client) => RedisManager::Cluster(Box::new(client)),
                Err(error) => RedisManager::Broken(error.to_string()),
            };
        }
    }
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(connect_timeout));
    match deadpool_redis::Manager::new_with_config(infos[0].clone(), config) {
        Ok(manager) => RedisManager::Standalone(Box::new(manager)),
        Err(error) => RedisManager::Broken(error.to_string()),
    }
}
