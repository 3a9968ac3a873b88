//! `TestTenants` hands out tenants that are fresh (migrated, empty, sharing nothing with
//! another tenant), made from the template, and removed when dropped (also when the test
//! panics), on SQLite and on PostgreSQL under every strategy; deployments opened by many
//! "processes" at once (threads with handles of their own) are made once and serve all.

use std::path::PathBuf;

use tenancy_core::IsolationMode;
use tenancy_core::naming::Naming;
use tenancy_db::{Migration, Migrations, TenantDb, rls};
use tenancy_test::db::{connect, deployment_prefix, drop_deployment, embedded_dir, unique_prefix};
use tenancy_test::{Canaries, Service, TestTenant, TestTenants};

/// The migrations of these tests: `capas (id, title)`, and the row-level table.
fn capas(tag: &str) -> Migrations {
    let row_level = format!(
        "CREATE TABLE capas (tenant_id text NOT NULL, id bigint NOT NULL, title text NOT NULL, \
         PRIMARY KEY (tenant_id, id));\n{}",
        rls::row_level_policy("capas").expect("a plain table name")
    );
    Migrations::new(vec![
        Migration::new(1, "capas")
            .postgres(&format!(
                "CREATE TABLE capas (id bigint PRIMARY KEY, title text NOT NULL); -- {tag}"
            ))
            .row_level(&row_level)
            .sqlite(&format!(
                "CREATE TABLE capas (id integer PRIMARY KEY, title text NOT NULL); -- {tag}"
            )),
    ])
    .expect("valid migrations")
}

async fn add(db: &TenantDb, tenant: &TestTenant, id: i64, title: &str) {
    let mut tx = db.transaction(tenant).await.expect("a transaction");
    tx.execute(
        "INSERT INTO capas (id, title) VALUES ($1, $2)",
        &[id.into(), title.into()],
    )
    .await
    .expect("the insert");
    tx.commit().await.expect("the commit");
}

/// Everything the tenant can read from `capas`, as text.
async fn read_all(db: &TenantDb, tenant: &TestTenant) -> String {
    let mut tx = db.transaction(tenant).await.expect("a transaction");
    let rows = tx
        .query("SELECT id, title FROM capas ORDER BY id", &[])
        .await
        .expect("the table exists: the tenant is migrated");
    tx.commit().await.expect("the commit");
    rows.iter()
        .map(|row| format!("{} {}\n", row.get::<i64>("id"), row.get::<String>("title")))
        .collect()
}

/// Whether the tenant is still in the deployment's catalog.
async fn in_catalog(db: &TenantDb, id: &tenancy_core::TenantId) -> bool {
    db.platform()
        .tenants(&tenancy_test::operator())
        .await
        .expect("the catalog")
        .iter()
        .any(|tenant| &tenant.id == id)
}

#[tokio::test]
async fn embedded_tenants_are_fresh_isolated_and_removed() {
    let migrations = capas("embedded");
    let tenants = TestTenants::embedded(migrations.clone()).await;
    let db = tenants.db();
    let [acme, globex] = tenants.tenants(["acme", "globex"]).await;
    assert_eq!(read_all(db, &acme).await, "", "a fresh tenant has no rows");
    let mut canaries = Canaries::new("globex");
    add(db, &globex, 1, &canaries.plant()).await;
    add(db, &acme, 1, "acme's own").await;
    let seen = read_all(db, &acme).await;
    assert_eq!(seen, "1 acme's own\n");
    canaries.assert_unseen("acme's capas", &seen);
    // The check bites: globex's own read holds its canary.
    assert!(canaries.find_in(read_all(db, &globex).await).is_some());

    let prefix = deployment_prefix(&migrations);
    let file = |id: &tenancy_core::TenantId| -> PathBuf {
        let name = Naming::new(&prefix).expect("a valid prefix").sql_name(id);
        embedded_dir(&migrations).join(format!("{name}.sqlite3"))
    };
    let (acme_id, globex_id) = (acme.id().clone(), globex.id().clone());
    assert!(file(&acme_id).is_file() && file(&globex_id).is_file());
    drop(acme);
    assert!(!file(&acme_id).exists(), "the tenant's file is removed");
    assert!(!in_catalog(db, &acme_id).await, "and its catalog entry");
    assert!(file(&globex_id).is_file(), "another tenant's file is kept");
    drop(globex);
    assert!(!file(&globex_id).exists());
}

/// Whether `sql` (with `$1` the name) finds an object on the test server.
async fn exists(sql: &str, name: &str) -> bool {
    let admin = connect(&Service::Postgres.require().parse().expect("a URL")).await;
    admin
        .query_opt(sql, &[&name])
        .await
        .expect("the lookup")
        .is_some()
}

#[tokio::test]
async fn postgres_tenants_of_every_strategy_are_fresh_isolated_and_removed() {
    let migrations = capas("postgres");
    let tenants = TestTenants::postgres(migrations.clone()).await;
    let db = tenants.db();
    let naming = Naming::new(&deployment_prefix(&migrations)).expect("a valid prefix");
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        let [acme, globex] = tenants.tenants_with(["acme", "globex"], isolation).await;
        assert_eq!(acme.isolation(), isolation);
        assert_eq!(read_all(db, &acme).await, "", "{isolation}: fresh");
        let mut canaries = Canaries::new("globex");
        add(db, &globex, 1, &canaries.plant()).await;
        add(db, &globex, 2, &canaries.plant()).await;
        add(db, &acme, 1, "acme's own").await;
        let seen = read_all(db, &acme).await;
        assert_eq!(seen, "1 acme's own\n", "{isolation}");
        canaries.assert_unseen(&format!("acme's capas ({isolation})"), &seen);
        assert!(canaries.find_in(read_all(db, &globex).await).is_some());

        let name = naming.sql_name(acme.id());
        let acme_id = acme.id().clone();
        let globex_id = globex.id().clone();
        drop(acme);
        assert!(
            !in_catalog(db, &acme_id).await,
            "{isolation}: catalog entry removed"
        );
        match isolation {
            IsolationMode::Database => {
                assert!(!exists("SELECT 1 FROM pg_database WHERE datname = $1", &name).await);
                assert!(!exists("SELECT 1 FROM pg_roles WHERE rolname = $1", &name).await);
            }
            IsolationMode::Schema => {
                assert!(!exists("SELECT 1 FROM pg_roles WHERE rolname = $1", &name).await);
            }
            _ => {}
        }
        // The other tenant is untouched, then removed too: its rows go with it.
        assert_eq!(read_all(db, &globex).await.lines().count(), 2);
        drop(globex);
        assert!(!in_catalog(db, &globex_id).await);
        if isolation == IsolationMode::Row {
            // Read as a superuser, which row-level security does not fence.
            let mut config: tenancy_db::tokio_postgres::Config =
                Service::Postgres.require().parse().expect("a URL");
            config.dbname(naming.platform_sql_name("shared"));
            let shared = connect(&config).await;
            let left: i64 = shared
                .query_one(
                    "SELECT count(*) FROM capas WHERE tenant_id = ANY($1)",
                    &[&vec![acme_id.as_str(), globex_id.as_str()]],
                )
                .await
                .expect("the shared table")
                .get(0);
            assert_eq!(left, 0, "row-level tenants' rows are deleted");
        }
    }
}

#[test]
fn a_panicking_test_still_removes_its_tenants() {
    let migrations = capas("embedded");
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let tenants = TestTenants::embedded(capas("embedded")).await;
                let tenant = tenants.tenant("doomed").await;
                tx.send(tenant.id().clone()).expect("sent");
                panic!("the test fails while its tenant is alive");
            })
    })
    .join();
    assert!(failed.is_err(), "the test panicked");
    let id = rx.recv().expect("the tenant was made");
    let name = Naming::new(&deployment_prefix(&migrations))
        .expect("a valid prefix")
        .sql_name(&id);
    let file = embedded_dir(&migrations).join(format!("{name}.sqlite3"));
    assert!(!file.exists(), "{} is left behind", file.display());
}

/// Opens a deployment from `threads` threads at once, each with a runtime and handles of
/// its own as separate processes would have, and makes a tenant in each.
fn race(threads: usize, open: fn(Migrations) -> TestTenantsFuture, migrations: &Migrations) {
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let migrations = migrations.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(async move {
                        let tenants = open(migrations).await;
                        let tenant = tenants.tenant(&format!("racer{i}")).await;
                        add(tenants.db(), &tenant, 1, "mine").await;
                        assert_eq!(read_all(tenants.db(), &tenant).await, "1 mine\n");
                    })
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("every opener got a working tenant");
    }
}

type TestTenantsFuture = std::pin::Pin<Box<dyn std::future::Future<Output = TestTenants> + Send>>;

#[test]
fn many_processes_opening_a_new_deployment_at_once_share_one_template() {
    // Migrations no run has seen: the deployment and its templates are made by the race.
    let migrations = capas(&unique_prefix());
    race(6, |m| Box::pin(TestTenants::embedded(m)), &migrations);
    let dir = embedded_dir(&migrations);
    let templates: Vec<_> = std::fs::read_dir(&dir)
        .expect("the deployment's directory")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("__template") && name.ends_with(".sqlite3"))
        .collect();
    assert_eq!(templates.len(), 1, "one template: {templates:?}");
    let tenants_left = std::fs::read_dir(&dir)
        .expect("the deployment's directory")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".sqlite3") && !name.contains("__")
        })
        .count();
    assert_eq!(tenants_left, 0, "every tenant file was removed");
    std::fs::remove_dir_all(&dir).expect("the deployment removed");
    let mut lock = dir.into_os_string();
    lock.push(".lock");
    std::fs::remove_file(lock).expect("its lock removed");

    let migrations = capas(&unique_prefix());
    race(4, |m| Box::pin(TestTenants::postgres(m)), &migrations);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(drop_deployment(&deployment_prefix(&migrations)));
}

/// Set in the processes `separate_processes_share_one_deployment` starts.
const CHILD: &str = "TENANCY_TEST_FRESH_TENANT_CHILD";

#[test]
fn separate_processes_share_one_deployment() {
    // A child: open the deployment its parent named, make a tenant, use it, and exit.
    if let Ok(spec) = std::env::var(CHILD) {
        let (backend, tag) = spec.split_once(':').expect("backend:tag");
        let migrations = capas(tag);
        let postgres = backend == "postgres";
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let tenants = if postgres {
                    TestTenants::postgres(migrations).await
                } else {
                    TestTenants::embedded(migrations).await
                };
                let tenant = tenants.tenant("child").await;
                add(tenants.db(), &tenant, 1, "mine").await;
                assert_eq!(read_all(tenants.db(), &tenant).await, "1 mine\n");
            });
        return;
    }
    // The parent: four processes at once per backend, on a deployment no run has made, as
    // nextest runs four tests of one suite.
    let exe = std::env::current_exe().expect("the test binary");
    for backend in ["embedded", "postgres"] {
        let tag = unique_prefix();
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "separate_processes_share_one_deployment",
                        "--test-threads=1",
                    ])
                    .env(CHILD, format!("{backend}:{tag}"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("a child process")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("the child ran");
            assert!(
                output.status.success(),
                "a {backend} child failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("1 passed"),
                "the child ran the test: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        let migrations = capas(&tag);
        if backend == "embedded" {
            let dir = embedded_dir(&migrations);
            let names: Vec<String> = std::fs::read_dir(&dir)
                .expect("the deployment")
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sqlite3"))
                .collect();
            let templates = names.iter().filter(|n| n.contains("__template")).count();
            let tenants = names.iter().filter(|n| !n.contains("__")).count();
            assert_eq!((templates, tenants), (1, 0), "{names:?}");
            std::fs::remove_dir_all(&dir).expect("the deployment removed");
            let mut lock = dir.into_os_string();
            lock.push(".lock");
            std::fs::remove_file(lock).expect("its lock removed");
        } else {
            let prefix = deployment_prefix(&migrations);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async {
                    let admin = connect(&Service::Postgres.require().parse().expect("a URL")).await;
                    let pattern = format!("{prefix}\\_%");
                    let databases: Vec<String> = admin
                        .query(
                            "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
                            &[&pattern],
                        )
                        .await
                        .expect("the databases")
                        .iter()
                        .map(|row| row.get(0))
                        .collect();
                    let expected: Vec<String> = ["platform", "shared", "template"]
                        .iter()
                        .map(|purpose| format!("{prefix}__{purpose}"))
                        .collect();
                    assert_eq!(databases, expected, "one deployment, no tenant left");
                    drop(admin);
                    drop_deployment(&prefix).await;
                });
        }
    }
}
