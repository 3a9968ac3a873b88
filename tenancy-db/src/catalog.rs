//! The persistent tenant catalog, its cache, and the platform log.
//!
//! The catalog lives in the platform database of the catalog server (PostgreSQL) or in the
//! platform file of the data directory (SQLite); the SQL is the same on both. Lookups go
//! through a [`CachedCatalog`] so that admitting a tenant costs no query on the hot path.
//! Every platform operation appends to `platform_log`: who did what to which tenant, when,
//! under which correlation id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenancy_core::{
    Catalog, CorrelationId, IsolationMode, Placement, PlatformContext, ServerName, Tenant, TenantId,
    TenantStatus,
};

use crate::error::{Error, ErrorKind};
#[cfg(feature = "postgres")]
use crate::postgres::PgServer;
#[cfg(feature = "sqlite")]
use crate::sqlite::{FileKey, SqliteServer};
use crate::transaction::Tx;
use crate::value::Row;

/// The tables of the catalog; `{serial}` is the auto-increment key type of the backend.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id text PRIMARY KEY,
    display_name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'archived')),
    server text NOT NULL,
    isolation text NOT NULL CHECK (isolation IN ('database', 'schema', 'row')),
    created_at_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS platform_log (
    id {serial},
    at_ms bigint NOT NULL,
    operator_id text NOT NULL,
    operator_name text NOT NULL,
    correlation_id text NOT NULL,
    action text NOT NULL,
    tenant text,
    detail text NOT NULL
);
";

/// What the platform log says changed since a mark: see [`CatalogStore::changes_since`].
pub(crate) struct Changes {
    mark: i64,
    named: HashSet<TenantId>,
    current: Vec<Tenant>,
}

/// Where the catalog is kept.
#[derive(Clone)]
pub(crate) enum CatalogStore {
    #[cfg(feature = "postgres")]
    Postgres(Arc<PgServer>),
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<SqliteServer>),
}

impl fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "postgres")]
            CatalogStore::Postgres(server) => write!(f, "CatalogStore::Postgres({})", server.name),
            #[cfg(feature = "sqlite")]
            CatalogStore::Sqlite(server) => write!(f, "CatalogStore::Sqlite({})", server.name),
        }
    }
}

/// One entry of the platform log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlatformEvent {
    /// When it happened (to the millisecond).
    pub at: SystemTime,
    /// The operator's id.
    pub operator_id: String,
    /// The operator's name.
    pub operator_name: String,
    /// The operation's correlation id.
    pub correlation_id: CorrelationId,
    /// What was done: `tenant.create`, `tenant.suspend`, `migrate`, ...
    pub action: String,
    /// The tenant it was done to, if any.
    pub tenant: Option<TenantId>,
    /// Details for people.
    pub detail: String,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl CatalogStore {
    async fn begin(&self) -> Result<Tx, Error> {
        let catalog_error = |error: Error| {
            if error.kind() == ErrorKind::DatabaseUnavailable {
                Error::with_source(
                    ErrorKind::CatalogUnavailable,
                    "the tenant catalog is unreachable (has `Platform::prepare` run on the \
                     catalog server?)",
                    error,
                )
            } else {
                error
            }
        };
        match self {
            #[cfg(feature = "postgres")]
            CatalogStore::Postgres(server) => server
                .begin_catalog()
                .await
                .map(Tx::postgres)
                .map_err(catalog_error),
            #[cfg(feature = "sqlite")]
            CatalogStore::Sqlite(server) => server
                .begin(&FileKey::Platform)
                .await
                .map(Tx::Sqlite)
                .map_err(catalog_error),
        }
    }

    /// Creates the catalog tables if they are missing.
    pub(crate) async fn ensure_schema(&self) -> Result<(), Error> {
        let serial = match self {
            #[cfg(feature = "postgres")]
            CatalogStore::Postgres(_) => "bigserial PRIMARY KEY",
            #[cfg(feature = "sqlite")]
            CatalogStore::Sqlite(_) => "integer PRIMARY KEY AUTOINCREMENT",
        };
        let tx = self.begin().await?;
        tx.batch(&SCHEMA.replace("{serial}", serial)).await?;
        tx.commit().await
    }

    pub(crate) async fn lookup(&self, id: &TenantId) -> Result<Option<Tenant>, Error> {
        let tx = self.begin().await?;
        let rows = tx
            .query(
                "SELECT id, display_name, status, server, isolation, created_at_ms \
                 FROM tenants WHERE id = $1",
                &[id.as_str().into()],
            )
            .await?;
        tx.commit().await?;
        rows.first().map(tenant_from_row).transpose()
    }

    /// A mark to read changes from, then every tenant: what a replica starts from. The
    /// mark is the newest log entry written more than `window_ms` ago, so the next update
    /// reads every entry of the window again, including one whose id was given out before
    /// a later one committed and which was not yet committed here. (A change committed
    /// between the two reads is in the tenants and again in the log, which is harmless.)
    pub(crate) async fn load(&self, window_ms: i64) -> Result<(i64, Vec<Tenant>), Error> {
        let tx = self.begin().await?;
        let mark = tx
            .query(
                "SELECT coalesce(max(id), 0) FROM platform_log WHERE at_ms <= $1",
                &[(now_ms() - window_ms).into()],
            )
            .await?;
        let rows = tx
            .query(
                "SELECT id, display_name, status, server, isolation, created_at_ms \
                 FROM tenants",
                &[],
            )
            .await?;
        tx.commit().await?;
        let mark = mark.first().map(|row| row.try_get::<i64>(0)).transpose()?;
        let tenants = rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?;
        Ok((mark.unwrap_or(0), tenants))
    }

    /// The highest platform-log id above `mark` (or `mark`), the tenants the log names
    /// above it, and those of them the catalog still has, as they are now: two queries,
    /// whatever the number of changes.
    pub(crate) async fn changes_since(&self, mark: i64) -> Result<Changes, Error> {
        let tx = self.begin().await?;
        let log = tx
            .query(
                "SELECT id, tenant FROM platform_log WHERE id > $1 ORDER BY id",
                &[mark.into()],
            )
            .await?;
        let current = tx
            .query(
                "SELECT id, display_name, status, server, isolation, created_at_ms \
                 FROM tenants WHERE id IN \
                 (SELECT tenant FROM platform_log WHERE id > $1 AND tenant IS NOT NULL)",
                &[mark.into()],
            )
            .await?;
        tx.commit().await?;
        let mut changes = Changes {
            mark,
            named: HashSet::new(),
            current: current
                .iter()
                .map(tenant_from_row)
                .collect::<Result<_, _>>()?,
        };
        for row in &log {
            changes.mark = changes.mark.max(row.try_get::<i64>(0)?);
            if let Some(tenant) = row.try_get::<Option<String>>(1)? {
                let id = tenant.parse::<TenantId>().map_err(|error| {
                    Error::with_source(
                        ErrorKind::CatalogUnavailable,
                        "the platform log names an invalid tenant id",
                        error,
                    )
                })?;
                changes.named.insert(id);
            }
        }
        Ok(changes)
    }

    pub(crate) async fn list(&self) -> Result<Vec<Tenant>, Error> {
        let tx = self.begin().await?;
        let rows = tx
            .query(
                "SELECT id, display_name, status, server, isolation, created_at_ms \
                 FROM tenants ORDER BY id",
                &[],
            )
            .await?;
        tx.commit().await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Records a new tenant and logs it, in one transaction.
    pub(crate) async fn insert(&self, op: &PlatformContext, tenant: &Tenant) -> Result<(), Error> {
        let tx = self.begin().await?;
        let created_at_ms = tenant
            .created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let inserted = tx
            .execute(
                "INSERT INTO tenants (id, display_name, status, server, isolation, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    tenant.id.as_str().into(),
                    tenant.display_name.as_str().into(),
                    tenant.status.as_str().into(),
                    tenant.placement.server.as_str().into(),
                    tenant.placement.isolation.as_str().into(),
                    created_at_ms.into(),
                ],
            )
            .await;
        match inserted {
            Err(error) if error.kind() == ErrorKind::UniqueViolation => {
                tx.rollback().await?;
                return Err(Error::new(
                    ErrorKind::TenantExists,
                    format!("tenant `{}` already exists", tenant.id),
                ));
            }
            other => other?,
        };
        let detail = format!(
            "created on server `{}` with {} isolation",
            tenant.placement.server, tenant.placement.isolation
        );
        log_in(&tx, op, "tenant.create", Some(&tenant.id), &detail).await?;
        tx.commit().await
    }

    /// Changes a tenant's status and logs it.
    pub(crate) async fn set_status(
        &self,
        op: &PlatformContext,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), Error> {
        let tx = self.begin().await?;
        let changed = tx
            .execute(
                "UPDATE tenants SET status = $1 WHERE id = $2",
                &[status.as_str().into(), id.as_str().into()],
            )
            .await?;
        if changed == 0 {
            tx.rollback().await?;
            return Err(unknown(id));
        }
        let action = format!("tenant.{}", status_verb(status));
        log_in(
            &tx,
            op,
            &action,
            Some(id),
            &format!("status is now {status}"),
        )
        .await?;
        tx.commit().await
    }

    pub(crate) async fn delete(&self, op: &PlatformContext, id: &TenantId) -> Result<(), Error> {
        let tx = self.begin().await?;
        tx.execute("DELETE FROM tenants WHERE id = $1", &[id.as_str().into()])
            .await?;
        log_in(
            &tx,
            op,
            "tenant.drop",
            Some(id),
            "data and catalog entry removed",
        )
        .await?;
        tx.commit().await
    }

    /// Appends to the platform log.
    pub(crate) async fn log(
        &self,
        op: &PlatformContext,
        action: &str,
        tenant: Option<&TenantId>,
        detail: &str,
    ) -> Result<(), Error> {
        let tx = self.begin().await?;
        log_in(&tx, op, action, tenant, detail).await?;
        tx.commit().await
    }

    /// The newest `limit` entries of the platform log, newest first.
    pub(crate) async fn events(&self, limit: u32) -> Result<Vec<PlatformEvent>, Error> {
        let tx = self.begin().await?;
        let rows = tx
            .query(
                "SELECT at_ms, operator_id, operator_name, correlation_id, action, tenant, detail \
                 FROM platform_log ORDER BY id DESC LIMIT $1",
                &[i64::from(limit).into()],
            )
            .await?;
        tx.commit().await?;
        let corrupt = |what: &str, error: tenancy_core::Error| {
            Error::with_source(
                ErrorKind::CatalogUnavailable,
                format!("the platform log holds an invalid {what}"),
                error,
            )
        };
        rows.iter()
            .map(|row| {
                let at_ms = u64::try_from(row.try_get::<i64>(0)?).unwrap_or(0);
                Ok(PlatformEvent {
                    at: UNIX_EPOCH + Duration::from_millis(at_ms),
                    operator_id: row.try_get(1)?,
                    operator_name: row.try_get(2)?,
                    correlation_id: row
                        .try_get::<String>(3)?
                        .parse()
                        .map_err(|e| corrupt("correlation id", e))?,
                    action: row.try_get(4)?,
                    tenant: row
                        .try_get::<Option<String>>(5)?
                        .map(|id| id.parse().map_err(|e| corrupt("tenant id", e)))
                        .transpose()?,
                    detail: row.try_get(6)?,
                })
            })
            .collect()
    }
}

fn status_verb(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "resume",
        TenantStatus::Suspended => "suspend",
        _ => "archive",
    }
}

pub(crate) fn unknown(id: &TenantId) -> Error {
    Error::new(ErrorKind::UnknownTenant, format!("unknown tenant `{id}`"))
}

async fn log_in(
    tx: &Tx,
    op: &PlatformContext,
    action: &str,
    tenant: Option<&TenantId>,
    detail: &str,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO platform_log \
         (at_ms, operator_id, operator_name, correlation_id, action, tenant, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            now_ms().into(),
            op.operator().id().into(),
            op.operator().display_name().into(),
            op.correlation_id().as_str().into(),
            action.into(),
            tenant.map(TenantId::as_str).into(),
            detail.into(),
        ],
    )
    .await
    .map(drop)
}

fn tenant_from_row(row: &Row) -> Result<Tenant, Error> {
    let corrupt = |what: &str, error: tenancy_core::Error| {
        Error::with_source(
            ErrorKind::CatalogUnavailable,
            format!("the catalog holds an invalid {what}"),
            error,
        )
    };
    let id = TenantId::new(&row.try_get::<String>(0)?).map_err(|e| corrupt("tenant id", e))?;
    let status = match row.try_get::<String>(2)?.as_str() {
        "active" => TenantStatus::Active,
        "suspended" => TenantStatus::Suspended,
        _ => TenantStatus::Archived,
    };
    let server =
        ServerName::new(&row.try_get::<String>(3)?).map_err(|e| corrupt("server name", e))?;
    let isolation = match row.try_get::<String>(4)?.as_str() {
        "database" => IsolationMode::Database,
        "schema" => IsolationMode::Schema,
        _ => IsolationMode::Row,
    };
    let created_ms = u64::try_from(row.try_get::<i64>(5)?).unwrap_or(0);
    let mut tenant = Tenant::new(
        id,
        row.try_get::<String>(1)?,
        Placement::new(server, isolation),
    )
    .with_status(status);
    tenant.created_at = UNIX_EPOCH + Duration::from_millis(created_ms);
    Ok(tenant)
}

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
