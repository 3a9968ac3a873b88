//! Tenants are created, suspended, resumed, archived and dropped under every strategy; a
//! tenant that may not be served is refused before any I/O on its data; dropping removes
//! exactly that tenant's data; every step is in the platform log with its operator.

mod common;

use common::{STRATEGIES, add_record, all_titles, records};
use tenancy_core::{Actor, IsolationMode, Placement, PlatformContext, TenantContext};
use tenancy_db::ErrorKind;
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::{operator, unique_tenant};

async fn refused(fixture: &TestDb, ctx: &TenantContext) -> ErrorKind {
    fixture
        .db
        .transaction(ctx)
        .await
        .expect_err("served")
        .kind()
}

#[tokio::test]
async fn every_strategy_goes_through_the_whole_lifecycle() {
    for (backend, isolation) in STRATEGIES {
        let what = format!("{backend:?}/{isolation}");
        let fixture = TestDb::new(backend, records()).await;
        let platform = fixture.db.platform();
        let op = operator();
        let acme = fixture.tenant("acme", isolation).await;
        let bystander = fixture.tenant("bystander", isolation).await;
        add_record(&fixture.db, &acme, 1, "Acme").await;
        add_record(&fixture.db, &bystander, 1, "Bystander").await;

        let again = platform
            .create_tenant(
                &op,
                acme.tenant().clone(),
                "Acme again",
                Placement::new(fixture.server().clone(), isolation),
            )
            .await
            .unwrap_err();
        assert_eq!(again.kind(), ErrorKind::TenantExists, "{what}");

        platform.suspend(&op, acme.tenant()).await.unwrap();
        assert_eq!(
            refused(&fixture, &acme).await,
            ErrorKind::TenantSuspended,
            "{what}"
        );
        let dropping_active = platform
            .drop_tenant(&op, bystander.tenant())
            .await
            .unwrap_err();
        assert!(
            dropping_active
                .to_string()
                .contains("suspend or archive it"),
            "{what}"
        );

        platform.resume(&op, acme.tenant()).await.unwrap();
        assert_eq!(all_titles(&fixture.db, &acme).await, ["Acme"], "{what}");

        platform.archive(&op, acme.tenant()).await.unwrap();
        assert_eq!(
            refused(&fixture, &acme).await,
            ErrorKind::TenantArchived,
            "{what}"
        );
        platform.drop_tenant(&op, acme.tenant()).await.unwrap();
        assert_eq!(
            refused(&fixture, &acme).await,
            ErrorKind::UnknownTenant,
            "{what}"
        );
        assert_eq!(
            all_titles(&fixture.db, &bystander).await,
            ["Bystander"],
            "{what}"
        );

        let actions: Vec<(String, Option<tenancy_core::TenantId>)> = platform
            .events(&operator(), 20)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.operator_id == "tenancy-test")
            .map(|e| (e.action, e.tenant))
            .collect();
        let acme_id = Some(acme.tenant().clone());
        for action in [
            "tenant.create",
            "tenant.suspend",
            "tenant.resume",
            "tenant.archive",
            "tenant.drop",
        ] {
            assert!(
                actions.contains(&(action.to_owned(), acme_id.clone())),
                "{what}: no {action} in {actions:?}"
            );
        }
    }
}

#[tokio::test]
async fn dropping_removes_the_tenants_database_objects_and_nothing_else() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let naming = fixture.db.naming();
    let platform = fixture.db.platform();
    let op = operator();
    let admin = fixture.superuser("postgres").await;
    let shared = fixture.superuser(&naming.platform_sql_name("shared")).await;
    let database = fixture.tenant("database", IsolationMode::Database).await;
    let schema = fixture.tenant("schema", IsolationMode::Schema).await;
    let row = fixture.tenant("row", IsolationMode::Row).await;
    let row_other = fixture.tenant("row-other", IsolationMode::Row).await;
    for ctx in [&database, &schema, &row, &row_other] {
        add_record(&fixture.db, ctx, 1, "x").await;
    }
    let count = |sql: &'static str, name: String| {
        let (admin, shared) = (&admin, &shared);
        async move {
            let client = if sql.contains("pg_namespace") || sql.contains("records") {
                shared
            } else {
                admin
            };
            client
                .query_one(sql, &[&name])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let db_name = naming.sql_name(database.tenant());
    let schema_name = naming.sql_name(schema.tenant());

    // Database per tenant: its role stores a SCRAM verifier, never a plain password.
    let verifier: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&db_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");

    // Suspension reaches the database: no login for the tenant's role, no membership for
    // the application in the schema tenant's role.
    platform.suspend(&op, database.tenant()).await.unwrap();
    platform.suspend(&op, schema.tenant()).await.unwrap();
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&db_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_login);
    let member: bool = admin
        .query_one(
            "SELECT pg_has_role($1, $2, 'MEMBER')",
            &[&naming.platform_sql_name("app"), &schema_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!member);

    platform.suspend(&op, row.tenant()).await.unwrap();
    for ctx in [&database, &schema, &row] {
        platform.drop_tenant(&op, ctx.tenant()).await.unwrap();
    }
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            db_name.clone()
        )
        .await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_roles WHERE rolname = $1", db_name).await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            schema_name.clone()
        )
        .await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            schema_name
        )
        .await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM records WHERE tenant_id = $1",
            row.tenant().to_string()
        )
        .await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM records WHERE tenant_id = $1",
            row_other.tenant().to_string()
        )
        .await,
        1
    );
}

#[tokio::test]
async fn unknown_tenants_and_impossible_placements_are_refused_before_any_io() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let fixture = TestDb::new(backend, records()).await;
        let ghost = TenantContext::new(unique_tenant("ghost"), Actor::anonymous());
        // Warm the catalog's own connection, then count.
        let _ = fixture.db.platform().tenants(&operator()).await.unwrap();
        let before = fixture.db.pool_stats(fixture.server()).unwrap();
        assert_eq!(refused(&fixture, &ghost).await, ErrorKind::UnknownTenant);
        let after = fixture.db.pool_stats(fixture.server()).unwrap();
        // Only the catalog was read: no pool, no connection was made for the ghost.
        assert_eq!(after.pools, before.pools, "{backend:?}: {after:?}");
        assert_eq!(after.connects, before.connects, "{backend:?}: {after:?}");
    }
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let err = fixture
        .db
        .platform()
        .create_tenant(
            &operator(),
            unique_tenant("rowlite"),
            "Row on SQLite",
            Placement::new(fixture.server().clone(), IsolationMode::Row),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("offers database isolation only"),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("tenancy-test-{}", fixture.prefix()));
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        files
            .iter()
            .all(|name| name.to_string_lossy().contains("__platform")),
        "a tenant file was created: {files:?}"
    );
}

#[tokio::test]
async fn operations_are_attributed_in_the_platform_log() {
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let operator = PlatformContext::new(Actor::user("ops-7", "Olga Operator").unwrap()).unwrap();
    let id = unique_tenant("attributed");
    fixture
        .db
        .platform()
        .create_tenant(
            &operator,
            id.clone(),
            "Attributed",
            Placement::new(fixture.server().clone(), IsolationMode::Database),
        )
        .await
        .unwrap();
    let event = fixture
        .db
        .platform()
        .events(&operator, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(event.action, "tenant.create");
    assert_eq!(event.tenant.as_ref(), Some(&id));
    assert_eq!(
        (event.operator_id.as_str(), event.operator_name.as_str()),
        ("ops-7", "Olga Operator")
    );
    assert_eq!(&event.correlation_id, operator.correlation_id());
    fixture.db.platform().archive(&operator, &id).await.unwrap();
    fixture
        .db
        .platform()
        .drop_tenant(&operator, &id)
        .await
        .unwrap();
}
