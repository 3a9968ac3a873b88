//! The catalog outlives the handle that wrote it, and every handle sees a change made
//! elsewhere within its cache time (the handle that made it, at once).

mod common;

use std::time::Duration;

use common::{add_record, records};
use tenancy_core::{Catalog, IsolationMode, TenantStatus};
use tenancy_db::ErrorKind;
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::operator;

#[tokio::test]
async fn another_handle_reads_the_catalog_and_sees_suspensions_within_the_ttl() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let fixture = TestDb::with_config(backend, records(), |config| {
            config.catalog_cache_ttl = Duration::from_millis(300);
        })
        .await;
        let acme = fixture.tenant("acme", IsolationMode::Database).await;
        add_record(&fixture.db, &acme, 1, "Acme").await;

        let other_node = fixture.reopen(records());
        let listed = other_node.platform().tenants(&operator()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(&listed[0].id, acme.tenant());
        assert_eq!(
            listed[0].placement.as_ref().map(|p| p.isolation),
            Some(IsolationMode::Database)
        );
        assert!(other_node.transaction(&acme).await.is_ok(), "{backend:?}");

        fixture
            .db
            .platform()
            .suspend(&operator(), acme.tenant())
            .await
            .unwrap();
        let here = fixture.db.transaction(&acme).await.unwrap_err();
        assert_eq!(
            here.kind(),
            ErrorKind::TenantSuspended,
            "seen at once where it was made"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let there = other_node
            .catalog()
            .lookup(acme.tenant())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(there.status, TenantStatus::Suspended, "{backend:?}");
        let err = other_node.transaction(&acme).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TenantSuspended);
    }
}

/// A handle keeps a replica of the whole catalog: admitting many tenants reads the catalog
/// once, not once per tenant; an id the replica does not hold is refused without a query;
/// a tenant created elsewhere is admitted, and one suspended, then dropped, elsewhere is
/// refused, once the replica is brought up to date.
#[tokio::test]
async fn a_handle_reads_the_catalog_once_for_many_tenants_and_follows_changes() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let fixture = TestDb::with_config(backend, records(), |config| {
            config.catalog_cache_ttl = Duration::from_millis(300);
        })
        .await;
        let mut tenants = Vec::new();
        for n in 0..12 {
            let isolation = match backend {
                Backend::Postgres => IsolationMode::Row,
                Backend::Sqlite => IsolationMode::Database,
            };
            let ctx = fixture.tenant(&format!("t{n}"), isolation).await;
            add_record(&fixture.db, &ctx, 1, ctx.tenant().as_str()).await;
            tenants.push(ctx);
        }

        let other_node = fixture.reopen(records());
        let stats = || other_node.pool_stats(fixture.server()).unwrap().checkouts;
        for ctx in &tenants {
            other_node
                .transaction(ctx)
                .await
                .unwrap()
                .rollback()
                .await
                .unwrap();
        }
        assert_eq!(
            stats(),
            tenants.len() as u64 + 1,
            "{backend:?}: one checkout per transaction and one for the whole catalog"
        );

        // A flood of made-up ids (random subdomains before authentication) is refused
        // from the replica alone: not one catalog checkout.
        let before_flood = stats();
        for n in 0..2_000 {
            let made_up = tenancy_core::TenantContext::new(
                format!("nobody-{n}").parse().unwrap(),
                tenancy_core::Actor::anonymous(),
            );
            let refused = other_node.transaction(&made_up).await.unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::UnknownTenant);
        }
        assert_eq!(
            stats(),
            before_flood,
            "{backend:?}: unknown ids reached the catalog"
        );

        // Created here after the other node loaded its replica: unknown there until its
        // next update, admitted there within the ttl; here, at once.
        let late = fixture.tenant("late", IsolationMode::Database).await;
        assert!(fixture.db.transaction(&late).await.is_ok(), "{backend:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(other_node.transaction(&late).await.is_ok(), "{backend:?}");

        // Suspended and dropped here: refused there once its replica is updated.
        let gone = &tenants[0];
        let platform = fixture.db.platform();
        platform.suspend(&operator(), gone.tenant()).await.unwrap();
        platform
            .drop_tenant(&operator(), gone.tenant())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let refused = other_node.transaction(gone).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::UnknownTenant, "{backend:?}");
        assert!(other_node.transaction(&tenants[1]).await.is_ok());
    }
}

/// Catalog reads are time-limited like tenant statements: a locked catalog fails
/// admissions with `CatalogUnavailable` within the statement timeout, all of them at once
/// rather than one timeout after another, and admissions resume when the lock goes.
#[tokio::test]
async fn a_locked_catalog_fails_admissions_within_the_statement_timeout() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        *config = config
            .clone()
            .statement_timeout(Some(Duration::from_millis(300)));
    })
    .await;
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let platform_db = fixture.db.naming().platform_sql_name("platform");
    let admin = fixture.superuser(&platform_db).await;
    admin
        .batch_execute("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // A new node: its replica must read the locked catalog. Eight requests at once: the
    // first waits out the timeout, the others fail with it rather than in turn after it.
    let other_node = fixture.reopen(records());
    let started = std::time::Instant::now();
    let attempts = tokio::time::timeout(
        Duration::from_secs(3),
        futures::future::join_all((0..8).map(|_| other_node.transaction(&acme))),
    )
    .await;
    let elapsed = started.elapsed();
    admin.batch_execute("ROLLBACK").await.unwrap();
    for attempt in attempts.expect("the admissions waited more than 3 s for a locked catalog") {
        let refused = attempt.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::CatalogUnavailable, "{refused}");
    }
    assert!(
        elapsed < Duration::from_millis(1500),
        "eight admissions took {elapsed:?}: they waited out the timeout one after another"
    );

    // The lock is gone; after the pause that follows a failure, admissions work again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(other_node.transaction(&acme).await.is_ok());
}
