//! The tables of the trail, as a [`Migration`] the application adds to its own list, and
//! the statements that read and append them.
//!
//! Each tenant's trail is two tables in its own database, schema or file:
//! `tenancy_audit` (the entries) and `tenancy_audit_head` (one row per tenant: the last
//! sequence number and hash). An append first locks the head row, so concurrent writers of
//! one tenant take turns and the chain never forks; the entry and the new head are written
//! in the caller's transaction, so a rolled-back change leaves neither, and a number is
//! never skipped. Row-level tenants share both tables, fenced by row-level security like
//! every other shared table.

use tenancy_db::{Migration, rls};

use crate::entry::GENESIS_HASH;

/// The columns of an entry, in the order [`crate::trail`] reads them.
pub(crate) const COLUMNS: &str = "seq, recorded_at, tenant, actor_id, actor_name, action, \
    record_type, record_id, old_value, new_value, reason, signature_meaning, request_id, \
    prev_hash, hash";

const ENTRY_COLUMNS: &str = "seq bigint NOT NULL CHECK (seq > 0), recorded_at text COLLATE \"C\" NOT NULL, \
    tenant text NOT NULL, actor_id text NOT NULL, actor_name text NOT NULL, \
    action text NOT NULL, record_type text NOT NULL, record_id text NOT NULL, \
    old_value text, new_value text, reason text, signature_meaning text, request_id text, \
    prev_hash text NOT NULL, hash text NOT NULL";

/// Refuses every UPDATE, DELETE and TRUNCATE, whoever runs it (the table owner too:
/// triggers fire for the owner, unlike privileges). The one exception, on the shared
/// tables of row-level tenants only, is the platform dropping a tenant: the owner role,
/// having set `tenancy.dropping_tenant` to that tenant in its own transaction, may delete
/// that tenant's rows (`Platform::drop_tenant` does). A tenant's own trail in a database
/// or schema goes with its database or schema.
fn refuse_function(allow_drop: bool) -> String {
    let drop_exception = if allow_drop {
        "IF TG_OP = 'DELETE' THEN \
           IF OLD.tenant_id = current_setting('tenancy.dropping_tenant', true) \
              AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class \
                                  WHERE oid = TG_RELID) THEN RETURN OLD; END IF; END IF; "
    } else {
        ""
    };
    format!(
        "CREATE OR REPLACE FUNCTION tenancy_audit_refuse() RETURNS trigger LANGUAGE plpgsql \
         AS $tenancy_audit$ BEGIN {drop_exception}\
         IF TG_TABLE_NAME = 'tenancy_audit_head' AND TG_OP = 'UPDATE' THEN \
            IF NEW.seq IN (OLD.seq, OLD.seq + 1) THEN RETURN NEW; END IF; END IF; \
         RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', \
           TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; \
         END $tenancy_audit$;\n"
    )
}

/// Triggers, and the privileges of everyone but the owner reduced to what appending needs.
const PG_GUARDS: &str = "
CREATE TRIGGER tenancy_audit_append_only BEFORE UPDATE OR DELETE ON tenancy_audit
    FOR EACH ROW EXECUTE FUNCTION tenancy_audit_refuse();
CREATE TRIGGER tenancy_audit_no_truncate BEFORE TRUNCATE ON tenancy_audit
    FOR EACH STATEMENT EXECUTE FUNCTION tenancy_audit_refuse();
CREATE TRIGGER tenancy_audit_head_guard BEFORE UPDATE OR DELETE ON tenancy_audit_head
    FOR EACH ROW EXECUTE FUNCTION tenancy_audit_refuse();
CREATE TRIGGER tenancy_audit_head_no_truncate BEFORE TRUNCATE ON tenancy_audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION tenancy_audit_refuse();
REVOKE UPDATE, DELETE, TRUNCATE ON tenancy_audit FROM PUBLIC;
REVOKE DELETE, TRUNCATE ON tenancy_audit_head FROM PUBLIC;
DO $tenancy_audit$ DECLARE grantee text; BEGIN
  FOR grantee IN SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.oid IN ('tenancy_audit'::regclass, 'tenancy_audit_head'::regclass)
                   AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON tenancy_audit FROM %I', grantee);
    EXECUTE format('REVOKE DELETE, TRUNCATE ON tenancy_audit_head FROM %I', grantee);
  END LOOP;
END $tenancy_audit$;
";

fn postgres() -> String {
    format!(
        "CREATE TABLE tenancy_audit_head (singleton boolean PRIMARY KEY DEFAULT true \
         CHECK (singleton), seq bigint NOT NULL, hash text NOT NULL);\n\
         INSERT INTO tenancy_audit_head (seq, hash) VALUES (0, '{GENESIS_HASH}');\n\
         CREATE TABLE tenancy_audit ({ENTRY_COLUMNS}, PRIMARY KEY (seq));\n\
         CREATE INDEX tenancy_audit_record ON tenancy_audit (record_type, record_id, seq);\n\
         CREATE INDEX tenancy_audit_time ON tenancy_audit (recorded_at);\n\
         {}{PG_GUARDS}",
        refuse_function(false)
    )
}

fn row_level() -> String {
    format!(
        "CREATE TABLE tenancy_audit_head (tenant_id text NOT NULL PRIMARY KEY, \
         seq bigint NOT NULL, hash text NOT NULL);\n{}\
         CREATE TABLE tenancy_audit (tenant_id text NOT NULL, {ENTRY_COLUMNS}, \
         CHECK (tenant = tenant_id), PRIMARY KEY (tenant_id, seq));\n{}\
         CREATE INDEX tenancy_audit_record ON tenancy_audit \
         (tenant_id, record_type, record_id, seq);\n\
         CREATE INDEX tenancy_audit_time ON tenancy_audit (tenant_id, recorded_at);\n\
         {}{PG_GUARDS}",
        rls::row_level_policy("tenancy_audit_head").expect("a plain table name"),
        rls::row_level_policy("tenancy_audit").expect("a plain table name"),
        refuse_function(true)
    )
}

fn sqlite() -> String {
    let refuse = |name: &str, when: &str, table: &str, what: &str| {
        format!(
            "CREATE TRIGGER {name} BEFORE {when} ON {table} BEGIN SELECT RAISE(ABORT, \
             'the audit trail is append-only: {what} on {table} is refused'); END;\n"
        )
    };
    format!(
        "CREATE TABLE tenancy_audit_head (singleton integer PRIMARY KEY DEFAULT 1 \
         CHECK (singleton = 1), seq integer NOT NULL, hash text NOT NULL);\n\
         INSERT INTO tenancy_audit_head (seq, hash) VALUES (0, '{GENESIS_HASH}');\n\
         CREATE TABLE tenancy_audit ({}, PRIMARY KEY (seq));\n\
         CREATE INDEX tenancy_audit_record ON tenancy_audit (record_type, record_id, seq);\n\
         CREATE INDEX tenancy_audit_time ON tenancy_audit (recorded_at);\n\
         {}{}{}\
         CREATE TRIGGER tenancy_audit_head_guard BEFORE UPDATE ON tenancy_audit_head \
         WHEN NEW.seq NOT IN (OLD.seq, OLD.seq + 1) BEGIN SELECT RAISE(ABORT, \
         'the audit trail is append-only: UPDATE on tenancy_audit_head is refused'); END;\n",
        ENTRY_COLUMNS
            .replace("bigint", "integer")
            .replace(" COLLATE \"C\"", ""),
        refuse(
            "tenancy_audit_no_update",
            "UPDATE",
            "tenancy_audit",
            "UPDATE"
        ),
        refuse(
            "tenancy_audit_no_delete",
            "DELETE",
            "tenancy_audit",
            "DELETE"
        ),
        refuse(
            "tenancy_audit_head_no_delete",
            "DELETE",
            "tenancy_audit_head",
            "DELETE"
        ),
    )
}

/// The migration that creates the trail, in every dialect, as `version` of the
/// application's own list.
///
/// ```
/// use tenancy_db::{Migration, Migrations};
///
/// let migrations = Migrations::new(vec![
///     Migration::new(1, "records").sqlite("CREATE TABLE records (id integer PRIMARY KEY)"),
///     tenancy_audit::migration(2),
/// ])?;
/// # Ok::<(), tenancy_db::Error>(())
/// ```
pub fn migration(version: u32) -> Migration {
    Migration::new(version, "tenancy-audit trail")
        .postgres(&postgres())
        .row_level(&row_level())
        .sqlite(&sqlite())
}

/// The SQL of the database clock, in UTC, as RFC 3339 text.
pub(crate) fn now(postgres: bool) -> &'static str {
    if postgres {
        "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    } else {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    }
}
