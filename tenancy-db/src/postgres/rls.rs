//! Row-level security for shared tables: the policy DDL, and a check that every table with
//! a `tenant_id` is fenced and that nothing in the shared database steps around the fence.
//!
//! The policy compares `tenant_id` with `(SELECT tenancy.bound_tenant())`, the tenant the
//! transaction is bound to: outside a bound transaction it is `NULL` and no row matches;
//! with the sealed binding a binding without its proof is an error. The column's default is
//! the tenant part of the setting, so application code that runs unchanged on the other
//! strategies never writes `tenant_id` itself; the policy's `WITH CHECK` refuses a row whose
//! `tenant_id` is not the bound tenant, whatever wrote it.

use std::fmt;
use std::sync::Arc;

use super::guard::{self, SCHEMA, SESSION_LOCK_FUNCTIONS};
use super::node_tree::{self, TenantComparison};
use super::{PgServer, TENANT_SETTING, Target};
use crate::error::{Error, ErrorKind};

/// The column default: the tenant part of the setting (the policy checks the rest).
fn tenant_default() -> String {
    format!(
        "nullif(pg_catalog.split_part(\
         pg_catalog.current_setting('{TENANT_SETTING}', true), ':', 1), '')"
    )
}

/// What every policy compares `tenant_id` with.
fn bound_tenant() -> String {
    format!("(SELECT {SCHEMA}.bound_tenant())")
}

/// The DDL that fences `table` (which has a `tenant_id text NOT NULL` column) by tenant:
/// the column default, `ENABLE` and `FORCE ROW LEVEL SECURITY`, and a policy for reads and
/// writes. Idempotent; `table` may be schema-qualified (`app.records`).
///
/// ```
/// let ddl = tenancy_db::rls::row_level_policy("records")?;
/// assert!(ddl.contains("FORCE ROW LEVEL SECURITY"));
/// assert!(tenancy_db::rls::row_level_policy("records; drop table x").is_err());
/// # Ok::<(), tenancy_db::Error>(())
/// ```
pub fn row_level_policy(table: &str) -> Result<String, Error> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|part| valid_part(part)) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "`{table}` is not a plain table name: use lowercase letters, digits and `_`, \
                 optionally qualified by a schema"
            ),
        ));
    }
    let table = parts
        .iter()
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".");
    let (default, bound) = (tenant_default(), bound_tenant());
    Ok(format!(
        "ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT {default};\n\
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS tenancy_isolation ON {table};\n\
         CREATE POLICY tenancy_isolation ON {table} \
         USING (tenant_id = {bound}) WITH CHECK (tenant_id = {bound});\n"
    ))
}

/// What the isolation check found on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IsolationReport {
    /// Problems that let one tenant see or change another's rows, or learn they exist.
    pub findings: Vec<String>,
    /// Tables the application role can read that have no `tenant_id`: shared by every
    /// tenant (reference data, say). Not a finding; listed so a person can confirm each.
    pub shared_tables: Vec<String>,
}

impl IsolationReport {
    /// Whether there are no findings.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// `Ok` when clean; otherwise an [`ErrorKind::Isolation`] error listing the findings.
    pub fn into_result(self) -> Result<Self, Error> {
        if self.is_clean() {
            Ok(self)
        } else {
            Err(Error::new(ErrorKind::Isolation, self.to_string()))
        }
    }
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return f.write_str("isolation holds");
        }
        writeln!(f, "isolation does not hold:")?;
        for finding in &self.findings {
            writeln!(f, "  - {finding}")?;
        }
        Ok(())
    }
}

const TABLES: &str = "
SELECT c.oid::regclass::text,
       c.relrowsecurity,
       c.relforcerowsecurity,
       pg_get_userbyid(c.relowner) = $1 AS app_owns,
       has_table_privilege($1, c.oid, 'TRUNCATE') AS app_truncates,
       (SELECT a.attnum FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AS tenant_attno
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND has_schema_privilege($1, n.oid, 'USAGE')
  AND has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1";

/// Every policy of a table: name, permissive, its expressions as stored.
const POLICIES: &str = "
SELECT p.polname::text, p.polpermissive, p.polqual::text, p.polwithcheck::text
FROM pg_policy p WHERE p.polrelid = $1::text::regclass ORDER BY 1";

/// The oids a policy must name: `=` on text, and `tenancy.bound_tenant()`.
const POLICY_OIDS: &str = "
SELECT 'pg_catalog.=(text, text)'::regoperator::oid,
       to_regprocedure('tenancy.bound_tenant()')::oid";

const KEYS_WITHOUT_TENANT: &str = "
SELECT 'unique index ' || i.indexrelid::regclass::text || ' on ' || c.oid::regclass::text
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE i.indisunique AND c.oid::regclass::text = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                    AND a.attnum = ANY(i.indkey))
UNION ALL
SELECT 'foreign key ' || con.conname || ' on ' || con.conrelid::regclass::text
FROM pg_constraint con
WHERE con.contype = 'f' AND con.conrelid::regclass::text = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = con.conrelid AND a.attname = 'tenant_id'
                    AND a.attnum = ANY(con.conkey))
ORDER BY 1";

const ROLE: &str = "
SELECT r.rolsuper, r.rolbypassrls, r.rolinherit,
       pg_has_role($1, $2, 'MEMBER') AS member_of_owner,
       has_database_privilege($1, current_database(), 'TEMPORARY') AS can_temp,
       (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships
FROM pg_roles r WHERE r.rolname = $1";

/// Views that run with their owner's privileges.
const OWNER_VIEWS: &str = "
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT tenancy.is_invoker(c.oid)
ORDER BY 1";

/// Materialized views that read what they must not.
const UNSAFE_MATVIEWS: &str = "
SELECT c.oid::regclass::text, tenancy.unsafe_read(c.oid)
FROM pg_class c WHERE c.relkind = 'm' AND tenancy.unsafe_read(c.oid) IS NOT NULL
ORDER BY 1";

/// `SECURITY DEFINER` functions an application role may call, other than the binding's.
const DEFINER_FUNCTIONS: &str = "
SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.oid IS DISTINCT FROM to_regprocedure('tenancy.bound_tenant()')
  AND EXISTS (SELECT 1 FROM unnest($1::text[]) app
              WHERE has_function_privilege(app, p.oid, 'EXECUTE'))
ORDER BY 1";

/// The binding's function as it is: language, definer, owner, body.
const BOUND_TENANT: &str = "
SELECT l.lanname::text, p.prosecdef, pg_get_userbyid(p.proowner)::text, p.prosrc
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid = to_regprocedure('tenancy.bound_tenant()')";

/// Whether the guard's event trigger is there and fires.
const GUARD: &str = "
SELECT evtenabled <> 'D' FROM pg_event_trigger WHERE evtname = 'tenancy_guard'";

/// Every role setting of this deployment's roles.
const ROLE_SETTINGS: &str = "
SELECT r.rolname::text, d.datname::text, s.setconfig
FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
LEFT JOIN pg_database d ON d.oid = s.setdatabase
WHERE r.rolname LIKE $1 ORDER BY 1, 2";

/// Which session-level advisory lock functions an application role may call.
const LOCK_FUNCTIONS: &str = "
SELECT f FROM unnest($1::text[]) f
WHERE EXISTS (SELECT 1 FROM unnest($2::text[]) app
              WHERE has_function_privilege(app, ('pg_catalog.' || f)::regprocedure, 'EXECUTE'))";

/// What the deployment declares about its threat model, for [`check`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Declared {
    /// `DbConfig::assume_hostile_sql`.
    pub(crate) hostile_sql: bool,
    /// Whether schema-per-tenant tenants are placed on this server.
    pub(crate) schema_tenants: bool,
}

/// Checks the shared database of `server` as its application roles see it.
pub(crate) async fn check(server: &PgServer, declared: Declared) -> Result<IsolationReport, Error> {
    let names = &server.names;
    let connection = server
        .connection(&Target::Owner(Arc::from(names.shared_db.as_str())))
        .await?;
    let failed = |e| Error::postgres("checking isolation", e);
    let mut report = IsolationReport::default();
    let app = names.app();
    let apps: Vec<&str> = names.app_roles.iter().map(String::as_str).collect();
    for role_name in names.app_roles.iter() {
        let role = connection
            .query_opt(ROLE, &[role_name, &names.owner.as_str()])
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotPrepared,
                    format!("role `{role_name}` does not exist: run `Platform::prepare` first"),
                )
            })?;
        let flags: [(bool, &str); 5] = [
            (
                role.get(0),
                "is a superuser, which bypasses row-level security",
            ),
            (role.get(1), "has BYPASSRLS"),
            (
                role.get(2),
                "inherits the privileges of its roles (it must be NOINHERIT)",
            ),
            (role.get(3), "is a member of the owner role"),
            (
                role.get(4),
                "may create temporary tables, which no policy covers",
            ),
        ];
        for (set, problem) in flags {
            if set {
                report
                    .findings
                    .push(format!("role `{role_name}` {problem}"));
            }
        }
        let memberships: i64 = role.get(5);
        if declared.hostile_sql && declared.schema_tenants && memberships > 0 {
            report.findings.push(format!(
                "role `{role_name}` may act as {memberships} schema tenants: SQL of one \
                 tenant can `SET ROLE` to another (tenants' SQL is declared hostile; place \
                 them in databases of their own, or row-level with the sealed binding)"
            ));
        }
    }
    if declared.hostile_sql && !server.sealed_row_binding {
        report.findings.push(
            "the row-level binding is not sealed: SQL of one tenant can rebind the \
             transaction to another (tenants' SQL is declared hostile; set \
             `sealed_row_binding` and run `Platform::prepare`)"
                .to_owned(),
        );
    }

    check_binding(&connection, server, &mut report).await?;
    check_tables(&connection, app, &mut report).await?;
    check_objects(&connection, &apps, &mut report).await?;
    check_role_settings(&connection, server, &mut report).await?;
    Ok(report)
}

/// The binding's function is what `prepare` made for the configured mode; the guard fires.
async fn check_binding(
    connection: &super::PgConnection,
    server: &PgServer,
    report: &mut IsolationReport,
) -> Result<(), Error> {
    let failed = |e| Error::postgres("checking isolation", e);
    let expected = if server.sealed_row_binding {
        ("plpgsql", true, guard::sealed_body())
    } else {
        ("sql", false, guard::unsealed_body())
    };
    match connection
        .query_opt(BOUND_TENANT, &[])
        .await
        .map_err(failed)?
    {
        None => report.findings.push(format!(
            "function {SCHEMA}.bound_tenant() is missing: run `Platform::prepare`"
        )),
        Some(row) => {
            let (language, definer, owner, body): (String, bool, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if (language.as_str(), definer, body) != expected || owner != server.names.owner {
                report.findings.push(format!(
                    "function {SCHEMA}.bound_tenant() is not the one `Platform::prepare` makes \
                     for this configuration (sealed: {}): run `Platform::prepare`",
                    server.sealed_row_binding
                ));
            }
        }
    }
    let fires = connection
        .query_opt(GUARD, &[])
        .await
        .map_err(failed)?
        .is_some_and(|row| row.get::<_, bool>(0));
    if !fires {
        report.findings.push(
            "the event trigger tenancy_guard is missing or disabled, so views, materialized \
             views and rules are not checked as they are created: run `Platform::prepare`"
                .to_owned(),
        );
    }
    Ok(())
}

/// Every table the application role can reach: fenced, with policies that compare
/// `tenant_id` with the bound tenant, and keys that include `tenant_id`.
async fn check_tables(
    connection: &super::PgConnection,
    app: &str,
    report: &mut IsolationReport,
) -> Result<(), Error> {
    let failed = |e| Error::postgres("checking isolation", e);
    let oids = connection
        .query_one(POLICY_OIDS, &[])
        .await
        .map_err(failed)?;
    let text_eq: u32 = oids.get(0);
    let bound_tenant: Option<u32> = oids.get(1);
    let mut fenced = Vec::new();
    for row in connection.query(TABLES, &[&app]).await.map_err(failed)? {
        let table: String = row.get(0);
        let (enabled, forced, owns, truncates): (bool, bool, bool, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        let Some(tenant_attno) = row.get::<_, Option<i16>>(5) else {
            report.shared_tables.push(table);
            continue;
        };
        if !enabled {
            report
                .findings
                .push(format!("table {table} does not ENABLE ROW LEVEL SECURITY"));
        }
        if !forced {
            report
                .findings
                .push(format!("table {table} does not FORCE ROW LEVEL SECURITY"));
        }
        if owns {
            report.findings.push(format!(
                "role `{app}` owns table {table} (it could disable RLS)"
            ));
        }
        if truncates {
            report.findings.push(format!(
                "role `{app}` may TRUNCATE {table} (TRUNCATE ignores RLS)"
            ));
        }
        let policies = connection
            .query(POLICIES, &[&table])
            .await
            .map_err(failed)?;
        if policies.is_empty() {
            report.findings.push(format!("table {table} has no policy"));
        }
        let comparison = bound_tenant.map(|bound_tenant| TenantComparison {
            tenant_attno,
            text_eq,
            bound_tenant,
        });
        for policy in &policies {
            let (name, permissive): (String, bool) = (policy.get(0), policy.get(1));
            if !permissive {
                // A restrictive policy only narrows what permissive ones let through.
                continue;
            }
            let using: Option<String> = policy.get(2);
            let with_check: Option<String> = policy.get(3);
            let holds = |expression: &Option<String>| match (expression, &comparison) {
                (Some(tree), Some(comparison)) => {
                    node_tree::parse(tree).is_some_and(|tree| comparison.is_implied_by(&tree))
                }
                _ => false,
            };
            let using_holds = using.is_none() || holds(&using);
            let check_holds = with_check.is_none() || holds(&with_check);
            if !using_holds || !check_holds || (using.is_none() && with_check.is_none()) {
                report.findings.push(format!(
                    "policy {name} on {table} lets rows through without comparing tenant_id \
                     with the bound tenant ({SCHEMA}.bound_tenant()): write it with \
                     `rls::row_level_policy`"
                ));
            }
        }
        fenced.push(table);
    }
    if !fenced.is_empty() {
        for row in connection
            .query(KEYS_WITHOUT_TENANT, &[&fenced])
            .await
            .map_err(failed)?
        {
            let what: String = row.get(0);
            report.findings.push(format!(
                "{what} does not include tenant_id: a conflict would reveal that another \
                 tenant's row exists"
            ));
        }
    }
    Ok(())
}

/// Views, materialized views, functions and lock functions that would lend the application
/// another role's privileges, or state that outlives a transaction.
async fn check_objects(
    connection: &super::PgConnection,
    apps: &[&str],
    report: &mut IsolationReport,
) -> Result<(), Error> {
    let failed = |e| Error::postgres("checking isolation", e);
    for row in connection.query(OWNER_VIEWS, &[]).await.map_err(failed)? {
        let view: String = row.get(0);
        report.findings.push(format!(
            "view {view} runs with its owner's privileges, which see every tenant's rows: \
             `ALTER VIEW {view} SET (security_invoker = true)`"
        ));
    }
    for row in connection
        .query(UNSAFE_MATVIEWS, &[])
        .await
        .map_err(failed)?
    {
        let (view, reads): (String, String) = (row.get(0), row.get(1));
        report.findings.push(format!(
            "materialized view {view} reads {reads}: it is filled with its owner's \
             privileges and no policy fences it"
        ));
    }
    for row in connection
        .query(DEFINER_FUNCTIONS, &[&apps])
        .await
        .map_err(failed)?
    {
        let function: String = row.get(0);
        report.findings.push(format!(
            "SECURITY DEFINER function {function} may be called by the application role: \
             it runs with its owner's privileges, which may see every tenant's rows"
        ));
    }
    for row in connection
        .query(LOCK_FUNCTIONS, &[&SESSION_LOCK_FUNCTIONS, &apps])
        .await
        .map_err(failed)?
    {
        let function: String = row.get(0);
        report.findings.push(format!(
            "the application role may call {function}: a session-level advisory lock \
             outlives its transaction and stays with the pooled connection"
        ));
    }
    Ok(())
}

/// Role settings: only those `Platform::prepare` gives the application roles.
async fn check_role_settings(
    connection: &super::PgConnection,
    server: &PgServer,
    report: &mut IsolationReport,
) -> Result<(), Error> {
    let failed = |e| Error::postgres("checking isolation", e);
    let names = &server.names;
    let pattern = format!("{}\\_%", names.naming.prefix());
    let expected: Vec<String> = guard::application_role_settings(server.sealed_row_binding)
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    for row in connection
        .query(ROLE_SETTINGS, &[&pattern])
        .await
        .map_err(failed)?
    {
        let (role, database, settings): (String, Option<String>, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        let is_app = names.app_roles.contains(&role);
        let unexpected: Vec<&String> = settings
            .iter()
            .filter(|setting| !(is_app && database.is_none() && expected.contains(setting)))
            .collect();
        if !unexpected.is_empty() {
            let place = database.map_or_else(String::new, |db| format!(" in database {db}"));
            let shown: Vec<&str> = unexpected
                .iter()
                .map(|setting| setting.split('=').next().unwrap_or_default())
                .collect();
            report.findings.push(format!(
                "role `{role}` carries settings{place} that `Platform::prepare` did not set \
                 ({}); a statement may have run ALTER ROLE CURRENT_USER SET: run \
                 `Platform::prepare`, which resets them",
                shown.join(", ")
            ));
        }
    }
    Ok(())
}
