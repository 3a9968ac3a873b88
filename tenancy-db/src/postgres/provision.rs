//! Platform operations on a PostgreSQL server: preparing it, and creating, suspending,
//! resuming and dropping tenants under each strategy.
//!
//! Statements that carry credentials carry SCRAM verifiers, never passwords, and error
//! messages name the step, never the statement.

use std::sync::Arc;
use std::time::Duration;

use tenancy_core::{IsolationMode, Tenant, TenantId};

use super::{Binding, PgServer, Target, guard, ident, literal};
use crate::error::{Error, ErrorKind};
use crate::migrate::{self, Dialect, Migrations, POSTGRES_RECORDS, Records};
use crate::transaction::Tx;

/// SQLSTATEs met when another process did the same step first.
const DUPLICATE_OBJECT: &str = "42710";
const DUPLICATE_DATABASE: &str = "42P04";
const DUPLICATE_SCHEMA: &str = "42P06";
/// The start of the template database's comment, before the migrations' fingerprint.
const TEMPLATE_MARK: &str = "tenancy-db migrations ";
/// "source database is being accessed by other users".
const OBJECT_IN_USE: &str = "55006";

impl PgServer {
    /// Runs one statement on the admin connection, outside any transaction.
    async fn admin(&self, step: &str, sql: &str) -> Result<(), Error> {
        let connection = self.connection(&Target::Admin).await?;
        connection
            .batch_execute(sql)
            .await
            .map_err(|e| Error::postgres(step, e))
    }

    /// Like [`PgServer::admin`], but success if the object already exists.
    async fn admin_idempotent(&self, step: &str, sql: &str) -> Result<(), Error> {
        match self.admin(step, sql).await {
            Err(error)
                if matches!(
                    error.sql_state(),
                    Some(DUPLICATE_OBJECT | DUPLICATE_DATABASE | DUPLICATE_SCHEMA)
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn owner_of(database: &str) -> Target {
        Target::Owner(Arc::from(database))
    }

    /// Runs `sql` as the owner in `database`, in one transaction.
    async fn as_owner(&self, step: &str, database: &str, sql: &str) -> Result<(), Error> {
        let tx = self
            .begin(&Self::owner_of(database), Binding::Connection)
            .await?;
        if let Err(error) = tx.batch(sql).await {
            tx.rollback().await?;
            return Err(Error::with_source(
                ErrorKind::Provision,
                format!("{step} failed"),
                error,
            ));
        }
        tx.commit().await
    }

    async fn role_exists(&self, role: &str) -> Result<bool, Error> {
        let connection = self.connection(&Target::Admin).await?;
        let row = connection
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(|e| Error::postgres("looking up a role", e))?;
        Ok(row.is_some())
    }

    /// Creates `role` with `attributes`, or brings an existing one to them; a login role
    /// gets its derived password either way (so changing the secret rotates it).
    async fn ensure_role(&self, role: &str, attributes: &str, login: bool) -> Result<(), Error> {
        let password = if login {
            format!(
                " PASSWORD {}",
                literal(&self.secret.scram_verifier_for(role))
            )
        } else {
            String::new()
        };
        let step = format!("creating role {role}");
        if !self.role_exists(role).await? {
            self.admin_idempotent(
                &step,
                &format!("CREATE ROLE {} WITH {attributes}{password}", ident(role)),
            )
            .await?;
        }
        self.admin(
            &format!("configuring role {role}"),
            &format!("ALTER ROLE {} WITH {attributes}{password}", ident(role)),
        )
        .await
    }

    async fn ensure_database(&self, database: &str) -> Result<(), Error> {
        self.admin_idempotent(
            &format!("creating database {database}"),
            &format!(
                "CREATE DATABASE {} OWNER {}",
                ident(database),
                ident(&self.names.owner)
            ),
        )
        .await?;
        self.admin(
            &format!("restricting database {database}"),
            &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(database)),
        )
        .await
    }

    /// Grants `grantee` the use of the tables and sequences the owner creates in `schema`
    /// of the current database, and nothing else there.
    fn default_privileges(&self, schema: &str, grantee: &str) -> String {
        let (owner, schema, grantee) = (ident(&self.names.owner), ident(schema), ident(grantee));
        format!(
            "GRANT USAGE ON SCHEMA {schema} TO {grantee};\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {grantee};\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} \
             GRANT USAGE, SELECT ON SEQUENCES TO {grantee};\n"
        )
    }

    /// Creates (or repairs) the platform roles and databases. Idempotent, and safe to run
    /// from several processes.
    pub(crate) async fn prepare(&self, holds_catalog: bool) -> Result<(), Error> {
        let names = &self.names;
        // The application roles can only act as a tenant through SET ROLE: NOINHERIT.
        for app in names.app_roles.iter() {
            self.ensure_role(
                app,
                "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION",
                true,
            )
            .await?;
        }
        // The owner runs migrations; it may touch every tenant's rows (BYPASSRLS) and is
        // never used for application traffic.
        self.ensure_role(
            &names.owner,
            "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS NOREPLICATION",
            true,
        )
        .await?;
        self.ensure_role(&names.tenant_group, "NOLOGIN NOINHERIT", false)
            .await?;
        self.ensure_database(&names.shared_db).await?;
        // Role settings: what this crate sets and nothing else. A statement may have run
        // `ALTER ROLE CURRENT_USER SET ..` (any role may, for itself); every new session
        // of that role would start with it.
        let mut settings = self.reset_role_settings().await?;
        for app in names.app_roles.iter() {
            settings.push_str(&guard::application_role_sql(app, self.sealed_row_binding));
            settings.push_str(&format!(
                "GRANT CONNECT ON DATABASE {} TO {};\n",
                ident(&names.shared_db),
                ident(app)
            ));
        }
        // One simple-query message: one implicit transaction, so no session ever starts
        // between the reset and the settings.
        self.admin("configuring the application roles", &settings)
            .await?;
        self.spread_schema_tenants().await?;
        let superuser = Target::Superuser(Arc::from(names.shared_db.as_str()));
        let guarded = async {
            let connection = self.connection(&superuser).await?;
            connection
                .batch_execute(&guard::superuser_sql(names))
                .await
                .map_err(|e| Error::postgres("guarding the shared database", e))
        }
        .await;
        self.pools.remove(&superuser);
        guarded?;
        self.as_owner(
            "restricting the shared database",
            &names.shared_db,
            &format!(
                "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n{}{POSTGRES_RECORDS}{}",
                self.default_privileges("public", names.app()),
                guard::bound_tenant_sql(names, &self.binding_key, self.sealed_row_binding),
            ),
        )
        .await?;

        let _template = self.template.lock().await;
        self.ensure_database(&names.template_db).await?;
        self.as_owner(
            "restricting the template database",
            &names.template_db,
            &format!(
                "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n{}{POSTGRES_RECORDS}",
                self.default_privileges("public", &names.tenant_group)
            ),
        )
        .await?;
        self.pools.remove(&Self::owner_of(&names.template_db));

        if holds_catalog {
            self.ensure_database(&names.platform_db).await?;
        }
        Ok(())
    }

    /// `ALTER ROLE .. RESET ALL` for every role setting of this deployment's roles, in any
    /// database; the application roles' own settings are set again after it.
    async fn reset_role_settings(&self) -> Result<String, Error> {
        let connection = self.connection(&Target::Admin).await?;
        let pattern = format!("{}\\_%", self.names.naming.prefix());
        let rows = connection
            .query(
                "SELECT r.rolname::text, d.datname::text FROM pg_db_role_setting s \
                 JOIN pg_roles r ON r.oid = s.setrole \
                 LEFT JOIN pg_database d ON d.oid = s.setdatabase \
                 WHERE r.rolname LIKE $1",
                &[&pattern],
            )
            .await
            .map_err(|e| Error::postgres("reading the roles' settings", e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let role = ident(row.get::<_, &str>(0));
                match row.get::<_, Option<&str>>(1) {
                    Some(database) => {
                        format!(
                            "ALTER ROLE {role} IN DATABASE {} RESET ALL;\n",
                            ident(database)
                        )
                    }
                    None => format!("ALTER ROLE {role} RESET ALL;\n"),
                }
            })
            .collect())
    }

    /// (tenant role, application role) for every membership of this deployment's tenant
    /// roles in its application roles, whatever their number (a former count's included);
    /// `tenant_role` narrows it to one tenant.
    async fn app_memberships(
        &self,
        tenant_role: Option<&str>,
    ) -> Result<Vec<(String, String)>, Error> {
        let naming = &self.names.naming;
        let connection = self.connection(&Target::Admin).await?;
        let apps = format!("^{}__app[0-9]*$", naming.prefix());
        let rows = connection
            .query(
                "SELECT t.rolname::text, a.rolname::text FROM pg_auth_members m \
                 JOIN pg_roles t ON t.oid = m.roleid JOIN pg_roles a ON a.oid = m.member \
                 WHERE a.rolname ~ $1 AND ($2::text IS NULL OR t.rolname = $2)",
                &[&apps, &tenant_role],
            )
            .await
            .map_err(|e| Error::postgres("reading the application roles' memberships", e))?;
        // Tenant roles only: `{prefix}_{id}`, never a platform name (`__`), so a role an
        // operator granted to an application role is left alone.
        let tenant_prefix = format!("{}_", naming.prefix());
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .filter(|(tenant, _)| tenant.starts_with(&tenant_prefix) && !tenant.contains("__"))
            .collect())
    }

    /// Moves every schema tenant's membership to the application role it belongs to with
    /// the configured number of roles. Suspended tenants have none, and keep none.
    async fn spread_schema_tenants(&self) -> Result<(), Error> {
        let names = &self.names;
        let moves: String = self
            .app_memberships(None)
            .await?
            .into_iter()
            .filter(|(tenant, app)| names.app_for(tenant) != app)
            .map(|(tenant, app)| {
                format!(
                    "GRANT {tenant} TO {to}; REVOKE {tenant} FROM {from};\n",
                    to = ident(names.app_for(&tenant)),
                    tenant = ident(&tenant),
                    from = ident(&app),
                )
            })
            .collect();
        if moves.is_empty() {
            return Ok(());
        }
        // One simple-query message: PostgreSQL runs it as one implicit transaction, all or
        // nothing, and no open transaction can be left on the pooled connection.
        self.admin("moving schema tenants to their application roles", &moves)
            .await
    }

    /// A transaction for migrating `database` (with `schema` on the search path).
    async fn migration_tx(&self, database: &str, schema: Option<&str>) -> Result<Tx, Error> {
        let binding = match schema {
            Some(schema) => Binding::SearchPath(schema.to_owned()),
            None => Binding::Connection,
        };
        self.begin(&Self::owner_of(database), binding)
            .await
            .map(Tx::postgres)
    }

    /// Migrates a database (or a schema of one) as the owner, then closes the owner's
    /// connections to it.
    pub(crate) async fn migrate_database(
        &self,
        migrations: &Migrations,
        dialect: Dialect,
        database: &str,
        schema: Option<&str>,
    ) -> (Vec<u32>, Option<Error>) {
        let scope = schema.unwrap_or("database");
        let outcome = migrate::apply(migrations, Records::new(dialect, scope), || {
            self.migration_tx(database, schema)
        })
        .await;
        if schema.is_none() {
            self.pools.remove(&Self::owner_of(database));
        }
        outcome
    }

    /// Brings the template up to date, unless it already is.
    ///
    /// The template database carries the fingerprint of the migrations it was brought to
    /// as its comment, read from the admin connection: a process that finds its own
    /// migrations there connects to the template not at all, so it never makes another
    /// process's `CREATE DATABASE .. TEMPLATE` wait (PostgreSQL refuses to copy a template
    /// any session is connected to). Within a process, the check is made once per content.
    pub(crate) async fn migrate_template(
        &self,
        migrations: &Migrations,
    ) -> (Vec<u32>, Option<Error>) {
        let mut migrated = self.template.lock().await;
        let fingerprint = migrations.fingerprint();
        if migrated.as_deref() == Some(fingerprint.as_str()) {
            return (Vec::new(), None);
        }
        let mark = format!("{TEMPLATE_MARK}{fingerprint}");
        match self.template_mark().await {
            Ok(found) if found.as_deref() == Some(mark.as_str()) => {
                *migrated = Some(fingerprint);
                return (Vec::new(), None);
            }
            Ok(_) => {}
            Err(error) => return (Vec::new(), Some(error)),
        }
        let (applied, error) = self
            .migrate_database(migrations, Dialect::Postgres, &self.names.template_db, None)
            .await;
        if error.is_some() {
            return (applied, error);
        }
        let marked = self
            .admin(
                "marking the template with its migrations",
                &format!(
                    "COMMENT ON DATABASE {} IS {}",
                    ident(&self.names.template_db),
                    literal(&mark)
                ),
            )
            .await;
        if let Err(error) = marked {
            return (applied, Some(error));
        }
        *migrated = Some(fingerprint);
        (applied, None)
    }

    /// The template database's comment: the fingerprint of its migrations, once marked.
    async fn template_mark(&self) -> Result<Option<String>, Error> {
        let connection = self.connection(&Target::Admin).await?;
        let row = connection
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database \
                 WHERE datname = $1",
                &[&self.names.template_db],
            )
            .await
            .map_err(|e| Error::postgres("reading the template's mark", e))?;
        Ok(row.and_then(|row| row.get::<_, Option<String>>(0)))
    }

    /// Migrates the tenant's own database, schema or (row-level) the shared tables.
    pub(crate) async fn migrate_tenant(
        &self,
        migrations: &Migrations,
        tenant: &Tenant,
    ) -> (Vec<u32>, Option<Error>) {
        let name = self.names.tenant(&tenant.id);
        match tenant.placement.isolation {
            IsolationMode::Database => {
                self.migrate_database(migrations, Dialect::Postgres, &name, None)
                    .await
            }
            IsolationMode::Schema => {
                let shared = self.names.shared_db.clone();
                self.migrate_database(migrations, Dialect::Postgres, &shared, Some(&name))
                    .await
            }
            _ => self.migrate_shared(migrations).await,
        }
    }

    pub(crate) async fn migrate_shared(
        &self,
        migrations: &Migrations,
    ) -> (Vec<u32>, Option<Error>) {
        let shared = self.names.shared_db.clone();
        migrate::apply(
            migrations,
            Records::new(Dialect::PostgresRowLevel, "shared"),
            || self.migration_tx(&shared, None),
        )
        .await
    }

    /// Creates the database objects of a new tenant and brings them up to date.
    ///
    /// On failure it undoes only what this call made. The tenant's role is the first thing
    /// made: if creating it fails (another caller is creating the same tenant), nothing is
    /// undone, so a concurrent creation is never torn down by the one that lost the race.
    /// Row-level tenants own no database objects; nothing is undone for them.
    pub(crate) async fn create_tenant(
        &self,
        tenant: &Tenant,
        migrations: &Migrations,
    ) -> Result<(), Error> {
        match tenant.placement.isolation {
            IsolationMode::Database => {
                self.create_role(&tenant.id, true).await?;
                let made = self.create_database_tenant(&tenant.id, migrations).await;
                self.undo_on_failure(tenant, made).await
            }
            IsolationMode::Schema => {
                self.create_role(&tenant.id, false).await?;
                let made = match self.create_schema_tenant(&tenant.id).await {
                    Ok(()) => match self.migrate_tenant(migrations, tenant).await {
                        (_, Some(error)) => Err(error),
                        (_, None) => Ok(()),
                    },
                    Err(error) => Err(error),
                };
                self.undo_on_failure(tenant, made).await
            }
            _ => match self.migrate_tenant(migrations, tenant).await {
                (_, Some(error)) => Err(error),
                (_, None) => Ok(()),
            },
        }
    }

    /// After this call made the tenant's role: on failure, removes what was made.
    async fn undo_on_failure(&self, tenant: &Tenant, made: Result<(), Error>) -> Result<(), Error> {
        if let Err(error) = made {
            // The original error is what matters; the undo is best effort.
            let _ = self.drop_tenant(tenant).await;
            return Err(error);
        }
        Ok(())
    }

    /// Creates the tenant's role: a login role in the tenant group (database per tenant)
    /// or a role the application may act as (schema per tenant).
    async fn create_role(&self, id: &TenantId, login: bool) -> Result<(), Error> {
        let names = &self.names;
        let name = names.tenant(id);
        let sql = if login {
            format!(
                "CREATE ROLE {} WITH LOGIN INHERIT PASSWORD {} IN ROLE {}",
                ident(&name),
                literal(&self.secret.scram_verifier_for(&name)),
                ident(&names.tenant_group)
            )
        } else {
            format!("CREATE ROLE {} WITH NOLOGIN NOINHERIT", ident(&name))
        };
        self.admin(&format!("creating role {name}"), &sql).await
    }

    async fn create_database_tenant(
        &self,
        id: &TenantId,
        migrations: &Migrations,
    ) -> Result<(), Error> {
        let names = &self.names;
        let name = names.tenant(id);
        if let (_, Some(error)) = self.migrate_template(migrations).await {
            return Err(error);
        }
        let create = format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE {}",
            ident(&name),
            ident(&names.owner),
            ident(&names.template_db)
        );
        let mut attempt = 0;
        loop {
            let copied = {
                let _template = self.template.lock().await;
                self.admin(&format!("creating database {name}"), &create)
                    .await
            };
            match copied {
                // Another process is connected to the template for a moment: retry.
                Err(error) if error.sql_state() == Some(OBJECT_IN_USE) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                other => break other?,
            }
        }
        self.admin(
            &format!("restricting database {name}"),
            &format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {db}",
                db = ident(&name)
            ),
        )
        .await
    }

    async fn create_schema_tenant(&self, id: &TenantId) -> Result<(), Error> {
        let names = &self.names;
        let name = names.tenant(id);
        self.admin(
            &format!("letting the application act as {name}"),
            &format!("GRANT {} TO {}", ident(&name), ident(names.app_for(&name))),
        )
        .await?;
        self.as_owner(
            &format!("creating schema {name}"),
            &names.shared_db,
            &format!(
                "CREATE SCHEMA {};\n{}",
                ident(&name),
                self.default_privileges(&name, &name)
            ),
        )
        .await
    }

    /// Shuts the tenant out at the database level too: its login role (database per
    /// tenant) or the application's membership in its role (schema per tenant) is
    /// revoked, and its sessions end. Row-level tenants are shut out by the catalog alone.
    pub(crate) async fn suspend(&self, tenant: &Tenant) -> Result<(), Error> {
        let name = self.names.tenant(&tenant.id);
        match tenant.placement.isolation {
            IsolationMode::Database => {
                self.admin(
                    &format!("disabling login of {name}"),
                    &format!("ALTER ROLE {} WITH NOLOGIN", ident(&name)),
                )
                .await?;
                self.pools.remove(&Target::Tenant(tenant.id.clone()));
                self.admin(
                    &format!("ending the sessions of {name}"),
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE usename = {}",
                        literal(&name)
                    ),
                )
                .await
            }
            IsolationMode::Schema => {
                // From every application role it belongs to: a node configured with another
                // number of roles may have granted it elsewhere.
                let revokes: String = self
                    .app_memberships(Some(&name))
                    .await?
                    .into_iter()
                    .map(|(tenant, app)| {
                        format!("REVOKE {} FROM {};\n", ident(&tenant), ident(&app))
                    })
                    .collect();
                if revokes.is_empty() {
                    return Ok(());
                }
                self.admin(
                    &format!("revoking the application's use of {name}"),
                    &revokes,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// Undoes [`PgServer::suspend`].
    pub(crate) async fn resume(&self, tenant: &Tenant) -> Result<(), Error> {
        let name = self.names.tenant(&tenant.id);
        match tenant.placement.isolation {
            IsolationMode::Database => {
                self.admin(
                    &format!("enabling login of {name}"),
                    &format!("ALTER ROLE {} WITH LOGIN", ident(&name)),
                )
                .await
            }
            IsolationMode::Schema => {
                let app = self.names.app_for(&name);
                let mut grants = format!("GRANT {} TO {};\n", ident(&name), ident(app));
                for (tenant, other) in self.app_memberships(Some(&name)).await? {
                    if other != app {
                        grants.push_str(&format!(
                            "REVOKE {} FROM {};\n",
                            ident(&tenant),
                            ident(&other)
                        ));
                    }
                }
                self.admin(&format!("letting the application act as {name}"), &grants)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Removes every database object and row of the tenant. Idempotent.
    pub(crate) async fn drop_tenant(&self, tenant: &Tenant) -> Result<(), Error> {
        let names = &self.names;
        let name = names.tenant(&tenant.id);
        match tenant.placement.isolation {
            IsolationMode::Database => {
                self.pools.remove(&Target::Tenant(tenant.id.clone()));
                self.pools.remove(&Self::owner_of(&name));
                self.admin(
                    &format!("dropping database {name}"),
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&name)),
                )
                .await?;
                self.admin(
                    &format!("dropping role {name}"),
                    &format!("DROP ROLE IF EXISTS {}", ident(&name)),
                )
                .await
            }
            IsolationMode::Schema => {
                self.as_owner(
                    &format!("dropping schema {name}"),
                    &names.shared_db,
                    &format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&name)),
                )
                .await?;
                self.admin(
                    &format!("dropping role {name}"),
                    &format!("DROP ROLE IF EXISTS {}", ident(&name)),
                )
                .await
            }
            _ => self.delete_rows(&tenant.id).await,
        }
    }

    /// Deletes a row-level tenant's rows from every shared table, children before parents
    /// (tables are retried until foreign keys let them go).
    async fn delete_rows(&self, id: &TenantId) -> Result<(), Error> {
        let tx = self
            .begin(&Self::owner_of(&self.names.shared_db), Binding::Connection)
            .await?;
        // Append-only tables (tenancy-audit's trail) refuse every DELETE but this one: the
        // owner's, in a transaction that names the tenant being dropped.
        tx.execute(
            "SELECT set_config('tenancy.dropping_tenant', $1, true)",
            &[id.as_str().into()],
        )
        .await?;
        // Every fenced table, in every schema: the ones row-level security keeps apart by
        // `tenant_id`. Tables only: a view's rows are its tables'. A schema tenant's own
        // table with a `tenant_id` column is not fenced, and not touched.
        let tables: Vec<String> = tx
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c \
                 JOIN pg_attribute a ON a.attrelid = c.oid \
                 WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity \
                 AND a.attname = 'tenant_id' AND NOT a.attisdropped ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.try_get::<String>(0))
            .collect::<Result<_, _>>()?;
        let mut remaining = tables;
        for _pass in 0..=remaining.len() {
            let mut blocked = Vec::new();
            for table in remaining {
                tx.batch("SAVEPOINT tenancy_delete").await?;
                let deleted = tx
                    .execute(
                        &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                        &[id.as_str().into()],
                    )
                    .await;
                match deleted {
                    Ok(_) => tx.batch("RELEASE SAVEPOINT tenancy_delete").await?,
                    Err(error) if error.kind() == ErrorKind::ForeignKeyViolation => {
                        tx.rollback_to_savepoint("tenancy_delete").await?;
                        blocked.push(table);
                    }
                    Err(error) => {
                        tx.rollback().await?;
                        return Err(error);
                    }
                }
            }
            remaining = blocked;
            if remaining.is_empty() {
                return tx.commit().await;
            }
        }
        tx.rollback().await?;
        Err(Error::new(
            ErrorKind::Provision,
            format!(
                "the rows of tenant `{id}` in {} could not be deleted: foreign keys from \
                 other tables hold them",
                remaining.join(", ")
            ),
        ))
    }
}
