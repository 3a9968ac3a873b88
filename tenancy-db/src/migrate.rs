//! Migrations applied to every tenant, with a record per tenant of what ran.
//!
//! Each migration runs in its own transaction together with its record in
//! `tenancy_migrations`, so a failure leaves the tenant at the last migration that
//! succeeded and a later run resumes from there. A migration whose text changed after it
//! was applied, or a record this program does not know, stops that tenant with an error
//! instead of guessing. One tenant's failure is reported; the others carry on.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tenancy_core::{ServerName, TenantId};

use crate::catalog::now_ms;
use crate::error::{Error, ErrorKind};
use crate::transaction::Tx;
use tenancy_core::hex;

/// Which SQL of a [`Migration`] a target needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL, database-per-tenant and schema-per-tenant: tables without `tenant_id`.
    Postgres,
    /// PostgreSQL shared tables for row-level tenants: tables with `tenant_id` and
    /// row-level security ([`rls::row_level_policy`](crate::rls::row_level_policy)).
    PostgresRowLevel,
    /// SQLite, a file per tenant.
    Sqlite,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::PostgresRowLevel => "PostgreSQL row-level",
            Dialect::Sqlite => "SQLite",
        })
    }
}

/// One schema change, written once per dialect the deployment uses.
///
/// Each migration runs in its own transaction with its record, so its SQL must not contain
/// transaction control (`COMMIT`, `ROLLBACK`).
///
/// ```
/// use tenancy_db::{Migration, rls};
///
/// let records = Migration::new(1, "records")
///     .postgres("CREATE TABLE records (id bigint PRIMARY KEY, title text NOT NULL)")
///     .row_level(&format!(
///         "CREATE TABLE records (tenant_id text NOT NULL, id bigint NOT NULL, \
///          title text NOT NULL, PRIMARY KEY (tenant_id, id)); {}",
///         rls::row_level_policy("records")?
///     ))
///     .sqlite("CREATE TABLE records (id integer PRIMARY KEY, title text NOT NULL)");
/// # Ok::<(), tenancy_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    version: u32,
    name: String,
    postgres: Option<String>,
    row_level: Option<String>,
    sqlite: Option<String>,
}

impl Migration {
    /// Migration `version` (versions run in increasing order) called `name`.
    pub fn new(version: u32, name: &str) -> Self {
        Migration {
            version,
            name: name.to_owned(),
            postgres: None,
            row_level: None,
            sqlite: None,
        }
    }

    /// The SQL for database- and schema-per-tenant PostgreSQL.
    pub fn postgres(mut self, sql: &str) -> Self {
        self.postgres = Some(sql.to_owned());
        self
    }

    /// The SQL for the shared tables of row-level tenants.
    pub fn row_level(mut self, sql: &str) -> Self {
        self.row_level = Some(sql.to_owned());
        self
    }

    /// The SQL for SQLite files.
    pub fn sqlite(mut self, sql: &str) -> Self {
        self.sqlite = Some(sql.to_owned());
        self
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL for `dialect`, if written.
    pub fn sql(&self, dialect: Dialect) -> Option<&str> {
        match dialect {
            Dialect::Postgres => self.postgres.as_deref(),
            Dialect::PostgresRowLevel => self.row_level.as_deref(),
            Dialect::Sqlite => self.sqlite.as_deref(),
        }
    }

    fn checksum(sql: &str) -> String {
        hex(&Sha256::digest(sql.as_bytes()))
    }
}

/// An ordered set of migrations.
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    list: Arc<[Migration]>,
}

impl Migrations {
    /// Checks that versions are unique and increasing and names are not empty.
    pub fn new(list: Vec<Migration>) -> Result<Self, Error> {
        for pair in list.windows(2) {
            if pair[1].version <= pair[0].version {
                return Err(Error::new(
                    ErrorKind::Migration,
                    format!(
                        "migration versions must increase: {} `{}` comes after {} `{}`",
                        pair[1].version, pair[1].name, pair[0].version, pair[0].name
                    ),
                ));
            }
        }
        if let Some(unnamed) = list.iter().find(|m| m.name.trim().is_empty()) {
            return Err(Error::new(
                ErrorKind::Migration,
                format!("migration {} has no name", unnamed.version),
            ));
        }
        Ok(Migrations { list: list.into() })
    }

    /// No migrations.
    pub fn none() -> Self {
        Migrations::default()
    }

    /// The migrations, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Migration> {
        self.list.iter()
    }

    /// The highest version, or 0.
    pub fn latest(&self) -> u32 {
        self.list.last().map_or(0, Migration::version)
    }

    /// A fingerprint of the migrations' content: SHA-256, in hex, of every version, name
    /// and SQL of every dialect. Two lists with the same fingerprint make the same tenants,
    /// so a migrated template is reused under it (`Platform::create_tenant` copies it) and
    /// test deployments are shared under it; a changed SQL text changes it.
    ///
    /// ```
    /// use tenancy_db::{Migration, Migrations};
    ///
    /// let v1 = Migrations::new(vec![Migration::new(1, "records").sqlite("CREATE TABLE r (id integer)")])?;
    /// let edited = Migrations::new(vec![Migration::new(1, "records").sqlite("CREATE TABLE r (id int)")])?;
    /// assert_eq!(v1.fingerprint().len(), 64);
    /// assert_ne!(v1.fingerprint(), edited.fingerprint());
    /// # Ok::<(), tenancy_db::Error>(())
    /// ```
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for migration in self.list.iter() {
            hash.update(migration.version.to_be_bytes());
            // Each text is length-prefixed, and a missing dialect differs from an empty
            // one, so no two lists hash the same input.
            let texts = [
                Some(migration.name.as_str()),
                migration.postgres.as_deref(),
                migration.row_level.as_deref(),
                migration.sqlite.as_deref(),
            ];
            for text in texts {
                match text {
                    Some(text) => {
                        hash.update([1]);
                        hash.update((text.len() as u64).to_be_bytes());
                        hash.update(text.as_bytes());
                    }
                    None => hash.update([0]),
                }
            }
        }
        hex(&hash.finalize())
    }
}

/// What a migration run was applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationTarget {
    /// A tenant's database, schema or file.
    Tenant(TenantId),
    /// The template database new database-per-tenant tenants are copied from.
    Template(ServerName),
    /// The shared tables of a server's row-level tenants.
    Shared(ServerName),
}

impl fmt::Display for MigrationTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationTarget::Tenant(id) => write!(f, "tenant `{id}`"),
            MigrationTarget::Template(server) => write!(f, "the template database on `{server}`"),
            MigrationTarget::Shared(server) => write!(f, "the shared tables on `{server}`"),
        }
    }
}

/// What happened to one target.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrationOutcome {
    /// The target.
    pub target: MigrationTarget,
    /// The versions applied by this run, in order.
    pub applied: Vec<u32>,
    /// Why the run stopped early for this target; the target is left at its last
    /// successful migration.
    pub error: Option<Error>,
}

/// Progress of a migration run, passed to the callback after each target.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrationProgress<'a> {
    /// Targets finished so far.
    pub done: usize,
    /// Targets in the run.
    pub total: usize,
    /// The target just finished.
    pub outcome: &'a MigrationOutcome,
}

/// The result of a migration run.
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrationReport {
    /// One outcome per target.
    pub outcomes: Vec<MigrationOutcome>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl MigrationReport {
    /// The targets the run stopped early for.
    pub fn failures(&self) -> impl Iterator<Item = &MigrationOutcome> {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.error.is_some())
    }

    /// Whether every target is fully migrated.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Where a target's migration records live.
///
/// On PostgreSQL they are in `tenancy.migrations`, a schema that only the owner can use
/// (made by `Platform::prepare`), so neither the application role nor a tenant's role can
/// read or rewrite a migration history; `scope` tells apart the targets that share one
/// database (the shared tables and each schema tenant). On SQLite, which has no roles,
/// they are in the tenant's own file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Records<'a> {
    dialect: Dialect,
    scope: &'a str,
}

impl<'a> Records<'a> {
    pub(crate) fn new(dialect: Dialect, scope: &'a str) -> Self {
        Records { dialect, scope }
    }

    fn table(self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "tenancy_migrations",
            _ => "tenancy.migrations",
        }
    }
}

#[cfg(feature = "postgres")]
/// The record table of a PostgreSQL database, made when the database is prepared.
pub(crate) const POSTGRES_RECORDS: &str = "CREATE SCHEMA IF NOT EXISTS tenancy;\n\
    REVOKE ALL ON SCHEMA tenancy FROM PUBLIC;\n\
    CREATE TABLE IF NOT EXISTS tenancy.migrations (scope text NOT NULL, version integer NOT NULL, \
    name text NOT NULL, checksum text NOT NULL, applied_at_ms bigint NOT NULL, \
    PRIMARY KEY (scope, version));\n";

const SQLITE_RECORDS: &str = "CREATE TABLE IF NOT EXISTS tenancy_migrations (\
    scope text NOT NULL, version integer NOT NULL, name text NOT NULL, checksum text NOT NULL, \
    applied_at_ms bigint NOT NULL, PRIMARY KEY (scope, version))";

/// Applies the pending `migrations` through transactions made by `begin` (which binds the
/// target's database and schema), recording them in `records`. Returns what it applied
/// and, if it stopped early, why.
pub(crate) async fn apply<F, Fut>(
    migrations: &Migrations,
    records: Records<'_>,
    begin: F,
) -> (Vec<u32>, Option<Error>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Tx, Error>>,
{
    let mut applied = Vec::new();
    loop {
        match apply_next(migrations, records, &begin).await {
            Ok(Some(version)) => applied.push(version),
            Ok(None) => return (applied, None),
            Err(error) => return (applied, Some(error)),
        }
    }
}

/// Applies the first pending migration; `None` when nothing is pending.
async fn apply_next<F, Fut>(
    migrations: &Migrations,
    records: Records<'_>,
    begin: &F,
) -> Result<Option<u32>, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Tx, Error>>,
{
    let dialect = records.dialect;
    let (table, scope) = (records.table(), records.scope);
    let tx = begin().await?;
    if dialect == Dialect::Sqlite {
        // BEGIN IMMEDIATE already makes two migrators of one file take turns.
        tx.batch(SQLITE_RECORDS).await?;
    } else {
        // Two migrators of one target take turns; targets sharing a database do not wait
        // for each other.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tenancy.migrate:' || $1))",
            &[scope.into()],
        )
        .await?;
    }
    let rows = tx
        .query(
            &format!(
                "SELECT version, name, checksum FROM {table} WHERE scope = $1 ORDER BY version"
            ),
            &[scope.into()],
        )
        .await?;
    let mut done = Vec::with_capacity(rows.len());
    for record in &rows {
        let version: i64 = record.try_get(0)?;
        let checksum: String = record.try_get(2)?;
        let known = migrations
            .iter()
            .find(|m| i64::from(m.version) == version)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Migration,
                    format!(
                        "migration {version} `{}` was applied here but this program does not \
                         know it (was the target migrated by a newer program?)",
                        record.try_get::<String>(1).unwrap_or_default()
                    ),
                )
            })?;
        if known.sql(dialect).map(Migration::checksum).as_deref() != Some(checksum.as_str()) {
            return Err(Error::new(
                ErrorKind::Migration,
                format!(
                    "migration {} `{}` was changed after it was applied; write a new \
                     migration instead of editing an applied one",
                    known.version, known.name
                ),
            ));
        }
        done.push(known.version);
    }
    let Some(next) = migrations.iter().find(|m| !done.contains(&m.version)) else {
        tx.commit().await?;
        return Ok(None);
    };
    let Some(sql) = next.sql(dialect) else {
        tx.rollback().await?;
        return Err(Error::new(
            ErrorKind::Migration,
            format!(
                "migration {} `{}` has no {dialect} SQL, which this target needs",
                next.version, next.name
            ),
        ));
    };
    if let Err(error) = tx.batch(sql).await {
        tx.rollback().await?;
        return Err(Error::with_source(
            ErrorKind::Migration,
            format!("migration {} `{}` failed: {error}", next.version, next.name),
            error,
        ));
    }
    tx.execute(
        &format!(
            "INSERT INTO {table} (scope, version, name, checksum, applied_at_ms) \
             VALUES ($1, $2, $3, $4, $5)"
        ),
        &[
            scope.into(),
            i64::from(next.version).into(),
            next.name.as_str().into(),
            Migration::checksum(sql).into(),
            now_ms().into(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(next.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_increase_and_names_exist() {
        let err =
            Migrations::new(vec![Migration::new(2, "b"), Migration::new(1, "a")]).unwrap_err();
        assert!(err.to_string().contains("must increase"), "{err}");
        assert!(Migrations::new(vec![Migration::new(1, "a"), Migration::new(1, "b")]).is_err());
        assert!(Migrations::new(vec![Migration::new(1, " ")]).is_err());
        assert_eq!(
            Migrations::new(vec![Migration::new(1, "a"), Migration::new(5, "b")])
                .unwrap()
                .latest(),
            5
        );
    }

    #[test]
    fn fingerprints_follow_every_part_of_the_content() {
        let base = || Migration::new(1, "records").postgres("CREATE TABLE r ()");
        let print = |list: Vec<Migration>| Migrations::new(list).unwrap().fingerprint();
        let original = print(vec![base()]);
        assert_eq!(original, print(vec![base()]), "deterministic");
        let changed = [
            print(vec![
                Migration::new(2, "records").postgres("CREATE TABLE r ()"),
            ]),
            print(vec![
                Migration::new(1, "record").postgres("CREATE TABLE r ()"),
            ]),
            print(vec![base().row_level("")]),
            print(vec![base().sqlite("CREATE TABLE r ()")]),
            print(vec![
                Migration::new(1, "records").row_level("CREATE TABLE r ()"),
            ]),
            print(vec![base(), Migration::new(2, "more")]),
            Migrations::none().fingerprint(),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(&original, other, "change {i} kept the fingerprint");
        }
    }
}
