//! A checkout dropped at any point (waiting for the budget, half-way through connecting)
//! leaves no permit taken and no connection behind.

mod common;

use std::time::Duration;

use common::{Census, Connect, config, fake_pools, key};

#[tokio::test]
async fn checkouts_cancelled_at_random_points_leak_nothing() {
    let census = Census::default();
    let pools = fake_pools(config(3, 3), &census, |_| {
        Connect::Take(Duration::from_millis(4))
    });
    for round in 0..60u64 {
        let cancel_after = Duration::from_micros((round * 137) % 6_000);
        let key = key(&format!("tenant-{}", round % 5));
        let attempt = tokio::time::timeout(cancel_after, pools.get(&key)).await;
        if let Ok(connection) = attempt {
            let connection = connection.expect("a connection");
            assert_eq!(connection.key, key);
            if round % 3 == 0 {
                connection.discard();
            }
        }
        let stats = pools.stats();
        assert_eq!(
            stats.open_connections,
            census.live(),
            "round {round}: {stats:?}"
        );
        assert!(census.live() <= 3);
    }
    // Everything is usable afterwards: the budget is whole.
    let held: Vec<_> = futures::future::join_all((0..3).map(|n| {
        let pools = pools.clone();
        async move { pools.get(&key(&format!("fresh-{n}"))).await.unwrap() }
    }))
    .await;
    assert_eq!(held.len(), 3);
    assert_eq!(census.live(), 3);
}
