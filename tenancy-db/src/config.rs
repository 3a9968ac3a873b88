//! [`DbConfig`]: which servers exist and how to reach them.

#[cfg(feature = "postgres")]
use std::fmt;
#[cfg(feature = "sqlite")]
use std::path::PathBuf;
use std::time::Duration;

use tenancy_core::ServerName;
use tenancy_pool::PoolsConfig;

use crate::credentials::Secret;
use crate::error::{Error, ErrorKind};
#[cfg(feature = "postgres")]
use crate::postgres::address::describe;

#[cfg(feature = "postgres")]
/// The most application roles schema tenants can be spread over: more would leave each a
/// handful of tenants, and a pool each.
pub(crate) const MAX_SCHEMA_ROLE_SHARDS: u16 = 1024;

/// The configuration of a [`TenantDb`](crate::TenantDb).
///
/// ```
/// use tenancy_db::DbConfig;
///
/// // Everything in files under ./data: the embedded default.
/// let embedded = DbConfig::embedded("./data");
///
/// // One PostgreSQL server, platform operations as a superuser.
/// let postgres = DbConfig::postgres(
///     "postgres://postgres@127.0.0.1:5432/postgres",
///     tenancy_db::Secret::new("0123456789abcdef0123456789abcdef")?,
/// );
/// # Ok::<(), tenancy_db::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DbConfig {
    /// The prefix of every database, schema and role name (`tenancy_acme`, `tenancy__app`).
    pub naming_prefix: String,
    /// The servers tenants can be placed on.
    pub servers: Vec<ServerConfig>,
    /// The server whose platform database (or file) holds the tenant catalog.
    pub catalog_server: ServerName,
    /// The secret role passwords are derived from; required when a PostgreSQL server is
    /// configured.
    pub credentials: Option<Secret>,
    /// How often this node's replica of the catalog is brought up to date (one query for
    /// the tenants changed since, whatever their number). A suspension made on another
    /// node takes up to this long to be seen here (one made through this node's `Platform`
    /// is seen at once); a catalog transaction that takes longer than six of these to
    /// commit is seen at the next full reload, every 10 minutes.
    pub catalog_cache_ttl: Duration,
    /// How many tenants are migrated at once.
    pub migration_parallelism: usize,
    /// How many connections of the catalog server's budget are set aside for catalog
    /// lookups when that server is PostgreSQL (default 2). Tenant traffic that holds the
    /// rest of the budget then never makes a lookup wait, and a lookup never closes a
    /// tenant's connection to make room. 0 shares the whole budget.
    pub catalog_connections: usize,
    /// Whether a tenant's SQL may be hostile: tenants submit their own SQL, or an injection
    /// in one tenant's request is part of the threat model. Then
    /// [`Platform::check_isolation`](crate::Platform::check_isolation) also reports what
    /// only stops mistakes: schema-per-tenant placement (the application role can `SET
    /// ROLE` to any tenant) and a row-level binding that is not sealed. Default `false`.
    pub assume_hostile_sql: bool,
}

/// One server tenants can be placed on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerConfig {
    /// A PostgreSQL server: database, schema or row-level isolation. Feature `postgres`.
    #[cfg(feature = "postgres")]
    Postgres(PostgresServer),
    /// A directory of SQLite files: a file per tenant. Feature `sqlite`.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteServer),
}

impl ServerConfig {
    /// The server's name.
    pub fn name(&self) -> &ServerName {
        match self {
            #[cfg(feature = "postgres")]
            ServerConfig::Postgres(server) => &server.name,
            #[cfg(feature = "sqlite")]
            ServerConfig::Sqlite(server) => &server.name,
        }
    }

    /// The PostgreSQL server, if this is one.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_mut(&mut self) -> Option<&mut PostgresServer> {
        match self {
            ServerConfig::Postgres(server) => Some(server),
            #[cfg(feature = "sqlite")]
            ServerConfig::Sqlite(_) => None,
        }
    }

    /// The PostgreSQL server, if this is one.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&self) -> Option<&PostgresServer> {
        match self {
            ServerConfig::Postgres(server) => Some(server),
            #[cfg(feature = "sqlite")]
            ServerConfig::Sqlite(_) => None,
        }
    }
}

/// A PostgreSQL server.
#[cfg(feature = "postgres")]
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresServer {
    /// The name tenants' placements refer to.
    pub name: ServerName,
    /// A superuser connection URL, used for platform operations (provisioning, migrations,
    /// the catalog). Tenants' connections use the same host and port with their own roles.
    pub admin_url: String,
    /// The connection budget of this server.
    pub pool: PoolsConfig,
    /// The longest a statement of a tenant transaction, or of the catalog, may run; `None`
    /// for no limit. A locked or overloaded tenant database then fails its own requests
    /// instead of holding connections indefinitely, and a locked catalog fails admissions
    /// (`CatalogUnavailable`) instead of stalling them. Other platform work (migrations,
    /// provisioning) is not limited.
    pub statement_timeout: Option<Duration>,
    /// How many application roles the schema-per-tenant tenants are spread over (at
    /// least 1; default 1). The application role is a member of each of its tenants'
    /// roles, and PostgreSQL re-reads all of those memberships at a session's first
    /// `SET ROLE` and again after any `GRANT` or `REVOKE` of a role anywhere on the server,
    /// such as creating a tenant: measured 177 ms per connection at 10,000 tenants, about
    /// 18 µs per tenant. Spread over `n` roles, each connection re-reads `1/n` of them; the
    /// price is a pool per role, so connections serve fewer tenants each. Changing it takes
    /// effect at the next [`Platform::prepare`](crate::Platform::prepare), which moves
    /// every schema tenant's membership to its new role.
    pub schema_role_shards: u16,
    /// The longest a transaction of a tenant may sit idle, waiting for the application,
    /// before the server ends it and releases its locks (`idle_in_transaction_session_timeout`);
    /// `None` for no limit. Default 60 s.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Seal the row-level binding: the policy accepts the bound tenant only with a proof
    /// (HMAC of the tenant and the connection's server process under a key the application
    /// role cannot read), so SQL that rebinds the tenant (`set_config('app.tenant_id', ..)`)
    /// sees nothing. Costs one verification per statement on the server: see the crate's
    /// `BENCHMARKS.md`. Takes effect at the next [`Platform::prepare`](crate::Platform::prepare).
    pub sealed_row_binding: bool,
    /// The most connections one schema or row-level tenant may hold of a shared database's
    /// pool at once, so that one tenant's slow requests leave the others theirs; `None` for
    /// half the pool's cap (`max_connections_per_pool`), rounded up.
    pub max_connections_per_shared_tenant: Option<usize>,
}

#[cfg(feature = "postgres")]
impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresServer")
            .field("name", &self.name)
            .field("admin_url", &describe(&self.admin_url))
            .field("pool", &self.pool)
            .field("statement_timeout", &self.statement_timeout)
            .field("schema_role_shards", &self.schema_role_shards)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("sealed_row_binding", &self.sealed_row_binding)
            .field(
                "max_connections_per_shared_tenant",
                &self.max_connections_per_shared_tenant,
            )
            .finish()
    }
}

/// A directory of SQLite files.
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteServer {
    /// The name tenants' placements refer to.
    pub name: ServerName,
    /// Where the files live: one per tenant, and the platform file when this server holds
    /// the catalog.
    pub data_dir: PathBuf,
    /// The open-file budget of this server.
    pub pool: PoolsConfig,
}

impl DbConfig {
    /// The name of the embedded default server.
    pub const EMBEDDED: &'static str = "embedded";
    /// The name [`DbConfig::postgres`] gives its server.
    pub const MAIN: &'static str = "main";

    #[cfg(feature = "sqlite")]
    /// Everything in SQLite files under `data_dir`: a file per tenant and a platform file
    /// for the catalog. No server needed.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        let name = ServerName::new(Self::EMBEDDED).expect("a valid server name");
        DbConfig::with_servers(
            name.clone(),
            vec![ServerConfig::Sqlite(SqliteServer {
                name,
                data_dir: data_dir.into(),
                pool: PoolsConfig::default(),
            })],
            None,
        )
    }

    #[cfg(feature = "postgres")]
    /// One PostgreSQL server called `main`, reached for platform operations through
    /// `admin_url`, holding the catalog.
    pub fn postgres(admin_url: impl Into<String>, credentials: Secret) -> Self {
        let name = ServerName::new(Self::MAIN).expect("a valid server name");
        DbConfig::with_servers(
            name.clone(),
            vec![ServerConfig::Postgres(PostgresServer {
                name,
                admin_url: admin_url.into(),
                pool: PoolsConfig::default(),
                statement_timeout: Some(Duration::from_secs(30)),
                schema_role_shards: 1,
                idle_in_transaction_timeout: Some(Duration::from_secs(60)),
                sealed_row_binding: false,
                max_connections_per_shared_tenant: None,
            })],
            Some(credentials),
        )
    }

    fn with_servers(
        catalog_server: ServerName,
        servers: Vec<ServerConfig>,
        credentials: Option<Secret>,
    ) -> Self {
        DbConfig {
            naming_prefix: String::from("tenancy"),
            servers,
            catalog_server,
            credentials,
            catalog_cache_ttl: Duration::from_secs(5),
            migration_parallelism: 8,
            catalog_connections: 2,
            assume_hostile_sql: false,
        }
    }

    /// Adds a server tenants can be placed on.
    pub fn server(mut self, server: ServerConfig) -> Self {
        self.servers.push(server);
        self
    }

    /// Uses `prefix` for every database, schema and role name.
    pub fn naming_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.naming_prefix);
        self
    }

    #[cfg(feature = "postgres")]
    /// Sets the statement timeout of every PostgreSQL server.
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        for server in self
            .servers
            .iter_mut()
            .filter_map(ServerConfig::postgres_mut)
        {
            server.statement_timeout = timeout;
        }
        self
    }

    #[cfg(feature = "postgres")]
    /// Sets how many application roles the schema-per-tenant tenants of every PostgreSQL
    /// server are spread over (see [`PostgresServer::schema_role_shards`]).
    pub fn schema_role_shards(mut self, shards: u16) -> Self {
        for server in self
            .servers
            .iter_mut()
            .filter_map(ServerConfig::postgres_mut)
        {
            server.schema_role_shards = shards;
        }
        self
    }

    #[cfg(feature = "postgres")]
    /// Seals (or unseals) the row-level binding of every PostgreSQL server (see
    /// [`PostgresServer::sealed_row_binding`]).
    pub fn sealed_row_binding(mut self, sealed: bool) -> Self {
        for server in self
            .servers
            .iter_mut()
            .filter_map(ServerConfig::postgres_mut)
        {
            server.sealed_row_binding = sealed;
        }
        self
    }

    /// Sets the connection budget of every server.
    pub fn pool(mut self, pool: &PoolsConfig) -> Self {
        for server in &mut self.servers {
            match server {
                #[cfg(feature = "postgres")]
                ServerConfig::Postgres(server) => server.pool = pool.clone(),
                #[cfg(feature = "sqlite")]
                ServerConfig::Sqlite(server) => server.pool = pool.clone(),
            }
        }
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let mut names: Vec<&ServerName> = self.servers.iter().map(ServerConfig::name).collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("server `{}` is configured twice", pair[0]),
            ));
        }
        if !names.contains(&&self.catalog_server) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the catalog server `{}` is not among the configured servers",
                    self.catalog_server
                ),
            ));
        }
        #[cfg(feature = "postgres")]
        self.validate_postgres()?;
        if self.migration_parallelism == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "migration_parallelism must be at least 1",
            ));
        }
        Ok(())
    }

    #[cfg(feature = "postgres")]
    fn validate_postgres(&self) -> Result<(), Error> {
        let mut postgres = self
            .servers
            .iter()
            .filter_map(ServerConfig::postgres)
            .peekable();
        if postgres.peek().is_some() && self.credentials.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "a PostgreSQL server is configured but no credential secret: set \
                 `DbConfig::credentials` so tenant roles can be given passwords",
            ));
        }
        for server in postgres {
            if server.name == self.catalog_server
                && server.pool.max_connections <= self.catalog_connections
            {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "server `{}` has a budget of {} connections, and {} of them are set \
                         aside for the catalog (catalog_connections): raise the budget or \
                         lower catalog_connections",
                        server.name, server.pool.max_connections, self.catalog_connections
                    ),
                ));
            }
            if !(1..=MAX_SCHEMA_ROLE_SHARDS).contains(&server.schema_role_shards) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "schema_role_shards of server `{}` is {}; it must be 1 to \
                         {MAX_SCHEMA_ROLE_SHARDS}",
                        server.name, server.schema_role_shards
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_admin_password() {
        for url in [
            "postgres://admin:s3cr%2Fet@db/postgres",
            "postgres://admin:s3cr/et@db/postgres",
            "postgres://admin@db/postgres?password=s3cr/et",
            "host=db user=admin password=s3cr/et",
        ] {
            let config = DbConfig::postgres(url, Secret::new("x".repeat(32)).unwrap());
            let shown = format!("{config:?}");
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("admin@db"), "{shown}");
        }
    }

    #[test]
    fn postgres_without_a_secret_is_refused() {
        let mut config = DbConfig::postgres(
            "postgres://postgres@127.0.0.1/postgres",
            Secret::new("x".repeat(32)).unwrap(),
        );
        config.credentials = None;
        assert_eq!(config.validate().unwrap_err().kind(), ErrorKind::Config);
    }
}
