//! Run with: cargo bench -p tenancy-db --bench density
//!
//! Database per tenant, many tenants, few connections. `TENANCY_DENSITY_TENANTS` tenant
//! databases (default 1,000) on the test PostgreSQL server, traffic from
//! `TENANCY_DENSITY_CLIENTS` closed-loop clients (default 128) choosing tenants Zipf(1.1),
//! each running `BEGIN; SELECT title FROM records WHERE id = $1; COMMIT`. Three ways to
//! spend 64 server connections, one after the other, each for `TENANCY_DENSITY_SECONDS`
//! (default 20) after a 3-second warm-up, repeated `TENANCY_DENSITY_ROUNDS` times (default
//! 2):
//!
//! 1. `TenantDb`: a pool per tenant database under one budget of 64 connections, idle
//!    connections evicted least recently used first.
//! 2. PgBouncer (Debian's, transaction pooling) capped at 64 server connections: every
//!    database is reached as one role (`max_user_connections` is PgBouncer's only cap
//!    across databases), pools of 4 per database, idle server connections closed after one
//!    second. Clients keep a pool of up to 4 connections to PgBouncer per tenant.
//! 3. The naive design: a map of ordinary deadpool-postgres pools, one per tenant, with no
//!    cap across them (run last: it is expected to break).
//!
//! `TENANCY_DENSITY_ONLY_TENANCY=1` measures `TenantDb` alone, for tuning.
//!
//! The tenant databases are kept between runs (naming prefix `tdensity`); set
//! `TENANCY_DENSITY_DROP=1` to drop the whole deployment at the end. PgBouncer must be installed
//! (`apt-get install pgbouncer`); it is started on 127.0.0.1:6432 and stopped afterwards.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use support::{
    LoadResult, Zipf, create_missing_tenants, describe, long_lived_db, ms, run_load, setting,
    summary,
};
use tenancy_core::{Actor, IsolationMode, TenantContext, TenantId};
use tenancy_db::Migrations;
use tenancy_db::tokio_postgres::{self, types::Type};
use tenancy_pool::PoolsConfig;
use tenancy_test::{Service, operator};

const PREFIX: &str = "tdensity";
const BUDGET: usize = 64;
const PGBOUNCER_PORT: u16 = 6432;

fn migrations() -> Migrations {
    tenancy_test::db::records_migrations()
}

fn budget() -> PoolsConfig {
    let mut pool = PoolsConfig::with_max_connections(BUDGET);
    pool.max_connections_per_pool = 4;
    pool.max_pools = 4_000;
    pool.acquire_timeout = Duration::from_secs(10);
    if let Ok(ms) = std::env::var("TENANCY_DENSITY_STEAL_MS") {
        pool.steal_idle_after = Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    pool
}

fn tenant_id(rank: usize) -> TenantId {
    format!("d{rank:05}").parse().expect("a valid tenant id")
}

/// A fresh configuration for the test server's host on `port` (`Config::port` appends, so
/// the test URL's own port cannot be reused).
fn pg_config(port: u16, user: &str, database: &str) -> tokio_postgres::Config {
    let url: tokio_postgres::Config = Service::Postgres.require().parse().unwrap();
    let mut config = tokio_postgres::Config::new();
    for host in url.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(name) = host {
            config.host(name);
        }
    }
    config.port(port).user(user).dbname(database);
    config
}

/// Lazily made pools, one per tenant: what users write by hand.
struct PoolMap {
    make: Box<dyn Fn(usize) -> Pool + Send + Sync>,
    pools: Mutex<HashMap<usize, Pool>>,
}

impl PoolMap {
    fn get(&self, rank: usize) -> Pool {
        self.pools
            .lock()
            .unwrap()
            .entry(rank)
            .or_insert_with(|| (self.make)(rank))
            .clone()
    }
}

fn plain_pool(config: tokio_postgres::Config, max_size: Option<usize>) -> Pool {
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(max) = max_size {
        builder = builder.max_size(max);
    }
    builder.build().unwrap()
}

struct PgBouncer {
    child: Child,
    dir: PathBuf,
}

impl PgBouncer {
    fn start(owner: &str) -> Option<PgBouncer> {
        if Command::new("pgbouncer").arg("--version").output().is_err() {
            println!("  PgBouncer is not installed (apt-get install pgbouncer): skipped");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("tenancy-pgbouncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("userlist.txt"), "\"bench\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port=5432 user={owner}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {PGBOUNCER_PORT}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
                 max_client_conn = 10000\ndefault_pool_size = 4\nmax_user_connections = {BUDGET}\n\
                 server_idle_timeout = 1\nserver_lifetime = 3600\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres", &dir.display().to_string()])
            .status();
        // PgBouncer refuses to run as root.
        let child = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "pgbouncer",
                &dir.join("pgbouncer.ini").display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(500));
        Some(PgBouncer { child, dir })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-f", &self.dir.join("pgbouncer.ini").display().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tenancy_round(
    count: usize,
    zipf: &Arc<Zipf>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> (LoadResult, f64) {
    let db = long_lived_db(PREFIX, &budget(), migrations());
    let contexts: Arc<Vec<TenantContext>> = Arc::new(
        (0..count)
            .map(|rank| {
                TenantContext::new(tenant_id(rank), Actor::service("density-bench").unwrap())
            })
            .collect(),
    );
    let server = tenancy_db::DbConfig::MAIN.parse().unwrap();
    let op_db = db.clone();
    let result = run_load(
        "tenancy-db, budget 64",
        clients,
        warmup,
        duration,
        zipf,
        move |rank| {
            let (db, contexts) = (op_db.clone(), Arc::clone(&contexts));
            async move {
                let mut tx = db
                    .transaction(&contexts[rank])
                    .await
                    .map_err(|e| describe(&e))?;
                tx.query_one("SELECT title FROM records WHERE id = $1", &[1i64.into()])
                    .await
                    .map_err(|e| describe(&e))?;
                tx.commit().await.map_err(|e| describe(&e))
            }
        },
    )
    .await;
    let stats = db.pool_stats(&server).unwrap();
    if std::env::var("TENANCY_DENSITY_VERBOSE").is_ok() {
        println!("    {stats:?}");
    }
    let miss_rate = stats.connects as f64 / stats.checkouts.max(1) as f64;
    drop(db);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (result, miss_rate)
}

async fn pgbouncer_round(
    owner: &str,
    zipf: &Arc<Zipf>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> Option<LoadResult> {
    let bouncer = PgBouncer::start(owner)?;
    let pools = Arc::new(PoolMap {
        make: Box::new(|rank| {
            let database = format!("{PREFIX}_{}", tenant_id(rank).as_str().replace('-', "_"));
            plain_pool(pg_config(PGBOUNCER_PORT, "bench", &database), Some(4))
        }),
        pools: Mutex::default(),
    });
    let result = run_load(
        "PgBouncer transaction mode, 64",
        clients,
        warmup,
        duration,
        zipf,
        move |rank| {
            let pools = Arc::clone(&pools);
            async move {
                let mut client = pools.get(rank).get().await.map_err(|e| describe(&e))?;
                let tx = client.transaction().await.map_err(|e| describe(&e))?;
                tx.query_typed(
                    "SELECT title FROM records WHERE id = $1",
                    &[(&1i64, Type::INT8)],
                )
                .await
                .map_err(|e| describe(&e))?;
                tx.commit().await.map_err(|e| describe(&e))
            }
        },
    )
    .await;
    drop(bouncer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Some(result)
}

async fn naive_round(
    zipf: &Arc<Zipf>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let pools = Arc::new(PoolMap {
        make: Box::new(|rank| {
            let name = format!("{PREFIX}_{}", tenant_id(rank).as_str().replace('-', "_"));
            plain_pool(pg_config(5432, &name, &name), None)
        }),
        pools: Mutex::default(),
    });
    let load_pools = Arc::clone(&pools);
    let result = run_load(
        "naive map of per-tenant pools",
        clients,
        warmup,
        duration,
        zipf,
        move |rank| {
            let pools = Arc::clone(&load_pools);
            async move {
                let mut client = pools.get(rank).get().await.map_err(|e| describe(&e))?;
                let tx = client.transaction().await.map_err(|e| describe(&e))?;
                let statement = tx
                    .prepare_cached("SELECT title FROM records WHERE id = $1")
                    .await
                    .map_err(|e| describe(&e))?;
                tx.query_one(&statement, &[&1i64])
                    .await
                    .map_err(|e| describe(&e))?;
                tx.commit().await.map_err(|e| describe(&e))
            }
        },
    )
    .await;
    let open: usize = pools
        .pools
        .lock()
        .unwrap()
        .values()
        .map(|p| p.status().size)
        .sum();
    println!(
        "  (the naive pools held {open} connections at the end; {} pools)",
        pools.pools.lock().unwrap().len()
    );
    drop(pools);
    tokio::time::sleep(Duration::from_millis(500)).await;
    result
}

/// The cost of a connection miss: the first transaction of a tenant with no open
/// connection, against its second.
async fn miss_cost(count: usize) -> Vec<Duration> {
    let db = long_lived_db(PREFIX, &budget(), migrations());
    let mut costs = Vec::new();
    for rank in (count / 2..count).step_by((count / 80).max(1)).take(40) {
        let ctx = TenantContext::new(tenant_id(rank), Actor::service("density-bench").unwrap());
        let mut timings = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let mut tx = db.transaction(&ctx).await.unwrap();
            tx.query_one("SELECT title FROM records WHERE id = $1", &[1i64.into()])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            timings.push(started.elapsed());
        }
        costs.push(timings[0].saturating_sub(timings[1]));
    }
    costs
}

/// The naive design, the cost of a miss, and the totals against PgBouncer.
async fn compare_to_others(
    count: usize,
    zipf: &Arc<Zipf>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    ours: &[LoadResult],
    bouncer: &[LoadResult],
) {
    println!("\nthe naive design:");
    naive_round(zipf, clients, warmup, duration).await.print();

    let mut costs = miss_cost(count).await;
    println!(
        "\ncost of one connection miss (first transaction of a cold tenant minus its second): {}",
        summary(&mut costs)
    );

    let total = |results: &[LoadResult]| {
        let completed: u64 = results.iter().map(|r| r.completed).sum();
        let seconds: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let mut latencies: Vec<u32> = results
            .iter()
            .flat_map(|r| r.latencies_us.iter().copied())
            .collect();
        latencies.sort_unstable();
        let p99 = latencies
            .get(((latencies.len().max(1) - 1) as f64 * 0.99) as usize)
            .copied()
            .unwrap_or(0);
        (completed as f64 / seconds.max(f64::MIN_POSITIVE), p99)
    };
    if !bouncer.is_empty() {
        let ((ours_tps, ours_p99), (pgb_tps, pgb_p99)) = (total(ours), total(bouncer));
        println!(
            "\ntenancy-db vs PgBouncer: throughput {:.2}x (goal >= 1.0), p99 {} vs {} (goal: lower)",
            ours_tps / pgb_tps,
            ms(Duration::from_micros(u64::from(ours_p99))),
            ms(Duration::from_micros(u64::from(pgb_p99)))
        );
    }
}

fn main() {
    let count: usize = setting("TENANCY_DENSITY_TENANTS", 1_000);
    let clients: usize = setting("TENANCY_DENSITY_CLIENTS", 128);
    let duration = Duration::from_secs(setting("TENANCY_DENSITY_SECONDS", 20));
    let rounds: usize = setting("TENANCY_DENSITY_ROUNDS", 2);
    let warmup = Duration::from_secs(3);
    // Measure tenancy-db alone (no PgBouncer, no naive design): for tuning.
    let only_tenancy = std::env::var("TENANCY_DENSITY_ONLY_TENANCY").is_ok_and(|v| v == "1");
    support::runtime().block_on(async {
        println!("density, database per tenant: {count} tenant databases, {clients} clients, Zipf(1.1), budget {BUDGET}\n");
        let setup_db = long_lived_db(PREFIX, &budget(), migrations());
        setup_db.platform().prepare(&operator()).await.expect("prepare");
        let mut created =
            create_missing_tenants(&setup_db, count, tenant_id, IsolationMode::Database).await;
        println!("provisioning, database per tenant (CREATE DATABASE .. TEMPLATE): {}", summary(&mut created));
        drop(setup_db);
        tokio::time::sleep(Duration::from_millis(500)).await;

        let zipf = Arc::new(Zipf::new(count, 1.1));
        println!("the most frequent tenant gets {:.1}% of the traffic\n", zipf.top_share() * 100.0);
        let owner = tenancy_core::naming::Naming::new(PREFIX).unwrap().platform_sql_name("owner");
        let mut ours = Vec::new();
        let mut bouncer = Vec::new();
        for round in 1..=rounds {
            println!("round {round}:");
            let (result, miss_rate) = tenancy_round(count, &zipf, clients, warmup, duration).await;
            result.print();
            println!("    connection-miss rate {:.2}% of checkouts (warm-up included)", miss_rate * 100.0);
            ours.push(result);
            if only_tenancy {
                continue;
            }
            if let Some(result) = pgbouncer_round(&owner, &zipf, clients, warmup, duration).await {
                result.print();
                bouncer.push(result);
            }
        }
        if !only_tenancy {
            compare_to_others(count, &zipf, clients, warmup, duration, &ours, &bouncer).await;
        }
        if std::env::var("TENANCY_DENSITY_DROP").is_ok_and(|v| v == "1") {
            tenancy_test::db::drop_deployment(PREFIX).await;
            println!("dropped the deployment");
        }
    });
}
