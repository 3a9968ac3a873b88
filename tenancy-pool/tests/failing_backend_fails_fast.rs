//! A key whose server refuses or hangs fails fast, keeps failing fast for a short while
//! without new attempts, gives back its budget, and does not slow other keys down.

mod common;

use std::error::Error as _;
use std::time::{Duration, Instant};

use common::{Census, Connect, config, fake_pools, key};
use tenancy_pool::ErrorKind;

#[tokio::test]
async fn a_refusing_server_fails_at_once_and_then_without_retrying() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.retry_after_failure = Duration::from_millis(300);
    let pools = fake_pools(config, &census, |key| {
        if key == "down" {
            Connect::Fail
        } else {
            Connect::Succeed
        }
    });

    let err = pools.get(&key("down")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.to_string(), "connecting for down failed");
    assert_eq!(
        err.source().unwrap().to_string(),
        "connection refused by the fake server"
    );

    let started = Instant::now();
    let err = pools.get(&key("down")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(
        err.to_string()
            .contains("connection refused by the fake server"),
        "{err}"
    );
    assert_eq!(
        pools.stats().connect_failures,
        1,
        "the second checkout tried again"
    );

    let up = pools
        .get(&key("up"))
        .await
        .expect("other keys are unaffected");
    assert_eq!(up.key, "up");
    assert_eq!(
        pools.stats().open_connections,
        1,
        "a failed attempt kept its permit"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let err = pools.get(&key("down")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Connect,
        "after the pause it tries again"
    );
    assert_eq!(pools.stats().connect_failures, 2);
}

#[tokio::test]
async fn a_hanging_server_times_out_at_the_connect_timeout() {
    let census = Census::default();
    let mut config = config(2, 2);
    config.connect_timeout = Duration::from_millis(100);
    config.acquire_timeout = Duration::from_secs(5);
    let pools = fake_pools(config, &census, |key| {
        if key == "hung" {
            Connect::Take(Duration::from_secs(60))
        } else {
            Connect::Succeed
        }
    });
    let started = Instant::now();
    let err = pools.get(&key("hung")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.to_string().contains("timed out after 100ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pools.stats().open_connections, 0);
    assert!(pools.get(&key("fine")).await.is_ok());
}
