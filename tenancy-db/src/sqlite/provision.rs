//! Platform operations on a SQLite data directory.

use deadpool_sync::SyncWrapper;
use tenancy_core::Tenant;
use tenancy_pool::deadpool::Runtime;

use super::{FileKey, SqliteServer, open};
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

    /// Creates the tenant's file and brings it up to date.
    pub(crate) async fn create_tenant(
        &self,
        tenant: &Tenant,
        migrations: &Migrations,
    ) -> Result<(), Error> {
        let path = self.path(&FileKey::Tenant(tenant.id.clone()));
        if tokio::fs::try_exists(&path).await.unwrap_or(true) {
            return Err(Error::new(
                ErrorKind::Provision,
                format!(
                    "{} already exists: a tenant `{}` was not dropped cleanly; drop it first",
                    path.display(),
                    tenant.id
                ),
            ));
        }
        let created = SyncWrapper::new(Runtime::Tokio1, move || open(&path, true))
            .await
            .map_err(|e| Error::sqlite("creating the tenant's file", e))?;
        drop(created);
        if let (_, Some(error)) = self.migrate_tenant(migrations, tenant).await {
            let _ = self.drop_tenant(tenant).await;
            return Err(error);
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
