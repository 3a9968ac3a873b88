//! The objects `Platform::prepare` puts in the shared database's `tenancy` schema so that
//! the boundary holds against the statements of the application's own migrations and
//! tenants:
//!
//! - `tenancy.bound_tenant()`, the tenant a row-level transaction is bound to, which every
//!   row-level policy compares `tenant_id` with. Unsealed it reads the tenant setting
//!   (inlined by the planner: no call at run time). Sealed it is a `SECURITY DEFINER`
//!   function of the owner role that accepts the setting only with its proof: an HMAC of
//!   the server process and the tenant under a key kept in `tenancy.binding_key`, a table
//!   only the owner can read (see `crate::credentials::BindingKey`).
//! - `tenancy.unsafe_read(view)`: what a materialized view reads that it must not: a
//!   fenced table, another schema's relation, or a function outside `pg_catalog`, found
//!   through the views it reads, transitively.
//! - an event trigger, `tenancy_guard`, on every DDL command in the shared database: a view
//!   created without `security_invoker` is given it (a view runs with its owner's
//!   privileges otherwise, and the owner sees every tenant's rows), turning it off is
//!   refused, a materialized view that reads what it must not is refused (row-level
//!   security cannot fence a materialized view, and it is filled with the owner's
//!   privileges), and so is a rule other than a view's (a rule runs with the table owner's
//!   privileges).
//!
//! The guard and `unsafe_read` belong to the superuser that runs `prepare`, so a migration
//! (which runs as the owner) cannot replace them; `bound_tenant` belongs to the owner,
//! because it must read the key, and `Platform::check_isolation` checks its definition.

use super::{PgNames, TENANT_SETTING, ident, literal};
use crate::credentials::BindingKey;

/// The schema of the platform's objects in the shared database.
pub(crate) const SCHEMA: &str = "tenancy";

/// The session-level advisory lock functions, revoked from `PUBLIC` in the shared database:
/// a lock they take outlives the transaction and would be held by the next borrower of the
/// connection. Transaction-level locks (`pg_advisory_xact_lock`) stay available.
pub(crate) const SESSION_LOCK_FUNCTIONS: &[&str] = &[
    "pg_advisory_lock(bigint)",
    "pg_advisory_lock(integer, integer)",
    "pg_advisory_lock_shared(bigint)",
    "pg_advisory_lock_shared(integer, integer)",
    "pg_try_advisory_lock(bigint)",
    "pg_try_advisory_lock(integer, integer)",
    "pg_try_advisory_lock_shared(bigint)",
    "pg_try_advisory_lock_shared(integer, integer)",
];

/// The body of `tenancy.bound_tenant()` unsealed: the tenant part of the setting.
pub(crate) fn unsealed_body() -> String {
    format!(
        "SELECT nullif(pg_catalog.split_part(\
         pg_catalog.current_setting('{TENANT_SETTING}', true), ':', 1), '')"
    )
}

/// The body of `tenancy.bound_tenant()` sealed: the tenant part of the setting if its proof
/// is the HMAC of `pid:tenant` under the key; an error if the proof is wrong. Every name is
/// qualified; the application role can create no object a name could resolve to instead.
pub(crate) fn sealed_body() -> String {
    format!(
        "
DECLARE
  bound text := pg_catalog.current_setting('{TENANT_SETTING}', true);
  tenant text;
  pads record;
BEGIN
  IF bound IS NULL OR bound = '' THEN
    RETURN NULL;
  END IF;
  tenant := pg_catalog.split_part(bound, ':', 1);
  SELECT k.inner_pad, k.outer_pad INTO pads FROM {SCHEMA}.binding_key k;
  IF pg_catalog.encode(pg_catalog.sha256(pads.outer_pad OPERATOR(pg_catalog.||) pg_catalog.sha256(
       pads.inner_pad OPERATOR(pg_catalog.||) pg_catalog.convert_to(
         pg_catalog.pg_backend_pid()::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) tenant,
         'UTF8'))), 'hex')
     IS DISTINCT FROM pg_catalog.split_part(bound, ':', 2) THEN
    RAISE EXCEPTION 'the row-level tenant binding has no valid proof: it was not made by tenancy-db on this connection'
      USING ERRCODE = '42501';
  END IF;
  RETURN tenant;
END
"
    )
}

/// Creates (or replaces) `tenancy.bound_tenant()` for the configured binding, and stores
/// the key's pads. Run as the owner in the shared database.
pub(crate) fn bound_tenant_sql(names: &PgNames, key: &BindingKey, sealed: bool) -> String {
    let (inner, outer) = key.pads();
    let apps: Vec<String> = names.app_roles.iter().map(|app| ident(app)).collect();
    let apps = apps.join(", ");
    let function = if sealed {
        format!(
            "CREATE OR REPLACE FUNCTION {SCHEMA}.bound_tenant() RETURNS text \
             LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER AS {}",
            dollar_quoted(&sealed_body())
        )
    } else {
        format!(
            "CREATE OR REPLACE FUNCTION {SCHEMA}.bound_tenant() RETURNS text \
             LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER AS {}",
            dollar_quoted(&unsealed_body())
        )
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA}.binding_key \
           (inner_pad bytea NOT NULL, outer_pad bytea NOT NULL);\n\
         REVOKE ALL ON {SCHEMA}.binding_key FROM PUBLIC;\n\
         DELETE FROM {SCHEMA}.binding_key;\n\
         INSERT INTO {SCHEMA}.binding_key VALUES ('\\x{}'::bytea, '\\x{}'::bytea);\n\
         {function};\n\
         REVOKE ALL ON FUNCTION {SCHEMA}.bound_tenant() FROM PUBLIC;\n\
         GRANT EXECUTE ON FUNCTION {SCHEMA}.bound_tenant() TO {apps};\n",
        tenancy_core::hex(&inner),
        tenancy_core::hex(&outer),
    )
}

fn dollar_quoted(body: &str) -> String {
    debug_assert!(!body.contains("$tenancy$"));
    format!("$tenancy${body}$tenancy$")
}

/// What a materialized view (or view) reads that it must not, as `unsafe_read(oid)`:
/// `NULL` when nothing.
const UNSAFE_READ: &str = "
CREATE OR REPLACE FUNCTION tenancy.unsafe_read(view oid) RETURNS text
LANGUAGE sql STABLE AS $tenancy$
WITH RECURSIVE reads(relation) AS (
    SELECT d.refobjid FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
    WHERE r.ev_class = view AND d.refobjid <> view
  UNION
    SELECT d.refobjid FROM reads
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = reads.relation
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
    WHERE d.refobjid <> reads.relation
)
SELECT reason FROM (
  SELECT 'fenced table ' || c.oid::pg_catalog.regclass::text AS reason, 1 AS rank
  FROM reads JOIN pg_catalog.pg_class c ON c.oid = reads.relation
  WHERE c.relrowsecurity
  UNION ALL
  SELECT 'relation ' || c.oid::pg_catalog.regclass::text || ' of another schema', 2
  FROM reads JOIN pg_catalog.pg_class c ON c.oid = reads.relation
  WHERE c.relnamespace NOT IN (
      (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = view),
      'public'::pg_catalog.regnamespace, 'pg_catalog'::pg_catalog.regnamespace)
  UNION ALL
  SELECT 'function ' || p.oid::pg_catalog.regprocedure::text, 3
  FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
   AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
  JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
  WHERE (r.ev_class = view OR r.ev_class IN (SELECT relation FROM reads))
    AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
) found ORDER BY rank, reason LIMIT 1
$tenancy$;
";

/// The event trigger and its function.
const GUARD: &str = "
CREATE OR REPLACE FUNCTION tenancy.guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $tenancy$
DECLARE
  command record;
  why text;
BEGIN
  FOR command IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
    IF command.object_type = 'view' AND NOT tenancy.is_invoker(command.objid) THEN
      IF command.command_tag = 'CREATE VIEW' THEN
        EXECUTE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true)',
                                  command.object_identity);
      ELSE
        RAISE EXCEPTION 'view % must keep security_invoker in the shared database: without it the view reads with its owner''s privileges, which see every tenant''s rows', command.object_identity
          USING ERRCODE = '42501';
      END IF;
    ELSIF command.object_type = 'materialized view' THEN
      why := tenancy.unsafe_read(command.objid);
      IF why IS NOT NULL THEN
        RAISE EXCEPTION 'materialized view % reads %: a materialized view is filled with its owner''s privileges and row-level security cannot fence it; use a view instead', command.object_identity, why
          USING ERRCODE = '42501';
      END IF;
    ELSIF command.object_type = 'rule' AND command.command_tag = 'CREATE RULE' THEN
      RAISE EXCEPTION 'rule % is refused in the shared database: a rule runs with the table owner''s privileges, which see every tenant''s rows; use a trigger', command.object_identity
        USING ERRCODE = '42501';
    END IF;
  END LOOP;
END
$tenancy$;
DROP EVENT TRIGGER IF EXISTS tenancy_guard;
CREATE EVENT TRIGGER tenancy_guard ON ddl_command_end
  WHEN TAG IN ('CREATE VIEW', 'ALTER VIEW', 'CREATE MATERIALIZED VIEW', 'CREATE RULE')
  EXECUTE FUNCTION tenancy.guard_ddl();
";

/// Whether a view has `security_invoker` set to a true value.
const IS_INVOKER: &str = "
CREATE OR REPLACE FUNCTION tenancy.is_invoker(view oid) RETURNS boolean
LANGUAGE sql STABLE AS $tenancy$
SELECT EXISTS (
  SELECT 1 FROM pg_catalog.pg_class c, pg_catalog.pg_options_to_table(c.reloptions) o
  WHERE c.oid = view AND o.option_name = 'security_invoker'
    AND pg_catalog.lower(o.option_value) IN ('true', 'on', 'yes', '1', 't', 'y'))
$tenancy$;
";

/// Run as the superuser in the shared database: the schema, the guard, and the revoked
/// lock functions. `owner` gets the use of the schema (to own `bound_tenant` and its key),
/// the application roles the use of it (to call `bound_tenant`).
pub(crate) fn superuser_sql(names: &PgNames) -> String {
    let owner = ident(&names.owner);
    let apps: Vec<String> = names.app_roles.iter().map(|app| ident(app)).collect();
    let revokes: String = SESSION_LOCK_FUNCTIONS
        .iter()
        .map(|function| format!("REVOKE EXECUTE ON FUNCTION pg_catalog.{function} FROM PUBLIC;\n"))
        .collect();
    format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};\n\
         REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;\n\
         GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {owner};\n\
         GRANT USAGE ON SCHEMA {SCHEMA} TO {apps};\n\
         {IS_INVOKER}{UNSAFE_READ}{GUARD}\
         REVOKE ALL ON FUNCTION {SCHEMA}.unsafe_read(oid), {SCHEMA}.is_invoker(oid) FROM PUBLIC;\n\
         GRANT EXECUTE ON FUNCTION {SCHEMA}.unsafe_read(oid), {SCHEMA}.is_invoker(oid) TO {owner};\n\
         {revokes}",
        apps = apps.join(", "),
    )
}

/// The role settings `Platform::prepare` gives an application role: the pinned search
/// path, and with a sealed binding, no statement text visible to the role's other
/// sessions (`pg_stat_activity`, `pg_stat_statements`), where a binding's proof could be
/// read and replayed on that session.
pub(crate) fn application_role_settings(sealed: bool) -> Vec<(&'static str, &'static str)> {
    let mut settings = vec![("search_path", super::APPLICATION_SEARCH_PATH)];
    if sealed {
        settings.push(("track_activities", "off"));
        settings.push(("pg_stat_statements.track_utility", "off"));
    }
    settings
}

/// `ALTER ROLE .. RESET ALL` and the settings, for one application role.
pub(crate) fn application_role_sql(role: &str, sealed: bool) -> String {
    let mut sql = format!("ALTER ROLE {} RESET ALL;\n", ident(role));
    for (name, value) in application_role_settings(sealed) {
        let value = if name == "search_path" {
            value.to_owned()
        } else {
            literal(value)
        };
        sql.push_str(&format!(
            "ALTER ROLE {} SET {name} = {value};\n",
            ident(role)
        ));
    }
    sql
}
