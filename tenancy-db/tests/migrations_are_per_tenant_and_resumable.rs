//! Migrations reach every tenant under every strategy with a record per tenant; one
//! tenant's failure is reported without stopping the others or corrupting it; a later run
//! resumes where it stopped; edited and unknown migrations are refused.

mod common;

use std::sync::Mutex;

use common::records;
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migration, MigrationTarget, Migrations, TenantDb, rls};
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::operator;

/// `records` plus a `status` column (2) and a `capas` table (3).
fn three_migrations() -> Migrations {
    let mut list: Vec<Migration> = records().iter().cloned().collect();
    list.push(
        Migration::new(2, "record status")
            .postgres("ALTER TABLE records ADD COLUMN status text NOT NULL DEFAULT 'open'")
            .row_level("ALTER TABLE records ADD COLUMN status text NOT NULL DEFAULT 'open'")
            .sqlite("ALTER TABLE records ADD COLUMN status text NOT NULL DEFAULT 'open'"),
    );
    list.push(
        Migration::new(3, "capas")
            .postgres("CREATE TABLE capas (id bigint PRIMARY KEY, title text NOT NULL)")
            .row_level(&format!(
                "CREATE TABLE capas (tenant_id text NOT NULL, id bigint NOT NULL, \
                 title text NOT NULL, PRIMARY KEY (tenant_id, id)); {}",
                rls::row_level_policy("capas").unwrap()
            ))
            .sqlite("CREATE TABLE capas (id integer PRIMARY KEY, title text NOT NULL)"),
    );
    Migrations::new(list).unwrap()
}

/// How soon the release's handle sees tenants made through the first one.
fn release_ttl() -> std::time::Duration {
    std::time::Duration::from_millis(300)
}

async fn has_status_and_capas(db: &TenantDb, ctx: &TenantContext) -> bool {
    let mut tx = db.transaction(ctx).await.unwrap();
    let ok = tx.query("SELECT status FROM records", &[]).await.is_ok()
        && tx.query("SELECT id FROM capas", &[]).await.is_ok();
    tx.rollback().await.unwrap();
    ok
}

#[tokio::test]
async fn postgres_tenants_migrate_resume_and_refuse_edits() {
    let fixture = TestDb::new(Backend::Postgres, records()).await;
    let naming = fixture.db.naming();
    let schema_ok = fixture.tenant("schema-ok", IsolationMode::Schema).await;
    let schema_bad = fixture.tenant("schema-bad", IsolationMode::Schema).await;
    let db_one = fixture.tenant("db-one", IsolationMode::Database).await;
    let db_two = fixture.tenant("db-two", IsolationMode::Database).await;
    let row = fixture.tenant("row", IsolationMode::Row).await;

    // Something in one tenant's schema makes migration 3 fail there.
    let bad_schema = naming.sql_name(schema_bad.tenant());
    let shared = fixture.superuser(&naming.platform_sql_name("shared")).await;
    shared
        .batch_execute(&format!("CREATE TABLE \"{bad_schema}\".capas (x int)"))
        .await
        .unwrap();

    let release = fixture.reopen_with(three_migrations(), |config| {
        config.catalog_cache_ttl = release_ttl();
    });
    let seen = Mutex::new(Vec::new());
    let report = release
        .platform()
        .migrate(&operator(), |progress| {
            seen.lock().unwrap().push((progress.done, progress.total));
        })
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), report.outcomes.len());
    assert_eq!(
        seen.last(),
        Some(&(report.outcomes.len(), report.outcomes.len()))
    );
    // The template, the shared tables, two schemas, two databases.
    assert_eq!(report.outcomes.len(), 6, "{report:#?}");
    for outcome in &report.outcomes {
        match &outcome.target {
            MigrationTarget::Tenant(id) if id == schema_bad.tenant() => {
                assert_eq!(outcome.applied, [2]);
                let error = outcome.error.as_ref().expect("migration 3 failed here");
                assert!(
                    error.to_string().contains("migration 3 `capas` failed"),
                    "{error}"
                );
            }
            other => {
                assert_eq!(outcome.applied, [2, 3], "{other}");
                assert!(outcome.error.is_none(), "{other}: {:?}", outcome.error);
            }
        }
    }
    assert!(!report.is_success());
    for ctx in [&schema_ok, &db_one, &db_two, &row] {
        assert!(
            has_status_and_capas(&release, ctx).await,
            "{}",
            ctx.tenant()
        );
    }
    // The failed tenant is at migration 2, intact and usable.
    let mut tx = release.transaction(&schema_bad).await.unwrap();
    tx.query("SELECT status FROM records", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let recorded: Vec<i32> = shared
        .query(
            "SELECT version FROM tenancy.migrations WHERE scope = $1 ORDER BY version",
            &[&bad_schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(recorded, [1, 2]);

    // Once the obstacle is gone, a second run resumes there and touches nothing else.
    shared
        .batch_execute(&format!("DROP TABLE \"{bad_schema}\".capas"))
        .await
        .unwrap();
    let report = release
        .platform()
        .migrate(&operator(), |_| {})
        .await
        .unwrap();
    assert!(report.is_success(), "{report:#?}");
    for outcome in &report.outcomes {
        let expected: &[u32] = match &outcome.target {
            MigrationTarget::Tenant(id) if id == schema_bad.tenant() => &[3],
            _ => &[],
        };
        assert_eq!(outcome.applied, expected, "{}", outcome.target);
    }
    assert!(has_status_and_capas(&release, &schema_bad).await);

    // A tenant created after the release starts fully migrated (from the template). It is
    // created through the old handle, so the release admits it once its catalog replica
    // is next brought up to date.
    let late = fixture.tenant("late", IsolationMode::Database).await;
    tokio::time::sleep(release_ttl() + std::time::Duration::from_millis(100)).await;
    assert!(has_status_and_capas(&release, &late).await);

    // Editing an applied migration, or running an older program, is refused everywhere.
    let mut edited: Vec<Migration> = three_migrations().iter().cloned().collect();
    edited[1] = Migration::new(2, "record status")
        .postgres("ALTER TABLE records ADD COLUMN status text")
        .row_level("ALTER TABLE records ADD COLUMN status text")
        .sqlite("ALTER TABLE records ADD COLUMN status text");
    let report = fixture
        .reopen(Migrations::new(edited).unwrap())
        .platform()
        .migrate(&operator(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failures().count(), report.outcomes.len());
    for outcome in report.failures() {
        let message = outcome.error.as_ref().unwrap().to_string();
        assert!(
            message.contains("was changed after it was applied"),
            "{message}"
        );
    }
    let report = fixture
        .reopen(records())
        .platform()
        .migrate(&operator(), |_| {})
        .await
        .unwrap();
    for outcome in report.failures() {
        let message = outcome.error.as_ref().unwrap().to_string();
        assert!(
            message.contains("this program does not know it"),
            "{message}"
        );
    }
    assert_eq!(report.failures().count(), report.outcomes.len());

    let events = fixture.db.platform().events(&operator(), 50).await.unwrap();
    assert!(
        events.iter().filter(|e| e.action == "migrate").count() >= 4,
        "{events:#?}"
    );
}

#[tokio::test]
async fn sqlite_tenants_migrate_and_resume() {
    let fixture = TestDb::new(Backend::Sqlite, records()).await;
    let one = fixture.tenant("one", IsolationMode::Database).await;
    let two = fixture.tenant("two", IsolationMode::Database).await;
    // Tenant two already has a `capas` table, so migration 3 fails there.
    let mut tx = fixture.db.transaction(&two).await.unwrap();
    tx.batch("CREATE TABLE capas (x int)").await.unwrap();
    tx.commit().await.unwrap();

    let release = fixture.reopen(three_migrations());
    let report = release
        .platform()
        .migrate(&operator(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 2);
    assert_eq!(report.failures().count(), 1);
    assert!(has_status_and_capas(&release, &one).await);

    let mut tx = release.transaction(&two).await.unwrap();
    tx.batch("DROP TABLE capas").await.unwrap();
    tx.commit().await.unwrap();
    let report = release
        .platform()
        .migrate(&operator(), |_| {})
        .await
        .unwrap();
    assert!(report.is_success(), "{report:#?}");
    assert!(has_status_and_capas(&release, &two).await);
}
