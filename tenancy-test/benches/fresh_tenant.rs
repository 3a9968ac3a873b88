//! Run with: cargo bench -p tenancy-test --features db,internal --bench fresh_tenant
//!
//! How long a test waits for a fresh tenant, side by side in one run, on the embedded
//! default (SQLite) and on the test PostgreSQL server (database, schema, row-level):
//!
//! - *from scratch*: what a per-test deployment costs, the way the tenancy crates' own
//!   fixture (`TestDb`) works: a new naming prefix, `Platform::prepare`, then the first
//!   tenant, whose migrations run then (into the template, for database tenants);
//! - *template, new process*: `TestTenants::{embedded,postgres}` opened by a new handle,
//!   as each test process under nextest does, then one tenant from the shared deployment's
//!   template;
//! - *template, same process*: one more tenant from an already open `TestTenants`;
//! - *raw floor*: what the database engine alone takes for the copy, with no code of ours:
//!   a superuser's `CREATE DATABASE .. TEMPLATE` of the same template; for a schema, the
//!   same migrations' SQL run in a new schema in one batch; for SQLite, a copy of the
//!   template file (with `fsync`, as tenancy-db makes it). Row-level tenants copy nothing.
//!
//! Creation is timed; removal (on drop) is timed apart. Variants take turns round by round;
//! each line gives the median over `TENANCY_BENCH_ROUNDS` rounds (default 10), and the
//! ratio is the variant's median over the from-scratch median. Bounded: a few minutes. The
//! shared deployments it made are dropped at the end.

use std::time::{Duration, Instant};

use tenancy_core::IsolationMode;
use tenancy_db::Dialect;
use tenancy_db::{Migration, Migrations, rls};
use tenancy_test::TestTenants;
use tenancy_test::db::{
    Backend, SuperuserClient, TestDb, connect, deployment_prefix, drop_deployment, embedded_dir,
};
use tenancy_test::{Service, unique_tenant};

/// A small application schema: three tables, an index and a foreign key.
fn migrations() -> Migrations {
    let tables = "CREATE TABLE capas (id bigint PRIMARY KEY, title text NOT NULL, \
                  status text NOT NULL DEFAULT 'open');\n\
                  CREATE INDEX capas_status ON capas (status);\n\
                  CREATE TABLE actions (id bigint PRIMARY KEY, \
                  capa_id bigint NOT NULL REFERENCES capas (id), body text NOT NULL);\n\
                  CREATE TABLE attachments (id bigint PRIMARY KEY, name text NOT NULL)";
    let row_level = format!(
        "CREATE TABLE capas (tenant_id text NOT NULL, id bigint NOT NULL, title text NOT NULL, \
         status text NOT NULL DEFAULT 'open', PRIMARY KEY (tenant_id, id));\n\
         CREATE INDEX capas_status ON capas (tenant_id, status);\n\
         CREATE TABLE actions (tenant_id text NOT NULL, id bigint NOT NULL, \
         capa_id bigint NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id), \
         FOREIGN KEY (tenant_id, capa_id) REFERENCES capas (tenant_id, id));\n\
         CREATE TABLE attachments (tenant_id text NOT NULL, id bigint NOT NULL, \
         name text NOT NULL, PRIMARY KEY (tenant_id, id));\n{}\n{}\n{}",
        rls::row_level_policy("capas").unwrap(),
        rls::row_level_policy("actions").unwrap(),
        rls::row_level_policy("attachments").unwrap(),
    );
    Migrations::new(vec![
        Migration::new(1, "capas")
            .postgres(tables)
            .row_level(&row_level)
            .sqlite(tables),
        Migration::new(2, "capa owner")
            .postgres("ALTER TABLE capas ADD COLUMN owner text")
            .row_level("ALTER TABLE capas ADD COLUMN owner text")
            .sqlite("ALTER TABLE capas ADD COLUMN owner text"),
    ])
    .unwrap()
}

#[derive(Default)]
struct Timings {
    created: Vec<Duration>,
    removed: Vec<Duration>,
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

async fn from_scratch(backend: Backend, isolation: IsolationMode, timings: &mut Timings) {
    let started = Instant::now();
    let fixture = TestDb::new(backend, migrations()).await;
    let tenant = fixture.tenant("bench", isolation).await;
    timings.created.push(started.elapsed());
    drop(tenant);
    let started = Instant::now();
    drop(fixture);
    timings.removed.push(started.elapsed());
}

async fn open(backend: Backend) -> TestTenants {
    match backend {
        Backend::Postgres => TestTenants::postgres(migrations()).await,
        Backend::Sqlite => TestTenants::embedded(migrations()).await,
    }
}

async fn new_process(backend: Backend, isolation: IsolationMode, timings: &mut Timings) {
    let started = Instant::now();
    let tenants = open(backend).await;
    let tenant = tenants.tenant_with("bench", isolation).await;
    timings.created.push(started.elapsed());
    let started = Instant::now();
    drop(tenant);
    timings.removed.push(started.elapsed());
}

async fn same_process(tenants: &TestTenants, isolation: IsolationMode, timings: &mut Timings) {
    let started = Instant::now();
    let tenant = tenants.tenant_with("bench", isolation).await;
    timings.created.push(started.elapsed());
    let started = Instant::now();
    drop(tenant);
    timings.removed.push(started.elapsed());
}

async fn superuser(database: &str) -> SuperuserClient {
    let mut config: tenancy_db::tokio_postgres::Config =
        Service::Postgres.require().parse().unwrap();
    config.dbname(database);
    connect(&config).await
}

/// The engine alone: a copy of the same template, or the same SQL, as a superuser.
async fn raw_floor(backend: Backend, isolation: IsolationMode, timings: &mut Timings) {
    let prefix = deployment_prefix(&migrations());
    let name = format!(
        "{prefix}_raw_{}",
        unique_tenant("r").as_str().replace('-', "_")
    );
    match (backend, isolation) {
        (Backend::Sqlite, _) => {
            let dir = embedded_dir(&migrations());
            let template = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| {
                    let file = path.file_name().unwrap().to_string_lossy().into_owned();
                    file.contains("__template") && file.ends_with(".sqlite3")
                })
                .expect("the template file");
            let to = dir.join(format!("{name}.raw"));
            let started = Instant::now();
            let mut from = std::fs::File::open(&template).unwrap();
            let mut out = std::fs::File::create_new(&to).unwrap();
            std::io::copy(&mut from, &mut out).unwrap();
            out.sync_all().unwrap();
            timings.created.push(started.elapsed());
            let started = Instant::now();
            std::fs::remove_file(&to).unwrap();
            timings.removed.push(started.elapsed());
        }
        (Backend::Postgres, IsolationMode::Database) => {
            let admin = superuser("postgres").await;
            let started = Instant::now();
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE \"{name}\" TEMPLATE \"{prefix}__template\""
                ))
                .await
                .unwrap();
            timings.created.push(started.elapsed());
            let started = Instant::now();
            admin
                .batch_execute(&format!("DROP DATABASE \"{name}\""))
                .await
                .unwrap();
            timings.removed.push(started.elapsed());
        }
        (Backend::Postgres, _) => {
            let shared = superuser(&format!("{prefix}__shared")).await;
            let sql: String = migrations()
                .iter()
                .filter_map(|migration| migration.sql(Dialect::Postgres))
                .map(|sql| format!("{sql};\n"))
                .collect();
            let started = Instant::now();
            shared
                .batch_execute(&format!(
                    "BEGIN; CREATE SCHEMA \"{name}\"; SET LOCAL search_path = \"{name}\";\n\
                     {sql}COMMIT;"
                ))
                .await
                .unwrap();
            timings.created.push(started.elapsed());
            let started = Instant::now();
            shared
                .batch_execute(&format!("DROP SCHEMA \"{name}\" CASCADE"))
                .await
                .unwrap();
            timings.removed.push(started.elapsed());
        }
    }
}

async fn compare(backend: Backend, isolation: IsolationMode, rounds: usize) {
    let label = match backend {
        Backend::Postgres => format!("PostgreSQL, {isolation} per tenant"),
        Backend::Sqlite => "embedded (SQLite file per tenant)".to_owned(),
    };
    // The shared deployment and its template exist before timing, as after a suite's
    // first test.
    let warm = open(backend).await;
    drop(warm.tenant_with("warm-up", isolation).await);
    let mut scratch = Timings::default();
    let mut fresh = Timings::default();
    let mut same = Timings::default();
    let mut raw = Timings::default();
    let with_floor = isolation != IsolationMode::Row;
    let variants = if with_floor { 4 } else { 3 };
    for round in 0..rounds {
        // Rotate the order, so no variant always runs first after a pause.
        for turn in 0..variants {
            match (round + turn) % variants {
                0 => from_scratch(backend, isolation, &mut scratch).await,
                1 => new_process(backend, isolation, &mut fresh).await,
                2 => same_process(&warm, isolation, &mut same).await,
                _ => raw_floor(backend, isolation, &mut raw).await,
            }
        }
    }
    let base = median(&scratch.created);
    println!("\n{label} ({rounds} rounds)");
    for (name, timings) in [
        ("from scratch (deployment + migrations)", &scratch),
        ("template, new process", &fresh),
        ("template, same process", &same),
        ("raw floor (the engine alone)", &raw),
    ] {
        if timings.created.is_empty() {
            continue;
        }
        let created = median(&timings.created);
        println!(
            "  {name:<40} create {:>9.2} ms  ({:>6.3}x)   remove {:>8.2} ms",
            created.as_secs_f64() * 1e3,
            created.as_secs_f64() / base.as_secs_f64(),
            median(&timings.removed).as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    let rounds = std::env::var("TENANCY_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            println!("time to a fresh test tenant: median of creation, and of removal");
            compare(Backend::Sqlite, IsolationMode::Database, rounds).await;
            for isolation in [
                IsolationMode::Database,
                IsolationMode::Schema,
                IsolationMode::Row,
            ] {
                compare(Backend::Postgres, isolation, rounds).await;
            }
            // The shared deployments are a cache for test suites; a benchmark leaves none.
            drop_deployment(&deployment_prefix(&migrations())).await;
            let dir = embedded_dir(&migrations());
            let _ = std::fs::remove_dir_all(&dir);
            let mut lock = dir.into_os_string();
            lock.push(".lock");
            let _ = std::fs::remove_file(lock);
        });
}
