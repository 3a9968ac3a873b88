//! Schema tenants spread over several application roles (`schema_role_shards`), so that no
//! connection's role belongs to every tenant's role: each tenant's role belongs to exactly
//! one application role, tenants keep their data whatever the number of roles, and
//! `Platform::prepare` moves memberships when the number changes, leaving suspended
//! tenants suspended.

mod common;

use std::collections::BTreeSet;

use common::{add_record, all_titles, records};
use tenancy_core::IsolationMode;
use tenancy_db::{DbConfig, ErrorKind};
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::operator;

/// (tenant role, application role) for every membership of this fixture's tenant roles.
async fn memberships(fixture: &TestDb) -> Vec<(String, String)> {
    let admin = fixture.superuser("postgres").await;
    admin
        .query(
            "SELECT t.rolname::text, a.rolname::text FROM pg_auth_members m \
             JOIN pg_roles t ON t.oid = m.roleid JOIN pg_roles a ON a.oid = m.member \
             WHERE a.rolname LIKE $1 ORDER BY 1",
            &[&format!("{}\\_\\_app%", fixture.prefix())],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn with_shards(shards: u16) -> impl FnOnce(&mut DbConfig) {
    move |config| *config = config.clone().schema_role_shards(shards)
}

#[tokio::test]
async fn each_schema_tenant_belongs_to_one_application_role_and_moves_with_the_count() {
    let fixture = TestDb::with_config(Backend::Postgres, records(), with_shards(3)).await;
    let naming = fixture.db.naming();
    let mut tenants = Vec::new();
    for i in 0..12 {
        let ctx = fixture
            .tenant(&format!("t{i}"), IsolationMode::Schema)
            .await;
        add_record(&fixture.db, &ctx, 1, ctx.tenant().as_str()).await;
        tenants.push(ctx);
    }
    for ctx in &tenants {
        assert_eq!(all_titles(&fixture.db, ctx).await, [ctx.tenant().as_str()]);
    }
    let spread = memberships(&fixture).await;
    assert_eq!(
        spread.len(),
        tenants.len(),
        "one membership per tenant: {spread:?}"
    );
    let apps: BTreeSet<&str> = spread.iter().map(|(_, app)| app.as_str()).collect();
    assert!(
        apps.len() > 1,
        "12 tenants all on one of 3 roles: {spread:?}"
    );

    // Hand-written SQL cannot switch to a tenant of another application role.
    let app_of = |ctx: &tenancy_core::TenantContext| {
        let role = naming.sql_name(ctx.tenant());
        spread
            .iter()
            .find(|(tenant, _)| *tenant == role)
            .unwrap()
            .1
            .clone()
    };
    let (a, b) = tenants
        .iter()
        .flat_map(|a| tenants.iter().map(move |b| (a, b)))
        .find(|(a, b)| app_of(a) != app_of(b))
        .unwrap();
    let mut tx = fixture.db.transaction(a).await.unwrap();
    let client = tx.as_postgres().await.unwrap().expect("PostgreSQL");
    let refused = client
        .batch_execute(&format!(
            "SET LOCAL ROLE \"{}\"",
            naming.sql_name(b.tenant())
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    drop(tx);

    // A node with one application role: prepare moves every active membership to it.
    let suspended = &tenants[0];
    fixture
        .db
        .platform()
        .suspend(&operator(), suspended.tenant())
        .await
        .unwrap();
    let single = fixture.reopen_with(records(), with_shards(1));
    // Suspended by the new node before its `prepare`: the membership it revokes is one the
    // old count granted, to another application role than its own count would pick.
    let app = naming.platform_sql_name("app");
    let elsewhere = tenants[1..]
        .iter()
        .find(|ctx| app_of(ctx) != app)
        .expect("12 tenants on 3 roles, some not on the first");
    single
        .platform()
        .suspend(&operator(), elsewhere.tenant())
        .await
        .unwrap();
    let role = naming.sql_name(elsewhere.tenant());
    assert!(
        memberships(&fixture)
            .await
            .iter()
            .all(|(tenant, _)| *tenant != role),
        "a suspension left the application able to act as the tenant"
    );
    single.platform().prepare(&operator()).await.unwrap();
    let moved = memberships(&fixture).await;
    assert_eq!(moved.len(), tenants.len() - 2, "{moved:?}");
    assert!(moved.iter().all(|(_, to)| *to == app), "{moved:?}");
    for ctx in tenants[1..]
        .iter()
        .filter(|ctx| ctx.tenant() != elsewhere.tenant())
    {
        assert_eq!(all_titles(&single, ctx).await, [ctx.tenant().as_str()]);
    }
    let refused = single.transaction(suspended).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::TenantSuspended);

    // Resumed under the new count, the suspended tenant is back on the one role.
    single
        .platform()
        .resume(&operator(), suspended.tenant())
        .await
        .unwrap();
    assert_eq!(
        all_titles(&single, suspended).await,
        [suspended.tenant().as_str()]
    );
    assert_eq!(memberships(&fixture).await.len(), tenants.len() - 1);
}
