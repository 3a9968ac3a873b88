//! Run with: cargo bench -p tenancy-cache --features redis --bench strict_density
//!
//! 1,000 tenants with Zipf(1.1)-skewed traffic (a few busy tenants, a long tail), 64
//! clients, against a Redis server of the benchmark's own: the shared-user mode (one pool
//! of 64 connections for everyone) against strict mode (an ACL user and a pool per tenant)
//! with the same budget of 64, and with a budget of 4,096, enough for every tenant to keep
//! its connections (at most 16 connections per tenant in both). Each client runs GET (80%) and SET (20%) of
//! one of 20 keys of a tenant drawn from the distribution. The configurations take turns,
//! three rounds each; the report gives throughput, median and p99 latency, and the
//! connection-miss rate (checkouts that had to open a connection, as a share of all).
//!
//! `TENANCY_BENCH_SECONDS` sets the length of each round (default 5).

use std::time::{Duration, Instant};

use futures::future::join_all;
use tenancy_cache::{Cache, CacheConfig, RedisConfig, Secret, TenantCache};
use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_test::operator;
use tenancy_test::redis::OwnRedis;

const TENANTS: usize = 1_000;
const CLIENTS: usize = 64;
const BUDGET: usize = 64;
const KEYS_PER_TENANT: u64 = 20;
/// The most connections one tenant holds in strict mode: the busiest tenant draws about a
/// sixth of the traffic (Zipf(1.1) over 1,000), so a quarter of the budget.
const PER_TENANT: usize = 16;
/// The budget of the second strict configuration: room for every tenant's connections, so
/// that nothing is closed to make room.
const WIDE_BUDGET: usize = 4_096;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks 0..n drawn with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / (rank as f64).powf(s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&p| p < u).min(self.cdf.len() - 1)
    }
}

struct Round {
    ops: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    checkouts: u64,
    connects: u64,
}

async fn round(
    handles: &[TenantCache],
    cache: &Cache,
    zipf: &Zipf,
    length: Duration,
    seed: u64,
) -> Round {
    let before = cache.pool_stats().unwrap();
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|client| {
        let mut rng = Rng(seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        async move {
            let mut latencies = Vec::with_capacity(100_000);
            while started.elapsed() < length {
                let tenant = &handles[zipf.sample(&mut rng)];
                let key = format!("k{}", rng.next() % KEYS_PER_TENANT);
                let op = Instant::now();
                if rng.next().is_multiple_of(5) {
                    tenant
                        .set(&key, &"a cached dashboard widget", Duration::from_secs(600))
                        .await
                        .unwrap();
                } else {
                    let _ = tenant.get::<String>(&key).await.unwrap();
                }
                latencies.push(u32::try_from(op.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            latencies
        }
    });
    let latencies_us: Vec<u32> = join_all(clients).await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    let after = cache.pool_stats().unwrap();
    Round {
        ops: latencies_us.len(),
        elapsed,
        latencies_us,
        checkouts: after.checkouts - before.checkouts,
        connects: after.connects - before.connects,
    }
}

#[derive(Default)]
struct Totals {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<u32>,
    checkouts: u64,
    connects: u64,
}

impl Totals {
    fn add(&mut self, round: Round) {
        self.ops += round.ops;
        self.elapsed += round.elapsed;
        self.latencies.extend(round.latencies_us);
        self.checkouts += round.checkouts;
        self.connects += round.connects;
    }

    fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> u32 {
        self.latencies.sort_unstable();
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index]
    }

    fn miss_rate(&self) -> f64 {
        self.connects as f64 / self.checkouts.max(1) as f64
    }
}

fn cache(url: &str, strict: bool, budget: usize, per_tenant: usize) -> Cache {
    // The crate's defaults for Redis, with this budget.
    let mut pool = RedisConfig::standalone(url).pool;
    pool.max_connections = budget;
    pool.max_connections_per_pool = per_tenant;
    pool.max_pools = 2 * TENANTS;
    pool.acquire_timeout = Duration::from_secs(10);
    let mut config = RedisConfig::standalone(url).pool(pool);
    if strict {
        config = config.strict(Secret::new("benchmark-secret-0123456789abcdef0123").unwrap());
    }
    Cache::new(CacheConfig::new(config).naming_prefix("bench")).unwrap()
}

fn main() {
    let seconds: u64 = std::env::var("TENANCY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let length = Duration::from_secs(seconds);
    let server = OwnRedis::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let shared = cache(&url, false, BUDGET, BUDGET);
    let strict = cache(&url, true, BUDGET, PER_TENANT);
    // Redis connections are cheap for the server (a few KiB each; `maxclients` is 10,000
    // by default): strict mode with a budget that holds every active tenant.
    let wide = cache(&url, true, WIDE_BUDGET, PER_TENANT);
    let ids: Vec<TenantId> = (0..TENANTS)
        .map(|i| TenantId::new(&format!("tenant-{i}")).unwrap())
        .collect();
    let handles = |cache: &Cache| -> Vec<TenantCache> {
        ids.iter()
            .map(|id| cache.tenant(&TenantContext::new(id.clone(), Actor::anonymous())))
            .collect()
    };
    let (shared_handles, strict_handles, wide_handles) =
        (handles(&shared), handles(&strict), handles(&wide));
    let zipf = Zipf::new(TENANTS, 1.1);

    runtime.block_on(async {
        let op = operator();
        let started = Instant::now();
        for id in &ids {
            strict.platform().provision(&op, id).await.unwrap();
        }
        println!(
            "provisioned {TENANTS} ACL users in {:.2?} ({:.0} µs each)",
            started.elapsed(),
            started.elapsed().as_secs_f64() * 1e6 / TENANTS as f64
        );
        // Warm both: pools made, connections opened for the busy tenants.
        round(&shared_handles, &shared, &zipf, Duration::from_secs(1), 1).await;
        round(&strict_handles, &strict, &zipf, Duration::from_secs(1), 2).await;
        round(&wide_handles, &wide, &zipf, Duration::from_secs(1), 3).await;

        let mut totals = [Totals::default(), Totals::default(), Totals::default()];
        for r in 0..3u64 {
            let a = round(&shared_handles, &shared, &zipf, length, 10 + r).await;
            let b = round(&strict_handles, &strict, &zipf, length, 10 + r).await;
            let c = round(&wide_handles, &wide, &zipf, length, 10 + r).await;
            println!(
                "  round {r}: shared {:.0} ops/s, strict {:.0} ops/s, strict with {WIDE_BUDGET} \
                 connections {:.0} ops/s",
                a.ops as f64 / a.elapsed.as_secs_f64(),
                b.ops as f64 / b.elapsed.as_secs_f64(),
                c.ops as f64 / c.elapsed.as_secs_f64()
            );
            totals[0].add(a);
            totals[1].add(b);
            totals[2].add(c);
        }
        let [mut shared_totals, mut strict_totals, mut wide_totals] = totals;
        println!(
            "strict mode vs one shared user: {TENANTS} tenants, Zipf(1.1), {CLIENTS} clients \
             ({seconds} s x 3 rounds each)"
        );
        println!(
            "  {:<44} {:>10} {:>9} {:>9} {:>11}",
            "", "ops/s", "p50", "p99", "conn-miss"
        );
        let mut rows = Vec::new();
        for (name, totals) in [
            ("shared user, one pool of 64", &mut shared_totals),
            ("strict, 64 connections (16 per tenant)", &mut strict_totals),
            (
                "strict, 4,096 connections (16 per tenant)",
                &mut wide_totals,
            ),
        ] {
            let (p50, p99) = (totals.percentile(0.50), totals.percentile(0.99));
            println!(
                "  {:<44} {:>10.0} {:>7} µs {:>6} µs {:>10.2}%",
                name,
                totals.throughput(),
                p50,
                p99,
                totals.miss_rate() * 100.0
            );
            rows.push((totals.throughput(), p99));
        }
        for (row, name) in [(1, "strict, 64"), (2, "strict, 4,096")] {
            println!(
                "  {name} / shared: throughput {:.3}x, p99 {:.3}x",
                rows[row].0 / rows[0].0,
                f64::from(rows[row].1) / f64::from(rows[0].1)
            );
        }
        println!("  strict, 64: {:?}", strict.pool_stats().unwrap());
        println!("  strict, 4,096: {:?}", wide.pool_stats().unwrap());
        for id in &ids {
            strict.platform().deprovision(&op, id).await.unwrap();
        }
    });
}
