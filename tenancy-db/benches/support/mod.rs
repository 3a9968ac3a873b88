//! What the density and provisioning benchmarks share: Zipf-skewed tenant choice, a
//! closed-loop load runner with latency percentiles, and setup of a long-lived deployment.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashSet;

use tenancy_core::{Actor, IsolationMode, Placement, ServerName, TenantContext, TenantId};
use tenancy_db::{DbConfig, Migrations, Secret, TenantDb};
use tenancy_pool::PoolsConfig;
use tenancy_test::Service;

/// An environment variable as a number, or `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The runtime of the load benchmarks: one worker per core of the machines they run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Ranks 0..n drawn with probability proportional to 1/(rank+1)^s.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        Zipf {
            cumulative: cumulative.iter().map(|c| c / total).collect(),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }

    /// The share of draws that go to the most frequent rank.
    pub fn top_share(&self) -> f64 {
        self.cumulative[0]
    }
}

/// xorshift64*: fast, seedable, good enough to pick tenants.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub label: String,
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<(Duration, String)>,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let index = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[index]
    }

    pub fn print(&self) {
        println!(
            "  {:<34} {:>9.0} tx/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {:>6}{}",
            self.label,
            self.throughput(),
            f64::from(self.percentile_us(0.50)) / 1000.0,
            f64::from(self.percentile_us(0.99)) / 1000.0,
            self.errors,
            match &self.first_error {
                Some((at, what)) => format!("  (first after {:.1} s: {what})", at.as_secs_f64()),
                None => String::new(),
            }
        );
    }
}

/// Runs `clients` closed-loop workers for `warmup + duration`; each worker draws a rank
/// from `zipf` and awaits `op(rank)`. Only the last `duration` is measured.
pub async fn run_load<F, Fut>(
    label: &str,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    zipf: &Arc<Zipf>,
    op: F,
) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..clients {
        let (op, stop, measuring, zipf) = (
            Arc::clone(&op),
            Arc::clone(&stop),
            Arc::clone(&measuring),
            Arc::clone(zipf),
        );
        #[expect(
            clippy::disallowed_methods,
            reason = "load generators act for many tenants in turn; each operation carries its own"
        )]
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(worker as u64 + 1);
            let mut result = LoadResult::default();
            let mut measured_since = None;
            while !stop.load(Ordering::Relaxed) {
                let rank = zipf.sample(&mut rng);
                let begun = Instant::now();
                let outcome = op(rank).await;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                let since = *measured_since.get_or_insert(begun);
                match outcome {
                    Ok(()) => {
                        result.completed += 1;
                        result
                            .latencies_us
                            .push(u32::try_from(begun.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(error) => {
                        result.errors += 1;
                        if result.first_error.is_none() {
                            result.first_error = Some((begun - since, error));
                        }
                        // A failing operation must not turn into a busy loop.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            result
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let measured_from = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = measured_from.elapsed();
    let mut total = LoadResult {
        label: label.to_owned(),
        elapsed,
        ..LoadResult::default()
    };
    for worker in workers {
        let part = worker.await.expect("a load worker panicked");
        total.completed += part.completed;
        total.errors += part.errors;
        total.latencies_us.extend(part.latencies_us);
        if total.first_error.is_none() {
            total.first_error = part.first_error;
        }
    }
    total.latencies_us.sort_unstable();
    let _ = started;
    total
}

/// A deployment that outlives one benchmark run (its tenants are slow to make), with the
/// naming prefix `prefix`, its server budget `budget`, and `migrations`; without TLS.
pub fn long_lived_db(prefix: &str, budget: &PoolsConfig, migrations: Migrations) -> TenantDb {
    let secret = Secret::new(tenancy_test::db::TEST_SECRET).expect("a long secret");
    let mut config = DbConfig::postgres(Service::Postgres.require(), secret)
        .naming_prefix(prefix)
        .pool(budget);
    config.migration_parallelism = 8;
    config = config.schema_role_shards(setting("TENANCY_BENCH_ROLE_SHARDS", 1));
    // In the clear, like PgBouncer and the raw pools it is compared with.
    tenancy_test::db::without_tls(&mut config);
    if let Ok(seconds) = std::env::var("TENANCY_BENCH_CATALOG_TTL_S") {
        config.catalog_cache_ttl = Duration::from_secs(seconds.parse().expect("seconds"));
    }
    TenantDb::new(config, migrations).expect("a valid configuration")
}

/// An error with its causes, for a benchmark's report (tokio-postgres says only "db error"
/// at the top).
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Creates those of `count` tenants (named by `id_of`) that do not exist yet, each with
/// `isolation` and one record; returns how long each creation took.
pub async fn create_missing_tenants(
    db: &TenantDb,
    count: usize,
    id_of: fn(usize) -> TenantId,
    isolation: IsolationMode,
) -> Vec<Duration> {
    let platform = db.platform();
    let op = tenancy_test::operator();
    let existing: HashSet<TenantId> = platform
        .tenants(&op)
        .await
        .expect("the catalog")
        .into_iter()
        .map(|tenant| tenant.id)
        .collect();
    let server: ServerName = DbConfig::MAIN.parse().expect("a valid server name");
    let mut took = Vec::new();
    for rank in 0..count {
        let id = id_of(rank);
        if existing.contains(&id) {
            continue;
        }
        let started = Instant::now();
        platform
            .create_tenant(
                &op,
                id.clone(),
                &format!("Firm {rank}"),
                Placement::new(server.clone(), isolation),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {id}: {e}"));
        took.push(started.elapsed());
        let ctx = TenantContext::new(id.clone(), Actor::service("density-bench").expect("valid"));
        let mut tx = db.transaction(&ctx).await.expect("a transaction");
        tx.execute(
            "INSERT INTO records (id, title) VALUES (1, $1)",
            &[id.as_str().into()],
        )
        .await
        .expect("the record");
        tx.commit().await.expect("the commit");
        if took.len() % 500 == 0 {
            println!("  created {} tenants ({} this run)", rank + 1, took.len());
        }
    }
    took
}

/// Milliseconds, with two decimals.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Mean, median and 99th percentile of `samples`.
pub fn summary(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return String::from("(none)");
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(1);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "mean {}  p50 {}  p99 {}  (n = {})",
        ms(mean),
        ms(at(0.5)),
        ms(at(0.99)),
        samples.len()
    )
}
