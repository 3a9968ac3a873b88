//! SQLite: a file per tenant under a data directory, the embedded default.
//!
//! A tenant's connection opens only its own file, never creates one (a mistyped or
//! unprovisioned tenant is an error, not a new empty database), and cannot `ATTACH`
//! another: the attached-database limit is 0, which also refuses `VACUUM INTO`.

pub(crate) mod provision;
mod transaction;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_sync::SyncWrapper;
use tenancy_core::naming::Naming;
use tenancy_core::{ServerName, TenantId};
use tenancy_pool::TenantPools;
use tenancy_pool::deadpool::Runtime;
use tenancy_pool::deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};

pub(crate) use self::transaction::SqliteTransaction;
use crate::config::SqliteServer as SqliteConfig;
use crate::error::Error;

/// Which file a pooled connection opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FileKey {
    Tenant(TenantId),
    Platform,
    /// The template new tenant files are copied from, by the first characters of the
    /// fingerprint of the migrations it was brought to.
    Template(Arc<str>),
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKey::Tenant(id) => write!(f, "tenant `{id}`"),
            FileKey::Platform => f.write_str("the platform file"),
            FileKey::Template(_) => f.write_str("the template file"),
        }
    }
}

/// Opens one SQLite file, configured for tenancy.
#[derive(Debug)]
pub(crate) struct FileManager {
    path: PathBuf,
    create: bool,
}

/// Why a SQLite file could not be opened.
#[derive(Debug)]
pub(crate) struct OpenError {
    path: PathBuf,
    error: rusqlite::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opening {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Opens `path` (creating it only if `create`) with attaching disabled.
pub(crate) fn open(path: &Path, create: bool) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    // No checkpoint when a connection closes: the bundled SQLite (3.51.1) can deadlock when
    // one thread closes the last connection to a file in WAL mode (its checkpoint asks for
    // the file's EXCLUSIVE lock, taking the inode mutex then the VFS mutex) while another
    // thread closes another connection to the same file (VFS mutex, then inode mutex). Both
    // wait forever; seen when a test tenant was dropped while its pools closed. Checkpoints
    // still run as transactions commit (every 1000 pages), and the template is checkpointed
    // explicitly before it is copied.
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
    )?;
    Ok(connection)
}

impl Manager for FileManager {
    type Type = SyncWrapper<rusqlite::Connection>;
    type Error = OpenError;

    async fn create(&self) -> Result<Self::Type, OpenError> {
        let path = self.path.clone();
        let create = self.create;
        SyncWrapper::new(Runtime::Tokio1, move || {
            open(&path, create).map_err(|error| OpenError { path, error })
        })
        .await
    }

    async fn recycle(&self, connection: &mut Self::Type, _: &Metrics) -> RecycleResult<OpenError> {
        if connection.is_mutex_poisoned() {
            return Err(RecycleError::message(
                "a statement panicked on this connection",
            ));
        }
        Ok(())
    }
}

pub(crate) type SqliteConnection = tenancy_pool::Connection<FileManager>;

/// One directory of SQLite files.
pub(crate) struct SqliteServer {
    pub(crate) name: ServerName,
    pub(crate) dir: PathBuf,
    pub(crate) naming: Naming,
    pub(crate) pools: TenantPools<FileKey, FileManager>,
    /// The fingerprint of the migrations this process last brought the template to; held
    /// while it is migrated.
    pub(crate) template: tokio::sync::Mutex<Option<String>>,
}

impl fmt::Debug for SqliteServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteServer")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SqliteServer {
    pub(crate) fn new(config: &SqliteConfig, naming: Naming) -> Result<Self, Error> {
        let dir = config.data_dir.clone();
        let paths = FilePaths {
            dir: dir.clone(),
            naming: naming.clone(),
        };
        let pools = TenantPools::new(config.pool.clone(), move |key: &FileKey| FileManager {
            path: paths.path(key),
            // Only the platform and template files are created on first use; tenant files
            // are created by provisioning.
            create: matches!(key, FileKey::Platform | FileKey::Template(_)),
        })
        .map_err(Error::from_pool)?;
        Ok(SqliteServer {
            name: config.name.clone(),
            dir,
            naming,
            pools,
            template: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn path(&self, key: &FileKey) -> PathBuf {
        FilePaths {
            dir: self.dir.clone(),
            naming: self.naming.clone(),
        }
        .path(key)
    }

    pub(crate) async fn connection(&self, key: &FileKey) -> Result<SqliteConnection, Error> {
        self.pools.get(key).await.map_err(Error::from_pool)
    }

    pub(crate) async fn begin(&self, key: &FileKey) -> Result<SqliteTransaction, Error> {
        SqliteTransaction::begin(self.connection(key).await?).await
    }
}

/// The file names of a data directory: `{prefix}_{tenant}.sqlite3`,
/// `{prefix}__platform.sqlite3` and `{prefix}__template{fingerprint}.sqlite3`, derived like
/// every other tenant name.
struct FilePaths {
    dir: PathBuf,
    naming: Naming,
}

impl FilePaths {
    fn path(&self, key: &FileKey) -> PathBuf {
        let stem = match key {
            FileKey::Tenant(id) => self.naming.sql_name(id),
            FileKey::Platform => self.naming.platform_sql_name("platform"),
            FileKey::Template(fingerprint) => self
                .naming
                .platform_sql_name(&format!("template{fingerprint}")),
        };
        self.dir.join(format!("{stem}.sqlite3"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Closing several connections to one WAL file at the same moment, from several
    /// threads, must never hang (see `open`: without its setting, the bundled SQLite
    /// deadlocks here, usually within a few hundred rounds).
    #[test]
    fn closing_connections_to_one_file_at_once_never_hangs() {
        const THREADS: usize = 6;
        let dir = std::env::temp_dir().join(format!("tenancy-db-close-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("one.sqlite3");
        let outcome = std::panic::catch_unwind(|| {
            tenancy_test::rounds::assert_rounds_finish(
                "closing connections to one file from several threads at once",
                1500,
                Duration::from_secs(10),
                move |round| {
                    let connections: Vec<_> = (0..THREADS)
                        .map(|_| super::open(&path, true).expect("an open file"))
                        .collect();
                    connections[0]
                        .execute_batch(&format!(
                            "CREATE TABLE IF NOT EXISTS t (n integer); INSERT INTO t VALUES ({round})"
                        ))
                        .expect("a write");
                    for connection in &connections {
                        let _: i64 = connection
                            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
                            .expect("a read");
                    }
                    let barrier = Arc::new(Barrier::new(THREADS));
                    let closers: Vec<_> = connections
                        .into_iter()
                        .map(|connection| {
                            let barrier = Arc::clone(&barrier);
                            std::thread::spawn(move || {
                                barrier.wait();
                                drop(connection);
                            })
                        })
                        .collect();
                    for closer in closers {
                        closer.join().expect("a closing thread");
                    }
                },
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
