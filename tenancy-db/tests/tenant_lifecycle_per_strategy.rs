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

/// Migrations one step past [`records`]: a `closed` column, in every dialect.
fn records_v2() -> tenancy_db::Migrations {
    let mut list: Vec<tenancy_db::Migration> = records().iter().cloned().collect();
    list.push(
        tenancy_db::Migration::new(2, "closed")
            .postgres("ALTER TABLE records ADD COLUMN closed text")
            .row_level("ALTER TABLE records ADD COLUMN closed text")
            .sqlite("ALTER TABLE records ADD COLUMN closed text"),
    );
    tenancy_db::Migrations::new(list).expect("valid migrations")
}

#[tokio::test]
async fn sqlite_tenants_are_copies_of_a_template_migrated_once_per_content() {
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let dir = std::env::temp_dir().join(format!("tenancy-test-{}", fixture.prefix()));
    let template = |migrations: &tenancy_db::Migrations| {
        dir.join(format!(
            "{}__template{}.sqlite3",
            fixture.prefix(),
            &migrations.fingerprint()[..12]
        ))
    };
    let acme = fixture.tenant("acme", IsolationMode::Database).await;
    add_record(&fixture.db, &acme, 1, "acme's record").await;
    assert!(template(&records()).is_file(), "the template file is made");

    // Tenants never write to the template: the next copy starts empty.
    let globex = fixture.tenant("globex", IsolationMode::Database).await;
    assert!(all_titles(&fixture.db, &globex).await.is_empty());

    // A row planted in the template by hand reaches the next tenant: tenants are copies of
    // it, not migrated from scratch.
    let planted =
        tenancy_db::rusqlite::Connection::open(template(&records())).expect("the template");
    planted
        .execute("INSERT INTO records (id, title) VALUES (7, 'planted')", [])
        .expect("a row in the template");
    planted
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpointed");
    drop(planted);
    let copy = fixture.tenant("copy", IsolationMode::Database).await;
    assert_eq!(all_titles(&fixture.db, &copy).await, ["planted"]);

    // Another content, another template: a handle at version 2 makes tenants with the new
    // column, and leaves the first template as it was.
    let v2 = fixture.reopen(records_v2());
    let id = unique_tenant("newer");
    let placement = Placement::new(fixture.server().clone(), IsolationMode::Database);
    v2.platform()
        .create_tenant(&operator(), id.clone(), "newer", placement)
        .await
        .expect("a tenant at version 2");
    assert!(template(&records_v2()).is_file());
    let newer = TenantContext::new(id, Actor::user("u-1", "User").expect("an actor"));
    let mut tx = v2.transaction(&newer).await.expect("a transaction");
    tx.execute(
        "INSERT INTO records (id, title, closed) VALUES (1, 'a', 'yes')",
        &[],
    )
    .await
    .expect("the version 2 column exists");
    tx.commit().await.expect("committed");
    let old =
        tenancy_db::rusqlite::Connection::open(template(&records())).expect("the first template");
    let columns: i64 = old
        .query_row(
            "SELECT count(*) FROM pragma_table_info('records') WHERE name = 'closed'",
            [],
            |row| row.get(0),
        )
        .expect("its columns");
    assert_eq!(columns, 0, "the version 1 template is untouched");
}

async fn template_mark(
    admin: &tenancy_test::db::SuperuserClient,
    template_db: &str,
) -> Option<String> {
    admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&template_db],
        )
        .await
        .expect("the template's comment")
        .get(0)
}

#[tokio::test]
async fn postgres_template_is_marked_with_its_migrations_and_not_reconnected() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let template_db = format!("{}__template", fixture.prefix());
    let admin = fixture.superuser("postgres").await;
    fixture.tenant("first", IsolationMode::Database).await;
    let expected = format!("tenancy-db migrations {}", records().fingerprint());
    assert_eq!(
        template_mark(&admin, &template_db).await.as_deref(),
        Some(expected.as_str())
    );

    // Another handle (another process, say) with the same migrations reads the mark and
    // never connects to the template: with connections to it refused, it still creates a
    // tenant from it.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{template_db}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("connections to the template refused");
    let same = fixture.reopen(records());
    let placement = Placement::new(fixture.server().clone(), IsolationMode::Database);
    same.platform()
        .create_tenant(
            &operator(),
            unique_tenant("same"),
            "same",
            placement.clone(),
        )
        .await
        .expect("a tenant made from the marked template without connecting to it");

    // A handle with other migrations must migrate the template, so it connects: refused
    // here, which shows that the mark is what spared the connection above.
    let newer = fixture.reopen(records_v2());
    let refused = newer
        .platform()
        .create_tenant(
            &operator(),
            unique_tenant("newer"),
            "newer",
            placement.clone(),
        )
        .await
        .expect_err("the template needed migrating and refuses connections");
    assert!(
        tenancy_test::error_chain(&refused).contains("not currently accepting connections"),
        "{}",
        tenancy_test::error_chain(&refused)
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{template_db}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("connections allowed again");
    let newer = fixture.reopen(records_v2());
    newer
        .platform()
        .create_tenant(&operator(), unique_tenant("newer"), "newer", placement)
        .await
        .expect("a tenant at version 2");
    let expected = format!("tenancy-db migrations {}", records_v2().fingerprint());
    assert_eq!(
        template_mark(&admin, &template_db).await.as_deref(),
        Some(expected.as_str())
    );
}
