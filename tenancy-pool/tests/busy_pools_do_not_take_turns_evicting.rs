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

#[tokio::test]
async fn a_tenant_with_no_connection_is_not_starved_by_busy_ones() {
    let census = Census::default();
    let mut config = config(1, 1);
    config.steal_idle_after = Duration::from_millis(100);
    config.acquire_timeout = Duration::from_secs(5);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Four workers keep `a`'s only connection busy: it is never idle for 100 ms.
    let hammer = futures::future::join_all((0..4).map(|_| async {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let connection = pools.get(&key("a")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(connection);
            tokio::task::yield_now().await;
        }
    }));
    let starved = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let b = pools.get(&key("b")).await.expect("b is served");
        let waited = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (b.key.clone(), waited)
    };
    let ((served, waited), _) = tokio::join!(starved, hammer);
    assert_eq!(served, "b");
    assert!(waited < Duration::from_millis(600), "b waited {waited:?}");
    assert!(census.peak() <= 1);
}
