//! One failed statement fails the whole transaction on every strategy: later statements
//! are refused and `commit` rolls back with an error. (PostgreSQL answers a `COMMIT` of an
//! aborted transaction with a silent rollback; without this, code that caught the error and
//! committed would believe its earlier writes were saved.)

mod common;

use common::{STRATEGIES, add_record, all_titles, records};
use tenancy_db::ErrorKind;
use tenancy_test::db::TestDb;

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
        assert_eq!(duplicate.kind(), ErrorKind::Constraint, "{what}");
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
