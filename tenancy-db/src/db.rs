//! [`TenantDb`]: the handle application code holds.

use std::fmt;
use std::sync::Arc;

use tenancy_core::naming::Naming;
use tenancy_core::{IsolationMode, ServerName, SharedCatalog, TenantContext};
use tenancy_pool::PoolStats;

use crate::catalog::{CachedCatalog, CatalogStore};
use crate::config::{DbConfig, ServerConfig};
use crate::error::{Error, ErrorKind};
use crate::migrate::Migrations;
use crate::platform::Platform;
#[cfg(feature = "postgres")]
use crate::postgres::{Binding, PgServer, Target};
#[cfg(feature = "sqlite")]
use crate::sqlite::{FileKey, SqliteServer};
use crate::transaction::{Transaction, Tx};

/// A configured server.
#[derive(Clone)]
pub(crate) enum Server {
    #[cfg(feature = "postgres")]
    Postgres(Arc<PgServer>),
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<SqliteServer>),
}

impl Server {
    /// The PostgreSQL server, if this is one.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&self) -> Option<&Arc<PgServer>> {
        match self {
            Server::Postgres(pg) => Some(pg),
            #[cfg(feature = "sqlite")]
            Server::Sqlite(_) => None,
        }
    }

    /// Whether this is a directory of SQLite files.
    pub(crate) fn is_sqlite(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            Server::Postgres(_) => false,
            #[cfg(feature = "sqlite")]
            Server::Sqlite(_) => true,
        }
    }
}

/// Tenant-scoped database access: the only way application code reaches a tenant's data.
///
/// [`TenantDb::transaction`] takes a [`TenantContext`] and returns a transaction that can
/// see that tenant's data and nothing else, on whichever server and with whichever
/// isolation the catalog places the tenant. Cheap to clone; clones share pools and the
/// catalog cache.
#[derive(Clone)]
pub struct TenantDb {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: DbConfig,
    /// A handful of servers: a scan beats hashing a name on every transaction.
    pub(crate) servers: Vec<(ServerName, Server)>,
    pub(crate) catalog: CachedCatalog,
    pub(crate) shared_catalog: SharedCatalog,
    pub(crate) migrations: Migrations,
}

impl TenantDb {
    /// A handle for `config`, whose tenants are kept at `migrations`. Does no I/O: a
    /// server that is down or not prepared shows up on first use, with a message that says
    /// so.
    pub fn new(config: DbConfig, migrations: Migrations) -> Result<Self, Error> {
        config.validate()?;
        let naming = Naming::new(&config.naming_prefix).map_err(Error::from)?;
        let mut servers = Vec::new();
        for server in &config.servers {
            let made = match server {
                #[cfg(feature = "postgres")]
                ServerConfig::Postgres(pg) => {
                    let secret = config
                        .credentials
                        .clone()
                        .expect("validated: PostgreSQL servers come with a secret");
                    let catalog_connections = if pg.name == config.catalog_server {
                        config.catalog_connections
                    } else {
                        0
                    };
                    Server::Postgres(Arc::new(PgServer::new(
                        pg,
                        naming.clone(),
                        secret,
                        catalog_connections,
                    )?))
                }
                #[cfg(feature = "sqlite")]
                ServerConfig::Sqlite(sqlite) => {
                    Server::Sqlite(Arc::new(SqliteServer::new(sqlite, naming.clone())?))
                }
            };
            servers.push((server.name().clone(), made));
        }
        servers.sort_by(|a, b| a.0.cmp(&b.0));
        let catalog_server = servers
            .iter()
            .find(|(name, _)| *name == config.catalog_server)
            .map(|(_, server)| server)
            .expect("validated: the catalog server is configured");
        let store = match catalog_server {
            #[cfg(feature = "postgres")]
            Server::Postgres(pg) => CatalogStore::Postgres(Arc::clone(pg)),
            #[cfg(feature = "sqlite")]
            Server::Sqlite(sqlite) => CatalogStore::Sqlite(Arc::clone(sqlite)),
        };
        let catalog = CachedCatalog::new(store, config.catalog_cache_ttl);
        let shared_catalog = SharedCatalog::new(catalog.clone());
        Ok(TenantDb {
            inner: Arc::new(Inner {
                config,
                servers,
                catalog,
                shared_catalog,
                migrations,
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn server(&self, name: &ServerName) -> Result<&Server, Error> {
        self.inner
            .servers
            .iter()
            .find(|(configured, _)| configured == name)
            .map(|(_, server)| server)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("server `{name}` is not configured on this node"),
                )
            })
    }

    /// A transaction that sees the data of `ctx`'s tenant and nothing else.
    ///
    /// The tenant is admitted through the catalog first: an unknown, suspended or archived
    /// tenant is an error before any connection to its data is made. Nothing is sent yet:
    /// `BEGIN` and the tenant's binding go out with the first statement, in its round trip.
    pub async fn transaction(&self, ctx: &TenantContext) -> Result<Transaction, Error> {
        let tenant = self.inner.catalog.admit(ctx.tenant()).await?;
        let id = tenant.id.clone();
        let placement = tenant.require_placement()?;
        let tx = match (self.server(&placement.server)?, placement.isolation) {
            #[cfg(feature = "postgres")]
            (Server::Postgres(pg), IsolationMode::Database) => pg
                .begin(&Target::Tenant(id.clone()), Binding::Connection)
                .await
                .map(Tx::postgres)?,
            #[cfg(feature = "postgres")]
            (Server::Postgres(pg), IsolationMode::Schema) => {
                let role = pg.names.tenant(&id);
                let target = Target::Shared(pg.names.shard_of(&role));
                pg.begin_shared(&target, Binding::Schema(role), &id)
                    .await
                    .map(Tx::postgres)?
            }
            #[cfg(feature = "postgres")]
            (Server::Postgres(pg), IsolationMode::Row) => pg
                .begin_shared(&Target::Shared(0), Binding::Row(id.clone()), &id)
                .await
                .map(Tx::postgres)?,
            #[cfg(feature = "sqlite")]
            (Server::Sqlite(sqlite), IsolationMode::Database) => sqlite
                .begin(&FileKey::Tenant(id.clone()))
                .await
                .map(Tx::Sqlite)?,
            (_, mode) => return Err(unsupported(&placement.server, mode)),
        };
        Ok(Transaction::new(id, tx))
    }

    /// The catalog this handle admits tenants with, cached: give it to
    /// [`TenantLayer`](tenancy_core::http::TenantLayer) so requests and transactions share
    /// one cache.
    pub fn catalog(&self) -> SharedCatalog {
        self.inner.shared_catalog.clone()
    }

    /// Platform operations: provisioning, migrations, the isolation check.
    pub fn platform(&self) -> Platform {
        Platform::new(self.clone())
    }

    /// The connection counters of `server`, if it is configured.
    pub fn pool_stats(&self, server: &ServerName) -> Option<PoolStats> {
        match self.server(server).ok()? {
            #[cfg(feature = "postgres")]
            Server::Postgres(pg) => Some(pg.pool_stats()),
            #[cfg(feature = "sqlite")]
            Server::Sqlite(sqlite) => Some(sqlite.pools.stats()),
        }
    }

    /// The migrations tenants are kept at.
    pub fn migrations(&self) -> &Migrations {
        &self.inner.migrations
    }

    /// The naming scheme of every database, schema, role and file.
    pub fn naming(&self) -> Naming {
        Naming::new(&self.inner.config.naming_prefix).expect("validated in TenantDb::new")
    }
}

/// The error for a placement a server's backend cannot give.
pub(crate) fn unsupported(server: &ServerName, mode: IsolationMode) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "server `{server}` keeps a SQLite file per tenant, so it offers database \
             isolation only, not {mode}"
        ),
    )
}

impl fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&ServerName> = self.inner.servers.iter().map(|(name, _)| name).collect();
        f.debug_struct("TenantDb")
            .field("servers", &servers)
            .field("catalog", &self.inner.catalog)
            .finish_non_exhaustive()
    }
}
