//! Run with: cargo bench -p tenancy-db --bench provisioning
//!
//! How long it takes to create a tenant under each strategy, and to migrate
//! `TENANCY_PROVISION_TENANTS` tenants (default 1,000) of each strategy to a new version.
//! Each strategy gets a fresh deployment (naming prefixes `tprovd`, `tprovs`, `tprovr`),
//! dropped at the end. Needs the test PostgreSQL server.

mod support;

use std::time::{Duration, Instant};

use support::{long_lived_db, setting, summary};
use tenancy_core::{IsolationMode, Placement, TenantId};
use tenancy_db::{DbConfig, Migration, Migrations};
use tenancy_pool::PoolsConfig;
use tenancy_test::db::drop_deployment;
use tenancy_test::operator;

fn migrations(versions: u32) -> Migrations {
    let mut list: Vec<Migration> = tenancy_test::db::records_migrations()
        .iter()
        .cloned()
        .collect();
    if versions >= 2 {
        let add = "ALTER TABLE records ADD COLUMN status text NOT NULL DEFAULT 'open'; \
                   CREATE INDEX records_status ON records (status)";
        list.push(
            Migration::new(2, "record status")
                .postgres(add)
                .row_level(add),
        );
    }
    Migrations::new(list).unwrap()
}

async fn strategy(prefix: &str, isolation: IsolationMode, count: usize) {
    drop_deployment(prefix).await;
    let mut pool = PoolsConfig::with_max_connections(64);
    pool.max_connections_per_pool = 8;
    let db = long_lived_db(prefix, &pool, migrations(1));
    let op = operator();
    let started = Instant::now();
    db.platform().prepare(&op).await.expect("prepare");
    println!(
        "\n{isolation} per tenant ({count} tenants); prepare took {:?}",
        started.elapsed()
    );
    let server: tenancy_core::ServerName = DbConfig::MAIN.parse().unwrap();
    let mut took = Vec::with_capacity(count);
    for n in 0..count {
        let id: TenantId = format!("p{n:05}").parse().unwrap();
        let started = Instant::now();
        db.platform()
            .create_tenant(
                &op,
                id,
                "provisioning bench",
                Placement::new(server.clone(), isolation),
            )
            .await
            .unwrap_or_else(|e| panic!("creating tenant {n}: {e}"));
        took.push(started.elapsed());
    }
    println!("  create a tenant: {}", summary(&mut took));
    drop(db);

    let release = long_lived_db(prefix, &pool, migrations(2));
    let report = release
        .platform()
        .migrate(&op, |_| {})
        .await
        .expect("the catalog");
    assert!(report.is_success(), "{report:#?}");
    println!(
        "  migrate {} targets to version 2 (8 at a time): {:.2} s, {:.2} ms per target",
        report.outcomes.len(),
        report.elapsed.as_secs_f64(),
        report.elapsed.as_secs_f64() * 1000.0 / report.outcomes.len().max(1) as f64
    );
    drop(release);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    drop_deployment(prefix).await;
    println!("  (dropped in {:.1} s)", started.elapsed().as_secs_f64());
}

fn main() {
    let count: usize = setting("TENANCY_PROVISION_TENANTS", 1_000);
    support::runtime().block_on(async {
        strategy("tprovd", IsolationMode::Database, count).await;
        strategy("tprovs", IsolationMode::Schema, count).await;
        strategy("tprovr", IsolationMode::Row, count).await;
    });
}
