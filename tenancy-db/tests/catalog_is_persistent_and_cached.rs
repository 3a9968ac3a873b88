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
        let listed = other_node.platform().tenants().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(&listed[0].id, acme.tenant());
        assert_eq!(listed[0].placement.isolation, IsolationMode::Database);
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
