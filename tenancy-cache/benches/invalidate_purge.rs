//! Run with: cargo bench -p tenancy-cache --features redis --bench invalidate_purge
//!
//! Against a Redis server of the benchmark's own: the time to invalidate a tenant's cache
//! when it holds 10 keys and when it holds 1,000,000 (side by side, the same run: one
//! `INCR` of the tenant's generation either way), then the time to purge the 1,000,000
//! keys (`SCAN` + `UNLINK` in batches of 1,000), with the longest single command as the
//! client saw it and as the server's SLOWLOG recorded it, then a purge of the 10-key
//! tenant while the other million keys are still there (a `SCAN` visits the whole key
//! space whatever it matches). Everything is deleted at the end; the server is stopped.

use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
use tenancy_cache::{Cache, CacheConfig, RedisConfig};
use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_test::bench::Comparison;
use tenancy_test::operator;
use tenancy_test::redis::OwnRedis;

const BIG: usize = 1_000_000;

fn main() {
    let server = OwnRedis::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let cache =
        Cache::new(CacheConfig::new(RedisConfig::standalone(&url)).naming_prefix("bench")).unwrap();
    let small_id = TenantId::new("small").unwrap();
    let big_id = TenantId::new("big").unwrap();
    let small = cache.tenant(&TenantContext::new(small_id.clone(), Actor::anonymous()));
    let big = cache.tenant(&TenantContext::new(big_id.clone(), Actor::anonymous()));
    let ttl = Duration::from_secs(3600);

    let mut raw = runtime.block_on(async {
        redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await
            .unwrap()
    });
    runtime.block_on(async {
        for i in 0..10 {
            small.set(&format!("k{i}"), &i, ttl).await.unwrap();
        }
        // The big tenant's keys, written in its key space at its current generation by
        // pipelines (a million writes through the API would take minutes here).
        big.set("k0", &0, ttl).await.unwrap();
        let mut first: Vec<String> = raw.keys("bench:big:g*").await.unwrap();
        let key = first.pop().unwrap();
        let prefix = &key[..key.len() - 2];
        let started = Instant::now();
        for batch in 0..BIG / 10_000 {
            let mut pipe = redis::pipe();
            for i in 0..10_000 {
                let n = batch * 10_000 + i;
                pipe.cmd("SET")
                    .arg(format!("{prefix}k{n}"))
                    .arg(b"a value of about the size of a small widget")
                    .arg("PX")
                    .arg(3_600_000)
                    .ignore();
            }
            let () = pipe.query_async(&mut raw).await.unwrap();
        }
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
        println!(
            "wrote {BIG} keys of tenant `big` in {:.2?}; the server holds {size} keys",
            started.elapsed()
        );
    });

    let _ = Comparison::new("invalidating a tenant's whole cache")
        .rounds(50)
        .iterations(20)
        .baseline("tenant with 10 keys", || {
            runtime.block_on(async { small.invalidate().await.unwrap() });
        })
        .variant("tenant with 1,000,000 keys", || {
            runtime.block_on(async { big.invalidate().await.unwrap() });
        })
        .run();

    runtime.block_on(async {
        // Every command the server runs from now on goes to the SLOWLOG, with its time.
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .query_async(&mut raw)
            .await
            .unwrap();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(100_000)
            .query_async(&mut raw)
            .await
            .unwrap();
        let op = operator();
        // The small tenant first, while the million keys are there: its SCAN visits them.
        let () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut raw)
            .await
            .unwrap();
        let report = cache.platform().purge(&op, &small_id).await.unwrap();
        let times = server_times(&mut raw).await;
        println!(
            "purge of tenant `small` (its 10 keys of each generation, and its generation) \
             beside 1,000,000 keys of another tenant:"
        );
        println!(
            "  deleted {} keys in {:.2?} with {} commands; longest command {:.2?} round trip; \
             on the server: {}",
            report.deleted, report.elapsed, report.commands, report.longest_command, times
        );
        let () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut raw)
            .await
            .unwrap();
        let report = cache.platform().purge(&op, &big_id).await.unwrap();
        let times = server_times(&mut raw).await;
        println!("purge of tenant `big` (1,000,000 keys, and its generation):");
        println!(
            "  deleted {} keys in {:.2?} with {} commands; longest command {:.2?} round trip; \
             on the server: {}",
            report.deleted, report.elapsed, report.commands, report.longest_command, times
        );
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
        println!("the server holds {size} keys at the end");
    });
    drop(server);
}

/// The server's own times of the purge's commands (from the SLOWLOG): median, p99 and
/// longest, per command.
async fn server_times(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100_000)
        .query_async(conn)
        .await
        .unwrap();
    let mut times: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let micros = match fields.get(2) {
            Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let name = match fields.get(3) {
            Some(redis::Value::Array(args)) => match args.first() {
                Some(redis::Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        if name == "SCAN" || name == "UNLINK" {
            times.entry(name).or_default().push(micros);
        }
    }
    let mut out = Vec::new();
    for (name, mut micros) in times {
        micros.sort_unstable();
        let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
        out.push(format!(
            "{name} x{} median {} µs, p99 {} µs, longest {} µs",
            micros.len(),
            at(0.5),
            at(0.99),
            micros[micros.len() - 1]
        ));
    }
    out.join("; ")
}
