//! The schema the tenancy-db tests use, written once per dialect, and the application code
//! that runs unchanged on every strategy.

#![allow(dead_code, unreachable_pub)]

use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migration, Migrations, TenantDb, rls};
use tenancy_test::db::Backend;

/// `records (id, title)` in every dialect; the row-level table carries `tenant_id`, keys
/// that include it, and the policy.
pub fn records() -> Migrations {
    let row_level = format!(
        "CREATE TABLE records (tenant_id text NOT NULL, id bigint NOT NULL, title text NOT NULL, \
         PRIMARY KEY (tenant_id, id));\n{}",
        rls::row_level_policy("records").expect("a plain table name")
    );
    Migrations::new(vec![
        Migration::new(1, "records")
            .postgres("CREATE TABLE records (id bigint PRIMARY KEY, title text NOT NULL)")
            .row_level(&row_level)
            .sqlite("CREATE TABLE records (id integer PRIMARY KEY, title text NOT NULL)"),
    ])
    .expect("valid migrations")
}

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
    rows.iter()
        .map(|row| row.get::<String>("title").expect("a title"))
        .collect()
}
