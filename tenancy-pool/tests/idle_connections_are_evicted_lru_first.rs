//! When the budget is full, the idle connection of the pool used least recently is the one
//! closed to make room; pools and connections idle past the idle timeout are dropped.

mod common;

use std::time::Duration;

use common::{Census, Connect, config, fake_pools, key};

#[tokio::test]
async fn the_least_recently_used_pool_gives_up_its_idle_connection() {
    let census = Census::default();
    let pools = fake_pools(config(2, 2), &census, |_| Connect::Succeed);
    drop(pools.get(&key("a")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(pools.get(&key("b")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    // `a` is used again: `b` is now the least recently used.
    drop(pools.get(&key("a")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;

    let c = pools.get(&key("c")).await.unwrap();
    assert_eq!(c.key, "c");
    assert_eq!(
        pools.status(&key("a")).unwrap().size,
        1,
        "a kept its connection"
    );
    assert_eq!(
        pools.status(&key("b")).unwrap().size,
        0,
        "b's idle connection was closed"
    );
    let stats = pools.stats();
    assert_eq!(stats.evicted_connections, 1);
    assert_eq!(stats.open_connections, 2);
    assert_eq!(census.live(), 2);
}

#[tokio::test]
async fn connections_in_use_are_never_evicted() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.acquire_timeout = Duration::from_millis(100);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let a = pools.get(&key("a")).await.unwrap();
    let b = pools.get(&key("b")).await.unwrap();
    let err = pools.get(&key("c")).await.unwrap_err();
    assert_eq!(err.kind(), tenancy_pool::ErrorKind::Timeout);
    assert_eq!((a.key.as_str(), b.key.as_str()), ("a", "b"));
    assert_eq!(pools.stats().evicted_connections, 0);
}

#[tokio::test]
async fn idle_connections_and_pools_are_dropped_after_the_idle_timeout() {
    let census = Census::default();
    let mut config = config(4, 2);
    config.idle_timeout = Duration::from_millis(200);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    drop(pools.get(&key("a")).await.unwrap());
    drop(pools.get(&key("b")).await.unwrap());
    assert_eq!(census.live(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The sweep runs on the next checkout.
    drop(pools.get(&key("c")).await.unwrap());
    assert_eq!(
        census.live(),
        1,
        "idle connections of a and b were not closed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(pools.get(&key("c")).await.unwrap());
    let stats = pools.stats();
    assert!(
        pools.status(&key("a")).is_none(),
        "the empty pool of a was kept"
    );
    assert!(stats.evicted_pools >= 2, "{stats:?}");
}

#[tokio::test]
async fn the_pool_limit_drops_the_least_recently_used_unused_pool() {
    let census = Census::default();
    let mut config = config(4, 1);
    config.max_pools = 2;
    config.acquire_timeout = Duration::from_millis(100);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let a = pools.get(&key("a")).await.unwrap();
    drop(pools.get(&key("b")).await.unwrap());
    drop(pools.get(&key("c")).await.unwrap());
    assert!(
        pools.status(&key("b")).is_none(),
        "b was the unused pool to drop"
    );
    assert!(
        pools.status(&key("a")).is_some(),
        "a is in use and must stay"
    );
    let d = pools.get(&key("d")).await;
    assert!(d.is_ok(), "c was unused and could go");
    drop(d);
    let e = {
        let _c_in_use = pools.get(&key("c")).await;
        pools.get(&key("e")).await
    };
    drop(a);
    let stats = pools.stats();
    assert!(stats.evicted_pools >= 2, "{stats:?}");
    drop(e);
}
