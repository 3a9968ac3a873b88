//! A discarded connection is closed, never handed out again; a returned one is reused; a
//! removed pool closes its connections, including those in use when they come back.

mod common;

use common::{Census, Connect, config, fake_pools, key};

#[tokio::test]
async fn discard_closes_and_return_reuses() {
    let census = Census::default();
    let pools = fake_pools(config(4, 2), &census, |_| Connect::Succeed);
    let first = pools.get(&key("a")).await.unwrap();
    let serial = first.serial;
    drop(first);
    let again = pools.get(&key("a")).await.unwrap();
    assert_eq!(again.serial, serial, "a returned connection is reused");
    again.discard();
    assert_eq!(census.live(), 0);
    let fresh = pools.get(&key("a")).await.unwrap();
    assert_ne!(fresh.serial, serial, "a discarded connection came back");
    let stats = pools.stats();
    assert_eq!((stats.discarded, stats.connects), (1, 2), "{stats:?}");
}

#[tokio::test]
async fn removing_a_pool_closes_idle_and_returning_connections() {
    let census = Census::default();
    let pools = fake_pools(config(4, 2), &census, |_| Connect::Succeed);
    let in_use = pools.get(&key("a")).await.unwrap();
    drop(pools.get(&key("a")).await.unwrap());
    assert_eq!(census.live(), 2);
    pools.remove(&key("a"));
    assert_eq!(census.live(), 1, "the idle connection was kept");
    drop(in_use);
    assert_eq!(
        census.live(),
        0,
        "the connection in use went back to a removed pool"
    );
    assert_eq!(pools.stats().open_connections, 0);
    assert!(pools.status(&key("a")).is_none());
    assert!(
        pools.get(&key("a")).await.is_ok(),
        "a new pool is made on demand"
    );
}
