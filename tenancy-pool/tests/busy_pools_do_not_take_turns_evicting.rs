//! With the budget full, a checkout does not close another pool's recently used
//! connection: it takes its own pool's next idle connection, or a connection idle longer
//! than `steal_idle_after`, the longest-idle first.

mod common;

use std::time::{Duration, Instant};

use common::{Census, Connect, config, fake_pools, key};

#[tokio::test]
async fn a_growing_pool_waits_for_its_own_connection_rather_than_evicting_a_fresh_one() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.steal_idle_after = Duration::from_secs(30);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let a_first = pools.get(&key("a")).await.unwrap();
    drop(pools.get(&key("b")).await.unwrap());
    assert_eq!(census.created(), 2);

    // `a` wants a second connection; the only idle one is `b`'s, used a moment ago.
    let started = Instant::now();
    let a = key("a");
    let second = pools.get(&a);
    let release = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(a_first);
    };
    let (second, ()) = tokio::join!(second, release);
    let second = second.expect("a's own connection, once returned");
    assert_eq!(second.key, "a");
    assert!(started.elapsed() >= Duration::from_millis(45));
    assert_eq!(census.created(), 2, "a connection was made by closing b's");
    assert_eq!(
        pools.status(&key("b")).unwrap().size,
        1,
        "b's fresh connection was closed"
    );
    assert_eq!(pools.stats().evicted_connections, 0);
}

#[tokio::test]
async fn a_growing_pool_takes_a_connection_idle_longer_than_the_threshold() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.steal_idle_after = Duration::from_millis(100);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let _a_first = pools.get(&key("a")).await.unwrap();
    drop(pools.get(&key("b")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = pools
        .get(&key("a"))
        .await
        .expect("b's stale connection made room");
    assert_eq!(second.key, "a");
    assert_eq!(pools.status(&key("b")).unwrap().size, 0);
    assert_eq!(pools.stats().evicted_connections, 1);
}

#[tokio::test]
async fn a_pool_with_no_connection_waits_until_a_connection_is_idle_long_enough() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.steal_idle_after = Duration::from_millis(200);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let _a = pools.get(&key("a")).await.unwrap();
    drop(pools.get(&key("b")).await.unwrap());
    let started = Instant::now();
    let c = pools
        .get(&key("c"))
        .await
        .expect("b's connection, once idle long enough");
    let waited = started.elapsed();
    assert_eq!(c.key, "c");
    assert!(
        waited >= Duration::from_millis(150),
        "took a fresh connection after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(pools.stats().evicted_connections, 1);
}

#[tokio::test]
async fn the_connection_idle_longest_is_taken_first() {
    let census = Census::default();
    let mut config = config(3, 2);
    config.steal_idle_after = Duration::from_millis(50);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    // `b`'s only connection has been idle longest; `a` has two, used more recently.
    drop(pools.get(&key("b")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (a1, a2) = (
        pools.get(&key("a")).await.unwrap(),
        pools.get(&key("a")).await.unwrap(),
    );
    drop((a1, a2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = pools.get(&key("c")).await.unwrap();
    assert_eq!(c.key, "c");
    assert_eq!(
        pools.status(&key("b")).unwrap().size,
        0,
        "b's connection was idle longest"
    );
    assert_eq!(pools.status(&key("a")).unwrap().size, 2);
}
