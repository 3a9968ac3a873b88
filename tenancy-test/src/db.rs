//! A prepared [`TenantDb`] per test, on the test PostgreSQL server or in a temporary SQLite
//! directory, with everything it made removed when the test ends (even by panicking).
//!
//! Each fixture has its own naming prefix, `tt` + five base-36 digits of the minute it was
//! made + four of its own, so tests never share platform roles, databases or tenants, and
//! leftovers of a crashed run are swept by the first PostgreSQL fixture of a later run once
//! they are three hours old.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tenancy_core::{Actor, IsolationMode, Placement, ServerName, TenantContext, TenantId};
use tenancy_db::{DbConfig, Migration, Migrations, Secret, TenantDb, rls, tokio_postgres};

use crate::services::Service;
pub use crate::template::{
    SuperuserClient, connect, deployment_prefix, embedded_dir, run_detached, test_pool,
};
use crate::tenants::{operator, unique_tenant};

/// The credential secret of test deployments. Test servers trust local connections, so it
/// is never checked; it exists because PostgreSQL deployments require one.
pub const TEST_SECRET: &str = crate::template::TEST_SECRET;

/// Minutes since 2026-01-01, the epoch of fixture prefixes.
fn minute_now() -> u64 {
    const EPOCH_2026: u64 = 1_767_225_600;
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        .saturating_sub(EPOCH_2026)
        / 60
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// A naming prefix no other fixture, in this run or another, uses; swept like a fixture's
/// when a run that made it crashed.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
    let process = u64::from(std::process::id());
    format!(
        "tt{}{}",
        base36(minute_now(), 5),
        base36((process * 1_000 + n) % 36u64.pow(4), 4)
    )
}

/// The schema tests and benchmarks share: `records (id, title)` in every dialect. The
/// row-level table carries `tenant_id`, keys that include it, and the policy.
pub fn records_migrations() -> Migrations {
    let row_level = format!(
        "CREATE TABLE records (tenant_id text NOT NULL, id bigint NOT NULL, title text NOT NULL, \
         PRIMARY KEY (tenant_id, id));\n{}",
        rls::row_level_policy("records").expect("a plain table name")
    );
    Migrations::new(vec![records_migration(&row_level)]).expect("valid migrations")
}

fn records_migration(row_level: &str) -> Migration {
    Migration::new(1, "records")
        .postgres("CREATE TABLE records (id bigint PRIMARY KEY, title text NOT NULL)")
        .row_level(row_level)
        .sqlite("CREATE TABLE records (id integer PRIMARY KEY, title text NOT NULL)")
}

/// The certificate authority that signed the test PostgreSQL server's certificate (made
/// for `localhost` by `.ci/run`): `TENANCY_TEST_POSTGRES_CA`, or where `.ci/run` puts it.
///
/// # Panics
///
/// When the file is missing, with the command that makes it.
pub fn postgres_ca() -> PathBuf {
    tls_file("TENANCY_TEST_POSTGRES_CA", "ca.crt")
}

/// A certificate authority that signed nothing the test server presents:
/// `TENANCY_TEST_POSTGRES_OTHER_CA`, or where `.ci/run` puts it.
///
/// # Panics
///
/// When the file is missing, with the command that makes it.
pub fn other_ca() -> PathBuf {
    tls_file("TENANCY_TEST_POSTGRES_OTHER_CA", "other-ca.crt")
}

fn tls_file(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(
        || PathBuf::from("/var/lib/postgresql/tenancy-tls").join(name),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing ({var}): the test PostgreSQL server has no test certificate. Run \
         `.ci/run`, whose step `configure_postgres_tls` makes one and turns TLS on.",
        path.display()
    );
    path
}

/// Turns TLS off for every PostgreSQL server of `config` (`sslmode=disable` in its admin
/// URL): for benchmarks that compare with a raw pool that does not encrypt either. The test
/// server offers TLS, and `prefer`, the default, takes it.
pub fn without_tls(config: &mut DbConfig) {
    for server in &mut config.servers {
        if let tenancy_db::ServerConfig::Postgres(server) = server {
            let separator = if server.admin_url.contains('?') {
                '&'
            } else {
                '?'
            };
            server.admin_url = format!("{}{separator}sslmode=disable", server.admin_url);
        }
    }
}

/// Where a fixture keeps its tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The test PostgreSQL server.
    Postgres,
    /// SQLite files in a temporary directory.
    Sqlite,
}

/// A prepared [`TenantDb`] for one test. Dropping it removes every database, role, schema
/// and file it made.
pub struct TestDb {
    /// The handle under test.
    pub db: TenantDb,
    config: DbConfig,
    backend: Backend,
    prefix: String,
    server: ServerName,
    data_dir: Option<PathBuf>,
    tenants: Arc<Mutex<Vec<TenantId>>>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// A fixture on `backend` whose tenants are kept at `migrations`.
    pub async fn new(backend: Backend, migrations: Migrations) -> TestDb {
        TestDb::with_config(backend, migrations, |_| {}).await
    }

    /// Like [`TestDb::new`], with `adjust` applied to the configuration first.
    pub async fn with_config(
        backend: Backend,
        migrations: Migrations,
        adjust: impl FnOnce(&mut DbConfig),
    ) -> TestDb {
        let prefix = unique_prefix();
        let (mut config, data_dir) = match backend {
            Backend::Postgres => {
                let url = Service::Postgres.require();
                sweep_stale_once(&url).await;
                let secret = Secret::new(TEST_SECRET).expect("a long enough secret");
                (DbConfig::postgres(url, secret), None)
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tenancy-test-{prefix}"));
                (DbConfig::embedded(&dir), Some(dir))
            }
        };
        config = config.naming_prefix(&prefix).pool(&test_pool());
        adjust(&mut config);
        let server = config.catalog_server.clone();
        let db = TenantDb::new(config.clone(), migrations).expect("a valid test configuration");
        let fixture = TestDb {
            db,
            config,
            backend,
            prefix,
            server,
            data_dir,
            tenants: Arc::default(),
        };
        fixture
            .db
            .platform()
            .prepare(&operator())
            .await
            .unwrap_or_else(|e| panic!("preparing the test {backend:?} server failed: {e:?}"));
        fixture
    }

    /// Another handle on the same servers and tenants, kept at `migrations`: what a new
    /// release of the application (or another node) would open.
    pub fn reopen(&self, migrations: Migrations) -> TenantDb {
        self.reopen_with(migrations, |_| {})
    }

    /// Like [`TestDb::reopen`], with `adjust` applied to the configuration first: a node
    /// configured differently.
    pub fn reopen_with(
        &self,
        migrations: Migrations,
        adjust: impl FnOnce(&mut DbConfig),
    ) -> TenantDb {
        let mut config = self.config.clone();
        adjust(&mut config);
        TenantDb::new(config, migrations).expect("a valid test configuration")
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The naming prefix of everything this fixture makes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server tenants are placed on.
    pub fn server(&self) -> &ServerName {
        &self.server
    }

    /// Creates a tenant (`{label}-{unique}`) with `isolation`, and returns a context for a
    /// user of it.
    pub async fn tenant(&self, label: &str, isolation: IsolationMode) -> TenantContext {
        let id = unique_tenant(label);
        self.db
            .platform()
            .create_tenant(
                &operator(),
                id.clone(),
                label,
                Placement::new(self.server.clone(), isolation),
            )
            .await
            .unwrap_or_else(|e| panic!("creating tenant {id} ({isolation}) failed: {e:?}"));
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.clone());
        let actor = Actor::user(&format!("user-of-{label}"), &format!("User of {label}"))
            .expect("a valid actor");
        TenantContext::new(id, actor)
    }

    /// A login to `database` of the test server as `role`, one of the roles the fixture's
    /// deployment made (PostgreSQL fixtures only): to send statements by hand as the
    /// application or a tenant would.
    pub fn login(&self, role: &str, database: &str) -> tokio_postgres::Config {
        let secret = self
            .config
            .credentials
            .as_ref()
            .expect("SQLite fixtures have no logins");
        let mut config: tokio_postgres::Config = Service::Postgres
            .url()
            .parse()
            .expect("a valid PostgreSQL URL");
        config
            .user(role)
            .password(secret.password_for(role))
            .dbname(database);
        config
    }

    /// A superuser connection to `database` of the test server (PostgreSQL fixtures only),
    /// for checks from outside the library.
    pub async fn superuser(&self, database: &str) -> SuperuserClient {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "SQLite fixtures have no superuser"
        );
        let mut config: tokio_postgres::Config = Service::Postgres
            .url()
            .parse()
            .expect("a valid PostgreSQL URL");
        config.dbname(database);
        connect(&config).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.backend {
            Backend::Postgres => {
                let prefix = self.prefix.clone();
                // Runs on its own thread and runtime: this drop may happen inside the test's
                // runtime, or while a panic unwinds.
                run_detached(async move { drop_prefix(&Service::Postgres.url(), &prefix).await });
            }
            Backend::Sqlite => {
                if let Some(dir) = &self.data_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

/// Drops every database and role whose name starts with `{prefix}_` on the test server:
/// the whole of a deployment made with that naming prefix (for benchmarks that make their
/// own).
pub async fn drop_deployment(prefix: &str) {
    drop_prefix(&Service::Postgres.url(), prefix).await;
}

async fn drop_prefix(url: &str, prefix: &str) {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return;
    };
    let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else {
        return;
    };
    let work = async move {
        let pattern = format!("{prefix}\\_%");
        if let Ok(rows) = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                &[&pattern],
            )
            .await
        {
            for row in rows {
                let name: String = row.get(0);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        }
        // Tenant roles before the platform roles they were granted to.
        if let Ok(rows) = client
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 \
                 ORDER BY (rolname LIKE '%\\_\\_%'), rolname",
                &[&pattern],
            )
            .await
        {
            for row in rows {
                let name: String = row.get(0);
                let _ = client
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .await;
            }
        }
    };
    let _ = tokio::join!(work, connection);
}

/// Sweeps fixture leftovers more than three hours old, once per process.
async fn sweep_stale_once(url: &str) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return;
    };
    let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else {
        return;
    };
    let stale_before = base36(minute_now().saturating_sub(180), 5);
    let work = async move {
        let rows = client
            .query(
                "SELECT DISTINCT substring(name from '^(tt[0-9a-z]{9})_') FROM \
                 (SELECT datname AS name FROM pg_database UNION ALL \
                  SELECT rolname FROM pg_roles) names \
                 WHERE name ~ '^tt[0-9a-z]{9}_' AND substring(name from 3 for 5) < $1",
                &[&stale_before],
            )
            .await
            .unwrap_or_default();
        rows.into_iter()
            .filter_map(|row| row.get::<_, Option<String>>(0))
            .collect::<Vec<_>>()
    };
    let (stale, _) = tokio::join!(work, connection);
    for prefix in stale {
        drop_prefix(url, &prefix).await;
    }
}
