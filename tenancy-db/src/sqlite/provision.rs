//! Platform operations on a SQLite data directory.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tenancy_core::Tenant;

use super::transaction::interact_failed;
use super::{FileKey, SqliteServer};
use crate::error::{Error, ErrorKind};
use crate::migrate::{self, Dialect, Migrations, Records};
use crate::transaction::Tx;

impl SqliteServer {
    /// Creates the data directory.
    pub(crate) async fn prepare(&self) -> Result<(), Error> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|error| {
            Error::with_source(
                ErrorKind::Provision,
                format!("creating the data directory {}", self.dir.display()),
                error,
            )
        })
    }

    /// Creates the tenant's file as a copy of the template, brought to `migrations` first
    /// (once per process and migrations' content), then brings the copy up to date: a check
    /// that finds nothing to do unless another process moved the template on meanwhile.
    pub(crate) async fn create_tenant(
        &self,
        tenant: &Tenant,
        migrations: &Migrations,
    ) -> Result<(), Error> {
        let path = self.path(&FileKey::Tenant(tenant.id.clone()));
        if tokio::fs::try_exists(&path).await.unwrap_or(true) {
            return Err(already_exists(&path, tenant));
        }
        let template = self.ensure_template(migrations).await?;
        let to = path.clone();
        let copied = blocking("copying the template", move || copy_new(&template, &to)).await?;
        match copied {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(already_exists(&path, tenant));
            }
            Err(error) => {
                return Err(Error::with_source(
                    ErrorKind::Provision,
                    format!("copying the template to {}", path.display()),
                    error,
                ));
            }
        }
        if let (_, Some(error)) = self.migrate_tenant(migrations, tenant).await {
            let _ = self.drop_tenant(tenant).await;
            return Err(error);
        }
        Ok(())
    }

    /// The template file, brought to `migrations` and checkpointed, so that a copy of its
    /// main file alone is a complete database at the latest migration.
    ///
    /// The template is named by the migrations' fingerprint, so every content has its own.
    /// Across processes, a lock file beside it lets one process migrate it while none
    /// copies it; within a process, the template is checked once per content.
    async fn ensure_template(&self, migrations: &Migrations) -> Result<PathBuf, Error> {
        let fingerprint = migrations.fingerprint();
        let key = FileKey::Template(Arc::from(&fingerprint[..12]));
        let path = self.path(&key);
        let mut made = self.template.lock().await;
        if made.as_deref() == Some(fingerprint.as_str()) {
            return Ok(path);
        }
        let lock = lock_path(&path);
        let held = blocking("locking the template", move || {
            lock_file(&lock, Lock::Exclusive)
        })
        .await?
        .map_err(|error| Error::with_source(ErrorKind::Provision, "locking the template", error))?;
        let migrated = self.migrate_template(migrations, &key).await;
        // Its connections are closed whatever happened: none may write while a copy is made.
        self.pools.remove(&key);
        drop(held);
        migrated?;
        *made = Some(fingerprint);
        Ok(path)
    }

    async fn migrate_template(&self, migrations: &Migrations, key: &FileKey) -> Result<(), Error> {
        if let (_, Some(error)) = migrate::apply(
            migrations,
            Records::new(Dialect::Sqlite, "file"),
            || async { self.begin(key).await.map(Tx::Sqlite) },
        )
        .await
        {
            return Err(error);
        }
        let connection = self.connection(key).await?;
        let busy = connection
            .interact(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .await
            .map_err(interact_failed)?
            .map_err(|e| Error::sqlite("checkpointing the template", e))?;
        if busy != 0 {
            return Err(Error::new(
                ErrorKind::Provision,
                "checkpointing the template found it busy: another connection is writing to \
                 it, which only a migration of it should",
            ));
        }
        Ok(())
    }

    pub(crate) async fn migrate_tenant(
        &self,
        migrations: &Migrations,
        tenant: &Tenant,
    ) -> (Vec<u32>, Option<Error>) {
        let key = FileKey::Tenant(tenant.id.clone());
        migrate::apply(
            migrations,
            Records::new(Dialect::Sqlite, "file"),
            || async { self.begin(&key).await.map(Tx::Sqlite) },
        )
        .await
    }

    /// Closes the tenant's connections; the catalog refuses new ones.
    pub(crate) fn suspend(&self, tenant: &Tenant) {
        self.pools.remove(&FileKey::Tenant(tenant.id.clone()));
    }

    /// Deletes the tenant's file (and its write-ahead log). Idempotent.
    pub(crate) async fn drop_tenant(&self, tenant: &Tenant) -> Result<(), Error> {
        let key = FileKey::Tenant(tenant.id.clone());
        self.pools.remove(&key);
        let path = self.path(&key);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            match tokio::fs::remove_file(&file).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::with_source(
                        ErrorKind::Provision,
                        format!("deleting {}", path.display()),
                        error,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Runs file work on tokio's blocking threads. Platform work serves no tenant, so there is
/// no tenant scope to carry.
async fn blocking<T: Send + 'static>(
    doing: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    #[expect(
        clippy::disallowed_methods,
        reason = "platform file work, under no tenant's scope"
    )]
    let task = tokio::task::spawn_blocking(work);
    task.await
        .map_err(|error| Error::new(ErrorKind::Provision, format!("{doing} failed: {error}")))
}

fn already_exists(path: &Path, tenant: &Tenant) -> Error {
    Error::new(
        ErrorKind::Provision,
        format!(
            "{} already exists: a tenant `{}` was not dropped cleanly; drop it first",
            path.display(),
            tenant.id
        ),
    )
}

/// The lock file beside a template.
fn lock_path(template: &Path) -> PathBuf {
    let mut lock = template.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

#[derive(Debug, Clone, Copy)]
enum Lock {
    Shared,
    Exclusive,
}

/// Opens (or creates) the lock file and takes the lock, waiting for it; released when the
/// file is closed, by this process or by its end.
fn lock_file(path: &Path, lock: Lock) -> io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match lock {
        Lock::Shared => file.lock_shared()?,
        Lock::Exclusive => file.lock()?,
    }
    Ok(file)
}

/// Copies the template's main file to `to`, which must not exist, under the template's
/// shared lock (no process migrates it meanwhile), and syncs the copy to disk before the
/// tenant is recorded. A failed copy leaves no file behind.
fn copy_new(template: &Path, to: &Path) -> io::Result<()> {
    let _held = lock_file(&lock_path(template), Lock::Shared)?;
    let mut from = File::open(template)?;
    let mut out = File::options().write(true).create_new(true).open(to)?;
    let written = io::copy(&mut from, &mut out).and_then(|_| out.sync_all());
    if written.is_err() {
        drop(out);
        let _ = std::fs::remove_file(to);
    }
    written
}
