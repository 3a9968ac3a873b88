//! One tenant's database refusing connections, or locked so its statements hang, fails
//! that tenant quickly with a clear error and leaves other tenants' traffic untouched:
//! bounded waits, a per-tenant connection cap, a statement timeout, and a fail-fast pause
//! after a refused connection.

mod common;

use std::time::{Duration, Instant};

use common::{add_record, all_titles, records};
use futures::future::join_all;
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{ErrorKind, TenantDb};
use tenancy_test::db::{Backend, TestDb};

/// Runs `rounds` transactions for each tenant in `healthy`, concurrently; returns how many
/// failed and the slowest.
async fn healthy_traffic(
    db: &TenantDb,
    healthy: &[TenantContext],
    rounds: usize,
) -> (usize, Duration) {
    let results = join_all(healthy.iter().flat_map(|ctx| {
        (0..rounds).map(move |_| async move {
            let started = Instant::now();
            let ok = async {
                let mut tx = db.transaction(ctx).await?;
                tx.query("SELECT title FROM records", &[]).await?;
                tx.commit().await
            }
            .await
            .is_ok();
            (ok, started.elapsed())
        })
    }))
    .await;
    let failed = results.iter().filter(|(ok, _)| !ok).count();
    let slowest = results
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    (failed, slowest)
}

#[tokio::test]
async fn a_database_that_refuses_connections_fails_fast_for_its_tenant_only() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let db = &fixture.db;
    let down = fixture.tenant("down", IsolationMode::Database).await;
    let healthy = vec![
        fixture.tenant("ok-one", IsolationMode::Database).await,
        fixture.tenant("ok-two", IsolationMode::Schema).await,
        fixture.tenant("ok-three", IsolationMode::Row).await,
    ];
    for ctx in healthy.iter().chain([&down]) {
        add_record(db, ctx, 1, "warm").await;
    }

    let database = db.naming().sql_name(down.tenant());
    let admin = fixture.superuser("postgres").await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .await
        .unwrap();

    let (tenant_side, (failed, slowest)) = tokio::join!(
        async {
            let mut outcomes = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                let result = db.transaction(&down).await;
                outcomes.push((
                    result
                        .err()
                        .map(|e| (e.kind(), tenancy_test::error_chain(&e))),
                    started.elapsed(),
                ));
            }
            outcomes
        },
        healthy_traffic(db, &healthy, 20)
    );
    assert_eq!(
        failed, 0,
        "healthy tenants failed while one database was down"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "healthy traffic slowed to {slowest:?}"
    );
    for (error, took) in &tenant_side {
        let (kind, message) = error.as_ref().expect("the downed tenant was served");
        assert!(
            matches!(
                kind,
                ErrorKind::DatabaseUnavailable | ErrorKind::Transaction
            ),
            "{kind:?}: {message}"
        );
        assert!(
            *took < Duration::from_secs(1),
            "failing took {took:?}: {message}"
        );
    }
    let last = tenant_side.last().unwrap().0.as_ref().unwrap();
    assert!(
        last.1.contains(&format!("tenant `{}`", down.tenant())),
        "{}",
        last.1
    );

    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        all_titles(db, &down).await,
        ["warm"],
        "the tenant did not recover"
    );
}

#[tokio::test]
async fn a_locked_database_times_out_its_own_statements_and_holds_at_most_its_cap() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        *config = config
            .clone()
            .statement_timeout(Some(Duration::from_millis(300)));
    })
    .await;
    let db = &fixture.db;
    let stuck = fixture.tenant("stuck", IsolationMode::Database).await;
    let healthy = vec![
        fixture.tenant("ok-one", IsolationMode::Database).await,
        fixture.tenant("ok-two", IsolationMode::Row).await,
    ];
    for ctx in healthy.iter().chain([&stuck]) {
        add_record(db, ctx, 1, "warm").await;
    }

    // An operator's transaction holds an exclusive lock on the stuck tenant's table.
    let locker = fixture
        .superuser(&db.naming().sql_name(stuck.tenant()))
        .await;
    locker
        .batch_execute("BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let stuck_requests = (0..12).map(|_| async {
        let started = Instant::now();
        let outcome = async {
            let mut tx = db.transaction(&stuck).await?;
            tx.query("SELECT title FROM records", &[]).await
        }
        .await;
        (outcome.map(drop), started.elapsed())
    });
    let (stuck_outcomes, (failed, slowest)) = tokio::join!(join_all(stuck_requests), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        healthy_traffic(db, &healthy, 30).await
    });
    assert_eq!(failed, 0, "healthy tenants failed while one was locked");
    assert!(
        slowest < Duration::from_millis(1_500),
        "healthy traffic waited {slowest:?}"
    );
    for (outcome, took) in stuck_outcomes {
        let error = outcome.expect_err("a locked table answered");
        assert!(
            matches!(error.kind(), ErrorKind::Query | ErrorKind::PoolTimeout),
            "{error}"
        );
        if error.kind() == ErrorKind::Query {
            assert_eq!(error.sql_state(), Some("57014"), "{error}");
        }
        assert!(
            took < Duration::from_secs(6),
            "the stuck tenant's request took {took:?}"
        );
    }
    let stats = db.pool_stats(fixture.server()).unwrap();
    assert!(stats.open_connections <= 10, "{stats:?}");
    drop(locker);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let secret = tenancy_db::Secret::new(tenancy_test::db::TEST_SECRET).unwrap();
    // Nothing listens on port 1.
    let config = tenancy_db::DbConfig::postgres("postgres://postgres@127.0.0.1:1/postgres", secret);
    let db = TenantDb::new(config, records()).unwrap();
    let started = Instant::now();
    let err = db
        .platform()
        .prepare(&tenancy_test::operator())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), ErrorKind::DatabaseUnavailable, "{err:?}");
    let chain = tenancy_test::error_chain(&err);
    assert!(
        chain.contains("connecting for the admin connection failed"),
        "{chain}"
    );
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
}
