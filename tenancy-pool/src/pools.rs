//! [`TenantPools`]: lazily created pools, one per key, under one connection budget.
//!
//! Every open connection holds one permit of the budget semaphore for as long as it lives.
//! A pool that needs a new connection takes a permit; when none is left it closes the idle
//! connection that was used least recently, in whichever pool it sits, and when no
//! connection is idle it waits (bounded by the acquire timeout) for one to be returned or
//! closed. A pool whose connection attempt failed refuses checkouts for a short while, so a
//! tenant whose database is down fails fast instead of tying up the budget.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{
    Manager, Metrics, Pool, PoolError, QueueMode, RecycleError, RecycleResult,
};
use tokio::sync::{Notify, Semaphore};

use crate::budget::{Budget, CREATING, Lease, Yielded, futures_poll_once};
use crate::config::PoolsConfig;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind};
use crate::stats::{Counters, PoolStats};

/// Per-key connection pools under one global budget of open connections.
///
/// `K` names a pool (a tenant, or a shared database) and `M` is any deadpool managed
/// [`Manager`]; `manager_for` builds the manager of a key's pool the first time the key is
/// used. Clones share the same pools and budget.
pub struct TenantPools<K, M: Manager> {
    shared: Arc<Shared<K, M>>,
}

impl<K, M: Manager> Clone for TenantPools<K, M> {
    fn clone(&self) -> Self {
        TenantPools {
            shared: Arc::clone(&self.shared),
        }
    }
}

type MakeManager<K, M> = Box<dyn Fn(&K) -> M + Send + Sync>;
type PoolMap<K, M> = RwLock<HashMap<K, Arc<Entry<M>>>>;

struct Shared<K, M: Manager> {
    budget: Arc<Budget>,
    manager_for: MakeManager<K, M>,
    pools: Arc<PoolMap<K, M>>,
    last_sweep_ms: AtomicU64,
}

pub(crate) struct Entry<M: Manager> {
    pub(crate) pool: Pool<Budgeted<M>>,
    /// Woken when one of this pool's connections comes back: a checkout of this pool
    /// waiting to grow takes that one instead.
    pub(crate) returned: Notify,
    /// Checkouts waiting on `returned`: a return skips the notification when there are
    /// none.
    pub(crate) waiting: AtomicUsize,
    /// Milliseconds since `Budget::started` at the last checkout or return.
    pub(crate) last_used_ms: AtomicU64,
    /// Checkouts fail at once until this time (milliseconds since `Budget::started`).
    pub(crate) unavailable_until_ms: AtomicU64,
    pub(crate) last_failure: Mutex<Option<String>>,
}

/// Wraps a key's manager so that every connection it makes holds a budget permit.
pub(crate) struct Budgeted<M: Manager> {
    inner: M,
    budget: Arc<Budget>,
    /// The pool this manager makes connections for, set once the pool exists.
    entry: OnceLock<Weak<Entry<M>>>,
}

/// A connection together with its share of a budget permit.
pub(crate) struct Counted<T> {
    pub(crate) object: T,
    pub(crate) _lease: Lease,
    /// When it last went back to its pool (milliseconds since `Budget::started`). deadpool's
    /// own metrics count from the last checkout, which would make a connection just
    /// returned from a long transaction look long idle.
    pub(crate) returned_ms: AtomicU64,
}

/// Why a [`Budgeted`] manager could not make a connection.
pub(crate) enum Failure<E> {
    Backend(E),
    ConnectTimeout,
    /// The budget is full and the pool already has an idle connection: the checkout
    /// should take that one instead (it retries).
    Yield,
}

impl<M: Manager> Manager for Budgeted<M> {
    type Type = Counted<M::Type>;
    type Error = Failure<M::Error>;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let own = self.entry.get().and_then(Weak::upgrade);
        let permit = self
            .budget
            .acquire(own.as_deref())
            .await
            .map_err(|Yielded| Failure::Yield)?;
        let lease = Lease {
            _permit: Arc::new(permit),
        };
        let connect = tokio::time::timeout(
            self.budget.config.connect_timeout,
            CREATING.scope(lease.clone(), self.inner.create()),
        );
        match connect.await {
            Err(_) => Err(Failure::ConnectTimeout),
            Ok(Err(error)) => Err(Failure::Backend(error)),
            Ok(Ok(object)) => {
                Counters::bump(&self.budget.counters.connects);
                Ok(Counted {
                    object,
                    _lease: lease,
                    returned_ms: AtomicU64::new(self.budget.now_ms()),
                })
            }
        }
    }

    async fn recycle(
        &self,
        connection: &mut Self::Type,
        metrics: &Metrics,
    ) -> RecycleResult<Self::Error> {
        self.inner
            .recycle(&mut connection.object, metrics)
            .await
            .map_err(|error| match error {
                RecycleError::Message(message) => RecycleError::Message(message),
                RecycleError::Backend(error) => RecycleError::Backend(Failure::Backend(error)),
            })
    }

    fn detach(&self, connection: &mut Self::Type) {
        self.inner.detach(&mut connection.object);
    }
}

pub(crate) fn idle_connections<M: Manager>(
    pool: &Pool<Budgeted<M>>,
    now_ms: u64,
) -> (usize, Option<Duration>) {
    let mut count = 0;
    let mut longest = None;
    let _kept_all = pool.retain(|connection, _| {
        count += 1;
        longest = longest.max(Some(connection.idle_for(now_ms)));
        true
    });
    (count, longest)
}

impl<T> Counted<T> {
    fn idle_for(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.returned_ms.load(Ordering::Relaxed)))
    }
}

/// A connection owed to a starving checkout, withdrawn if the checkout ends before it was
/// paid.
/// Closes the connection idle longest, in whichever pool it waits, if it has been idle at
/// least `min_idle`; between equally idle ones, a spare (of a pool that keeps another
/// connection) before a pool's last. Returns whether a connection was closed.
///
/// Least recently used first measured better than spares first: a busy pool's spare, idle
/// for a moment, is about to be used again, while a quiet tenant's connection is not.
fn evict_idle_connection<K, M: Manager>(
    pools: &PoolMap<K, M>,
    counters: &Counters,
    now_ms: u64,
    min_idle: Duration,
) -> bool {
    for _ in 0..4 {
        let victim = pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(|entry| {
                let (idle, longest) = idle_connections(&entry.pool, now_ms);
                let longest = longest.filter(|longest| *longest >= min_idle)?;
                let spare = entry.pool.status().size > 1 || idle > 1;
                Some(((longest, spare), Arc::clone(entry)))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, entry)| entry);
        let Some(victim) = victim else {
            return false;
        };
        // The pool hands out from the back (LIFO), so its front is the connection that has
        // been idle longest.
        let mut taken = false;
        let removed = victim
            .pool
            .retain(|_, _| std::mem::replace(&mut taken, true));
        if !removed.removed.is_empty() {
            Counters::add(&counters.evicted_connections, removed.removed.len());
            return true;
        }
    }
    false
}

impl<K, M: Manager> Shared<K, M> {
    /// Closes connections idle longer than the idle timeout and drops pools left without
    /// connections for as long. Runs at most every quarter of the idle timeout.
    fn sweep_if_due(&self, now: u64) {
        let budget = &self.budget;
        let idle_timeout = budget.config.idle_timeout;
        let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < (idle_ms / 4).max(1)
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let entries: Vec<_> = self
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Arc::clone)
            .collect();
        for entry in &entries {
            let removed = entry
                .pool
                .retain(|connection, _| connection.idle_for(now) < idle_timeout);
            Counters::add(&budget.counters.evicted_connections, removed.removed.len());
        }
        let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        let before = pools.len();
        pools.retain(|_, entry| {
            let status = entry.pool.status();
            let idle_for = now.saturating_sub(entry.last_used_ms.load(Ordering::Relaxed));
            status.size > 0 || status.waiting > 0 || idle_for < idle_ms
        });
        Counters::add(&budget.counters.evicted_pools, before - pools.len());
    }
}

impl<K, M> TenantPools<K, M>
where
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
    M: Manager + 'static,
    M::Error: std::error::Error + Send + Sync + 'static,
{
    /// Pools within `config`'s limits; `manager_for` makes the manager of each key's pool.
    pub fn new(
        config: PoolsConfig,
        manager_for: impl Fn(&K) -> M + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        config.validate()?;
        let pools: Arc<PoolMap<K, M>> = Arc::new(RwLock::new(HashMap::new()));
        let budget = Arc::new_cyclic(|budget: &Weak<Budget>| {
            let pools = Arc::downgrade(&pools);
            let budget = budget.clone();
            Budget {
                permits: Arc::new(Semaphore::new(config.max_connections)),
                owed: AtomicUsize::new(0),
                config,
                started: Instant::now(),
                counters: Counters::default(),
                evict_idle: Box::new(move |min_idle| match (pools.upgrade(), budget.upgrade()) {
                    (Some(pools), Some(budget)) => {
                        evict_idle_connection(&pools, &budget.counters, budget.now_ms(), min_idle)
                    }
                    _ => false,
                }),
            }
        });
        Ok(TenantPools {
            shared: Arc::new(Shared {
                budget,
                manager_for: Box::new(manager_for),
                pools,
                last_sweep_ms: AtomicU64::new(0),
            }),
        })
    }

    /// The limits these pools keep to.
    pub fn config(&self) -> &PoolsConfig {
        &self.shared.budget.config
    }

    /// A connection from `key`'s pool, created (with the pool) if need be.
    ///
    /// Waits at most the acquire timeout. Fails at once with [`ErrorKind::Unavailable`] if
    /// connecting for this key failed within the last `retry_after_failure`.
    pub async fn get(&self, key: &K) -> Result<Connection<M>, Error> {
        let budget = &self.shared.budget;
        let now = budget.now_ms();
        self.shared.sweep_if_due(now);
        let entry = self.entry(key)?;
        let unavailable_until = entry.unavailable_until_ms.load(Ordering::Relaxed);
        if now < unavailable_until {
            let last = entry
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{key} is unavailable: the last connection attempt failed ({last}); \
                     retrying in {} ms",
                    unavailable_until - now
                ),
            ));
        }
        entry.last_used_ms.store(now, Ordering::Relaxed);
        Counters::bump(&budget.counters.checkouts);
        // An idle connection is handed out on the first poll: only arm the timeout timer
        // when the checkout has to wait.
        let outcome = {
            let attempt = async {
                loop {
                    match entry.pool.get().await {
                        // The pool has an idle connection of its own now: take it.
                        Err(PoolError::Backend(Failure::Yield)) => {}
                        other => return other,
                    }
                }
            };
            let mut checkout = pin!(attempt);
            match futures_poll_once(checkout.as_mut()).await {
                Some(done) => Ok(done),
                None => tokio::time::timeout(budget.config.acquire_timeout, checkout).await,
            }
        };
        match outcome {
            Ok(Ok(object)) => Ok(Connection {
                object: Some(object),
                entry,
                budget: Arc::clone(budget),
            }),
            Ok(Err(error)) => Err(self.checkout_failed(key, &entry, error)),
            Err(_) => {
                Counters::bump(&budget.counters.timeouts);
                let status = entry.pool.status();
                let cause = if status.size >= status.max_size {
                    format!("all {} connections of its pool are in use", status.max_size)
                } else {
                    format!(
                        "the budget of {} open connections is in use ({} open, none idle)",
                        budget.config.max_connections,
                        budget.open_connections()
                    )
                };
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no connection for {key} within {:?}: {cause}; raise the limit or look \
                         for work holding connections",
                        budget.config.acquire_timeout
                    ),
                ))
            }
        }
    }

    fn checkout_failed(
        &self,
        key: &K,
        entry: &Entry<M>,
        error: PoolError<Failure<M::Error>>,
    ) -> Error {
        let budget = &self.shared.budget;
        let (message, source): (String, Option<Box<dyn std::error::Error + Send + Sync>>) =
            match error {
                PoolError::Backend(Failure::Backend(error)) => (
                    format!("connecting for {key} failed"),
                    Some(Box::new(error)),
                ),
                PoolError::Backend(Failure::ConnectTimeout) => (
                    format!(
                        "connecting for {key} timed out after {:?}",
                        budget.config.connect_timeout
                    ),
                    None,
                ),
                PoolError::Closed => {
                    return Error::new(
                        ErrorKind::Closed,
                        format!("the pool for {key} was closed while this checkout waited"),
                    );
                }
                // deadpool's own timeouts and hooks are not configured: these are bugs.
                PoolError::Timeout(kind) => (
                    format!("checkout for {key} hit deadpool's {kind:?} timeout"),
                    None,
                ),
                _ => (format!("checkout for {key} failed inside deadpool"), None),
            };
        Counters::bump(&budget.counters.connect_failures);
        let retry_ms =
            u64::try_from(budget.config.retry_after_failure.as_millis()).unwrap_or(u64::MAX);
        entry
            .unavailable_until_ms
            .store(budget.now_ms().saturating_add(retry_ms), Ordering::Relaxed);
        let remembered = match &source {
            Some(source) => source.to_string(),
            None => message.clone(),
        };
        *entry
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(remembered);
        match source {
            Some(source) => Error::with_source(ErrorKind::Connect, message, source),
            None => Error::new(ErrorKind::Connect, message),
        }
    }

    /// The pool of `key`, made on first use.
    fn entry(&self, key: &K) -> Result<Arc<Entry<M>>, Error> {
        let shared = &self.shared;
        let budget = &shared.budget;
        if let Some(entry) = shared
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Ok(Arc::clone(entry));
        }
        let mut pools = shared.pools.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = pools.get(key) {
            return Ok(Arc::clone(entry));
        }
        if pools.len() >= budget.config.max_pools {
            let victim = pools
                .iter()
                .filter(|(_, entry)| {
                    let status = entry.pool.status();
                    status.available == status.size && status.waiting == 0
                })
                .min_by_key(|(_, entry)| entry.last_used_ms.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            let Some(victim) = victim else {
                return Err(Error::new(
                    ErrorKind::Exhausted,
                    format!(
                        "no pool for {key}: all {} pools have connections in use; raise \
                         max_pools",
                        budget.config.max_pools
                    ),
                ));
            };
            pools.remove(&victim);
            Counters::bump(&budget.counters.evicted_pools);
        }
        let manager = Budgeted {
            inner: (shared.manager_for)(key),
            budget: Arc::clone(budget),
            entry: OnceLock::new(),
        };
        let pool = Pool::builder(manager)
            .max_size(budget.config.max_connections_per_pool)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            // No recycle timeout: a timer armed on every checkout cost more than the
            // recycle checks of these managers, which do no I/O.
            .build()
            .map_err(|error| {
                Error::new(
                    ErrorKind::Config,
                    format!("building the pool for {key} failed: {error}"),
                )
            })?;
        let entry = Arc::new(Entry {
            pool,
            returned: Notify::new(),
            waiting: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(budget.now_ms()),
            unavailable_until_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        });
        let _ = entry.pool.manager().entry.set(Arc::downgrade(&entry));
        pools.insert(key.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Drops `key`'s pool: its idle connections close now, connections in use close when
    /// returned, and the next checkout starts a new pool. Use it when a tenant is suspended
    /// or its credentials change.
    pub fn remove(&self, key: &K) {
        let removed = self
            .shared
            .pools
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if let Some(entry) = removed {
            entry.pool.close();
        }
    }

    /// Counters and gauges across all pools.
    pub fn stats(&self) -> PoolStats {
        let budget = &self.shared.budget;
        let pools = self
            .shared
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let idle = pools
            .values()
            .map(|entry| idle_connections(&entry.pool, budget.now_ms()).0)
            .sum();
        budget
            .counters
            .snapshot(budget.open_connections(), idle, pools.len())
    }

    /// The status of `key`'s pool, if it has one.
    pub fn status(&self, key: &K) -> Option<deadpool::Status> {
        self.shared
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map(|entry| entry.pool.status())
    }
}

impl<K, M: Manager> fmt::Debug for TenantPools<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantPools")
            .field("config", &self.shared.budget.config)
            .field("open_connections", &self.shared.budget.open_connections())
            .finish_non_exhaustive()
    }
}
