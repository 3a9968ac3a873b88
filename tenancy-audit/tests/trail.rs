//! The trail on every backend, against the real test PostgreSQL server and SQLite files:
//! entries share the business transaction, are append-only even for the owner, never
//! fork or skip under concurrent writers, and reconstruct a record's history.

use serde_json::json;
use tenancy_audit::{AuditTrail, ErrorKind, Event, GENESIS_HASH, verify_trail};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migration, Migrations, TenantDb, rls};
use tenancy_test::db::{Backend, TestDb};

fn migrations() -> Migrations {
    let row_level = format!(
        "CREATE TABLE capas (tenant_id text NOT NULL, id bigint NOT NULL, status text NOT NULL, \
         PRIMARY KEY (tenant_id, id));\n{}",
        rls::row_level_policy("capas").expect("a plain table name")
    );
    Migrations::new(vec![
        Migration::new(1, "capas")
            .postgres("CREATE TABLE capas (id bigint PRIMARY KEY, status text NOT NULL)")
            .row_level(&row_level)
            .sqlite("CREATE TABLE capas (id integer PRIMARY KEY, status text NOT NULL)"),
        tenancy_audit::migration(2),
    ])
    .expect("valid migrations")
}

fn trail() -> AuditTrail {
    AuditTrail::new().regulated("capa").record_reads("capa")
}

/// Every placement the trail must work on.
async fn placements() -> Vec<(TestDb, IsolationMode)> {
    let mut out = Vec::new();
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        out.push((
            TestDb::new(Backend::Postgres, migrations()).await,
            isolation,
        ));
    }
    out.push((
        TestDb::new(Backend::Sqlite, migrations()).await,
        IsolationMode::Database,
    ));
    out
}

/// Creates CAPA `id` and changes its status, each change audited in its own transaction.
async fn create_and_update(db: &TenantDb, ctx: &TenantContext, id: i64) {
    let trail = trail();
    let mut tx = db.transaction(ctx).await.unwrap();
    tx.execute(
        "INSERT INTO capas (id, status) VALUES ($1, 'open')",
        &[id.into()],
    )
    .await
    .unwrap();
    trail
        .record(
            &mut tx,
            ctx,
            Event::create("capa", &id.to_string()).new_value(json!({"status": "open"})),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.transaction(ctx).await.unwrap();
    tx.execute(
        "UPDATE capas SET status = 'closed' WHERE id = $1",
        &[id.into()],
    )
    .await
    .unwrap();
    trail
        .record(
            &mut tx,
            ctx,
            Event::status_change("capa", &id.to_string())
                .old_value(json!({"status": "open"}))
                .new_value(json!({"status": "closed"}))
                .reason("effectiveness check passed"),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_reconstructed_and_failed_transactions_leave_nothing() {
    for (fixture, isolation) in placements().await {
        let what = format!("{:?} {isolation}", fixture.backend());
        let ctx = fixture.tenant("acme", isolation).await;
        let db = &fixture.db;
        create_and_update(db, &ctx, 7).await;

        // The record's whole history, rebuilt from its entries, ends at the stored row.
        let mut tx = db.transaction(&ctx).await.unwrap();
        let history = trail().history(&mut tx, "capa", "7").await.unwrap();
        let status: String = tx
            .query_one("SELECT status FROM capas WHERE id = 7", &[])
            .await
            .unwrap()
            .get("status");
        tx.commit().await.unwrap();
        assert_eq!(history.len(), 2, "{what}");
        assert_eq!(history[0].action, "create");
        assert_eq!(history[0].prev_hash, GENESIS_HASH);
        assert_eq!(history[1].prev_hash, history[0].hash, "{what}: chained");
        assert_eq!((history[0].seq, history[1].seq), (1, 2), "{what}");
        let mut record = serde_json::Value::Null;
        for entry in &history {
            assert_eq!(
                entry
                    .old_value
                    .as_deref()
                    .map(|v| serde_json::from_str(v).unwrap()),
                (!record.is_null()).then(|| record.clone()),
                "{what}: each entry's old value is the previous new value"
            );
            record = serde_json::from_str(entry.new_value.as_deref().unwrap()).unwrap();
        }
        assert_eq!(record, json!({ "status": status }), "{what}");
        let last = &history[1];
        assert_eq!(last.tenant, ctx.tenant().as_str());
        assert_eq!(last.actor_id, ctx.actor().id());
        assert_eq!(last.actor_name, ctx.actor().display_name());
        assert_eq!(last.reason.as_deref(), Some("effectiveness check passed"));
        assert_eq!(
            last.request_id.as_deref(),
            Some(ctx.correlation_id().as_str())
        );
        assert!(
            last.recorded_at.ends_with('Z') && last.recorded_at >= history[0].recorded_at,
            "{what}: {}",
            last.recorded_at
        );

        // A business transaction that fails after its audit entry leaves neither.
        let mut tx = db.transaction(&ctx).await.unwrap();
        tx.execute("INSERT INTO capas (id, status) VALUES (8, 'open')", &[])
            .await
            .unwrap();
        trail()
            .record(&mut tx, &ctx, Event::create("capa", "8"))
            .await
            .unwrap();
        let duplicate = tx
            .execute("INSERT INTO capas (id, status) VALUES (7, 'again')", &[])
            .await
            .unwrap_err();
        assert!(duplicate.kind().is_constraint(), "{what}: {duplicate:?}");
        tx.rollback().await.unwrap();
        // A dropped transaction (a cancelled request) leaves nothing either.
        {
            let mut tx = db.transaction(&ctx).await.unwrap();
            trail()
                .record(&mut tx, &ctx, Event::create("capa", "9"))
                .await
                .unwrap();
        }
        // A regulated change without a reason is refused before anything is written.
        let mut tx = db.transaction(&ctx).await.unwrap();
        let refused = trail()
            .record(&mut tx, &ctx, Event::update("capa", "7"))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidEvent);
        // Reads of capas are recorded; reads of others are not.
        assert!(
            trail()
                .read(&mut tx, &ctx, "capa", "7")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            trail()
                .read(&mut tx, &ctx, "memo", "1")
                .await
                .unwrap()
                .is_none()
        );
        let (head, _) = trail().head(&mut tx).await.unwrap();
        assert_eq!(
            head, 3,
            "{what}: entries 1, 2 and the read; nothing of 8 or 9"
        );
        let report = verify_trail(&mut tx).await.unwrap();
        assert!(report.is_ok(), "{what}: {report}");
        assert_eq!(report.entries, 3);
        tx.commit().await.unwrap();

        // Another tenant's transaction cannot be used to write this tenant's entry.
        let other = fixture.tenant("other", isolation).await;
        let mut tx = db.transaction(&other).await.unwrap();
        let refused = trail()
            .record(&mut tx, &ctx, Event::create("capa", "1"))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidEvent);
        assert!(
            trail()
                .history(&mut tx, "capa", "7")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            trail().head(&mut tx).await.unwrap().0,
            0,
            "{what}: no shared head"
        );
        tx.rollback().await.unwrap();

        if isolation == IsolationMode::Row {
            // The platform can still drop a row-level tenant, trail and all.
            create_and_update(db, &other, 1).await;
            let op = tenancy_test::operator();
            db.platform().suspend(&op, other.tenant()).await.unwrap();
            db.platform()
                .drop_tenant(&op, other.tenant())
                .await
                .unwrap();
            let su = fixture
                .superuser(&db.naming().platform_sql_name("shared"))
                .await;
            let left: i64 = su
                .query_one(
                    "SELECT count(*) FROM tenancy_audit WHERE tenant_id = $1",
                    &[&other.tenant().as_str()],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(left, 0, "the dropped tenant's entries are gone");
            let kept: i64 = su
                .query_one(
                    "SELECT count(*) FROM tenancy_audit WHERE tenant_id = $1",
                    &[&ctx.tenant().as_str()],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(kept, 3, "the other tenants' entries are kept");
        }
    }
}

const TAMPERING: [&str; 5] = [
    "UPDATE tenancy_audit SET reason = 'rewritten'",
    "DELETE FROM tenancy_audit WHERE seq = 1",
    "TRUNCATE tenancy_audit",
    "DELETE FROM tenancy_audit_head",
    "UPDATE tenancy_audit_head SET seq = 0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_is_append_only_even_for_the_owner() {
    for (fixture, isolation) in placements().await {
        let what = format!("{:?} {isolation}", fixture.backend());
        let ctx = fixture.tenant("acme", isolation).await;
        let db = &fixture.db;
        create_and_update(db, &ctx, 1).await;
        // The application, through its tenant's transaction.
        for sql in TAMPERING {
            let mut tx = db.transaction(&ctx).await.unwrap();
            let refused = tx.batch(sql).await;
            assert!(refused.is_err(), "{what}: the application ran {sql}");
            tx.rollback().await.unwrap();
        }
        if fixture.backend() == Backend::Postgres {
            // The owner and even the superuser: the triggers fire for them too.
            let naming = db.naming();
            let (database, schema) = match isolation {
                IsolationMode::Database => (naming.sql_name(ctx.tenant()), None),
                IsolationMode::Schema => (
                    naming.platform_sql_name("shared"),
                    Some(naming.sql_name(ctx.tenant())),
                ),
                _ => (naming.platform_sql_name("shared"), None),
            };
            let su = fixture.superuser(&database).await;
            if let Some(schema) = &schema {
                su.batch_execute(&format!("SET search_path = {schema}"))
                    .await
                    .unwrap();
            }
            for sql in TAMPERING {
                let error = su.batch_execute(sql).await.unwrap_err();
                let message = format!("{:?}", error);
                assert!(
                    message.contains("append-only"),
                    "{what}: the superuser's {sql} was not refused by the trigger: {message}"
                );
            }
        }
        let mut tx = db.transaction(&ctx).await.unwrap();
        let report = verify_trail(&mut tx).await.unwrap();
        assert!(report.is_ok() && report.entries == 2, "{what}: {report}");
        tx.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_fork_or_skip() {
    const WRITERS: i64 = 6;
    const EACH: i64 = 8;
    for (fixture, isolation) in placements().await {
        let what = format!("{:?} {isolation}", fixture.backend());
        let ctx = fixture.tenant("busy", isolation).await;
        // A second row-level tenant writing at the same time shares the tables, not the chain.
        let neighbour = fixture.tenant("neighbour", isolation).await;
        let db = &fixture.db;
        let writer = |ctx: TenantContext, n: i64| async move {
            for i in 0..EACH {
                let id = n * 100 + i;
                let mut tx = db.transaction(&ctx).await.unwrap();
                tx.execute(
                    "INSERT INTO capas (id, status) VALUES ($1, 'open')",
                    &[id.into()],
                )
                .await
                .unwrap();
                trail()
                    .record(&mut tx, &ctx, Event::create("capa", &id.to_string()))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        };
        let mut writers: Vec<_> = (0..WRITERS).map(|n| writer(ctx.clone(), n)).collect();
        writers.push(writer(neighbour.clone(), 99));
        futures::future::join_all(writers).await;
        for (tenant, entries) in [(&ctx, WRITERS * EACH), (&neighbour, EACH)] {
            let mut tx = db.transaction(tenant).await.unwrap();
            let report = verify_trail(&mut tx).await.unwrap();
            tx.commit().await.unwrap();
            assert!(report.is_ok(), "{what}: {report}");
            assert_eq!(report.entries, entries as u64, "{what}");
            assert_eq!(report.seq_range, Some((1, entries as u64)), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_live_trail_is_reported_at_its_first_bad_entry() {
    let fixture = TestDb::new(Backend::Postgres, migrations()).await;
    let ctx = fixture.tenant("acme", IsolationMode::Database).await;
    for id in 1..=3 {
        create_and_update(&fixture.db, &ctx, id).await;
    }
    // Someone with the superuser's access turns the triggers off and rewrites entry 4.
    let su = fixture
        .superuser(&fixture.db.naming().sql_name(ctx.tenant()))
        .await;
    su.batch_execute(
        "ALTER TABLE tenancy_audit DISABLE TRIGGER USER; \
         UPDATE tenancy_audit SET reason = 'no reason' WHERE seq = 4; \
         ALTER TABLE tenancy_audit ENABLE TRIGGER USER;",
    )
    .await
    .unwrap();
    let mut tx = fixture.db.transaction(&ctx).await.unwrap();
    let report = verify_trail(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(report.first_bad_seq(), Some(4), "{report}");
    // And deletes entry 5 after restoring nothing: the gap is reported.
    su.batch_execute(
        "ALTER TABLE tenancy_audit DISABLE TRIGGER USER; \
         UPDATE tenancy_audit SET reason = 'effectiveness check passed' WHERE seq = 4; \
         DELETE FROM tenancy_audit WHERE seq = 5; \
         ALTER TABLE tenancy_audit ENABLE TRIGGER USER;",
    )
    .await
    .unwrap();
    let mut tx = fixture.db.transaction(&ctx).await.unwrap();
    let report = verify_trail(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(report.first_bad_seq(), Some(5), "{report}");
}
