//! [`CachedCatalog`]: a replica of the whole catalog in front of the store, so admitting
//! a tenant costs no query on the hot path.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tenancy_core::{Catalog, Tenant, TenantId};

use super::store::{CatalogStore, unknown};
use crate::error::{Error, ErrorKind};

/// The catalog with a replica in front: what [`TenantDb`](crate::TenantDb) admits tenants
/// with, and what to give the HTTP layer ([`TenantDb::catalog`](crate::TenantDb::catalog))
/// so both share one copy.
///
/// Every transaction starts with a lookup here, so a hit must be cheap: a read lock and a
/// hash lookup. The replica holds every tenant: it is loaded whole once, and then, at most
/// once per `ttl`, brought up to date by one query for the tenants the platform log names
/// since (every catalog change writes the log in its own transaction). So the catalog is
/// read once per `ttl` whatever the number of tenants, where a cache of single entries read
/// it for every tenant seen: at 100,000 tenants, Zipf(1.1), 14,000 transactions a second
/// and a 5 s time to live, that was about 3,000 lookups a second. An id the current replica
/// does not hold is unknown, without a query: a flood of made-up ids (random subdomains
/// before authentication) costs a hash lookup each and never reaches the catalog's
/// connections. A tenant created on another node is admitted here at the next update,
/// within `ttl`, as a suspension there is refused here.
#[derive(Clone)]
pub(crate) struct CachedCatalog {
    store: CatalogStore,
    ttl: Duration,
    replica: Arc<RwLock<Replica>>,
    /// Held while the replica is updated, so one task reads the store and the rest wait.
    updating: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Replica {
    tenants: HashMap<TenantId, Arc<Tenant>>,
    /// Until when the replica counts as current; `None` before the first load.
    fresh_until: Option<Instant>,
    /// When the next update reloads everything rather than the changes.
    reload_at: Option<Instant>,
    /// The highest platform-log id seen by each of the last updates, oldest first.
    marks: VecDeque<i64>,
    /// When the last update failed, and why.
    failed: Option<(Instant, String)>,
}

/// How many updates back the change query reaches. Log ids are given out when a row is
/// written, not when its transaction commits, so a change can appear below an id already
/// seen; reading again from the mark of a few updates ago catches every change whose
/// transaction took less than that many time-to-lives to commit.
const OVERLAP: usize = 6;

/// How long after a failed update others fail at once instead of trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How often the replica is reloaded whole, which also catches a change whose transaction
/// took longer than [`OVERLAP`] updates to commit.
const RELOAD_EVERY: Duration = Duration::from_secs(600);

impl CachedCatalog {
    pub(crate) fn new(store: CatalogStore, ttl: Duration) -> Self {
        CachedCatalog {
            store,
            ttl,
            replica: Arc::default(),
            updating: Arc::default(),
        }
    }

    pub(crate) fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Forgets `id` and marks the replica out of date, so the next lookup brings it up to
    /// date (one query, which reads the change just logged): after every platform change
    /// made through this handle. Waits for an update under way, which may have read the
    /// store before the change.
    pub(crate) async fn invalidate(&self, id: &TenantId) {
        let _updating = self.updating.lock().await;
        let mut replica = self.replica.write().unwrap_or_else(PoisonError::into_inner);
        replica.tenants.remove(id);
        replica.fresh_until = None;
    }

    /// The tenant if it may be served, shared with the replica rather than copied: what
    /// every transaction asks first.
    pub(crate) async fn admit(&self, id: &TenantId) -> Result<Arc<Tenant>, Error> {
        let tenant = self
            .cached(id)
            .await
            .map_err(|error| match error.kind() {
                ErrorKind::CatalogUnavailable => error,
                _ => Error::with_source(
                    ErrorKind::CatalogUnavailable,
                    "the tenant catalog could not be read",
                    error,
                ),
            })?
            .ok_or_else(|| unknown(id))?;
        tenant.check_active().map_err(Error::from)?;
        Ok(tenant)
    }

    /// What the replica says of `id` (the tenant, or that there is none), if it is current.
    fn known(&self, id: &TenantId, now: Instant) -> Option<Option<Arc<Tenant>>> {
        let replica = self.replica.read().unwrap_or_else(PoisonError::into_inner);
        if replica.fresh_until.is_none_or(|until| until <= now) {
            return None;
        }
        Some(replica.tenants.get(id).map(Arc::clone))
    }

    async fn cached(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(known) = self.known(id, Instant::now()) {
            return Ok(known);
        }
        self.update().await?;
        match self.known(id, Instant::now()) {
            Some(known) => Ok(known),
            // The update finished longer than a `ttl` ago (a slow catalog): ask the store
            // about this one rather than update again.
            None => Ok(self.store.lookup(id).await?.map(Arc::new)),
        }
    }

    /// Brings the replica up to date unless it is current: whole at first and every
    /// [`RELOAD_EVERY`], otherwise by the tenants the platform log names since an earlier
    /// update.
    async fn update(&self) -> Result<(), Error> {
        let _updating = self.updating.lock().await;
        let started = Instant::now();
        if let Some((at, why)) = &self
            .replica
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .failed
            && started.duration_since(*at) < RETRY_AFTER_FAILURE
        {
            // Those who waited behind a failed update fail with it rather than each
            // waiting out the same timeout in turn.
            return Err(Error::new(
                ErrorKind::CatalogUnavailable,
                format!(
                    "the tenant catalog could not be read a moment ago ({why}); not retried for {RETRY_AFTER_FAILURE:?}"
                ),
            ));
        }
        let updated = self.update_now(started).await;
        self.replica
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .failed = updated
            .as_ref()
            .err()
            .map(|error| (Instant::now(), error.to_string()));
        updated
    }

    async fn update_now(&self, started: Instant) -> Result<(), Error> {
        let (reload, since) = {
            let replica = self.replica.read().unwrap_or_else(PoisonError::into_inner);
            if replica.fresh_until.is_some_and(|until| until > started) {
                return Ok(());
            }
            let reload = replica.reload_at.is_none_or(|at| at <= started);
            (reload, replica.marks.front().copied().unwrap_or(0))
        };
        if reload {
            let window = self.ttl * u32::try_from(OVERLAP).expect("a small constant");
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            let (mark, tenants) = self.store.load(window_ms).await?;
            let mut replica = self.replica.write().unwrap_or_else(PoisonError::into_inner);
            replica.tenants = tenants
                .into_iter()
                .map(|tenant| (tenant.id.clone(), Arc::new(tenant)))
                .collect();
            replica.reload_at = Some(started + RELOAD_EVERY);
            replica.record(mark, started + self.ttl);
            return Ok(());
        }
        let changes = self.store.changes_since(since).await?;
        let mut replica = self.replica.write().unwrap_or_else(PoisonError::into_inner);
        for id in &changes.named {
            replica.tenants.remove(id);
        }
        for tenant in changes.current {
            replica.tenants.insert(tenant.id.clone(), Arc::new(tenant));
        }
        replica.record(changes.mark, started + self.ttl);
        Ok(())
    }
}

impl Replica {
    /// Notes an update that read the log up to `mark`, current until `fresh_until`. Marks
    /// only grow, and the oldest of the last [`OVERLAP`] is where the next update reads
    /// from; a reload adds its mark to those before it rather than replacing them.
    fn record(&mut self, mark: i64, fresh_until: Instant) {
        let newest = self.marks.back().copied().unwrap_or(mark).max(mark);
        self.marks.push_back(newest);
        while self.marks.len() > OVERLAP {
            self.marks.pop_front();
        }
        self.fresh_until = Some(fresh_until);
    }
}

impl Catalog for CachedCatalog {
    async fn lookup(&self, id: &TenantId) -> Result<Option<Tenant>, tenancy_core::Error> {
        match self.cached(id).await {
            Ok(found) => Ok(found.map(|tenant| (*tenant).clone())),
            Err(error) => Err(tenancy_core::Error::with_source(
                tenancy_core::ErrorKind::CatalogUnavailable,
                format!("the tenant catalog could not be read: {error}"),
                error,
            )),
        }
    }
}

impl fmt::Debug for CachedCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenants = self
            .replica
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tenants
            .len();
        f.debug_struct("CachedCatalog")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("tenants", &tenants)
            .finish()
    }
}
