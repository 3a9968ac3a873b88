//! Both tiers reach the same tenant transaction: the typed tier in each driver's own types,
//! the portable tier with the conventions of sqlx and tokio-postgres (`get` panics with a
//! clear message, `try_get` returns a result, rows read into structs, `RowNotFound`, a kind
//! for each integrity violation, savepoints, streamed results), on every strategy.

mod common;

use common::{STRATEGIES, add_record, records};
use futures::StreamExt;
use tenancy_core::IsolationMode;
use tenancy_db::{ErrorKind, Migration, Migrations, Value, rls};
use tenancy_test::db::{Backend, TestDb};

/// `records`, then `details (id, record_id → records, code UNIQUE, amount CHECK > 0)` and
/// `kinds (id, uid uuid, at timestamptz, day date, doc json)`: text on SQLite.
fn migrations() -> Migrations {
    let mut list: Vec<Migration> = records().iter().cloned().collect();
    let row_level_details = format!(
        "CREATE TABLE details (tenant_id text NOT NULL, id bigint NOT NULL, \
         record_id bigint NOT NULL, code text NOT NULL, amount int NOT NULL CHECK (amount > 0), \
         PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, code), \
         FOREIGN KEY (tenant_id, record_id) REFERENCES records (tenant_id, id)); {}
         CREATE TABLE kinds (tenant_id text NOT NULL, id bigint NOT NULL, uid uuid, \
         at timestamptz, day date, doc jsonb, PRIMARY KEY (tenant_id, id)); {}",
        rls::row_level_policy("details").unwrap(),
        rls::row_level_policy("kinds").unwrap()
    );
    list.push(
        Migration::new(2, "details and kinds")
            .postgres(
                "CREATE TABLE details (id bigint PRIMARY KEY, \
                 record_id bigint NOT NULL REFERENCES records (id), code text NOT NULL UNIQUE, \
                 amount int NOT NULL CHECK (amount > 0)); \
                 CREATE TABLE kinds (id bigint PRIMARY KEY, uid uuid, at timestamptz, \
                 day date, doc jsonb);",
            )
            .row_level(&row_level_details)
            .sqlite(
                "CREATE TABLE details (id integer PRIMARY KEY, \
                 record_id integer NOT NULL REFERENCES records (id), code text NOT NULL UNIQUE, \
                 amount integer NOT NULL CHECK (amount > 0)); \
                 CREATE TABLE kinds (id integer PRIMARY KEY, uid text, at text, day text, doc text);",
            ),
    );
    Migrations::new(list).unwrap()
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Record {
    id: i64,
    title: String,
}

#[tokio::test]
async fn the_portable_tier_reads_rows_and_reports_each_failure_by_kind() {
    for (backend, isolation) in STRATEGIES {
        let what = format!("{backend:?}/{isolation}");
        let fixture = TestDb::new(backend, migrations()).await;
        let acme = fixture.tenant("acme", isolation).await;
        add_record(&fixture.db, &acme, 1, "Leak in line 3").await;
        let mut tx = fixture.db.transaction(&acme).await.unwrap();

        // Rows into structs and tuples; `get` and `try_get`.
        let records: Vec<Record> = tx
            .query_as("SELECT id, title FROM records ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(
            records,
            [Record {
                id: 1,
                title: "Leak in line 3".into()
            }],
            "{what}"
        );
        let row = tx
            .query_one("SELECT id, title FROM records WHERE id = $1", &[1.into()])
            .await
            .unwrap();
        assert_eq!(row.get::<String>("title"), "Leak in line 3");
        let (id, title): (i64, String) = row.deserialize().unwrap();
        assert_eq!((id, title.as_str()), (1, "Leak in line 3"));
        assert_eq!(
            row.try_get::<i64>("missing").unwrap_err().kind(),
            ErrorKind::Conversion
        );
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| row.get::<i64>("title")))
                .unwrap_err();
        let message = panicked
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("column `title`"), "{what}: {message}");

        // No row is its own kind; several rows are a query error.
        let none = tx
            .query_one("SELECT id FROM records WHERE id = $1", &[99.into()])
            .await
            .unwrap_err();
        assert_eq!(none.kind(), ErrorKind::RowNotFound, "{what}");
        assert!(
            tx.query_opt_as::<Record>("SELECT id, title FROM records WHERE id = 99", &[])
                .await
                .unwrap()
                .is_none()
        );

        // Each integrity violation by kind, each inside a savepoint that undoes it alone.
        tx.execute(
            "INSERT INTO details (id, record_id, code, amount) VALUES (1, 1, 'A', 5)",
            &[],
        )
        .await
        .unwrap();
        for (statement, kind) in [
            (
                "INSERT INTO details (id, record_id, code, amount) VALUES (2, 1, 'A', 5)",
                ErrorKind::UniqueViolation,
            ),
            (
                "INSERT INTO details (id, record_id, code, amount) VALUES (3, 42, 'B', 5)",
                ErrorKind::ForeignKeyViolation,
            ),
            (
                "INSERT INTO details (id, record_id, code, amount) VALUES (4, 1, NULL, 5)",
                ErrorKind::NotNullViolation,
            ),
            (
                "INSERT INTO details (id, record_id, code, amount) VALUES (5, 1, 'C', -1)",
                ErrorKind::CheckViolation,
            ),
        ] {
            let refused = tx
                .savepoint(async |tx| tx.execute(statement, &[]).await)
                .await
                .unwrap_err();
            assert_eq!(refused.kind(), kind, "{what}: {statement}");
            assert!(kind.is_constraint());
        }
        // Nested savepoints: the inner one rolled back, the outer one kept.
        tx.savepoint(async |tx| {
            tx.execute(
                "INSERT INTO details (id, record_id, code, amount) VALUES (6, 1, 'D', 1)",
                &[],
            )
            .await?;
            let inner = tx
                .savepoint(async |tx| {
                    tx.execute(
                        "INSERT INTO details (id, record_id, code, amount) VALUES (7, 1, 'D', 1)",
                        &[],
                    )
                    .await
                })
                .await;
            assert!(inner.is_err());
            Ok(())
        })
        .await
        .unwrap();
        tx.commit()
            .await
            .expect("the failures were all undone by savepoints");

        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        let codes: Vec<(String,)> = tx
            .query_as("SELECT code FROM details ORDER BY code", &[])
            .await
            .unwrap();
        assert_eq!(codes, [("A".to_owned(),), ("D".to_owned(),)], "{what}");
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn large_results_stream_and_other_types_round_trip() {
    for (backend, isolation) in STRATEGIES {
        let what = format!("{backend:?}/{isolation}");
        let fixture = TestDb::new(backend, migrations()).await;
        let acme = fixture.tenant("acme", isolation).await;

        // uuid, timestamp, date and JSON values, the same on both backends.
        let uid = uuid::Uuid::new_v4();
        let at = time::OffsetDateTime::from_unix_timestamp(1_767_225_600)
            .unwrap()
            .replace_microsecond(123_456)
            .unwrap();
        let day = time::macros::date!(2026 - 12 - 01);
        let doc = serde_json::json!({"severity": "major", "lines": [3, 4]});
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        tx.execute(
            "INSERT INTO kinds (id, uid, at, day, doc) VALUES (1, $1, $2, $3, $4)",
            &[uid.into(), at.into(), day.into(), doc.clone().into()],
        )
        .await
        .unwrap();
        let row = tx
            .query_one("SELECT uid, at, day, doc FROM kinds WHERE id = 1", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<uuid::Uuid>("uid"), uid, "{what}");
        assert_eq!(row.get::<time::OffsetDateTime>("at"), at, "{what}");
        assert_eq!(row.get::<time::Date>("day"), day, "{what}");
        assert_eq!(row.get::<serde_json::Value>("doc"), doc, "{what}");

        // Streamed: every row arrives, in order, without the whole result in memory.
        const ROWS: i64 = 20_000;
        tx.execute(
            "INSERT INTO records (id, title) \
             SELECT n, 'row ' || n FROM (WITH RECURSIVE c(n) AS \
             (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 20000) SELECT n FROM c) s",
            &[],
        )
        .await
        .unwrap();
        let mut stream = tx
            .query_stream("SELECT id FROM records ORDER BY id", &[])
            .await
            .unwrap();
        let mut seen = 0;
        while let Some(row) = stream.next().await {
            seen += 1;
            assert_eq!(row.unwrap().get::<i64>(0), seen);
        }
        assert_eq!(seen, ROWS, "{what}");
        drop(stream);
        // Dropped half-way, a stream leaves the transaction usable.
        let mut stream = tx
            .query_stream("SELECT id FROM records ORDER BY id", &[])
            .await
            .unwrap();
        stream.next().await.unwrap().unwrap();
        drop(stream);
        assert_eq!(
            tx.query_one("SELECT count(*) AS n FROM records", &[])
                .await
                .unwrap()
                .get::<i64>("n"),
            ROWS
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn the_typed_tier_runs_in_the_bound_transaction_and_keeps_its_connection() {
    let fixture = TestDb::new(Backend::Postgres, migrations()).await;
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        let acme = fixture
            .tenant(&format!("acme-{isolation}"), isolation)
            .await;
        let beta = fixture
            .tenant(&format!("beta-{isolation}"), isolation)
            .await;
        add_record(&fixture.db, &beta, 1, "Beta's").await;
        let discarded = || fixture.db.pool_stats(fixture.server()).unwrap().discarded;
        let before = discarded();

        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        let pg = tx.postgres().unwrap();
        let uid = uuid::Uuid::new_v4();
        pg.execute(
            "INSERT INTO records (id, title) VALUES (1, $1)",
            &[&"Acme's"],
        )
        .await
        .unwrap();
        pg.execute("INSERT INTO kinds (id, uid) VALUES (1, $1)", &[&uid])
            .await
            .unwrap();
        let rows = pg
            .query(
                "SELECT id, title FROM records WHERE id = ANY($1)",
                &[&vec![1_i64, 2]],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{isolation}: beta's row is not here");
        assert_eq!(rows[0].get::<_, &str>("title"), "Acme's");
        let read: uuid::Uuid = pg
            .query_one("SELECT uid FROM kinds WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(read, uid);
        let none = pg
            .query_one("SELECT uid FROM kinds WHERE id = 2", &[])
            .await
            .unwrap_err();
        assert_eq!(none.kind(), ErrorKind::RowNotFound);
        assert_eq!(
            tx.sqlite(|_| Ok(())).await.unwrap_err().kind(),
            ErrorKind::Config
        );
        tx.commit().await.unwrap();
        assert_eq!(discarded(), before, "{isolation}: the connection was kept");
    }
}

#[tokio::test]
async fn the_sqlite_tier_cannot_attach_or_end_the_transaction() {
    let fixture = TestDb::new(Backend::Sqlite, migrations()).await;
    let acme = fixture.tenant("acme", IsolationMode::Database).await;
    let beta = fixture.tenant("beta", IsolationMode::Database).await;
    add_record(&fixture.db, &beta, 1, "Beta's").await;

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let inserted = tx
        .sqlite(|connection| {
            connection.execute("INSERT INTO records (id, title) VALUES (1, 'Acme''s')", [])
        })
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let refused = tx
        .sqlite(|connection| connection.execute_batch("ATTACH DATABASE 'x.sqlite3' AS x"))
        .await
        .unwrap_err();
    assert!(tenancy_test::error_chain(&refused).contains("too many attached"));
    tx.rollback().await.unwrap();

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let ended = tx
        .sqlite(|connection| {
            connection
                .execute_batch("INSERT INTO records (id, title) VALUES (5, 'sneaked out'); COMMIT")
        })
        .await
        .unwrap_err();
    assert_eq!(ended.kind(), ErrorKind::Transaction, "{ended}");
    assert_eq!(
        tx.commit().await.unwrap_err().kind(),
        ErrorKind::Transaction
    );
    assert!(
        tx_is_unused_by(&fixture, &acme).await,
        "nothing was kept of the failed transaction"
    );
    // The same rule for the portable tier's batch.
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let ended = tx
        .batch("INSERT INTO records (id, title) VALUES (6, 'sneaked out'); COMMIT")
        .await
        .unwrap_err();
    assert_eq!(ended.kind(), ErrorKind::Transaction, "{ended}");
    tx.rollback().await.unwrap();
    assert!(tx_is_unused_by(&fixture, &acme).await);

    // Text that is not UTF-8 is an error, never silently replaced.
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let bad = tx
        .query("SELECT CAST(x'ff' AS TEXT) AS t", &[])
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Conversion, "{bad}");
    tx.rollback().await.unwrap();
    assert_eq!(
        fixture
            .db
            .transaction(&acme)
            .await
            .unwrap()
            .postgres()
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
    let _ = Value::Null;
}

async fn tx_is_unused_by(fixture: &TestDb, ctx: &tenancy_core::TenantContext) -> bool {
    common::all_titles(&fixture.db, ctx).await.is_empty()
}
