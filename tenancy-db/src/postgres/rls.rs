//! Row-level security for shared tables: the policy DDL, and a check that every table with
//! a `tenant_id` is fenced and that the application role cannot step around the fence.
//!
//! The policy compares `tenant_id` with `nullif(current_setting('app.tenant_id', true), '')`:
//! outside a bound transaction the setting is unset or empty, the comparison is `NULL`, and
//! no row matches. The same expression is the column's default, so application code that
//! runs unchanged on the other strategies never writes `tenant_id` itself.

use std::fmt;
use std::sync::Arc;

use super::{PgServer, TENANT_SETTING, Target};
use crate::error::{Error, ErrorKind};

/// The expression of the current tenant, `NULL` when none is bound.
fn current_tenant() -> String {
    format!("nullif(current_setting('{TENANT_SETTING}', true), '')")
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
    let tenant = current_tenant();
    Ok(format!(
        "ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT {tenant};\n\
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS tenancy_isolation ON {table};\n\
         CREATE POLICY tenancy_isolation ON {table} \
         USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant});\n"
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
            return f.write_str("row-level isolation holds");
        }
        writeln!(f, "row-level isolation does not hold:")?;
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
       EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AS has_tenant_id,
       ARRAY(SELECT p.polname::text || ':' || p.polpermissive::text || ':' ||
                    coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ':' ||
                    coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
             FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND has_schema_privilege($1, n.oid, 'USAGE')
  AND has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1";

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
       has_database_privilege($1, current_database(), 'TEMPORARY') AS can_temp
FROM pg_roles r WHERE r.rolname = $1";

/// Checks the shared database of `server` as its application role sees it.
pub(crate) async fn check(server: &PgServer) -> Result<IsolationReport, Error> {
    let names = &server.names;
    let connection = server
        .connection(&Target::Owner(Arc::from(names.shared_db.as_str())))
        .await?;
    let failed = |e| Error::postgres("checking row-level isolation", e);
    let mut report = IsolationReport::default();
    let app = names.app();
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
    }

    let tenant_expression = format!("current_setting('{TENANT_SETTING}'");
    let mut fenced = Vec::new();
    for row in connection.query(TABLES, &[&app]).await.map_err(failed)? {
        let table: String = row.get(0);
        let (enabled, forced, owns, truncates, has_tenant_id): (bool, bool, bool, bool, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        let policies: Vec<String> = row.get(6);
        if !has_tenant_id {
            report.shared_tables.push(table);
            continue;
        }
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
        if policies.is_empty() {
            report.findings.push(format!("table {table} has no policy"));
        }
        for policy in &policies {
            let mut parts = policy.splitn(4, ':');
            let (name, permissive, using) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default() == "true",
                parts.next().unwrap_or_default(),
            );
            if permissive && !using.contains(&tenant_expression) {
                report.findings.push(format!(
                    "policy {name} on {table} lets rows through without comparing them to \
                     {TENANT_SETTING}"
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
    Ok(report)
}
