//! A checkout waits at most the acquire timeout, says whether the pool's cap or the global
//! budget was the limit, and is served as soon as a connection comes back.

mod common;

use std::time::{Duration, Instant};

use common::{Census, Connect, config, fake_pools, key};
use tenancy_pool::ErrorKind;

#[tokio::test]
async fn a_full_budget_times_out_with_a_clear_error() {
    let census = Census::default();
    let mut config = config(1, 1);
    config.acquire_timeout = Duration::from_millis(200);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let _held = pools.get(&key("a")).await.unwrap();
    let started = Instant::now();
    let err = pools.get(&key("b")).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("no connection for b within 200ms"),
        "{message}"
    );
    assert!(
        message.contains("budget of 1 open connections"),
        "{message}"
    );
    assert_eq!(pools.stats().timeouts, 1);
}

#[tokio::test]
async fn a_full_pool_times_out_without_touching_other_keys() {
    let census = Census::default();
    let mut config = config(4, 1);
    config.acquire_timeout = Duration::from_millis(100);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let _held = pools.get(&key("a")).await.unwrap();
    let err = pools.get(&key("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.to_string()
            .contains("all 1 connections of its pool are in use"),
        "{err}"
    );
    let b = pools
        .get(&key("b"))
        .await
        .expect("another key is not held up");
    assert_eq!(b.key, "b");
}

#[tokio::test]
async fn a_waiter_is_served_when_a_connection_comes_back() {
    let census = Census::default();
    let pools = fake_pools(config(1, 1), &census, |_| Connect::Succeed);
    let held = pools.get(&key("a")).await.unwrap();
    let started = Instant::now();
    let b_key = key("b");
    let waiter = pools.get(&b_key);
    let release = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
    };
    let (b, ()) = tokio::join!(waiter, release);
    let b = b.expect("served once a's connection went back and was evicted");
    assert_eq!(b.key, "b");
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = pools.stats();
    assert_eq!(
        (stats.waits, stats.evicted_connections),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(census.peak(), 1);
}

#[test]
fn invalid_configurations_are_refused() {
    for (max, per_pool, message) in [
        (0, 1, "max_connections must be at least 1"),
        (4, 0, "max_connections_per_pool must be at least 1"),
        (4, 5, "must not exceed max_connections"),
    ] {
        let err = tenancy_pool::TenantPools::<String, common::FakeManager>::new(
            config(max, per_pool),
            |_: &String| unreachable!("no pool is made for an invalid configuration"),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains(message), "{err}");
    }
}
