//! Many database-per-tenant tenants driven at once through a small budget: the server never
//! sees more of this deployment's connections than the budget, idle connections are
//! evicted to make room, and every transaction succeeds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::{add_record, all_titles, records};
use futures::future::join_all;
use tenancy_core::IsolationMode;
use tenancy_test::db::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_sees_more_connections_than_the_budget() {
    const BUDGET: usize = 6;
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = tenancy_test::db::test_pool();
        pool.max_connections = BUDGET;
        pool.max_connections_per_pool = 2;
        pool.acquire_timeout = Duration::from_secs(20);
        *config = config.clone().pool(&pool);
    })
    .await;
    let mut tenants = Vec::new();
    for n in 0..16 {
        let ctx = fixture
            .tenant(&format!("t{n}"), IsolationMode::Database)
            .await;
        add_record(&fixture.db, &ctx, 1, ctx.tenant().as_str()).await;
        tenants.push(ctx);
    }

    let admin = fixture.superuser("postgres").await;
    let pattern = format!("{}\\_%", fixture.prefix());
    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = async {
        while !done.load(Ordering::SeqCst) {
            let seen: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE $1",
                    &[&pattern],
                )
                .await
                .unwrap()
                .get(0);
            peak.fetch_max(seen, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let workers = async {
        join_all((0..32usize).map(|worker| {
            let (db, tenants) = (&fixture.db, &tenants);
            async move {
                for step in 0..12 {
                    let ctx = &tenants[(worker * 7 + step * 3) % tenants.len()];
                    assert_eq!(all_titles(db, ctx).await, [ctx.tenant().as_str()]);
                }
            }
        }))
        .await;
        done.store(true, Ordering::SeqCst);
    };
    tokio::join!(sampler, workers);

    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= BUDGET as i64,
        "the server saw {peak} connections; the budget is {BUDGET}"
    );
    assert!(
        peak >= 2,
        "the sampler saw almost nothing ({peak}): it measures the wrong thing"
    );
    let stats = fixture.db.pool_stats(fixture.server()).unwrap();
    assert!(stats.open_connections <= BUDGET, "{stats:?}");
    assert!(stats.evicted_connections > 0, "{stats:?}");
    assert_eq!(stats.timeouts, 0, "{stats:?}");
}

/// Tenant traffic holding every connection it may have does not stop the catalog: the
/// connections set aside for it (`catalog_connections`) serve lookups at once, and no
/// tenant's connection is closed to make room.
#[tokio::test]
async fn the_catalog_is_reachable_while_tenants_hold_the_rest_of_the_budget() {
    const BUDGET: usize = 6;
    const CATALOG: usize = 2;
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = tenancy_test::db::test_pool();
        pool.max_connections = BUDGET;
        pool.max_connections_per_pool = BUDGET;
        pool.acquire_timeout = Duration::from_secs(5);
        *config = config.clone().pool(&pool);
        config.catalog_connections = CATALOG;
    })
    .await;
    let mut tenants = Vec::new();
    for n in 0..BUDGET - CATALOG {
        let ctx = fixture.tenant(&format!("t{n}"), IsolationMode::Row).await;
        add_record(&fixture.db, &ctx, 1, ctx.tenant().as_str()).await;
        tenants.push(ctx);
    }
    // Every tenant connection the budget allows, held inside open transactions.
    let mut held = Vec::new();
    for ctx in &tenants {
        let mut tx = fixture.db.transaction(ctx).await.unwrap();
        tx.query("SELECT 1", &[]).await.unwrap();
        held.push(tx);
    }
    let before = fixture.db.pool_stats(fixture.server()).unwrap();

    let started = std::time::Instant::now();
    let listed = fixture
        .db
        .platform()
        .tenants(&tenancy_test::operator())
        .await
        .unwrap();
    assert_eq!(listed.len(), tenants.len());
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "the catalog waited {:?} for a connection",
        started.elapsed()
    );
    let after = fixture.db.pool_stats(fixture.server()).unwrap();
    assert_eq!(after.evicted_connections, before.evicted_connections);
    for tx in held {
        tx.commit().await.unwrap();
    }
}
