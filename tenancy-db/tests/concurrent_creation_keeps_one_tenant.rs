//! Two platform operators creating the same tenant at once: one succeeds, the other fails,
//! and the loser's clean-up never tears down what the winner made.

mod common;

use common::{add_record, all_titles, records};
use tenancy_core::{IsolationMode, Placement, TenantContext};
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::{operator, unique_tenant};

#[tokio::test]
async fn the_loser_of_a_creation_race_leaves_the_winner_intact() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        let id = unique_tenant("raced");
        let (platform, op) = (fixture.db.platform(), operator());
        let create = || {
            platform.create_tenant(
                &op,
                id.clone(),
                "Raced",
                Placement::new(fixture.server().clone(), isolation),
            )
        };
        let (first, second) = tokio::join!(create(), create());
        let succeeded = usize::from(first.is_ok()) + usize::from(second.is_ok());
        assert_eq!(succeeded, 1, "{isolation}: {first:?} / {second:?}");
        let ctx = TenantContext::new(id.clone(), tenancy_core::Actor::anonymous());
        add_record(&fixture.db, &ctx, 1, "survives").await;
        assert_eq!(
            all_titles(&fixture.db, &ctx).await,
            ["survives"],
            "{isolation}"
        );
        fixture
            .db
            .platform()
            .archive(&operator(), &id)
            .await
            .unwrap();
        fixture
            .db
            .platform()
            .drop_tenant(&operator(), &id)
            .await
            .unwrap();
    }
}
