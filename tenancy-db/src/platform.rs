//! [`Platform`]: operations on the platform itself, under a [`PlatformContext`].
//!
//! Every operation is written to the platform log with the operator and correlation id.

use std::time::Instant;

use futures::StreamExt;
use tenancy_core::{
    IsolationMode, Placement, PlatformContext, ServerName, Tenant, TenantId, TenantStatus,
};

use crate::catalog::{PlatformEvent, unknown};
use crate::db::{Server, TenantDb, unsupported};
use crate::error::{Error, ErrorKind};
use crate::migrate::{MigrationOutcome, MigrationProgress, MigrationReport, MigrationTarget};
#[cfg(feature = "postgres")]
use crate::postgres::rls::{self, IsolationReport};

/// Provisioning, migrations and checks. Made by [`TenantDb::platform`]; every method takes
/// the [`PlatformContext`] of the operator, never a tenant's context.
#[derive(Debug, Clone)]
pub struct Platform {
    db: TenantDb,
}

impl Platform {
    pub(crate) fn new(db: TenantDb) -> Self {
        Platform { db }
    }

    /// Creates (or repairs) what every server needs: on PostgreSQL the platform roles, the
    /// shared, template and platform databases and their privileges; on SQLite the data
    /// directory. Then the catalog tables. Idempotent.
    pub async fn prepare(&self, op: &PlatformContext) -> Result<(), Error> {
        let inner = self.db.inner();
        for (_name, server) in &inner.servers {
            match server {
                #[cfg(feature = "postgres")]
                Server::Postgres(pg) => pg.prepare(*_name == inner.config.catalog_server).await?,
                #[cfg(feature = "sqlite")]
                Server::Sqlite(sqlite) => sqlite.prepare().await?,
            }
        }
        let names: Vec<&ServerName> = inner.servers.iter().map(|(name, _)| name).collect();
        let store = inner.catalog.store();
        store.ensure_schema().await?;
        let names: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
        store
            .log(
                op,
                "platform.prepare",
                None,
                &format!("servers: {}", names.join(", ")),
            )
            .await
    }

    /// Creates a tenant: its database, schema or file (and role, with derived credentials)
    /// per its placement, brought up to the latest migration, then recorded in the catalog
    /// as active.
    pub async fn create_tenant(
        &self,
        op: &PlatformContext,
        id: TenantId,
        display_name: &str,
        placement: Placement,
    ) -> Result<Tenant, Error> {
        let inner = self.db.inner();
        let server = self.db.server(&placement.server)?;
        if server.is_sqlite() && placement.isolation != IsolationMode::Database {
            return Err(unsupported(&placement.server, placement.isolation));
        }
        let store = inner.catalog.store();
        if store.lookup(&id).await?.is_some() {
            return Err(Error::new(
                ErrorKind::TenantExists,
                format!("tenant `{id}` already exists"),
            ));
        }
        let isolation = placement.isolation;
        let tenant = Tenant::new(id, display_name, placement);
        match server {
            #[cfg(feature = "postgres")]
            Server::Postgres(pg) => pg.create_tenant(&tenant, &inner.migrations).await?,
            #[cfg(feature = "sqlite")]
            Server::Sqlite(sqlite) => sqlite.create_tenant(&tenant, &inner.migrations).await?,
        }
        if let Err(error) = store.insert(op, &tenant).await {
            // A database or schema made above is this call's own (its role could not have
            // been made twice). Row-level tenants own nothing: their rows may be another
            // caller's, who created the same tenant first.
            if isolation != IsolationMode::Row {
                let _ = self.drop_storage(&tenant).await;
            }
            return Err(error);
        }
        inner.catalog.invalidate(&tenant.id).await;
        Ok(tenant)
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        self.db
            .inner()
            .catalog
            .store()
            .lookup(id)
            .await?
            .ok_or_else(|| unknown(id))
    }

    /// Refuses the tenant from now on: the catalog first (every node stops admitting it
    /// within the cache time, this node at once), then at the database level.
    pub async fn suspend(&self, op: &PlatformContext, id: &TenantId) -> Result<(), Error> {
        self.shut_out(op, id, TenantStatus::Suspended).await
    }

    /// Archives the tenant: refused like a suspended one; its data is kept for export and
    /// restore by platform operations.
    pub async fn archive(&self, op: &PlatformContext, id: &TenantId) -> Result<(), Error> {
        self.shut_out(op, id, TenantStatus::Archived).await
    }

    async fn shut_out(
        &self,
        op: &PlatformContext,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), Error> {
        let inner = self.db.inner();
        let tenant = self.tenant(id).await?;
        inner.catalog.store().set_status(op, id, status).await?;
        inner.catalog.invalidate(id).await;
        match self.db.server(&tenant.require_placement()?.server)? {
            #[cfg(feature = "postgres")]
            Server::Postgres(pg) => pg.suspend(&tenant).await,
            #[cfg(feature = "sqlite")]
            Server::Sqlite(sqlite) => {
                sqlite.suspend(&tenant);
                Ok(())
            }
        }
    }

    /// Serves a suspended or archived tenant again.
    pub async fn resume(&self, op: &PlatformContext, id: &TenantId) -> Result<(), Error> {
        let inner = self.db.inner();
        // Shut out at the database level only on PostgreSQL; checked to exist everywhere.
        let tenant = self.tenant(id).await?;
        let _server = self.db.server(&tenant.require_placement()?.server)?;
        #[cfg(feature = "postgres")]
        if let Some(pg) = _server.postgres() {
            pg.resume(&tenant).await?;
        }
        inner
            .catalog
            .store()
            .set_status(op, id, TenantStatus::Active)
            .await?;
        inner.catalog.invalidate(id).await;
        Ok(())
    }

    /// Deletes a tenant's data (database, schema, file or rows) and its catalog entry.
    /// The tenant must be suspended or archived first, so that no request is using it.
    pub async fn drop_tenant(&self, op: &PlatformContext, id: &TenantId) -> Result<(), Error> {
        let inner = self.db.inner();
        let tenant = self.tenant(id).await?;
        if tenant.status == TenantStatus::Active {
            return Err(Error::new(
                ErrorKind::Provision,
                format!("tenant `{id}` is active: suspend or archive it before dropping it"),
            ));
        }
        self.drop_storage(&tenant).await?;
        inner.catalog.store().delete(op, id).await?;
        inner.catalog.invalidate(id).await;
        Ok(())
    }

    async fn drop_storage(&self, tenant: &Tenant) -> Result<(), Error> {
        match self.db.server(&tenant.require_placement()?.server)? {
            #[cfg(feature = "postgres")]
            Server::Postgres(pg) => pg.drop_tenant(tenant).await,
            #[cfg(feature = "sqlite")]
            Server::Sqlite(sqlite) => sqlite.drop_tenant(tenant).await,
        }
    }

    /// Every tenant in the catalog, in id order.
    pub async fn tenants(&self, _op: &PlatformContext) -> Result<Vec<Tenant>, Error> {
        self.db.inner().catalog.store().list().await
    }

    /// The newest `limit` entries of the platform log, newest first.
    pub async fn events(
        &self,
        _op: &PlatformContext,
        limit: u32,
    ) -> Result<Vec<PlatformEvent>, Error> {
        self.db.inner().catalog.store().events(limit).await
    }

    /// Brings every tenant (active, suspended and archived) up to the latest migration.
    ///
    /// Each PostgreSQL server's template database and shared tables go first; then tenants,
    /// `migration_parallelism` at a time. One tenant's failure is reported in its outcome
    /// and does not stop the others; a later run resumes where each tenant stopped.
    /// `progress` is called after each target.
    pub async fn migrate(
        &self,
        op: &PlatformContext,
        progress: impl Fn(&MigrationProgress<'_>) + Sync,
    ) -> Result<MigrationReport, Error> {
        let inner = self.db.inner();
        let started = Instant::now();
        let tenants = inner.catalog.store().list().await?;
        let migrations = &inner.migrations;

        // Each PostgreSQL server's template and shared tables, before its tenants.
        #[cfg(feature = "postgres")]
        let mut firsts = Vec::new();
        #[cfg(not(feature = "postgres"))]
        let firsts: Vec<(MigrationTarget, ())> = Vec::new();
        #[cfg(feature = "postgres")]
        for (name, server) in &inner.servers {
            let Some(pg) = server.postgres() else {
                continue;
            };
            let on_server = |mode| {
                tenants.iter().any(|t| {
                    t.placement
                        .as_ref()
                        .is_some_and(|p| &p.server == name && p.isolation == mode)
                })
            };
            if on_server(IsolationMode::Database) {
                firsts.push((MigrationTarget::Template(name.clone()), pg));
            }
            if on_server(IsolationMode::Row) {
                firsts.push((MigrationTarget::Shared(name.clone()), pg));
            }
        }
        let per_tenant: Vec<&Tenant> = tenants
            .iter()
            .filter(|t| {
                t.placement
                    .as_ref()
                    .is_some_and(|p| p.isolation != IsolationMode::Row)
            })
            .collect();
        let total = firsts.len() + per_tenant.len();
        let mut outcomes = Vec::with_capacity(total);
        let report = |outcome: MigrationOutcome, outcomes: &mut Vec<MigrationOutcome>| {
            outcomes.push(outcome);
            progress(&MigrationProgress {
                done: outcomes.len(),
                total,
                outcome: outcomes.last().expect("just pushed"),
            });
        };

        #[cfg(feature = "postgres")]
        for (target, pg) in firsts {
            let (applied, error) = match &target {
                MigrationTarget::Template(_) => pg.migrate_template(migrations).await,
                _ => pg.migrate_shared(migrations).await,
            };
            report(
                MigrationOutcome {
                    target,
                    applied,
                    error,
                },
                &mut outcomes,
            );
        }

        let mut running = futures::stream::iter(per_tenant)
            .map(|tenant| async move {
                let (applied, error) = match tenant
                    .require_placement()
                    .map_err(Error::from)
                    .and_then(|p| self.db.server(&p.server))
                {
                    Err(error) => (Vec::new(), Some(error)),
                    #[cfg(feature = "postgres")]
                    Ok(Server::Postgres(pg)) => pg.migrate_tenant(migrations, tenant).await,
                    #[cfg(feature = "sqlite")]
                    Ok(Server::Sqlite(sqlite)) => sqlite.migrate_tenant(migrations, tenant).await,
                };
                MigrationOutcome {
                    target: MigrationTarget::Tenant(tenant.id.clone()),
                    applied,
                    error,
                }
            })
            .buffer_unordered(inner.config.migration_parallelism);
        while let Some(outcome) = running.next().await {
            report(outcome, &mut outcomes);
        }
        drop(running);

        let result = MigrationReport {
            outcomes,
            elapsed: started.elapsed(),
        };
        let failed = result.failures().count();
        inner
            .catalog
            .store()
            .log(
                op,
                "migrate",
                None,
                &format!(
                    "{} targets to version {}, {failed} failed, in {:?}",
                    result.outcomes.len(),
                    migrations.latest(),
                    result.elapsed
                ),
            )
            .await?;
        Ok(result)
    }

    #[cfg(feature = "postgres")]
    /// Checks isolation on every PostgreSQL server's shared database, as its application
    /// roles see it, and logs the result:
    ///
    /// - every table with a `tenant_id` has `ENABLE` and `FORCE ROW LEVEL SECURITY`, and
    ///   every permissive policy compares `tenant_id` with the bound tenant (read from the
    ///   policy's stored expression, not its text); unique and foreign keys include
    ///   `tenant_id`;
    /// - the application roles are neither superuser, owner, `BYPASSRLS`, able to
    ///   `TRUNCATE`, nor able to make temporary tables or take session-level advisory
    ///   locks, and carry no role settings `prepare` did not set;
    /// - no view runs with its owner's privileges, no materialized view reads a fenced
    ///   table (or another schema, or a function), and the application roles can call no
    ///   `SECURITY DEFINER` function but the binding's own, which is as `prepare` made it;
    /// - with [`DbConfig::assume_hostile_sql`](crate::DbConfig::assume_hostile_sql): the
    ///   row-level binding is sealed, and no schema tenant shares the server (its SQL could
    ///   `SET ROLE` to another).
    ///
    /// Fails with [`ErrorKind::Isolation`] listing what it found.
    pub async fn check_isolation(
        &self,
        op: &PlatformContext,
    ) -> Result<Vec<(ServerName, IsolationReport)>, Error> {
        let inner = self.db.inner();
        let tenants = inner.catalog.store().list().await?;
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for (name, server) in &inner.servers {
            if let Some(pg) = server.postgres() {
                let declared = rls::Declared {
                    hostile_sql: inner.config.assume_hostile_sql,
                    schema_tenants: tenants.iter().any(|tenant| {
                        tenant.placement.as_ref().is_some_and(|p| {
                            &p.server == name && p.isolation == IsolationMode::Schema
                        })
                    }),
                };
                let report = rls::check(pg, declared).await?;
                if !report.is_clean() {
                    failures.push(format!("server `{name}`: {report}"));
                }
                reports.push((name.clone(), report));
            }
        }
        let summary = if failures.is_empty() {
            format!("{} servers checked, isolation holds", reports.len())
        } else {
            failures.join("; ")
        };
        inner
            .catalog
            .store()
            .log(op, "platform.check_isolation", None, &summary)
            .await?;
        if failures.is_empty() {
            Ok(reports)
        } else {
            Err(Error::new(ErrorKind::Isolation, failures.join("\n")))
        }
    }
}
