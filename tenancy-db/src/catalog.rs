//! The persistent tenant catalog, its cache, and the platform log.
//!
//! The catalog lives in the platform database of the catalog server (PostgreSQL) or in the
//! platform file of the data directory (SQLite); the SQL is the same on both. Lookups go
//! through a [`CachedCatalog`] so that admitting a tenant costs no query on the hot path.
//! Every platform operation appends to `platform_log`: who did what to which tenant, when,
//! under which correlation id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenancy_core::{
    Catalog, IsolationMode, Placement, PlatformContext, ServerName, Tenant, TenantId, TenantStatus,
};

use crate::error::{Error, ErrorKind};
use crate::postgres::PgServer;
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

/// Where the catalog is kept.
#[derive(Clone)]
pub(crate) enum CatalogStore {
    Postgres(Arc<PgServer>),
    Sqlite(Arc<SqliteServer>),
}

impl fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogStore::Postgres(server) => write!(f, "CatalogStore::Postgres({})", server.name),
            CatalogStore::Sqlite(server) => write!(f, "CatalogStore::Sqlite({})", server.name),
        }
    }
}

/// One entry of the platform log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlatformEvent {
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The operator's id.
    pub operator_id: String,
    /// The operator's name.
    pub operator_name: String,
    /// The operation's correlation id.
    pub correlation_id: String,
    /// What was done: `tenant.create`, `tenant.suspend`, `migrate`, ...
    pub action: String,
    /// The tenant it was done to, if any.
    pub tenant: Option<String>,
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
            CatalogStore::Postgres(server) => server
                .begin_catalog()
                .await
                .map(Tx::Postgres)
                .map_err(catalog_error),
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
            CatalogStore::Postgres(_) => "bigserial PRIMARY KEY",
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
            Err(error) if error.kind() == ErrorKind::Constraint => {
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
        rows.iter()
            .map(|row| {
                Ok(PlatformEvent {
                    at_ms: row.get(0)?,
                    operator_id: row.get(1)?,
                    operator_name: row.get(2)?,
                    correlation_id: row.get(3)?,
                    action: row.get(4)?,
                    tenant: row.get(5)?,
                    detail: row.get(6)?,
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
    let id = TenantId::new(&row.get::<String>(0)?).map_err(|e| corrupt("tenant id", e))?;
    let status = match row.get::<String>(2)?.as_str() {
        "active" => TenantStatus::Active,
        "suspended" => TenantStatus::Suspended,
        _ => TenantStatus::Archived,
    };
    let server = ServerName::new(&row.get::<String>(3)?).map_err(|e| corrupt("server name", e))?;
    let isolation = match row.get::<String>(4)?.as_str() {
        "database" => IsolationMode::Database,
        "schema" => IsolationMode::Schema,
        _ => IsolationMode::Row,
    };
    let created_ms = u64::try_from(row.get::<i64>(5)?).unwrap_or(0);
    let mut tenant = Tenant::new(id, row.get::<String>(1)?, Placement::new(server, isolation))
        .with_status(status);
    tenant.created_at = UNIX_EPOCH + Duration::from_millis(created_ms);
    Ok(tenant)
}

/// The catalog with a time-limited cache in front: what [`TenantDb`](crate::TenantDb)
/// admits tenants with, and what to give the HTTP layer
/// ([`TenantDb::catalog`](crate::TenantDb::catalog)) so both share one cache.
///
/// Every transaction starts with a lookup here, so a hit must be cheap: a read lock and a
/// hash lookup. (moka's cache cost about 0.65 µs per hit, measured in the
/// `tenant_transaction` benchmark; nothing here needs its eviction policies: entries expire,
/// and the map is bounded by clearing expired entries, or all, when full.)
#[derive(Clone)]
pub(crate) struct CachedCatalog {
    store: CatalogStore,
    ttl: Duration,
    cache: Arc<RwLock<HashMap<TenantId, Cached>>>,
}

#[derive(Clone)]
struct Cached {
    tenant: Option<Arc<Tenant>>,
    expires: Instant,
}

/// The most entries kept; a flood of lookups for unknown ids cannot grow the map further.
const CACHE_CAPACITY: usize = 100_000;

impl CachedCatalog {
    pub(crate) fn new(store: CatalogStore, ttl: Duration) -> Self {
        CachedCatalog {
            store,
            ttl,
            cache: Arc::default(),
        }
    }

    pub(crate) fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Forgets `id`, so the next lookup reads the store: after every platform change.
    pub(crate) async fn invalidate(&self, id: &TenantId) {
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// The tenant if it may be served, shared with the cache rather than copied: what
    /// every transaction asks first.
    pub(crate) async fn admit(&self, id: &TenantId) -> Result<Arc<Tenant>, Error> {
        let tenant = self.cached(id).await?.ok_or_else(|| unknown(id))?;
        tenant.check_active().map_err(Error::from_core)?;
        Ok(tenant)
    }

    async fn cached(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        let now = Instant::now();
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|entry| entry.expires > now)
        {
            return Ok(hit.tenant.clone());
        }
        let found = self.store.lookup(id).await?.map(Arc::new);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            id.clone(),
            Cached {
                tenant: found.clone(),
                expires: now + self.ttl,
            },
        );
        Ok(found)
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
        let cached = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("CachedCatalog")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("cached", &cached)
            .finish()
    }
}
