//! Where the catalog is kept: the `tenants` table and the platform log, in the platform
//! database of the catalog server (PostgreSQL) or the platform file of the data directory
//! (SQLite); the SQL is the same on both. Every platform operation appends to
//! `platform_log`: who did what to which tenant, when, under which correlation id.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenancy_core::{
    CorrelationId, IsolationMode, Placement, PlatformContext, ServerName, Tenant, TenantId,
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
    pub(crate) mark: i64,
    pub(crate) named: HashSet<TenantId>,
    pub(crate) current: Vec<Tenant>,
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
        let placement = tenant.require_placement()?;
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
                    placement.server.as_str().into(),
                    placement.isolation.as_str().into(),
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
            placement.server, placement.isolation
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
