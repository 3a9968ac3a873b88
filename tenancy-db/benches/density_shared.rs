//! Run with: cargo bench -p tenancy-db --bench density_shared
//!
//! The shared strategies at density: `TENANCY_SCHEMA_TENANTS` schema-per-tenant tenants
//! (default 10,000) and `TENANCY_ROW_TENANTS` row-level tenants (default 100,000) on one
//! PostgreSQL database, each served through `TenantDb` with a budget of 64 connections to
//! 128 closed-loop clients choosing tenants Zipf(1.1), against one shared database with no
//! tenancy at all: a raw deadpool-postgres pool of 64 connections running the same
//! `BEGIN; SELECT title FROM records WHERE id = $1; COMMIT` on one plain table holding a
//! row per tenant. Each side runs `TENANCY_SHARED_SECONDS` (default 15) after a warm-up of
//! `TENANCY_SHARED_WARMUP_S` (default 3), alternating, `TENANCY_SHARED_ROUNDS` times
//! (default 2). After each `TenantDb` side it prints the pool counters: connections
//! opened and evicted show churn between the shared pools and the catalog's.
//!
//! Schema tenants are provisioned through `Platform::create_tenant` (and timed). Row-level
//! tenants are a catalog row and data rows each, so they are inserted in bulk with SQL
//! rather than 100,000 calls; the catalog and policies are the same either way. Both are
//! kept between runs (naming prefix `tshared`, and the database `tshared_plain`); set
//! `TENANCY_SHARED_DROP=1` to drop them at the end. `TENANCY_SHARED_ONLY=schema` (or
//! `row`) runs one strategy. `TENANCY_BENCH_ROLE_SHARDS` spreads the schema tenants over
//! that many application roles (default 1); `Platform::prepare` at the start moves the
//! memberships of an existing deployment.

mod support;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use support::{
    LoadResult, Zipf, create_missing_tenants, describe, long_lived_db, run_load, setting, summary,
};
use tenancy_core::{Actor, IsolationMode, Placement, TenantContext, TenantId};
use tenancy_db::{DbConfig, Migrations, TenantDb, tokio_postgres};
use tenancy_pool::PoolsConfig;
use tenancy_test::{Service, operator};

const PREFIX: &str = "tshared";
const PLAIN_DB: &str = "tshared_plain";

fn migrations() -> Migrations {
    tenancy_test::db::records_migrations()
}

fn budget() -> PoolsConfig {
    let mut pool = PoolsConfig::with_max_connections(setting("TENANCY_SHARED_BUDGET", 64));
    // All schema and row-level traffic goes through the one shared database's pool.
    pool.max_connections_per_pool = setting("TENANCY_SHARED_POOL_CAP", 64);
    pool.acquire_timeout = Duration::from_secs(10);
    pool
}

fn schema_id(rank: usize) -> TenantId {
    format!("s{rank:05}").parse().unwrap()
}

fn row_id(rank: usize) -> TenantId {
    format!("r{rank:06}").parse().unwrap()
}

fn superuser_config(database: &str) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = Service::Postgres.require().parse().unwrap();
    config.dbname(database);
    config
}

async fn superuser(database: &str) -> tenancy_test::db::SuperuserClient {
    tenancy_test::db::connect(&superuser_config(database)).await
}

/// Row-level tenants in bulk: the first through the platform (so the shared tables are
/// migrated), the rest as catalog rows and data rows.
async fn ensure_row_tenants(db: &TenantDb, count: usize) {
    let platform = db.platform();
    let server: tenancy_core::ServerName = DbConfig::MAIN.parse().unwrap();
    if platform
        .tenants(&operator())
        .await
        .unwrap()
        .iter()
        .all(|t| t.id != row_id(0))
    {
        platform
            .create_tenant(
                &operator(),
                row_id(0),
                "row tenant",
                Placement::new(server, IsolationMode::Row),
            )
            .await
            .unwrap();
    }
    let naming = tenancy_core::naming::Naming::new(PREFIX).unwrap();
    let catalog = superuser(&naming.platform_sql_name("platform")).await;
    catalog
        .execute(
            "INSERT INTO tenants (id, display_name, status, server, isolation, created_at_ms) \
             SELECT 'r' || lpad(n::text, 6, '0'), 'row tenant', 'active', 'main', 'row', 0 \
             FROM generate_series(0, $1::int - 1) n ON CONFLICT (id) DO NOTHING",
            &[&i32::try_from(count).unwrap()],
        )
        .await
        .unwrap();
    let shared = superuser(&naming.platform_sql_name("shared")).await;
    shared
        .execute(
            "INSERT INTO records (tenant_id, id, title) \
             SELECT 'r' || lpad(n::text, 6, '0'), 1, 'r' || lpad(n::text, 6, '0') \
             FROM generate_series(0, $1::int - 1) n ON CONFLICT DO NOTHING",
            &[&i32::try_from(count).unwrap()],
        )
        .await
        .unwrap();
    shared.batch_execute("ANALYZE records").await.unwrap();
}

/// One plain database, one table, a row per tenant: no tenancy at all.
async fn ensure_plain_table(rows: usize) {
    let admin = superuser("postgres").await;
    let _ = admin
        .batch_execute(&format!("CREATE DATABASE {PLAIN_DB}"))
        .await;
    let plain = superuser(PLAIN_DB).await;
    plain
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS records (id bigint PRIMARY KEY, title text NOT NULL)",
        )
        .await
        .unwrap();
    plain
        .execute(
            "INSERT INTO records (id, title) SELECT n, 'title ' || n FROM generate_series(1, $1::int) n \
             ON CONFLICT DO NOTHING",
            &[&i32::try_from(rows).unwrap()],
        )
        .await
        .unwrap();
    plain.batch_execute("ANALYZE records").await.unwrap();
}

fn plain_pool() -> Pool {
    let manager = Manager::from_config(
        superuser_config(PLAIN_DB),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(64).build().unwrap()
}

/// Lets the server reap the connections of a side that just finished, so the next side
/// has the whole server.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn compare(
    label: &str,
    ids: Arc<Vec<TenantContext>>,
    clients: usize,
    duration: Duration,
    rounds: usize,
) {
    let zipf = Arc::new(Zipf::new(ids.len(), 1.1));
    println!(
        "\n{label}: {} tenants, {clients} clients, Zipf(1.1), 64 connections",
        ids.len()
    );
    let warmup = Duration::from_secs(setting("TENANCY_SHARED_WARMUP_S", 3));
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Each side has the server to itself: its connections close before the other runs.
        let db = long_lived_db(PREFIX, &budget(), migrations());
        let (db2, ids2) = (db.clone(), Arc::clone(&ids));
        let result = run_load("TenantDb", clients, warmup, duration, &zipf, move |rank| {
            let (db, ids) = (db2.clone(), Arc::clone(&ids2));
            async move {
                let mut tx = db.transaction(&ids[rank]).await.map_err(|e| describe(&e))?;
                tx.query_one("SELECT title FROM records WHERE id = $1", &[1i64.into()])
                    .await
                    .map_err(|e| describe(&e))?;
                tx.commit().await.map_err(|e| describe(&e))
            }
        })
        .await;
        result.print();
        let stats = db
            .pool_stats(&DbConfig::MAIN.parse().unwrap())
            .expect("the main server");
        println!(
            "    connections opened {}, evicted {}, waits {}, pools {}",
            stats.connects, stats.evicted_connections, stats.waits, stats.pools
        );
        ours.push(result);
        drop(db);
        settle().await;
        let plain = plain_pool();
        let pool = plain.clone();
        let result = run_load(
            "one shared database, no tenancy",
            clients,
            warmup,
            duration,
            &zipf,
            move |rank| {
                let pool = pool.clone();
                async move {
                    let mut client = pool.get().await.map_err(|e| describe(&e))?;
                    let tx = client.transaction().await.map_err(|e| describe(&e))?;
                    let statement = tx
                        .prepare_cached("SELECT title FROM records WHERE id = $1")
                        .await
                        .map_err(|e| describe(&e))?;
                    tx.query_one(&statement, &[&(rank as i64 + 1)])
                        .await
                        .map_err(|e| describe(&e))?;
                    tx.commit().await.map_err(|e| describe(&e))
                }
            },
        )
        .await;
        result.print();
        raw.push(result);
        drop(plain);
        settle().await;
    }
    let tps = |results: &[LoadResult]| {
        results.iter().map(|r| r.completed).sum::<u64>() as f64
            / results.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>()
    };
    println!(
        "  {label}: TenantDb at {:.2}x the throughput of one shared database (goal >= 0.9)",
        tps(&ours) / tps(&raw)
    );
}

fn main() {
    let schema_tenants: usize = setting("TENANCY_SCHEMA_TENANTS", 10_000);
    let row_tenants: usize = setting("TENANCY_ROW_TENANTS", 100_000);
    let clients: usize = setting("TENANCY_SHARED_CLIENTS", 128);
    let duration = Duration::from_secs(setting("TENANCY_SHARED_SECONDS", 15));
    let rounds: usize = setting("TENANCY_SHARED_ROUNDS", 2);
    support::runtime().block_on(async {
        let db = long_lived_db(PREFIX, &budget(), migrations());
        db.platform().prepare(&operator()).await.unwrap();
        let mut created =
            create_missing_tenants(&db, schema_tenants, schema_id, IsolationMode::Schema).await;
        println!("provisioning, schema per tenant: {}", summary(&mut created));
        ensure_row_tenants(&db, row_tenants).await;
        ensure_plain_table(schema_tenants.max(row_tenants)).await;
        drop(db);
        settle().await;
        let contexts = |id: fn(usize) -> TenantId, n: usize| {
            Arc::new(
                (0..n)
                    .map(|rank| {
                        TenantContext::new(id(rank), Actor::service("density-bench").unwrap())
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let only = std::env::var("TENANCY_SHARED_ONLY").unwrap_or_default();
        if only != "row" {
            let ids = contexts(schema_id, schema_tenants);
            compare("schema per tenant", ids, clients, duration, rounds).await;
        }
        if only != "schema" {
            let ids = contexts(row_id, row_tenants);
            compare("row-level", ids, clients, duration, rounds).await;
        }
        if std::env::var("TENANCY_SHARED_DROP").is_ok_and(|v| v == "1") {
            tenancy_test::db::drop_deployment(PREFIX).await;
            let admin = superuser("postgres").await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {PLAIN_DB} WITH (FORCE)"))
                .await;
            println!("dropped the deployment");
        }
    });
}
