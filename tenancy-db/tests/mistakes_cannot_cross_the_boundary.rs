//! Ordinary mistakes of an application's own developers cannot carry one tenant's data or
//! state to another: a view or a materialized view over a fenced table, a rule, a
//! `SECURITY DEFINER` function, a policy that forgets the tenant, a session-level `SET`,
//! `PREPARE` or `LISTEN` left on a pooled connection, a role's settings rewritten from a
//! transaction, a statement timeout lifted for a long query, a SQLite statement whose
//! request was cancelled, and rows kept in a fenced table outside `public`.

mod common;

use std::time::{Duration, Instant};

use common::{add_record, all_titles, records};
use futures::FutureExt;
use tenancy_core::{IsolationMode, Placement, TenantContext};
use tenancy_db::{ErrorKind, Migration, Migrations, TenantDb, rls};
use tenancy_test::db::{Backend, TestDb, test_pool};
use tenancy_test::{operator, unique_tenant};

/// The records table, and then `extra` (row-level dialect; the other dialects get a no-op).
fn records_and(extra: &str) -> Migrations {
    let mut list: Vec<Migration> = records().iter().cloned().collect();
    list.push(
        Migration::new(2, "extra")
            .postgres("SELECT 1")
            .row_level(extra)
            .sqlite("SELECT 1"),
    );
    Migrations::new(list).unwrap()
}

/// A superuser session in the fixture's shared database, acting as its owner role: what a
/// migration runs as.
async fn as_owner(fixture: &TestDb) -> tenancy_test::db::SuperuserClient {
    let naming = fixture.db.naming();
    let shared = fixture.superuser(&naming.platform_sql_name("shared")).await;
    shared
        .batch_execute(&format!(
            "SET ROLE \"{}\"",
            naming.platform_sql_name("owner")
        ))
        .await
        .unwrap();
    shared
}

async fn findings(db: &TenantDb) -> String {
    match db.platform().check_isolation(&operator()).await {
        Ok(_) => String::new(),
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Isolation, "{error}");
            error.to_string()
        }
    }
}

#[tokio::test]
async fn views_read_as_their_invoker_and_cannot_be_turned_back() {
    let fixture = TestDb::new(
        Backend::Postgres,
        records_and("CREATE VIEW open_records AS SELECT id, title FROM records"),
    )
    .await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    add_record(&fixture.db, &acme, 1, "Acme CAPA").await;
    add_record(&fixture.db, &beta, 1, "Beta CAPA").await;

    let read_view = |ctx: TenantContext| {
        let db = fixture.db.clone();
        async move {
            let mut tx = db.transaction(&ctx).await.unwrap();
            let rows = tx
                .query("SELECT title FROM open_records ORDER BY title", &[])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            rows.iter()
                .map(|row| row.get::<String>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read_view(acme.clone()).await, ["Acme CAPA"]);
    assert_eq!(read_view(beta.clone()).await, ["Beta CAPA"]);
    assert_eq!(findings(&fixture.db).await, "");

    // Turning it back is refused, whoever asks.
    let owner = as_owner(&fixture).await;
    let refused = owner
        .batch_execute("ALTER VIEW open_records SET (security_invoker = false)")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("must keep security_invoker")
            || format!("{refused:?}").contains("must keep security_invoker"),
        "{refused:?}"
    );

    // With the guard disabled by hand, the view reads as its owner: every tenant's rows.
    // The check names both.
    let shared = fixture
        .superuser(&fixture.db.naming().platform_sql_name("shared"))
        .await;
    shared
        .batch_execute(
            "ALTER EVENT TRIGGER tenancy_guard DISABLE; \
             ALTER VIEW open_records SET (security_invoker = false)",
        )
        .await
        .unwrap();
    assert_eq!(read_view(acme.clone()).await, ["Acme CAPA", "Beta CAPA"]);
    let found = findings(&fixture.db).await;
    assert!(
        found.contains("view open_records runs with its owner's privileges"),
        "{found}"
    );
    assert!(
        found.contains("tenancy_guard is missing or disabled"),
        "{found}"
    );
    shared
        .batch_execute(
            "ALTER VIEW open_records SET (security_invoker = true); \
             ALTER EVENT TRIGGER tenancy_guard ENABLE",
        )
        .await
        .unwrap();
    assert_eq!(findings(&fixture.db).await, "");
}

#[tokio::test]
async fn materialized_views_over_fenced_tables_and_rules_are_refused() {
    // A migration that makes one fails, for the first tenant that brings the shared tables
    // up to date, and leaves nothing of it behind.
    let fixture = TestDb::new(
        Backend::Postgres,
        records_and("CREATE MATERIALIZED VIEW record_titles AS SELECT title FROM records"),
    )
    .await;
    let refused = fixture
        .db
        .platform()
        .create_tenant(
            &operator(),
            unique_tenant("acme"),
            "Acme",
            Placement::new(fixture.server().clone(), IsolationMode::Row),
        )
        .await
        .unwrap_err();
    let chain = format!("{refused} {refused:?}");
    assert!(
        chain.contains("record_titles reads fenced table records"),
        "{chain}"
    );

    // Over reference data that no tenant owns, a materialized view is fine; a rule is not.
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    fixture.tenant("acme", IsolationMode::Row).await;
    let owner = as_owner(&fixture).await;
    owner
        .batch_execute(
            "CREATE TABLE countries (code text PRIMARY KEY); \
             CREATE MATERIALIZED VIEW country_codes AS SELECT code FROM countries",
        )
        .await
        .unwrap();
    let rule = owner
        .batch_execute("CREATE RULE keep AS ON INSERT TO records DO ALSO NOTHING")
        .await
        .unwrap_err();
    assert!(
        format!("{rule:?}").contains("runs with the table owner's privileges"),
        "{rule:?}"
    );

    // Made while the guard was off, a materialized view over records is a finding.
    let shared = fixture
        .superuser(&fixture.db.naming().platform_sql_name("shared"))
        .await;
    shared
        .batch_execute("ALTER EVENT TRIGGER tenancy_guard DISABLE")
        .await
        .unwrap();
    owner
        .batch_execute("CREATE MATERIALIZED VIEW leak AS SELECT title FROM records")
        .await
        .unwrap();
    shared
        .batch_execute("ALTER EVENT TRIGGER tenancy_guard ENABLE")
        .await
        .unwrap();
    let found = findings(&fixture.db).await;
    assert!(
        found.contains("materialized view leak reads fenced table records"),
        "{found}"
    );
    assert!(!found.contains("country_codes"), "{found}");
}

#[tokio::test]
async fn definer_functions_and_policies_that_forget_the_tenant_are_findings() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    add_record(&fixture.db, &beta, 1, "Beta CAPA").await;
    let owner = as_owner(&fixture).await;

    // A helper a migration might write: it runs as its owner, who sees every row.
    owner
        .batch_execute(
            "CREATE FUNCTION every_title() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER \
             AS 'SELECT title FROM records'",
        )
        .await
        .unwrap();
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let leaked = tx.query("SELECT every_title()", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(leaked.len(), 1, "the threat the check exists for");
    let found = findings(&fixture.db).await;
    assert!(
        found.contains("SECURITY DEFINER function every_title()"),
        "{found}"
    );
    assert!(!found.contains("bound_tenant"), "{found}");
    owner
        .batch_execute("DROP FUNCTION every_title()")
        .await
        .unwrap();

    // Policies read from their stored expression: what compares tenant_id with the bound
    // tenant passes, alone or with more conditions; anything that can let another
    // tenant's row through is named, however it reads.
    let bound = "(SELECT tenancy.bound_tenant())";
    let tables = [
        ("ok_plain", format!("USING (tenant_id = {bound})"), true),
        (
            "ok_narrower",
            format!("USING (tenant_id = {bound} AND length(x) > 0)"),
            true,
        ),
        (
            "or_true",
            format!("USING (tenant_id = {bound} OR true)"),
            false,
        ),
        (
            "old_setting",
            "USING (tenant_id = current_setting('app.tenant_id', true))".to_owned(),
            false,
        ),
        (
            "other_column",
            format!("USING (x = {bound}) WITH CHECK (tenant_id = {bound})"),
            false,
        ),
        (
            "loose_check",
            format!("USING (tenant_id = {bound}) WITH CHECK (true)"),
            false,
        ),
        (
            "name_in_text",
            "USING ('tenant_id = (SELECT tenancy.bound_tenant())' IS NOT NULL)".to_owned(),
            false,
        ),
    ];
    for (table, policy, _) in &tables {
        owner
            .batch_execute(&format!(
                "CREATE TABLE {table} (tenant_id text NOT NULL, x text); \
                 ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; \
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY; \
                 CREATE POLICY p ON {table} {policy}"
            ))
            .await
            .unwrap();
    }
    let found = findings(&fixture.db).await;
    for (table, _, holds) in &tables {
        let named = found.contains(&format!("policy p on {table} lets rows through"));
        assert_eq!(named, !holds, "{table}: {found}");
    }
}

/// What the next borrower of a shared connection sees, and which server process it is.
async fn session_as_lent(db: &TenantDb, ctx: &TenantContext) -> (String, i32) {
    let mut tx = db.transaction(ctx).await.unwrap();
    let row = tx
        .query_one(
            "SELECT concat_ws(' | ', current_setting('search_path'), \
             current_setting('statement_timeout'), \
             current_setting('idle_in_transaction_session_timeout'), \
             (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
             (SELECT count(*) FROM pg_listening_channels()), \
             coalesce(split_part(current_setting('app.tenant_id', true), ':', 1), ''), \
             session_user, current_user) AS state, pg_backend_pid() AS pid",
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (row.get("state"), row.get("pid"))
}

#[tokio::test]
async fn session_state_never_reaches_the_next_borrower() {
    // One connection per shared pool: a connection that went back to the pool is the one
    // the next transaction gets.
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = test_pool();
        pool.max_connections_per_pool = 1;
        *config = config.clone().pool(&pool);
    })
    .await;
    let row_a = fixture.tenant("row-a", IsolationMode::Row).await;
    let row_b = fixture.tenant("row-b", IsolationMode::Row).await;
    let schema_a = fixture.tenant("schema-a", IsolationMode::Schema).await;
    let schema_role = fixture.db.naming().sql_name(schema_a.tenant());

    let leftovers = [
        format!("SET ROLE NONE; SET ROLE \"{schema_role}\""),
        "SET search_path TO pg_catalog".to_owned(),
        "SET statement_timeout = 0".to_owned(),
        "SET idle_in_transaction_session_timeout = 0".to_owned(),
        "PREPARE leftover AS SELECT 1".to_owned(),
        "LISTEN leftover".to_owned(),
        "SELECT set_config('app.tenant_id', 'someone-else', false)".to_owned(),
    ];
    for (writer, reader) in [(&row_a, &row_b), (&schema_a, &row_b), (&row_b, &schema_a)] {
        let (clean, _) = session_as_lent(&fixture.db, reader).await;
        for leftover in &leftovers {
            for commit in [true, false] {
                let mut tx = fixture.db.transaction(writer).await.unwrap();
                let before: i32 = tx
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                tx.batch(leftover).await.unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
                let (seen, pid) = session_as_lent(&fixture.db, reader).await;
                let context = format!(
                    "{leftover} by {} ({}), then {}",
                    writer.tenant(),
                    if commit { "committed" } else { "rolled back" },
                    reader.tenant()
                );
                assert_eq!(seen, clean, "{context}");
                if commit {
                    assert_ne!(pid, before, "{context}: the connection was lent again");
                }
            }
        }
    }

    // Session-level advisory locks would stay with the pooled connection: refused.
    let mut tx = fixture.db.transaction(&row_a).await.unwrap();
    let refused = tx
        .query("SELECT pg_advisory_lock(42)", &[])
        .await
        .unwrap_err();
    assert_eq!(refused.sql_state(), Some("42501"), "{refused}");
    tx.rollback().await.unwrap();
    let mut tx = fixture.db.transaction(&row_a).await.unwrap();
    tx.batch("SELECT pg_advisory_xact_lock(42)")
        .await
        .expect("transaction-level locks end with the transaction");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_role_setting_written_by_a_tenant_is_refused_reported_and_reset() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let row = fixture.tenant("row", IsolationMode::Row).await;
    let schema = fixture.tenant("schema", IsolationMode::Schema).await;
    add_record(&fixture.db, &schema, 1, "Schema tenant's CAPA").await;
    let schema_role = fixture.db.naming().sql_name(schema.tenant());

    // Any role may change its own settings: every new session of the application role
    // would start acting as the schema tenant.
    let mut tx = fixture.db.transaction(&row).await.unwrap();
    tx.batch(&format!(
        "ALTER ROLE CURRENT_USER SET role = '{schema_role}'"
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // A new node opens new sessions: each is refused before it is lent.
    let node = fixture.reopen(records());
    let refused = node.transaction(&row).await.unwrap_err();
    let chain = tenancy_test::error_chain(&refused);
    assert!(
        chain.contains("acts as role") && chain.contains("Platform::prepare"),
        "{chain}"
    );
    assert!(
        findings(&node).await.contains("carries settings"),
        "the check names the setting"
    );

    node.platform().prepare(&operator()).await.unwrap();
    // After a failed connection attempt the pool fails fast for `retry_after_failure`.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(all_titles(&node, &row).await.is_empty());
    assert_eq!(findings(&node).await, "");
}

#[tokio::test]
async fn a_statement_that_lifts_the_timeout_is_stopped_anyway() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        *config = config
            .clone()
            .statement_timeout(Some(Duration::from_millis(300)));
    })
    .await;
    for isolation in [IsolationMode::Row, IsolationMode::Database] {
        let ctx = fixture
            .tenant(&format!("slow-{isolation}"), isolation)
            .await;
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let started = Instant::now();
        let stopped = tx
            .batch("SET LOCAL statement_timeout = 0; SELECT pg_sleep(5)")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{isolation}: ran {:?}",
            started.elapsed()
        );
        assert!(
            tenancy_test::error_chain(&stopped).contains("statement timeout"),
            "{stopped}"
        );
        let refused = tx.commit().await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Transaction, "{refused}");

        // The sleeper was cancelled on the server, not left to run.
        let admin = fixture.superuser("postgres").await;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let running: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' \
                     AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if running == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{isolation}: still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(all_titles(&fixture.db, &ctx).await.is_empty());
    }
}

#[tokio::test]
async fn a_cancelled_sqlite_statement_cannot_commit() {
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Database).await;
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    // Polled once, then dropped: the insert runs on the connection's thread anyway.
    // Slow enough (a count to two million first) to be still running when dropped.
    let insert = tx.execute(
        "INSERT INTO records (id, title) SELECT 1, 'half-done' FROM \
         (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000000) \
          SELECT max(n) FROM c)",
        &[],
    );
    let polled = insert.now_or_never();
    assert!(
        polled.is_none(),
        "the insert finished in one poll: {polled:?}"
    );
    let refused = tx.commit().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Transaction, "{refused}");
    assert!(all_titles(&fixture.db, &acme).await.is_empty());
}

#[tokio::test]
async fn dropping_a_row_level_tenant_clears_fenced_tables_in_every_schema() {
    let archive = format!(
        "CREATE SCHEMA archive; \
         CREATE TABLE archive.records (tenant_id text NOT NULL, id bigint NOT NULL, \
         PRIMARY KEY (tenant_id, id)); {} \
         GRANT USAGE ON SCHEMA archive TO PUBLIC; \
         GRANT SELECT, INSERT ON archive.records TO PUBLIC",
        rls::row_level_policy("archive.records").unwrap()
    );
    let fixture = TestDb::new(Backend::Postgres, records_and(&archive)).await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    for ctx in [&acme, &beta] {
        add_record(&fixture.db, ctx, 1, "current").await;
        let mut tx = fixture.db.transaction(ctx).await.unwrap();
        tx.execute("INSERT INTO archive.records (id) VALUES (7)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let platform = fixture.db.platform();
    platform.suspend(&operator(), acme.tenant()).await.unwrap();
    platform
        .drop_tenant(&operator(), acme.tenant())
        .await
        .unwrap();
    let owner = as_owner(&fixture).await;
    for table in ["public.records", "archive.records"] {
        let left: Vec<String> = owner
            .query(&format!("SELECT DISTINCT tenant_id FROM {table}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(left, [beta.tenant().as_str()], "{table}");
    }
}
