//! Fresh tenants per test: [`TestTenants`] hands out tenants copied from a template that is
//! migrated once per migrations' content, and each [`TestTenant`] is removed when dropped.
//!
//! A deployment (a PostgreSQL naming prefix, or a SQLite data directory) is shared by every
//! test and every process that uses the same migrations: its name is derived from
//! [`Migrations::fingerprint`], and the first process to open it prepares it while the
//! others wait (an advisory lock on PostgreSQL, a file lock on SQLite). The template itself
//! is tenancy-db's own: `Platform::create_tenant` copies it (`CREATE DATABASE .. TEMPLATE`,
//! a copied SQLite file) and marks it with the fingerprint, so later processes neither
//! migrate nor connect to it. Tenants are the test's own: unique ids, removed on drop, even
//! when the test panics; tenants left by a killed process are swept after three hours.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tenancy_core::{Actor, IsolationMode, Placement, ServerName, TenantContext, TenantId};
use tenancy_db::{DbConfig, Migrations, Secret, TenantDb, tokio_postgres};
use tenancy_pool::PoolsConfig;

use crate::services::Service;
use crate::tenants::{TEST_PREFIX, operator, unique_tenant};

/// The credential secret of test deployments. Test servers trust local connections, so it
/// is never checked; it exists because PostgreSQL deployments require one.
pub(crate) const TEST_SECRET: &str = "tenancy-test-secret-not-for-production-use";

/// Tenants older than this in a shared test deployment were left by a killed process.
const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);

/// The pool limits of test deployments: small, so parallel tests stay well under the test
/// server's `max_connections`.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub))]
pub fn test_pool() -> PoolsConfig {
    let mut pool = PoolsConfig::with_max_connections(10);
    pool.max_connections_per_pool = 4;
    pool
}

/// The naming prefix of the deployment shared by every test with these migrations:
/// `ttf` and eight hex digits of their fingerprint. (Per-test fixture prefixes are `tt`
/// and nine base-36 digits of a time that starts with `0` for decades, so the sweep of
/// their leftovers never takes a shared deployment for one.)
fn shared_prefix(migrations: &Migrations) -> String {
    format!("{TEST_PREFIX}f{}", &migrations.fingerprint()[..8])
}

/// Fresh tenants for tests, on the embedded default (a SQLite file per tenant) or on the
/// test PostgreSQL server (database, schema or row-level tenants).
///
/// Opening one is cheap after the first time for the same migrations, in any process:
/// the deployment is shared, and only the first opener prepares it. Each tenant is a copy
/// of the migrated template (or, for schema and row-level tenants, a schema or a set of
/// rows in the shared database, migrated once) and is removed when its [`TestTenant`] is
/// dropped.
///
/// ```no_run
/// use tenancy_db::{Migration, Migrations};
/// use tenancy_test::TestTenants;
///
/// # async fn run() -> Result<(), tenancy_db::Error> {
/// let migrations = Migrations::new(vec![Migration::new(1, "capas")
///     .sqlite("CREATE TABLE capas (id integer PRIMARY KEY, title text NOT NULL)")
///     .postgres("CREATE TABLE capas (id bigint PRIMARY KEY, title text NOT NULL)")])?;
/// let tenants = TestTenants::postgres(migrations).await;
/// let [acme, globex] = tenants.tenants(["acme", "globex"]).await;
/// let mut tx = tenants.db().transaction(&acme).await?;
/// tx.execute("INSERT INTO capas (id, title) VALUES (1, 'only acme')", &[]).await?;
/// tx.commit().await?;
/// # drop(globex);
/// # Ok(()) }
/// ```
pub struct TestTenants {
    db: TenantDb,
    config: DbConfig,
    migrations: Migrations,
    server: ServerName,
    postgres: bool,
}

impl std::fmt::Debug for TestTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTenants")
            .field("server", &self.server)
            .field("postgres", &self.postgres)
            .finish_non_exhaustive()
    }
}

impl TestTenants {
    /// Tenants on the embedded default: a SQLite file each, in a data directory under the
    /// system's temporary directory shared by every test with these migrations.
    ///
    /// # Panics
    ///
    /// When the directory cannot be made or prepared, with the reason.
    pub async fn embedded(migrations: Migrations) -> TestTenants {
        let prefix = shared_prefix(&migrations);
        let root = std::env::temp_dir().join("tenancy-test-templates");
        let dir = root.join(&prefix);
        let config = DbConfig::embedded(&dir)
            .naming_prefix(&prefix)
            .pool(&test_pool());
        let tenants = TestTenants::open(config, migrations, false);
        let lock = root.join(format!("{prefix}.lock"));
        let marker = dir.join(".prepared");
        let held = blocking(move || {
            std::fs::create_dir_all(&root)?;
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .unwrap_or_else(|e| panic!("locking the test deployment failed: {e}"));
        if !marker.is_file() {
            tenants.prepare().await;
            std::fs::write(&marker, b"prepared by tenancy-test\n")
                .unwrap_or_else(|e| panic!("marking {} failed: {e}", marker.display()));
        }
        drop(held);
        tenants.sweep_stale().await;
        tenants
    }

    /// Tenants on the test PostgreSQL server ([`Service::Postgres`]: the URL of a
    /// superuser, `TENANCY_TEST_POSTGRES_URL` or `postgres://postgres@127.0.0.1:5432`),
    /// in a deployment shared by every test with these migrations.
    ///
    /// # Panics
    ///
    /// When the server is not reachable (the message says how to start it), or the
    /// deployment cannot be prepared.
    pub async fn postgres(migrations: Migrations) -> TestTenants {
        let url = Service::Postgres.require();
        let prefix = shared_prefix(&migrations);
        let secret = Secret::new(TEST_SECRET).expect("a long enough secret");
        let config = DbConfig::postgres(url.clone(), secret)
            .naming_prefix(&prefix)
            .pool(&test_pool());
        let tenants = TestTenants::open(config, migrations, true);
        let admin = connect(&url.parse().expect("a valid PostgreSQL URL")).await;
        let key = format!("tenancy-test {prefix}");
        admin
            .query("SELECT pg_advisory_lock(hashtext($1))", &[&key])
            .await
            .unwrap_or_else(|e| panic!("locking the test deployment failed: {e}"));
        let marker = format!("{prefix}__ready");
        let prepared = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&marker])
            .await
            .unwrap_or_else(|e| panic!("reading the test deployment's marker failed: {e}"))
            .is_some();
        if !prepared {
            tenants.prepare().await;
            admin
                .batch_execute(&format!("CREATE ROLE \"{marker}\" NOLOGIN"))
                .await
                .unwrap_or_else(|e| panic!("marking the test deployment failed: {e}"));
        }
        // Closing the session releases the lock.
        drop(admin);
        tenants.sweep_stale().await;
        tenants
    }

    fn open(config: DbConfig, migrations: Migrations, postgres: bool) -> TestTenants {
        let db =
            TenantDb::new(config.clone(), migrations.clone()).expect("a valid test configuration");
        TestTenants {
            db,
            server: config.catalog_server.clone(),
            config,
            migrations,
            postgres,
        }
    }

    async fn prepare(&self) {
        self.db
            .platform()
            .prepare(&operator())
            .await
            .unwrap_or_else(|e| panic!("preparing the test deployment failed: {e:?}"));
    }

    /// Removes the tenants a killed test process left behind.
    async fn sweep_stale(&self) {
        let Ok(tenants) = self.db.platform().tenants(&operator()).await else {
            return;
        };
        let now = SystemTime::now();
        for tenant in tenants {
            let age = now.duration_since(tenant.created_at).unwrap_or_default();
            if age > STALE_AFTER {
                let _ = remove(&self.db, &tenant.id).await;
            }
        }
    }

    /// The handle the application under test uses: give it to the code under test.
    pub fn db(&self) -> &TenantDb {
        &self.db
    }

    /// The deployment's configuration: to open another handle on the same tenants, as
    /// another node of the application (or its own start-up code) would.
    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// A fresh tenant, `{label}-{unique}`, in its own database (PostgreSQL) or file
    /// (SQLite), at the latest migration, with no rows; removed when dropped.
    ///
    /// # Panics
    ///
    /// When the tenant cannot be created, with the reason; `label` must be a valid tenant
    /// id of at most 24 bytes.
    pub async fn tenant(&self, label: &str) -> TestTenant {
        self.tenant_with(label, IsolationMode::Database).await
    }

    /// Like [`TestTenants::tenant`], with `isolation`: `Schema` and `Row` need PostgreSQL.
    ///
    /// # Panics
    ///
    /// As [`TestTenants::tenant`], and for `Schema` or `Row` on the embedded default.
    pub async fn tenant_with(&self, label: &str, isolation: IsolationMode) -> TestTenant {
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
            .unwrap_or_else(|e| panic!("creating test tenant {id} ({isolation}) failed: {e:?}"));
        let actor = Actor::user(&format!("user-of-{label}"), &format!("User of {label}"))
            .expect("a valid actor");
        TestTenant {
            context: TenantContext::new(id, actor),
            isolation,
            config: self.config.clone(),
            migrations: self.migrations.clone(),
        }
    }

    /// Several fresh tenants at once, created concurrently: `tenants(["acme", "globex"])`.
    ///
    /// # Panics
    ///
    /// As [`TestTenants::tenant`].
    pub async fn tenants<const N: usize>(&self, labels: [&str; N]) -> [TestTenant; N] {
        self.tenants_with(labels, IsolationMode::Database).await
    }

    /// Like [`TestTenants::tenants`], with `isolation`.
    ///
    /// # Panics
    ///
    /// As [`TestTenants::tenant_with`].
    pub async fn tenants_with<const N: usize>(
        &self,
        labels: [&str; N],
        isolation: IsolationMode,
    ) -> [TestTenant; N] {
        let made =
            futures::future::join_all(labels.map(|label| self.tenant_with(label, isolation))).await;
        match made.try_into() {
            Ok(tenants) => tenants,
            Err(_) => unreachable!("join_all keeps the number of futures"),
        }
    }
}

/// A tenant of one test, removed (its database, schema, file or rows, and its catalog
/// entry) when dropped, including while a failed test unwinds.
///
/// It dereferences to the [`TenantContext`] of one of its users, so it is passed wherever a
/// context is: `db.transaction(&tenant)`.
pub struct TestTenant {
    context: TenantContext,
    isolation: IsolationMode,
    config: DbConfig,
    migrations: Migrations,
}

impl std::fmt::Debug for TestTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTenant")
            .field("id", self.context.tenant())
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

impl TestTenant {
    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        self.context.tenant()
    }

    /// The context of the tenant's default user (`user-of-{label}`).
    pub fn context(&self) -> &TenantContext {
        &self.context
    }

    /// The context of another user of this tenant.
    ///
    /// # Panics
    ///
    /// When `id` or `name` is not a valid actor.
    pub fn as_user(&self, id: &str, name: &str) -> TenantContext {
        let actor = Actor::user(id, name)
            .unwrap_or_else(|e| panic!("as_user({id:?}, {name:?}): not a valid actor: {e}"));
        TenantContext::new(self.id().clone(), actor)
    }

    /// How the tenant is isolated.
    pub fn isolation(&self) -> IsolationMode {
        self.isolation
    }
}

impl std::ops::Deref for TestTenant {
    type Target = TenantContext;

    fn deref(&self) -> &TenantContext {
        &self.context
    }
}

impl Drop for TestTenant {
    fn drop(&mut self) {
        let config = self.config.clone();
        let migrations = self.migrations.clone();
        let id = self.id().clone();
        // A handle of its own, on a runtime of its own: this drop may run inside the test's
        // runtime (whose connections it must not wait on), or while a panic unwinds.
        let removed = run_detached(async move {
            let db = TenantDb::new(config, migrations)?;
            remove(&db, &id).await
        });
        if let Err(error) = removed {
            // Never a panic here: it would abort a test that is already unwinding. The
            // tenant is swept by a later run once it is three hours old.
            eprintln!(
                "tenancy-test: removing test tenant {} failed: {error}",
                self.id()
            );
        }
    }
}

/// Suspends and drops a tenant.
async fn remove(db: &TenantDb, id: &TenantId) -> Result<(), tenancy_db::Error> {
    let platform = db.platform();
    platform.suspend(&operator(), id).await?;
    platform.drop_tenant(&operator(), id).await
}

/// Runs `work` to its end on a new thread with a runtime of its own.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub))]
pub fn run_detached<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for cleanup")
            .block_on(work)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    #[expect(
        clippy::disallowed_methods,
        reason = "test fixture file work, under no tenant's scope"
    )]
    let task = tokio::task::spawn_blocking(work);
    task.await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// A superuser connection, with its driver task; closed when dropped.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub))]
pub struct SuperuserClient {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SuperuserClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuperuserClient").finish_non_exhaustive()
    }
}

impl std::ops::Deref for SuperuserClient {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl Drop for SuperuserClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects with `config`, driving the connection on the current runtime.
///
/// # Panics
///
/// When the connection fails, with the reason.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub))]
pub async fn connect(config: &tokio_postgres::Config) -> SuperuserClient {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server failed: {e}"));
    #[expect(
        clippy::disallowed_methods,
        reason = "a connection driver serves no tenant and needs no scope"
    )]
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    SuperuserClient { client, driver }
}

/// Where a test deployment's data directory would be: for tests that look at its files.
#[cfg(feature = "internal")]
pub fn embedded_dir(migrations: &Migrations) -> std::path::PathBuf {
    std::env::temp_dir()
        .join("tenancy-test-templates")
        .join(shared_prefix(migrations))
}

/// The naming prefix of the shared deployment for `migrations`.
#[cfg(feature = "internal")]
pub fn deployment_prefix(migrations: &Migrations) -> String {
    shared_prefix(migrations)
}
