//! Run with: cargo bench -p tenancy-cache --features redis --bench get_set
//!
//! One GET and one SET of a small JSON value through `TenantCache`, against the same
//! commands through a raw deadpool-redis pool (the goal's baseline: checkout, command,
//! JSON), interleaved round by round in one run. deadpool-redis's manager sends
//! `UNWATCH` + `PING` on every checkout, one round trip more than the command; a third
//! variant, a raw pool of the same multiplexed connections with a recycle that sends
//! nothing (as `tenancy-cache`'s), sends exactly one command per operation, so the report
//! splits the difference: the round trip saved, and this crate's own code (key building,
//! the tenant tag, the generation lookup, the pool router).
//!
//! `TENANCY_BENCH_ONLY=quiet|tenancy` runs 100,000 GETs of one side and no comparison, for
//! a profiler (`perf record -g`).
//!
//! The benchmark starts a Redis server of its own on a free port and pins itself and that
//! server to CPU 0 (`TENANCY_BENCH_PIN=0` not to), as `tenancy-db`'s benchmarks do.

use std::hint::black_box;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Pool, RecycleResult};
use deadpool_redis::redis::{self, AsyncCommands};
use serde::{Deserialize, Serialize};
use tenancy_cache::{Cache, CacheConfig, RedisConfig};
use tenancy_core::{Actor, TenantContext};
use tenancy_test::bench::{Comparison, pin_to_cpu};
use tenancy_test::redis::OwnRedis;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Widget {
    title: String,
    open_capas: u32,
    owner: String,
}

/// Multiplexed connections with a recycle that sends nothing.
struct Quiet(redis::Client);

impl Manager for Quiet {
    type Type = redis::aio::MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        self.0.get_multiplexed_async_connection().await
    }

    async fn recycle(&self, _: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        Ok(())
    }
}

fn main() {
    let server = OwnRedis::start();
    let pin = std::env::var("TENANCY_BENCH_PIN").map_or(true, |v| v != "0");
    if pin {
        let pinned =
            pin_to_cpu(std::process::id(), 0) && pin_to_cpu(server.pid().expect("running"), 0);
        println!("pinned to CPU 0: {pinned}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let widget = Widget {
        title: String::from("CAPA-17: deviation in line 3 cleaning record"),
        open_capas: 42,
        owner: String::from("user 4271"),
    };

    let raw = deadpool_redis::Config::from_url(&url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let quiet: Pool<Quiet> = Pool::builder(Quiet(redis::Client::open(url.as_str()).unwrap()))
        .max_size(4)
        .build()
        .unwrap();
    let cache =
        Cache::new(CacheConfig::new(RedisConfig::standalone(&url)).naming_prefix("bench")).unwrap();
    let ctx = TenantContext::new(
        "acme".parse().unwrap(),
        Actor::user("4271", "Jane").unwrap(),
    );
    let tenant = cache.tenant(&ctx);
    let ttl = Duration::from_secs(600);

    runtime.block_on(async {
        let json = serde_json::to_vec(&widget).unwrap();
        let mut conn = raw.get().await.unwrap();
        let () = conn.set_ex("raw:widget", &json, 600).await.unwrap();
        tenant.set("widget", &widget, ttl).await.unwrap();
    });

    // `TENANCY_BENCH_ONLY=quiet|tenancy`: 100,000 GETs of one side, for a profiler.
    if let Ok(only) = std::env::var("TENANCY_BENCH_ONLY") {
        runtime.block_on(async {
            for _ in 0..100_000 {
                if only == "quiet" {
                    let mut conn = quiet.get().await.unwrap();
                    let bytes: Vec<u8> = conn.get("raw:widget").await.unwrap();
                    black_box(serde_json::from_slice::<Widget>(&bytes).unwrap());
                } else {
                    black_box(tenant.get::<Widget>("widget").await.unwrap().unwrap());
                }
            }
        });
        return;
    }

    let get = Comparison::new("GET of a small JSON value")
        .rounds(200)
        .iterations(50)
        .baseline("raw deadpool-redis", || {
            runtime.block_on(async {
                let mut conn = raw.get().await.unwrap();
                let bytes: Vec<u8> = conn.get("raw:widget").await.unwrap();
                black_box(serde_json::from_slice::<Widget>(&bytes).unwrap());
            });
        })
        .variant("raw, one round trip", || {
            runtime.block_on(async {
                let mut conn = quiet.get().await.unwrap();
                let bytes: Vec<u8> = conn.get("raw:widget").await.unwrap();
                black_box(serde_json::from_slice::<Widget>(&bytes).unwrap());
            });
        })
        .variant("TenantCache::get", || {
            runtime.block_on(async {
                black_box(tenant.get::<Widget>("widget").await.unwrap().unwrap());
            });
        })
        .run();
    report(&get, "TenantCache::get");

    let set = Comparison::new("SET of a small JSON value with a TTL")
        .rounds(200)
        .iterations(50)
        .baseline("raw deadpool-redis", || {
            runtime.block_on(async {
                let json = serde_json::to_vec(&widget).unwrap();
                let mut conn = raw.get().await.unwrap();
                let () = conn.set_ex("raw:widget", json, 600).await.unwrap();
            });
        })
        .variant("raw, one round trip", || {
            runtime.block_on(async {
                let json = serde_json::to_vec(&widget).unwrap();
                let mut conn = quiet.get().await.unwrap();
                let () = conn.set_ex("raw:widget", json, 600).await.unwrap();
            });
        })
        .variant("TenantCache::set", || {
            runtime.block_on(async {
                tenant.set("widget", &widget, ttl).await.unwrap();
            });
        })
        .run();
    report(&set, "TenantCache::set");
    println!("{:?}", cache.stats());
}

fn report(report: &tenancy_test::bench::Report, ours: &str) {
    let paired = report.paired_ratio(ours);
    let verdict = if paired <= 1.05 { "met" } else { "NOT MET" };
    println!("  paired ratio {paired:.3} (goal <= 1.05): {verdict}");
    let saved = report.paired_ratio("raw, one round trip");
    println!(
        "  split: round trip saved {saved:.3}x, this crate's code {:.3}x raw with the same round trips",
        paired / saved
    );
}
