//! `BEGIN` and the tenant's binding are not sent on their own: they go out with the
//! transaction's first statement, pipelined. If the binding fails, that statement must not
//! run at all, not even as the application role with no tenant bound.

mod common;

use common::records;
use tenancy_core::IsolationMode;
use tenancy_db::ErrorKind;
use tenancy_test::db::TestDb;

#[tokio::test]
async fn a_failed_binding_refuses_the_statement_sent_with_it() {
    let fixture = TestDb::new(tenancy_test::db::Backend::Postgres, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Schema).await;
    let naming = fixture.db.naming();
    let admin = fixture.superuser(&naming.platform_sql_name("shared")).await;
    // A statement with a side effect any role may cause, visible from outside its session.
    // It runs once while the binding works, so that the connection has it prepared: a
    // prepared statement is written in the same poll as `BEGIN`, with nothing to wait for.
    let set_name = "SELECT set_config('application_name', $1, false)";
    let mut warm = fixture.db.transaction(&acme).await.unwrap();
    warm.query(set_name, &["tenancy".into()]).await.unwrap();
    warm.commit().await.unwrap();
    // The application role can no longer become acme's role: `SET LOCAL ROLE` will fail.
    admin
        .batch_execute(&format!(
            "REVOKE \"{}\" FROM \"{}\"",
            naming.sql_name(acme.tenant()),
            naming.platform_sql_name("app")
        ))
        .await
        .unwrap();

    let marker = format!("ran-{}", acme.tenant());
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let first = tx
        .query(set_name, &[marker.as_str().into()])
        .await
        .expect_err("the statement ran although the binding failed");
    assert!(
        first
            .to_string()
            .contains("beginning the tenant's transaction"),
        "the error should name the binding, not the statement: {first}"
    );
    let second = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(second.kind(), ErrorKind::Transaction, "{second}");
    assert_eq!(
        tx.commit().await.unwrap_err().kind(),
        ErrorKind::Transaction
    );

    let ran: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&marker],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ran, 0, "the statement sent with the failed binding ran");
}

#[tokio::test]
async fn a_transaction_without_statements_sends_nothing_and_keeps_its_connection() {
    let fixture = TestDb::new(tenancy_test::db::Backend::Postgres, records()).await;
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        let acme = fixture.tenant("acme", isolation).await;
        // Warm the pool, so the counters below only see what the empty transactions do.
        common::add_record(&fixture.db, &acme, 1, "one").await;
        let before = fixture.db.pool_stats(fixture.server()).unwrap();
        fixture
            .db
            .transaction(&acme)
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
        fixture
            .db
            .transaction(&acme)
            .await
            .unwrap()
            .rollback()
            .await
            .unwrap();
        drop(fixture.db.transaction(&acme).await.unwrap());
        let after = fixture.db.pool_stats(fixture.server()).unwrap();
        assert_eq!(after.discarded, before.discarded, "{isolation}");
        assert_eq!(after.connects, before.connects, "{isolation}");
        // The connection is still good for the tenant.
        assert_eq!(
            common::all_titles(&fixture.db, &acme).await,
            ["one"],
            "{isolation}"
        );
    }
}
