//! The same application code, run for two tenants under every strategy (PostgreSQL
//! database, schema and row-level, SQLite file), sees each tenant's rows and no other's,
//! even with queries that carry no tenant filter and ids that collide.

mod common;

use common::{STRATEGIES, add_record, all_titles, records};
use tenancy_db::ErrorKind;
use tenancy_test::db::TestDb;

#[tokio::test]
async fn every_strategy_keeps_two_tenants_apart() {
    for (backend, isolation) in STRATEGIES {
        let fixture = TestDb::new(backend, records()).await;
        let db = &fixture.db;
        let acme = fixture.tenant("acme", isolation).await;
        let beta = fixture.tenant("beta", isolation).await;

        // The same ids in both tenants: user 1 at Acme is not user 1 at Beta.
        add_record(db, &acme, 1, "Acme CAPA-1: deviation in line 3").await;
        add_record(db, &acme, 2, "Acme CAPA-2").await;
        add_record(db, &beta, 1, "Beta CAPA-1: out-of-spec result").await;

        let what = format!("{backend:?}/{isolation}");
        assert_eq!(
            all_titles(db, &acme).await,
            ["Acme CAPA-1: deviation in line 3", "Acme CAPA-2"],
            "{what}"
        );
        assert_eq!(
            all_titles(db, &beta).await,
            ["Beta CAPA-1: out-of-spec result"],
            "{what}"
        );

        // Counting everything counts only the tenant's own rows.
        let mut tx = db.transaction(&beta).await.unwrap();
        let count: i64 = tx
            .query_one("SELECT count(*) AS n FROM records", &[])
            .await
            .unwrap()
            .get("n");
        assert_eq!(count, 1, "{what}");
        // A duplicate key is the tenant's own conflict only.
        let duplicate = tx
            .execute(
                "INSERT INTO records (id, title) VALUES ($1, $2)",
                &[1i64.into(), "again".into()],
            )
            .await
            .unwrap_err();
        assert_eq!(
            duplicate.kind(),
            ErrorKind::UniqueViolation,
            "{what}: {duplicate}"
        );
        assert!(
            !tenancy_test::error_chain(&duplicate).contains("Acme"),
            "{what}: {duplicate}"
        );
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn parameters_bind_by_number_whatever_their_order() {
    for (backend, isolation) in STRATEGIES {
        let fixture = TestDb::new(backend, records()).await;
        let acme = fixture.tenant("acme", isolation).await;
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        tx.execute(
            "INSERT INTO records (title, id) VALUES ($2, $1)",
            &[7i64.into(), "seven".into()],
        )
        .await
        .unwrap();
        let row = tx
            .query_one(
                "SELECT id, title FROM records WHERE title = $1 AND id = $2",
                &["seven".into(), 7i64.into()],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<i64>("id"), 7);
        let wrong_count = tx
            .query("SELECT id FROM records WHERE id = $1", &[])
            .await
            .unwrap_err();
        assert_eq!(
            wrong_count.kind(),
            ErrorKind::Query,
            "{backend:?}/{isolation}"
        );
        tx.rollback().await.unwrap();
    }
}
