//! Under heavy, skewed concurrency across many keys, the connections alive at once never
//! exceed the global budget, every checkout gets a connection made for its own key, and
//! idle connections are evicted to make room.

mod common;

use std::time::Duration;

use common::{Census, Connect, config, fake_pools};
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_across_many_keys_stay_within_the_budget() {
    let census = Census::default();
    let mut config = config(10, 3);
    config.acquire_timeout = Duration::from_secs(30);
    let pools = fake_pools(config, &census, |_| Connect::Succeed);

    let workers = (0..32u64).map(|worker| {
        let pools = pools.clone();
        async move {
            let mut state = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for step in 0..300u64 {
                // xorshift, skewed towards low keys: key = floor(100 * u^3).
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state % 10_000) as f64 / 10_000.0;
                let key = format!("tenant-{}", (100.0 * u * u * u) as u32);
                let connection = pools.get(&key).await.expect("a connection within 30 s");
                assert_eq!(connection.key, key, "got another key's connection");
                if step % 7 == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                } else {
                    tokio::task::yield_now().await;
                }
                if step % 20 == 0 {
                    connection.discard();
                }
            }
        }
    });
    join_all(workers).await;

    let stats = pools.stats();
    assert!(
        census.peak() <= 10,
        "{} connections were alive at once",
        census.peak()
    );
    assert!(stats.open_connections <= 10);
    assert_eq!(stats.open_connections, census.live(), "{stats:?}");
    assert!(
        stats.evicted_connections > 0,
        "no eviction happened: {stats:?}"
    );
    assert!(stats.waits > 0, "the budget was never contended: {stats:?}");
    assert_eq!(stats.timeouts, 0);
    assert_eq!(stats.checkouts, 32 * 300);
    assert!(stats.discarded > 0);
}
