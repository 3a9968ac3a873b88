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

/// One row-level tenant with many slow requests holds at most its share of the shared
/// database's pool; another tenant's transactions go through while the slow ones are
/// still running, instead of queueing behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_hold_every_connection_of_a_shared_pool() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = tenancy_test::db::test_pool();
        pool.max_connections_per_pool = 4;
        pool.acquire_timeout = Duration::from_secs(20);
        *config = config.clone().pool(&pool);
    })
    .await;
    let hog = fixture.tenant("hog", IsolationMode::Row).await;
    let other = fixture.tenant("other", IsolationMode::Row).await;
    let finished = Arc::new(AtomicI64::new(0));
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let (db, hog, finished) = (fixture.db.clone(), hog.clone(), Arc::clone(&finished));
            hog.clone().spawn(async move {
                let mut tx = db.transaction(&hog).await.unwrap();
                tx.batch("SELECT pg_sleep(1.5)").await.unwrap();
                tx.commit().await.unwrap();
                finished.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();

    // Wait until the hog holds all it may: half the pool (2 of 4) by default.
    let admin = fixture.superuser("postgres").await;
    let app = fixture.db.naming().platform_sql_name("app");
    let sleeping = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE usename = $1 AND query LIKE '%pg_sleep(1.5)%'",
                &[&app],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sleeping().await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hog never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..5 {
        add_record(&fixture.db, &other, n, "quick").await;
    }
    assert_eq!(all_titles(&fixture.db, &other).await.len(), 5);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the other tenant went through while the hog's first requests were still running"
    );
    assert_eq!(sleeping().await, 2, "the hog held more than its share");
    for task in slow {
        task.await.unwrap();
    }
    assert_eq!(finished.load(Ordering::SeqCst), 8);
}
