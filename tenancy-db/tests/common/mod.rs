//! The schema the tenancy-db tests use, written once per dialect, and the application code
//! that runs unchanged on every strategy.

#![allow(dead_code, unreachable_pub)]

use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::TenantDb;
use tenancy_test::db::Backend;

pub use tenancy_test::db::records_migrations as records;

/// Every strategy, as (backend, isolation).
pub const STRATEGIES: [(Backend, IsolationMode); 4] = [
    (Backend::Postgres, IsolationMode::Database),
    (Backend::Postgres, IsolationMode::Schema),
    (Backend::Postgres, IsolationMode::Row),
    (Backend::Sqlite, IsolationMode::Database),
];

/// Application code: inserts a record. No tenant filter, no tenant column.
pub async fn add_record(db: &TenantDb, ctx: &TenantContext, id: i64, title: &str) {
    let mut tx = db.transaction(ctx).await.expect("a transaction");
    tx.execute(
        "INSERT INTO records (id, title) VALUES ($1, $2)",
        &[id.into(), title.into()],
    )
    .await
    .expect("the insert");
    tx.commit().await.expect("the commit");
}

/// Application code: every record the tenant can see, by id. The query has no `WHERE`.
pub async fn all_titles(db: &TenantDb, ctx: &TenantContext) -> Vec<String> {
    let mut tx = db.transaction(ctx).await.expect("a transaction");
    let rows = tx
        .query("SELECT title FROM records ORDER BY id", &[])
        .await
        .expect("the query");
    tx.commit().await.expect("the commit");
    rows.iter().map(|row| row.get::<String>("title")).collect()
}
