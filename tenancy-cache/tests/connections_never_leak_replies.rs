//! Cancelled commands and a Redis that goes down never hand a caller a reply that is not
//! its own: connections whose command was cancelled are closed, every reply is checked
//! against what its caller wrote, and an unreachable cache is a clear error (or, where the
//! caller chose it, a computation for the same tenant), never another tenant's value.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Cleanup, Kind, MINUTE, ctx, redis_config, secret};
use tenancy_cache::{Cache, CacheConfig, ErrorKind, RedisConfig, TenantCache};
use tenancy_core::TenantContext;
use tenancy_test::redis::OwnRedis;
use tenancy_test::{TEST_PREFIX, operator};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What a value written by `tenant` at `key` looks like: it names both.
fn value_of(tenant: &TenantCache, key: &str, serial: u64) -> String {
    format!("{}|{key}|{serial}", tenant.context().tenant())
}

/// One random operation, checked: whatever comes back must be this tenant's own.
async fn operation(tenant: &TenantCache, rng_seed: u64) {
    let key = format!("k{}", rng_seed % 5);
    match rng_seed % 4 {
        0 | 1 => {
            let _ = tenant
                .set(&key, &value_of(tenant, &key, rng_seed), MINUTE)
                .await;
        }
        2 => {
            if let Ok(Some(value)) = tenant.get::<String>(&key).await {
                let expected = format!("{}|{key}|", tenant.context().tenant());
                assert!(
                    value.starts_with(&expected),
                    "tenant {} read {value:?} at {key}",
                    tenant.context().tenant()
                );
            }
        }
        _ => {
            if let Ok(n) = tenant.increment("n", 1, MINUTE).await {
                assert!(n >= 1, "a counter read {n}");
            }
        }
    }
}

async fn cancel_at_random(kind: Kind, strict: bool) {
    let mut config = redis_config(kind).unwrap();
    if strict {
        config = config.strict(secret());
    }
    let cache = Cache::new(CacheConfig::new(config).naming_prefix(TEST_PREFIX)).unwrap();
    let mut cleanup = Cleanup::new(&cache);
    let mut tenants = Vec::new();
    for i in 0..6 {
        let id = cleanup.tenant(&format!("cancel{i}"));
        cache.platform().provision(&operator(), &id).await.unwrap();
        tenants.push(cache.tenant(&ctx(&id, "4271")));
    }
    // Deadlines up to three times a typical operation, so that many are cut off after
    // their command went out (a loopback round trip is 50-150 µs; a cluster's more).
    let started = std::time::Instant::now();
    for i in 0..50 {
        operation(&tenants[i % tenants.len()], i as u64).await;
    }
    let typical = started.elapsed() / 50;
    let max_deadline_us = u64::try_from((typical * 3).as_micros()).unwrap().max(200);
    let cancelled = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..8u64 {
        let tenants = tenants.clone();
        let cancelled = Arc::clone(&cancelled);
        let ctx = tenants[0].context().clone();
        workers.push(ctx.spawn(async move {
            let mut rng = Rng(0x5eed_0000_0000_0001 + worker * 7919);
            for _ in 0..400 {
                let tenant = &tenants[(rng.next() % tenants.len() as u64) as usize];
                let seed = rng.next();
                let deadline = Duration::from_micros(rng.next() % max_deadline_us);
                let work = tenant.context().scope(operation(tenant, seed));
                if tokio::time::timeout(deadline, work).await.is_err() {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    // Afterwards every tenant reads back exactly what it writes, on whatever connection.
    for tenant in &tenants {
        for i in 0..5 {
            let key = format!("k{i}");
            let value = value_of(tenant, &key, 1);
            tenant.set(&key, &value, MINUTE).await.unwrap();
            assert_eq!(tenant.get::<String>(&key).await.unwrap(), Some(value));
        }
    }
    let stats = cache.stats();
    let cancelled = cancelled.load(Ordering::Relaxed);
    assert_eq!(
        stats.tag_mismatches, 0,
        "{kind:?} strict={strict}: {stats:?}"
    );
    assert!(
        cancelled > 100,
        "{kind:?}: only {cancelled} operations were cancelled"
    );
    // Cancelled commands closed their connections instead of returning them.
    assert!(
        stats.discarded_connections > 0,
        "{kind:?} strict={strict}: {cancelled} cancellations, no connection closed: {stats:?}"
    );
    let pools = cache.pool_stats().unwrap();
    assert!(pools.open_connections <= 16, "{pools:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomly_cancelled_commands_never_hand_out_another_reply_on_redis() {
    cancel_at_random(Kind::Redis, false).await;
    cancel_at_random(Kind::Redis, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomly_cancelled_commands_never_hand_out_another_reply_on_a_cluster() {
    cancel_at_random(Kind::Cluster, false).await;
    cancel_at_random(Kind::ClusterHashTag, true).await;
}

/// Fails the test instead of hanging if `future` takes more than 10 s.
async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("an operation against a stopped Redis hung instead of failing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_a_clear_error_or_a_fall_through_for_the_same_tenant() {
    let mut server = OwnRedis::start();
    let mut pool = common::small_pool();
    pool.retry_after_failure = Duration::from_millis(200);
    let config = RedisConfig::standalone(server.url())
        .pool(pool)
        .command_timeout(Duration::from_millis(500));
    let cache = Cache::new(CacheConfig::new(config).naming_prefix(TEST_PREFIX)).unwrap();
    let (a, b) = (
        tenancy_test::unique_tenant("down-a"),
        tenancy_test::unique_tenant("down-b"),
    );
    let at_a = cache.tenant(&ctx(&a, "u1"));
    let at_b = cache.tenant(&ctx(&b, "u1"));
    at_a.set("widget", &"a's", MINUTE).await.unwrap();
    at_b.set("widget", &"b's", MINUTE).await.unwrap();

    // A stream of reads runs while the server goes away.
    let reader = {
        let at_a = at_a.clone();
        at_a.context().clone().spawn(async move {
            let mut outcomes = (0u32, 0u32);
            for _ in 0..200 {
                match at_a.get::<String>("widget").await {
                    Ok(Some(value)) => {
                        assert_eq!(value, "a's");
                        outcomes.0 += 1;
                    }
                    Ok(None) => panic!("a value vanished while the server was up"),
                    Err(error) => {
                        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
                        outcomes.1 += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop();
    let (served, failed) = bounded(reader).await.unwrap();
    assert!(served > 0 && failed > 0, "served {served}, failed {failed}");

    // Each operation fails with Unavailable, and says what to look at.
    let err = bounded(at_a.get::<String>("widget")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_unavailable());
    let err = bounded(at_a.set("widget", &"x", MINUTE)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let err = bounded(at_a.get_or_compute("widget", MINUTE, || async {
        Ok::<_, std::io::Error>(String::from("computed"))
    }))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // A caller who chose to fall through gets its own tenant's computation.
    for (tenant, id) in [(&at_a, &a), (&at_b, &b)] {
        let falling = tenant.clone().fall_through_when_unavailable(true);
        let value = bounded(falling.get_or_compute("widget", MINUTE, || async {
            let ctx = TenantContext::current().map(|c| c.tenant().to_string());
            Ok::<_, std::io::Error>(format!("computed for {}", ctx.unwrap_or_default()))
        }));
        let value = tenant.context().scope(value).await.unwrap();
        assert_eq!(value, format!("computed for {id}"));
    }
    assert!(cache.stats().fall_throughs >= 2);
    assert_eq!(cache.stats().tag_mismatches, 0);
}
