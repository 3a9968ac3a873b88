//! One failed statement fails the whole transaction on every strategy: later statements
//! are refused and `commit` rolls back with an error. (PostgreSQL answers a `COMMIT` of an
//! aborted transaction with a silent rollback; without this, code that caught the error and
//! committed would believe its earlier writes were saved.)

mod common;

use common::{STRATEGIES, add_record, all_titles, records};
use tenancy_core::IsolationMode;
use tenancy_db::ErrorKind;
use tenancy_test::db::{Backend, TestDb};

#[tokio::test]
async fn commit_after_a_failed_statement_rolls_back_and_says_so() {
    for (backend, isolation) in STRATEGIES {
        let what = format!("{backend:?}/{isolation}");
        let fixture = TestDb::new(backend, records()).await;
        let acme = fixture.tenant("acme", isolation).await;
        add_record(&fixture.db, &acme, 1, "kept").await;

        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        tx.execute("INSERT INTO records (id, title) VALUES (2, 'lost')", &[])
            .await
            .unwrap();
        let duplicate = tx
            .execute(
                "INSERT INTO records (id, title) VALUES (1, 'duplicate')",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(duplicate.kind(), ErrorKind::UniqueViolation, "{what}");
        let refused = tx
            .execute("INSERT INTO records (id, title) VALUES (3, 'after')", &[])
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Transaction, "{what}: {refused}");
        let commit = tx.commit().await.unwrap_err();
        assert_eq!(commit.kind(), ErrorKind::Transaction, "{what}");
        assert!(
            commit.to_string().contains("nothing was committed"),
            "{what}: {commit}"
        );

        assert_eq!(all_titles(&fixture.db, &acme).await, ["kept"], "{what}");
    }
}

/// A statement whose future was dropped before its answer (a request timeout) may or may
/// not have run: the transaction cannot be committed, on the first statement or a later one.
#[tokio::test]
async fn commit_after_a_cancelled_statement_rolls_back_and_says_so() {
    let fixture = TestDb::new(tenancy_test::db::Backend::Postgres, records()).await;
    for isolation in [
        tenancy_core::IsolationMode::Database,
        tenancy_core::IsolationMode::Schema,
        tenancy_core::IsolationMode::Row,
    ] {
        let acme = fixture.tenant("acme", isolation).await;
        for earlier_statements in [0, 1] {
            let mut tx = fixture.db.transaction(&acme).await.unwrap();
            for n in 0..earlier_statements {
                tx.execute(
                    "INSERT INTO records (id, title) VALUES ($1, 'before')",
                    &[(n + 10).into()],
                )
                .await
                .unwrap();
            }
            let slow = tx.execute(
                "INSERT INTO records (id, title) SELECT 1, 'slow' FROM pg_sleep(0.5)",
                &[],
            );
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(50), slow)
                    .await
                    .is_err()
            );
            let commit = tx.commit().await.unwrap_err();
            assert_eq!(
                commit.kind(),
                ErrorKind::Transaction,
                "{isolation}, after {earlier_statements}: {commit}"
            );
            assert!(
                all_titles(&fixture.db, &acme).await.is_empty(),
                "{isolation}, after {earlier_statements}: something was committed"
            );
        }
    }
}

/// Each layer's message says what failed there, and no more: its cause is reached through
/// `source()`, so a chain printed as anyhow prints it (`outer: cause: cause`) shows each
/// cause once.
#[tokio::test]
async fn errors_print_each_cause_once() {
    fn assert_each_cause_once(error: &(dyn std::error::Error + 'static), what: &str) {
        let mut layers = vec![error];
        while let Some(cause) = layers.last().unwrap().source() {
            layers.push(cause);
        }
        let ours = |e: &(dyn std::error::Error + 'static)| {
            e.is::<tenancy_db::Error>()
                || e.is::<tenancy_pool::Error>()
                || e.is::<tenancy_core::Error>()
        };
        for pair in layers.windows(2) {
            let (outer, inner) = (pair[0], pair[1]);
            if ours(outer) {
                assert!(
                    !outer.to_string().contains(&inner.to_string()),
                    "{what}: `{outer}` repeats its cause `{inner}`"
                );
            }
        }
        assert!(layers.len() > 1, "{what}: no cause behind `{error}`");
    }

    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    add_record(&fixture.db, &acme, 1, "first").await;
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let duplicate = tx
        .execute("INSERT INTO records (id, title) VALUES (1, 'again')", &[])
        .await
        .unwrap_err();
    tx.rollback().await.unwrap();
    assert_eq!(duplicate.kind(), ErrorKind::UniqueViolation);
    assert_eq!(duplicate.sql_state(), Some("23505"));
    assert_each_cause_once(&duplicate, "a duplicate key");

    // A server that is not there: this crate, the pool, the session, the driver.
    let config = tenancy_db::DbConfig::postgres(
        "postgres://postgres@127.0.0.1:1/postgres",
        tenancy_db::Secret::new(tenancy_test::db::TEST_SECRET).unwrap(),
    );
    let db = tenancy_db::TenantDb::new(config, records()).unwrap();
    let down = db
        .platform()
        .prepare(&tenancy_test::operator())
        .await
        .unwrap_err();
    assert_eq!(down.kind(), ErrorKind::DatabaseUnavailable);
    assert_each_cause_once(&down, "an unreachable server");
}
