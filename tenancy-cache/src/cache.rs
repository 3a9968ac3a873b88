//! [`Cache`], the shared handle, and [`TenantCache`], the tenant-scoped one.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_core::naming::Naming;
use tenancy_core::{PlatformContext, TenantContext, TenantId};

use crate::backend::Backend;
use crate::backend::memory::Memory;
use crate::config::{BackendConfig, CacheConfig};
use crate::error::{Error, ErrorKind};
use crate::key::KeySpace;
use crate::stats::{CacheStats, Counters};
use crate::value::{Opened, decode, encode, open, seal};

/// The longest time to live a value may have.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A cache shared by every tenant, from which tenant-scoped handles are taken.
///
/// A `Cache` itself reads and writes nothing: [`Cache::tenant`] gives the
/// [`TenantCache`] of a [`TenantContext`], and [`Cache::platform`] the operations an
/// operator runs on a tenant's cache (provisioning, invalidation, purge). Cloning is one
/// reference count.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySpace,
    backend: Backend,
    generations: Generations,
    flights: Flights,
    counters: Arc<Counters>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("keys", &self.inner.keys)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache as `config` says. Connects to nothing yet: Redis connections are opened on
    /// first use, within the pool's budget.
    pub fn new(config: CacheConfig) -> Result<Cache, Error> {
        let naming = Naming::new(&config.naming_prefix).map_err(|error| {
            Error::with_source(
                ErrorKind::Config,
                "the cache's naming prefix is invalid",
                error,
            )
        })?;
        let counters = Arc::new(Counters::default());
        let (keys, backend) = match &config.backend {
            BackendConfig::InProcess(memory) => (
                KeySpace::new(naming, &config.namespace, false)?,
                Backend::Memory(Memory::new(memory)),
            ),
            #[cfg(feature = "redis")]
            BackendConfig::Redis(redis) => {
                if redis.hash_tag_per_tenant && !redis.cluster {
                    return Err(Error::new(
                        ErrorKind::Config,
                        "hash_tag_per_tenant applies to a Redis Cluster only",
                    ));
                }
                let keys = KeySpace::new(naming, &config.namespace, redis.hash_tag_per_tenant)?;
                let backend =
                    crate::backend::redis::Redis::new(redis, &keys, Arc::clone(&counters))?;
                (keys, Backend::Redis(backend))
            }
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                keys,
                backend,
                generations: Generations::new(config.generation_refresh),
                flights: Flights::default(),
                counters,
            }),
        })
    }

    /// The embedded default: an in-process cache of 64 MiB, prefix `tenancy`, namespace
    /// `app`.
    pub fn in_process() -> Cache {
        Cache::new(CacheConfig::in_process()).expect("the default configuration is valid")
    }

    /// The cache of `ctx`'s tenant: every key it reads or writes is that tenant's.
    pub fn tenant(&self, ctx: &TenantContext) -> TenantCache {
        TenantCache {
            cache: self.clone(),
            ctx: ctx.clone(),
            fall_through: false,
        }
    }

    /// The cache of the tenant in scope ([`TenantContext::current`]); fails outside a
    /// tenant's scope: there is no default tenant.
    pub fn current(&self) -> Result<TenantCache, Error> {
        let ctx = TenantContext::current().map_err(|error| {
            Error::with_source(
                ErrorKind::Config,
                "the cache was asked for the current tenant outside any tenant's scope",
                error,
            )
        })?;
        Ok(self.tenant(&ctx))
    }

    /// Operations on a tenant's cache that only an operator runs.
    pub fn platform(&self) -> PlatformCache<'_> {
        PlatformCache { cache: self }
    }

    /// The counters of this cache, alarms included.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// The counters of the Redis connection pools; `None` for the in-process backend.
    #[cfg(feature = "redis")]
    pub fn pool_stats(&self) -> Option<tenancy_pool::PoolStats> {
        match &self.inner.backend {
            Backend::Redis(redis) => Some(redis.pool_stats()),
            Backend::Memory(_) => None,
        }
    }

    fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The tenant's current generation.
    async fn generation(&self, tenant: &TenantId) -> Result<u64, Error> {
        match &self.inner.backend {
            Backend::Memory(memory) => Ok(memory.generation(tenant)),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                if let Some(generation) = self.inner.generations.fresh(tenant) {
                    return Ok(generation);
                }
                let key = self.inner.keys.generation_key(tenant);
                let (tag, generation) = redis.generation(tenant, &key, false, false).await?;
                self.check_reply_tag(&tag, &key)?;
                self.inner.generations.store(tenant, generation);
                Ok(generation)
            }
        }
    }

    /// Moves the tenant to a new generation: every key written before is unreachable.
    async fn bump_generation(&self, tenant: &TenantId, platform: bool) -> Result<(), Error> {
        match &self.inner.backend {
            Backend::Memory(memory) => {
                memory.bump_generation(tenant);
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                let key = self.inner.keys.generation_key(tenant);
                let (tag, generation) = redis.generation(tenant, &key, true, platform).await?;
                self.check_reply_tag(&tag, &key)?;
                self.inner.generations.store(tenant, generation);
            }
        }
        let _ = platform;
        Ok(())
    }

    /// A reply that names another key than the one asked for: counted as an alarm, and an
    /// error (the connection it came on has been closed).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn check_reply_tag(&self, tag: &str, key: &str) -> Result<(), Error> {
        if tag == key {
            return Ok(());
        }
        Counters::bump(&self.counters().tag_mismatches);
        Err(Error::new(
            ErrorKind::Backend,
            "Redis answered for another key than the one asked for; the reply was dropped \
             and its connection closed (counted in CacheStats::tag_mismatches)",
        ))
    }

    async fn read_raw(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, Error> {
        let _ = tenant;
        match &self.inner.backend {
            Backend::Memory(memory) => Ok(memory.get(key).await),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.get(tenant, key).await,
        }
    }

    async fn write_raw(
        &self,
        tenant: &TenantId,
        key: String,
        sealed: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), Error> {
        let _ = tenant;
        match &self.inner.backend {
            Backend::Memory(memory) => {
                memory.set(key, Bytes::from(sealed), ttl).await;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.set(tenant, &key, &sealed, ttl).await,
        }
    }
}

/// A tenant's cache: what [`Cache::tenant`] gives for a [`TenantContext`].
///
/// Every key named here is the caller's part of a key: the tenant, the application
/// namespace and the tenant's generation are put in front of it, always, in one place. A
/// key of another tenant cannot be named. Values are serialized with serde (JSON) and
/// stored with their full key as a tag, checked on every read.
///
/// ```
/// use std::time::Duration;
/// use tenancy_cache::Cache;
/// use tenancy_core::{Actor, TenantContext};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::in_process();
/// let acme = TenantContext::new("acme".parse()?, Actor::user("4271", "Jane")?);
/// let beta = TenantContext::new("beta".parse()?, Actor::user("4271", "Joe")?);
///
/// let key = "user:4271:recent_activity";
/// cache.tenant(&acme).set(key, &vec!["CAPA-17"], Duration::from_secs(60)).await?;
/// // The same key at another tenant is another key.
/// assert_eq!(cache.tenant(&beta).get::<Vec<String>>(key).await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenantCache {
    cache: Cache,
    ctx: TenantContext,
    fall_through: bool,
}

impl fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCache")
            .field("tenant", &self.ctx.tenant().as_str())
            .field("fall_through", &self.fall_through)
            .finish_non_exhaustive()
    }
}

fn check_ttl(ttl: Duration) -> Result<(), Error> {
    if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
        return Err(Error::new(
            ErrorKind::InvalidTtl,
            format!(
                "a time to live of {ttl:?} is out of range: use 1 ms to {} days",
                MAX_TTL.as_secs() / 86_400
            ),
        ));
    }
    Ok(())
}

impl TenantCache {
    /// The context this handle serves.
    pub fn context(&self) -> &TenantContext {
        &self.ctx
    }

    /// When the cache cannot be reached, let [`TenantCache::get_or_compute`] compute the
    /// value (for this same tenant) and return it uncached, instead of failing with
    /// [`ErrorKind::Unavailable`]. Off by default. Other operations fail either way.
    pub fn fall_through_when_unavailable(mut self, on: bool) -> Self {
        self.fall_through = on;
        self
    }

    fn tenant(&self) -> &TenantId {
        self.ctx.tenant()
    }

    /// The backend key of the caller's `key`, at the tenant's current generation.
    async fn full_key(&self, key: &str) -> Result<String, Error> {
        let generation = self.cache.generation(self.tenant()).await?;
        self.cache
            .inner
            .keys
            .data_key(self.tenant(), generation, key)
    }

    /// The payload stored at `full`, if it is this key's own.
    async fn read_payload(&self, full: &str) -> Result<Option<Bytes>, Error> {
        let counters = self.cache.counters();
        let Some(stored) = self.cache.read_raw(self.tenant(), full).await? else {
            Counters::bump(&counters.misses);
            return Ok(None);
        };
        match open(full, &stored) {
            Opened::Ours(payload) => {
                Counters::bump(&counters.hits);
                let start = stored.len() - payload.len();
                Ok(Some(stored.slice(start..)))
            }
            Opened::Foreign => {
                Counters::bump(&counters.tag_mismatches);
                Counters::bump(&counters.misses);
                Ok(None)
            }
            Opened::Malformed => {
                Counters::bump(&counters.malformed);
                Counters::bump(&counters.misses);
                Ok(None)
            }
        }
    }

    async fn write_payload(
        &self,
        full: String,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        let sealed = seal(&full, payload);
        self.cache
            .write_raw(self.tenant(), full, sealed, ttl)
            .await?;
        Counters::bump(&self.cache.counters().sets);
        Ok(())
    }

    /// The value at `key`, or `None` if there is none (expired, invalidated, never set).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let full = self.full_key(key).await?;
        match self.read_payload(&full).await? {
            Some(payload) => decode(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` at `key` for `ttl` (1 ms to [`MAX_TTL`]).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        check_ttl(ttl)?;
        let payload = encode(value)?;
        let full = self.full_key(key).await?;
        self.write_payload(full, &payload, ttl).await
    }

    /// Deletes the value at `key`; whether there was one.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let full = self.full_key(key).await?;
        match &self.cache.inner.backend {
            Backend::Memory(memory) => Ok(memory.delete(&full).await),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.delete(self.tenant(), &full).await,
        }
    }

    /// The value at `key`; if there is none, `compute`'s, stored for `ttl` and returned.
    ///
    /// Concurrent calls for the same key in this process compute once: the others wait
    /// for that value. (On Redis, processes do not wait for each other: each may compute
    /// once, and the last write wins.) A value that no longer reads as `T` is recomputed
    /// and overwritten. With
    /// [`fall_through_when_unavailable`](TenantCache::fall_through_when_unavailable), an
    /// unreachable cache makes this compute and return the value uncached.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        check_ttl(ttl)?;
        let full = match self.full_key(key).await {
            Ok(full) => full,
            Err(error) => return self.fall_through(error, compute).await,
        };
        match self.read_typed::<T>(&full).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => return self.fall_through(error, compute).await,
        }
        let flight = self.cache.inner.flights.join(&full);
        let _turn = flight.turn().await;
        // Whoever computed while this call waited has stored the value.
        match self.read_typed::<T>(&full).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => return self.fall_through(error, compute).await,
        }
        let value = run_compute(self.cache.counters(), compute).await?;
        let payload = encode(&value)?;
        match self.write_payload(full, &payload, ttl).await {
            Ok(()) => Ok(value),
            Err(error) if self.fall_through && error.is_unavailable() => {
                Counters::bump(&self.cache.counters().fall_throughs);
                Ok(value)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads `full` as a `T`; a value of another type is a miss.
    async fn read_typed<T: DeserializeOwned>(&self, full: &str) -> Result<Option<T>, Error> {
        Ok(self
            .read_payload(full)
            .await?
            .and_then(|payload| decode(&payload).ok()))
    }

    async fn fall_through<T, E, F, Fut>(&self, error: Error, compute: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        if !(self.fall_through && error.is_unavailable()) {
            return Err(error);
        }
        Counters::bump(&self.cache.counters().fall_throughs);
        run_compute(self.cache.counters(), compute).await
    }

    /// Adds `by` to the counter at `key` and returns its new value. A counter that does
    /// not exist starts at 0 and expires after `ttl`; incrementing keeps its expiry.
    /// Atomic on every backend. Read counters with [`TenantCache::counter`], not
    /// [`TenantCache::get`].
    pub async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, Error> {
        check_ttl(ttl)?;
        let full = self.full_key(key).await?;
        match &self.cache.inner.backend {
            Backend::Memory(memory) => {
                let (value, foreign) = memory.incr(&full, by, ttl).await;
                if foreign {
                    Counters::bump(&self.cache.counters().tag_mismatches);
                }
                Ok(value)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                let (tag, value) = redis.incr(self.tenant(), &full, by, ttl).await?;
                self.cache.check_reply_tag(&tag, &full)?;
                Ok(value)
            }
        }
    }

    /// The value of the counter at `key`, if it exists.
    pub async fn counter(&self, key: &str) -> Result<Option<i64>, Error> {
        let full = self.full_key(key).await?;
        match &self.cache.inner.backend {
            Backend::Memory(_) => Ok(self.read_payload(&full).await?.and_then(|payload| {
                std::str::from_utf8(&payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
            })),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                let (tag, value) = redis.counter(self.tenant(), &full).await?;
                self.cache.check_reply_tag(&tag, &full)?;
                Ok(value)
            }
        }
    }

    /// Invalidates every value of this tenant, in this namespace and every other, at once
    /// and whatever their number: the tenant moves to a new generation, and keys of the old
    /// one are never read again (they expire by their TTL, or go with a purge). Other nodes
    /// see it within their `generation_refresh`.
    pub async fn invalidate(&self) -> Result<(), Error> {
        self.cache.bump_generation(self.tenant(), false).await
    }

    /// The raw payload at `key` (for the response cache, which stores its own encoding).
    #[cfg(feature = "http")]
    pub(crate) async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let full = self.full_key(key).await?;
        self.read_payload(&full).await
    }

    /// Stores a raw payload at `key`.
    #[cfg(feature = "http")]
    pub(crate) async fn set_bytes(
        &self,
        key: &str,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        check_ttl(ttl)?;
        let full = self.full_key(key).await?;
        self.write_payload(full, payload, ttl).await
    }
}

async fn run_compute<T, E, F, Fut>(counters: &Counters, compute: F) -> Result<T, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    Counters::bump(&counters.computes);
    compute().await.map_err(|error| {
        Error::with_source(
            ErrorKind::Compute,
            "the compute function of get_or_compute failed",
            error,
        )
    })
}

/// What an operator does to a tenant's cache, under a [`PlatformContext`]. Made by
/// [`Cache::platform`].
///
/// These operations return what they did; recording it in the platform's audit log is the
/// caller's (tenancy-cache writes no log of its own).
#[derive(Debug, Clone, Copy)]
pub struct PlatformCache<'a> {
    cache: &'a Cache,
}

/// What a purge did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PurgeReport {
    /// The tenant purged.
    pub tenant: TenantId,
    /// Keys deleted.
    pub deleted: u64,
    /// Nodes scanned: 1, or every primary of a cluster.
    pub nodes: usize,
    /// Commands sent (`SCAN` and `UNLINK` steps).
    pub commands: u64,
    /// The longest any one command took, round trip included: the longest the purge
    /// blocked Redis at once is at most this.
    pub longest_command: Duration,
    /// How long the whole purge took.
    pub elapsed: Duration,
}

impl PlatformCache<'_> {
    /// Prepares `tenant`'s cache. In strict mode, creates (or resets) its ACL user on every
    /// node: its own keys only, this crate's commands only, no keyspace-wide command; the
    /// password is derived from the deployment secret. Otherwise nothing is needed.
    pub async fn provision(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        let _ = (operator, tenant);
        match &self.cache.inner.backend {
            Backend::Memory(_) => Ok(()),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.provision(&self.cache.inner.keys, tenant).await,
        }
    }

    /// Removes `tenant`'s cache: its ACL user first (in strict mode; this closes its
    /// connections, so nothing writes behind the purge), then every key.
    pub async fn deprovision(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<PurgeReport, Error> {
        match &self.cache.inner.backend {
            Backend::Memory(_) => {}
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.deprovision(&self.cache.inner.keys, tenant).await?,
        }
        self.purge(operator, tenant).await
    }

    /// Invalidates every value of `tenant` at once, as [`TenantCache::invalidate`] does.
    pub async fn invalidate(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        let _ = operator;
        self.cache.bump_generation(tenant, true).await
    }

    /// Deletes every key of `tenant` (values of every generation and namespace, counters,
    /// the generation itself), with `SCAN` and `UNLINK` in batches of 250, on every
    /// primary of a cluster. Never touches another tenant's keys, even one whose id starts
    /// with this one's. Keys written while the purge runs may survive it: in strict mode,
    /// [`deprovision`](PlatformCache::deprovision) removes the tenant's user first.
    pub async fn purge(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<PurgeReport, Error> {
        let _ = operator;
        let started = Instant::now();
        let keys = &self.cache.inner.keys;
        let report = match &self.cache.inner.backend {
            Backend::Memory(memory) => {
                let deleted = memory.purge(tenant, &keys.tenant_prefix(tenant));
                PurgeReport {
                    tenant: tenant.clone(),
                    deleted,
                    nodes: 1,
                    commands: 1,
                    longest_command: started.elapsed(),
                    elapsed: started.elapsed(),
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                let stats = redis.purge(&keys.tenant_pattern(tenant)).await?;
                PurgeReport {
                    tenant: tenant.clone(),
                    deleted: stats.deleted,
                    nodes: stats.nodes,
                    commands: stats.commands,
                    longest_command: stats.longest,
                    elapsed: started.elapsed(),
                }
            }
        };
        // The generation key went with the keys: read it afresh next time.
        self.cache.inner.generations.forget(tenant);
        Ok(report)
    }

    /// Whether tenants have their own ACL users (strict mode).
    pub fn is_strict(&self) -> bool {
        match &self.cache.inner.backend {
            Backend::Memory(_) => false,
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.is_strict(),
        }
    }
}

/// The tenant generations this node last read from Redis, and when.
struct Generations {
    refresh: Duration,
    map: RwLock<HashMap<TenantId, (u64, Instant)>>,
}

/// Generations remembered at most; beyond it the map starts again (each tenant then
/// reads its generation once more).
const MAX_REMEMBERED: usize = 100_000;

impl Generations {
    fn new(refresh: Duration) -> Self {
        Generations {
            refresh,
            map: RwLock::new(HashMap::new()),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn fresh(&self, tenant: &TenantId) -> Option<u64> {
        if self.refresh.is_zero() {
            return None;
        }
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let (generation, read_at) = map.get(tenant)?;
        (read_at.elapsed() < self.refresh).then_some(*generation)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn store(&self, tenant: &TenantId, generation: u64) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_REMEMBERED && !map.contains_key(tenant) {
            map.clear();
        }
        map.insert(tenant.clone(), (generation, Instant::now()));
    }

    fn forget(&self, tenant: &TenantId) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }
}

/// Computations in progress, by full key: a `get_or_compute` that misses takes its key's
/// turn, so concurrent callers for one key compute one after the other, and all but the
/// first find the value stored.
#[derive(Default)]
struct Flights {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Flights {
    fn join(&self, key: &str) -> Flight<'_> {
        let lock = Arc::clone(
            self.map
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.to_owned())
                .or_default(),
        );
        Flight {
            flights: self,
            key: key.to_owned(),
            lock,
        }
    }
}

impl Flight<'_> {
    async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's own reference and this one: nobody else is waiting.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}
