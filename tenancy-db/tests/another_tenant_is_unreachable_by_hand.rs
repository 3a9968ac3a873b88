//! Hand-written SQL cannot reach another tenant: not by naming its database, its schema or
//! its rows, not by resetting the role, not through state a shared connection carries from
//! one tenant to the next (held cursors, cached statements, temporary tables), and not by
//! attaching its SQLite file.

mod common;

use common::{add_record, all_titles, records};
use tenancy_core::IsolationMode;
use tenancy_db::ErrorKind;
use tenancy_db::tokio_postgres;
use tenancy_test::db::{Backend, TestDb, connect};

const PERMISSION_DENIED: &str = "42501";

/// A connection as `role` to `database` with the role's own password, the way someone
/// holding that role's credentials would connect.
async fn connect_as(
    fixture: &TestDb,
    role: &str,
    database: &str,
) -> Result<tenancy_test::db::SuperuserClient, tokio_postgres::Error> {
    let config = fixture.login(role, database);
    // Probe first so that a refusal is returned rather than a panic.
    config.connect(tokio_postgres::NoTls).await.map(drop)?;
    Ok(connect(&config).await)
}

#[tokio::test]
async fn a_tenant_role_cannot_connect_to_another_tenants_database() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let naming = fixture.db.naming();
    let acme = fixture.tenant("acme", IsolationMode::Database).await;
    let beta = fixture.tenant("beta", IsolationMode::Database).await;
    add_record(&fixture.db, &beta, 1, "Beta secret").await;
    let acme_role = naming.sql_name(acme.tenant());
    let beta_db = naming.sql_name(beta.tenant());

    let own = connect_as(&fixture, &acme_role, &acme_role)
        .await
        .expect("its own database");
    drop(own);
    for database in [
        beta_db,
        naming.platform_sql_name("shared"),
        naming.platform_sql_name("platform"),
        naming.platform_sql_name("template"),
    ] {
        let Err(refused) = connect_as(&fixture, &acme_role, &database).await else {
            panic!("{acme_role} connected to {database}");
        };
        let code = refused.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(
            code.as_deref(),
            Some(PERMISSION_DENIED),
            "{database}: {refused}"
        );
    }
}

#[tokio::test]
async fn a_schema_tenant_cannot_read_another_schema_even_after_reset_role() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let naming = fixture.db.naming();
    let acme = fixture.tenant("acme", IsolationMode::Schema).await;
    let beta = fixture.tenant("beta", IsolationMode::Schema).await;
    add_record(&fixture.db, &beta, 1, "Beta secret").await;
    let beta_schema = naming.sql_name(beta.tenant());

    for attempt in [
        format!("SELECT title FROM \"{beta_schema}\".records"),
        format!("RESET ROLE; SELECT title FROM \"{beta_schema}\".records"),
        String::from("RESET ROLE; SELECT title FROM records"),
        String::from("SET LOCAL search_path TO public; SELECT title FROM records"),
    ] {
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        let err = tx.batch(&attempt).await.unwrap_err();
        // Denied outright, or not even visible: the application role has no use of any
        // tenant schema without the tenant's role.
        assert!(
            matches!(err.sql_state(), Some(PERMISSION_DENIED | "42P01")),
            "{attempt}: {err}"
        );
        tx.rollback().await.unwrap();
    }
    assert_eq!(all_titles(&fixture.db, &acme).await, Vec::<String>::new());
}

#[tokio::test]
async fn row_level_security_refuses_other_tenants_rows_and_unbound_sessions() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let naming = fixture.db.naming();
    let acme = fixture.tenant("acme", IsolationMode::Row).await;
    let beta = fixture.tenant("beta", IsolationMode::Row).await;
    add_record(&fixture.db, &beta, 1, "Beta secret").await;
    add_record(&fixture.db, &acme, 1, "Acme own").await;

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let forged = tx
        .execute(
            "INSERT INTO records (tenant_id, id, title) VALUES ($1, 2, 'planted')",
            &[beta.tenant().as_str().into()],
        )
        .await
        .unwrap_err();
    assert_eq!(forged.sql_state(), Some(PERMISSION_DENIED), "{forged}");
    tx.rollback().await.unwrap();

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let moved = tx
        .execute(
            "UPDATE records SET tenant_id = $1",
            &[beta.tenant().as_str().into()],
        )
        .await
        .unwrap_err();
    assert_eq!(moved.sql_state(), Some(PERMISSION_DENIED), "{moved}");
    tx.rollback().await.unwrap();

    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let filtered = tx
        .query(
            "SELECT title FROM records WHERE tenant_id = $1",
            &[beta.tenant().as_str().into()],
        )
        .await
        .unwrap();
    assert!(
        filtered.is_empty(),
        "asking for beta's rows by name returned them"
    );
    let deleted = tx.execute("DELETE FROM records", &[]).await.unwrap();
    assert_eq!(deleted, 1, "only acme's own row can be deleted");
    tx.rollback().await.unwrap();

    // The application role with no tenant bound sees nothing and writes nothing.
    let app = connect_as(
        &fixture,
        &naming.platform_sql_name("app"),
        &naming.platform_sql_name("shared"),
    )
    .await
    .expect("the application role connects to the shared database");
    let rows = app.query("SELECT title FROM records", &[]).await.unwrap();
    assert!(
        rows.is_empty(),
        "an unbound session saw {} rows",
        rows.len()
    );
    let unbound = app
        .execute("INSERT INTO records (id, title) VALUES (9, 'orphan')", &[])
        .await
        .unwrap_err();
    // Refused by the policy (no tenant to match) before the NOT NULL on tenant_id.
    assert!(
        matches!(
            unbound.code().map(|c| c.code()),
            Some(PERMISSION_DENIED | "23502")
        ),
        "{unbound}"
    );
    let truncate = app.batch_execute("TRUNCATE records").await.unwrap_err();
    assert_eq!(truncate.code().map(|c| c.code()), Some(PERMISSION_DENIED));
    app.batch_execute("BEGIN; SELECT set_config('app.tenant_id', '', true)")
        .await
        .unwrap();
    assert!(
        app.query("SELECT 1 FROM records", &[])
            .await
            .unwrap()
            .is_empty()
    );
    app.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn shared_connections_carry_nothing_from_one_tenant_to_the_next() {
    // One connection per pool, so every transaction below reuses the same connection.
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        let mut pool = tenancy_test::db::test_pool();
        pool.max_connections_per_pool = 1;
        *config = config.clone().pool(&pool);
    })
    .await;
    for isolation in [IsolationMode::Schema, IsolationMode::Row] {
        let acme = fixture.tenant("acme", isolation).await;
        let beta = fixture.tenant("beta", isolation).await;
        add_record(&fixture.db, &acme, 1, "Acme secret").await;
        add_record(&fixture.db, &beta, 1, "Beta own").await;

        // A cursor held past the commit would hand Acme's rows to Beta.
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        tx.batch("DECLARE leak CURSOR WITH HOLD FOR SELECT title FROM records")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = fixture.db.transaction(&beta).await.unwrap();
        let err = tx.batch("FETCH ALL FROM leak").await.unwrap_err();
        assert_eq!(err.sql_state(), Some("34000"), "{isolation}: {err}");
        tx.rollback().await.unwrap();

        // A statement prepared (and cached) for Acme runs as Beta's for Beta.
        assert_eq!(
            all_titles(&fixture.db, &acme).await,
            ["Acme secret"],
            "{isolation}"
        );
        assert_eq!(
            all_titles(&fixture.db, &beta).await,
            ["Beta own"],
            "{isolation}"
        );
        assert_eq!(
            all_titles(&fixture.db, &acme).await,
            ["Acme secret"],
            "{isolation}"
        );

        // Temporary tables, which no policy covers, cannot be made at all.
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        let err = tx
            .batch("CREATE TEMP TABLE notes (body text)")
            .await
            .unwrap_err();
        assert_eq!(
            err.sql_state(),
            Some(PERMISSION_DENIED),
            "{isolation}: {err}"
        );
        tx.rollback().await.unwrap();

        // Session-level settings made by one tenant's code are overridden for the next.
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        tx.batch("SELECT set_config('search_path', 'public', false)")
            .await
            .ok();
        tx.rollback().await.ok();
        assert_eq!(
            all_titles(&fixture.db, &beta).await,
            ["Beta own"],
            "{isolation}"
        );
    }
}

#[tokio::test]
async fn a_sqlite_tenant_cannot_attach_another_tenants_file() {
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let acme = fixture.tenant("acme", IsolationMode::Database).await;
    let beta = fixture.tenant("beta", IsolationMode::Database).await;
    add_record(&fixture.db, &beta, 1, "Beta secret").await;
    let beta_file = std::env::temp_dir()
        .join(format!("tenancy-test-{}", fixture.prefix()))
        .join(format!(
            "{}.sqlite3",
            fixture.db.naming().sql_name(beta.tenant())
        ));
    assert!(
        beta_file.exists(),
        "the test looks for the wrong file: {}",
        beta_file.display()
    );

    for attempt in [
        format!("ATTACH DATABASE '{}' AS beta", beta_file.display()),
        format!(
            "ATTACH DATABASE 'file:{}?mode=ro' AS beta",
            beta_file.display()
        ),
    ] {
        let mut tx = fixture.db.transaction(&acme).await.unwrap();
        let err = tx.batch(&attempt).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Query, "{attempt}");
        assert!(
            tenancy_test::error_chain(&err).contains("too many attached databases"),
            "{attempt}: {err}"
        );
        tx.rollback().await.unwrap();
    }
    // Copying the tenant's file elsewhere is refused too: inside a transaction SQLite
    // refuses VACUUM outright, and a COMMIT written into the SQL to leave the transaction
    // first is turned into a rollback that fails the transaction (so the VACUUM after it
    // never runs outside one, where the attach limit would refuse VACUUM INTO anyway).
    let copy = std::env::temp_dir().join(format!("tenancy-copy-{}.sqlite3", fixture.prefix()));
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let err = tx
        .batch(&format!("VACUUM INTO '{}'", copy.display()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Query, "{err}");
    drop(tx);
    let mut tx = fixture.db.transaction(&acme).await.unwrap();
    let err = tx
        .batch(&format!("COMMIT; VACUUM INTO '{}'", copy.display()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transaction, "{err}");
    drop(tx);
    assert!(
        !copy.exists(),
        "the tenant's file was copied to {}",
        copy.display()
    );
}

/// The driver's own client, handed out inside a tenant transaction, keeps its connection
/// when the session is as it was lent, and loses it when a statement sent through it left
/// state behind: the same end-of-transaction check as every other statement.
#[tokio::test]
async fn a_raw_client_keeps_its_connection_only_while_the_session_is_clean() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    for isolation in [IsolationMode::Schema, IsolationMode::Row] {
        let acme = fixture.tenant("acme", isolation).await;
        let discarded = || fixture.db.pool_stats(fixture.server()).unwrap().discarded;
        for (statement, kept) in [
            ("SELECT 1", true),
            ("SET LOCAL search_path TO pg_catalog", true),
            ("SET search_path TO pg_catalog", false),
        ] {
            let before = discarded();
            let mut tx = fixture.db.transaction(&acme).await.unwrap();
            let client = tx.as_postgres().await.unwrap().expect("PostgreSQL");
            client.batch_execute(statement).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(
                discarded() == before,
                kept,
                "{isolation}: `{statement}` left the session as it was lent: {kept}"
            );
        }
    }
}
