//! Run with: cargo bench -p tenancy-db --bench shared_pool_share
//!
//! One row-level tenant hogs the shared database: 32 clients of its own run transactions
//! that sleep 50 ms on the server, while 16 clients of 8 other tenants run one-row reads.
//! The shared pool has 16 connections. With the per-tenant share (the default, half the
//! pool) the hog holds at most 8 and the others keep the rest; with the share set to the
//! whole pool, the hog can hold every connection. Printed: the other tenants' throughput and
//! latency each way, alternated round by round, and the ratio.
//!
//! Needs the test PostgreSQL server; each side is a deployment of its own (removed at the
//! end), connected without TLS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{LoadResult, Zipf, run_load, runtime, setting};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::TenantDb;
use tenancy_test::db::{Backend, TestDb, records_migrations, test_pool, without_tls};

const POOL: usize = 16;
const OTHERS: usize = 8;

async fn deployment(share: Option<usize>) -> (TestDb, TenantContext, Vec<TenantContext>) {
    let fixture = TestDb::with_config(Backend::Postgres, records_migrations(), |config| {
        let mut pool = test_pool();
        pool.max_connections = POOL + 4;
        pool.max_connections_per_pool = POOL;
        pool.acquire_timeout = Duration::from_secs(30);
        *config = config.clone().pool(&pool);
        for server in &mut config.servers {
            if let tenancy_db::ServerConfig::Postgres(server) = server {
                server.max_connections_per_shared_tenant = share;
            }
        }
        without_tls(config);
    })
    .await;
    let hog = fixture.tenant("hog", IsolationMode::Row).await;
    let mut others = Vec::new();
    for n in 0..OTHERS {
        let ctx = fixture
            .tenant(&format!("other{n}"), IsolationMode::Row)
            .await;
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        tx.execute("INSERT INTO records (id, title) VALUES (1, 'x')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        others.push(ctx);
    }
    (fixture, hog, others)
}

/// The hog's load and the others', at once; returns the others'.
async fn round(
    label: &str,
    db: &TenantDb,
    hog: &TenantContext,
    others: &[TenantContext],
) -> LoadResult {
    let (warmup, duration) = (
        Duration::from_secs(1),
        Duration::from_secs(setting("TENANCY_SHARE_SECONDS", 5)),
    );
    let (one, uniform) = (
        Arc::new(Zipf::new(1, 1.1)),
        Arc::new(Zipf::new(OTHERS, 0.0)),
    );
    let hog_load = {
        let (db, hog) = (db.clone(), hog.clone());
        run_load("hog", 32, warmup, duration, &one, move |_| {
            let (db, hog) = (db.clone(), hog.clone());
            async move {
                let mut tx = db.transaction(&hog).await.map_err(|e| e.to_string())?;
                tx.batch("SELECT pg_sleep(0.05)")
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        })
    };
    let others_load = {
        let (db, others) = (db.clone(), Arc::new(others.to_vec()));
        run_load(label, 16, warmup, duration, &uniform, move |rank| {
            let (db, ctx) = (db.clone(), others[rank].clone());
            async move {
                let mut tx = db.transaction(&ctx).await.map_err(|e| e.to_string())?;
                tx.query("SELECT title FROM records WHERE id = 1", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        })
    };
    let (hog_result, others_result) = tokio::join!(hog_load, others_load);
    println!(
        "  (hog: {:.0} tx/s, {} errors)",
        hog_result.throughput(),
        hog_result.errors
    );
    others_result
}

fn main() {
    let runtime = runtime();
    runtime.block_on(async {
        let (shared, shared_hog, shared_others) = deployment(None).await;
        let (whole, whole_hog, whole_others) = deployment(Some(POOL)).await;
        println!(
            "one tenant hogging a shared pool of {POOL}: {OTHERS} other tenants' one-row reads \
             (16 clients) while the hog runs 32 clients of 50 ms transactions\n"
        );
        let mut with_share = Vec::new();
        let mut without = Vec::new();
        for _ in 0..setting("TENANCY_SHARE_ROUNDS", 2) {
            let result = round(
                "others, per-tenant share 8 of 16",
                &shared.db,
                &shared_hog,
                &shared_others,
            )
            .await;
            result.print();
            with_share.push(result);
            let result = round(
                "others, no share (16 of 16)",
                &whole.db,
                &whole_hog,
                &whole_others,
            )
            .await;
            result.print();
            without.push(result);
        }
        let total = |results: &[LoadResult]| {
            results.iter().map(LoadResult::throughput).sum::<f64>() / results.len() as f64
        };
        let p99 = |results: &[LoadResult]| {
            results
                .iter()
                .map(|r| f64::from(r.percentile_us(0.99)))
                .sum::<f64>()
                / results.len() as f64
                / 1000.0
        };
        println!(
            "\n  the other tenants with the share: {:.2}x the throughput, p99 {:.1} ms against {:.1} ms",
            total(&with_share) / total(&without),
            p99(&with_share),
            p99(&without)
        );
    });
}
