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
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "DbConfigFile"))]
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
impl PostgresServer {
    /// A server called `name`, reached for platform operations through `admin_url` (a
    /// superuser's libpq URL), with the defaults: the default budget, a 30 s statement
    /// timeout, a 60 s idle-in-transaction timeout, one application role, the unsealed
    /// row-level binding, half a shared pool per tenant.
    pub fn new(name: ServerName, admin_url: impl Into<String>) -> Self {
        PostgresServer {
            name,
            admin_url: admin_url.into(),
            pool: PoolsConfig::default(),
            statement_timeout: Some(Duration::from_secs(30)),
            schema_role_shards: 1,
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            sealed_row_binding: false,
            max_connections_per_shared_tenant: None,
        }
    }
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
            vec![ServerConfig::Sqlite(SqliteServer::new(name, data_dir))],
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
            vec![ServerConfig::Postgres(PostgresServer::new(name, admin_url))],
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

/// The prefix of every environment variable [`DbConfig::from_env`] reads.
pub const ENV_PREFIX: &str = "TENANCY_DB_";

/// The settings [`DbConfig::from_env`] knows, after [`ENV_PREFIX`].
const ENV_KEYS: &[&str] = &[
    "URL",
    "DATA_DIR",
    "SECRET",
    "NAMING_PREFIX",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_POOL",
    "STATEMENT_TIMEOUT",
    "CATALOG_CACHE_TTL",
    "SEALED_ROW_BINDING",
    "ASSUME_HOSTILE_SQL",
    "SCHEMA_ROLE_SHARDS",
];

/// A setting of [`DbConfig::from_vars`] that does not parse: the message names the key.
fn bad_setting(key: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "{ENV_PREFIX}{key}: {} is not {expected}",
            tenancy_core::quote(value)
        ),
    )
}

impl DbConfig {
    /// The configuration the environment describes: `TENANCY_DB_URL` (a PostgreSQL admin
    /// URL, with `TENANCY_DB_SECRET`) or `TENANCY_DB_DATA_DIR` (SQLite files), and
    /// optionally `TENANCY_DB_NAMING_PREFIX`, `TENANCY_DB_MAX_CONNECTIONS`,
    /// `TENANCY_DB_MAX_CONNECTIONS_PER_POOL`, `TENANCY_DB_STATEMENT_TIMEOUT` (`30s`; `0s`
    /// for none), `TENANCY_DB_CATALOG_CACHE_TTL`, `TENANCY_DB_SEALED_ROW_BINDING`,
    /// `TENANCY_DB_ASSUME_HOSTILE_SQL` and `TENANCY_DB_SCHEMA_ROLE_SHARDS`. An unknown
    /// `TENANCY_DB_` variable is an error (a misspelt setting is not silently ignored), and
    /// every error names the variable.
    pub fn from_env() -> Result<DbConfig, Error> {
        DbConfig::from_vars(std::env::vars())
    }

    /// [`DbConfig::from_env`] over `vars` instead of the process environment: variables
    /// without the prefix are ignored.
    ///
    /// ```
    /// use tenancy_db::DbConfig;
    ///
    /// let config = DbConfig::from_vars([
    ///     ("TENANCY_DB_DATA_DIR", "./data"),
    ///     ("TENANCY_DB_MAX_CONNECTIONS", "32"),
    ///     ("HOME", "/root"),
    /// ])?;
    /// let refused = DbConfig::from_vars([("TENANCY_DB_DATA_DIR", "./d"), ("TENANCY_DB_MAX_CONECTIONS", "3")]);
    /// assert!(refused.unwrap_err().to_string().contains("TENANCY_DB_MAX_CONECTIONS"));
    /// # Ok::<(), tenancy_db::Error>(())
    /// ```
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<DbConfig, Error>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut settings = std::collections::BTreeMap::new();
        for (key, value) in vars {
            let Some(key) = key.as_ref().strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !ENV_KEYS.contains(&key) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{ENV_PREFIX}{key} is not a setting of tenancy-db; the settings are \
                         {ENV_PREFIX}{}",
                        ENV_KEYS.join(&format!(", {ENV_PREFIX}"))
                    ),
                ));
            }
            settings.insert(key.to_owned(), value.as_ref().to_owned());
        }
        let number = |key: &str| -> Result<Option<usize>, Error> {
            settings
                .get(key)
                .map(|v| v.parse().map_err(|_| bad_setting(key, v, "a whole number")))
                .transpose()
        };
        let flag = |key: &str| -> Result<Option<bool>, Error> {
            settings
                .get(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad_setting(key, v, "`true` or `false`"))
                })
                .transpose()
        };
        let duration = |key: &str| -> Result<Option<Duration>, Error> {
            settings
                .get(key)
                .map(|v| {
                    humantime::parse_duration(v)
                        .map_err(|_| bad_setting(key, v, "a duration such as `30s` or `500ms`"))
                })
                .transpose()
        };
        let mut config = match (settings.get("URL"), settings.get("DATA_DIR")) {
            #[cfg(feature = "postgres")]
            (Some(url), None) => {
                let secret = settings.get("SECRET").ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "{ENV_PREFIX}URL names a PostgreSQL server: set {ENV_PREFIX}SECRET \
                             too (at least {} random bytes), from which role passwords are \
                             derived",
                            Secret::MIN_LEN
                        ),
                    )
                })?;
                let secret = Secret::new(secret.clone()).map_err(|error| {
                    Error::with_source(
                        ErrorKind::Config,
                        format!("{ENV_PREFIX}SECRET is not usable"),
                        error,
                    )
                })?;
                DbConfig::postgres(url.clone(), secret)
            }
            #[cfg(feature = "sqlite")]
            (None, Some(dir)) => DbConfig::embedded(dir),
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{ENV_PREFIX}URL and {ENV_PREFIX}DATA_DIR are both set: set one, \
                         PostgreSQL or SQLite files"
                    ),
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "set {ENV_PREFIX}URL (a PostgreSQL admin URL, with {ENV_PREFIX}SECRET) or \
                         {ENV_PREFIX}DATA_DIR (a directory of SQLite files), whichever this \
                         build supports"
                    ),
                ));
            }
        };
        if let Some(prefix) = settings.get("NAMING_PREFIX") {
            config = config.naming_prefix(prefix);
        }
        if number("MAX_CONNECTIONS")?.is_some() || number("MAX_CONNECTIONS_PER_POOL")?.is_some() {
            let mut pool = number("MAX_CONNECTIONS")?
                .map_or_else(PoolsConfig::default, PoolsConfig::with_max_connections);
            if let Some(per_pool) = number("MAX_CONNECTIONS_PER_POOL")? {
                pool.max_connections_per_pool = per_pool;
            }
            config = config.pool(&pool);
        }
        if let Some(ttl) = duration("CATALOG_CACHE_TTL")? {
            config.catalog_cache_ttl = ttl;
        }
        if let Some(hostile) = flag("ASSUME_HOSTILE_SQL")? {
            config.assume_hostile_sql = hostile;
        }
        #[cfg(feature = "postgres")]
        {
            if let Some(timeout) = duration("STATEMENT_TIMEOUT")? {
                config = config.statement_timeout((!timeout.is_zero()).then_some(timeout));
            }
            if let Some(sealed) = flag("SEALED_ROW_BINDING")? {
                config = config.sealed_row_binding(sealed);
            }
            if let Some(shards) = number("SCHEMA_ROLE_SHARDS")? {
                let shards = u16::try_from(shards).map_err(|_| {
                    bad_setting("SCHEMA_ROLE_SHARDS", &shards.to_string(), "at most 1024")
                })?;
                config = config.schema_role_shards(shards);
            }
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(feature = "sqlite")]
impl SqliteServer {
    /// A directory of SQLite files called `name`, with the default budget of open files.
    pub fn new(name: ServerName, data_dir: impl Into<PathBuf>) -> Self {
        SqliteServer {
            name,
            data_dir: data_dir.into(),
            pool: PoolsConfig::default(),
        }
    }
}

/// The form of a [`DbConfig`] in a file (feature `serde`): every key but `servers` is
/// optional, durations are written `"30s"`, `"500ms"`, and a mistyped key is an error that
/// names it.
///
/// ```toml
/// naming_prefix = "tenancy"
/// credentials = "<at least 32 random bytes>"
///
/// [[servers]]
/// kind = "postgres"
/// name = "eu-1"
/// admin_url = "postgres://postgres@db:5432/postgres?sslmode=verify-full&sslrootcert=ca.pem"
/// statement_timeout = "30s"
/// sealed_row_binding = true
/// pool = { max_connections = 64, max_connections_per_pool = 8 }
///
/// [[servers]]
/// kind = "sqlite"
/// name = "embedded"
/// data_dir = "./data"
/// ```
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DbConfigFile {
    naming_prefix: Option<String>,
    servers: Vec<ServerFile>,
    /// Defaults to the first server.
    catalog_server: Option<ServerName>,
    credentials: Option<Secret>,
    #[serde(default, with = "humantime_serde::option")]
    catalog_cache_ttl: Option<Duration>,
    migration_parallelism: Option<usize>,
    catalog_connections: Option<usize>,
    assume_hostile_sql: Option<bool>,
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum ServerFile {
    #[cfg(feature = "postgres")]
    Postgres {
        name: ServerName,
        admin_url: String,
        pool: Option<PoolsConfig>,
        /// `"0s"` for no limit.
        #[serde(default, with = "humantime_serde::option")]
        statement_timeout: Option<Duration>,
        #[serde(default, with = "humantime_serde::option")]
        idle_in_transaction_timeout: Option<Duration>,
        schema_role_shards: Option<u16>,
        sealed_row_binding: Option<bool>,
        max_connections_per_shared_tenant: Option<usize>,
    },
    #[cfg(feature = "sqlite")]
    Sqlite {
        name: ServerName,
        data_dir: PathBuf,
        pool: Option<PoolsConfig>,
    },
}

#[cfg(feature = "serde")]
impl TryFrom<DbConfigFile> for DbConfig {
    type Error = Error;

    fn try_from(file: DbConfigFile) -> Result<Self, Error> {
        let servers: Vec<ServerConfig> = file
            .servers
            .into_iter()
            .map(|server| match server {
                #[cfg(feature = "postgres")]
                ServerFile::Postgres {
                    name,
                    admin_url,
                    pool,
                    statement_timeout,
                    idle_in_transaction_timeout,
                    schema_role_shards,
                    sealed_row_binding,
                    max_connections_per_shared_tenant,
                } => {
                    let defaults = PostgresServer::new(name, admin_url);
                    let none_if_zero = |timeout: Duration| (!timeout.is_zero()).then_some(timeout);
                    ServerConfig::Postgres(PostgresServer {
                        pool: pool.unwrap_or(defaults.pool.clone()),
                        statement_timeout: statement_timeout
                            .map_or(defaults.statement_timeout, none_if_zero),
                        idle_in_transaction_timeout: idle_in_transaction_timeout
                            .map_or(defaults.idle_in_transaction_timeout, none_if_zero),
                        schema_role_shards: schema_role_shards
                            .unwrap_or(defaults.schema_role_shards),
                        sealed_row_binding: sealed_row_binding
                            .unwrap_or(defaults.sealed_row_binding),
                        max_connections_per_shared_tenant,
                        ..defaults
                    })
                }
                #[cfg(feature = "sqlite")]
                ServerFile::Sqlite {
                    name,
                    data_dir,
                    pool,
                } => ServerConfig::Sqlite(SqliteServer {
                    pool: pool.unwrap_or_default(),
                    ..SqliteServer::new(name, data_dir)
                }),
            })
            .collect();
        let catalog_server = match (file.catalog_server, servers.first()) {
            (Some(name), _) => name,
            (None, Some(first)) => first.name().clone(),
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "servers: the configuration names no server",
                ));
            }
        };
        let mut config = DbConfig::with_servers(catalog_server, servers, file.credentials);
        if let Some(prefix) = file.naming_prefix {
            config.naming_prefix = prefix;
        }
        if let Some(ttl) = file.catalog_cache_ttl {
            config.catalog_cache_ttl = ttl;
        }
        if let Some(parallelism) = file.migration_parallelism {
            config.migration_parallelism = parallelism;
        }
        if let Some(connections) = file.catalog_connections {
            config.catalog_connections = connections;
        }
        if let Some(hostile) = file.assume_hostile_sql {
            config.assume_hostile_sql = hostile;
        }
        config.validate()?;
        Ok(config)
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

#[cfg(all(test, feature = "postgres", feature = "sqlite"))]
mod from_outside {
    use super::*;

    fn secret() -> &'static str {
        "0123456789abcdef0123456789abcdef"
    }

    #[test]
    fn the_environment_names_every_setting_it_refuses() {
        let config = DbConfig::from_vars([
            ("TENANCY_DB_URL", "postgres://postgres@db/postgres"),
            ("TENANCY_DB_SECRET", secret()),
            ("TENANCY_DB_MAX_CONNECTIONS", "32"),
            ("TENANCY_DB_STATEMENT_TIMEOUT", "0s"),
            ("TENANCY_DB_SEALED_ROW_BINDING", "true"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        let ServerConfig::Postgres(server) = &config.servers[0] else {
            panic!("a PostgreSQL server");
        };
        assert_eq!(server.pool.max_connections, 32);
        assert_eq!(server.statement_timeout, None);
        assert!(server.sealed_row_binding);

        for (vars, named) in [
            (
                vec![("TENANCY_DB_URL", "postgres://x@db/p")],
                "TENANCY_DB_SECRET",
            ),
            (
                vec![
                    ("TENANCY_DB_DATA_DIR", "d"),
                    ("TENANCY_DB_MAX_CONNECTIONS", "many"),
                ],
                "TENANCY_DB_MAX_CONNECTIONS",
            ),
            (
                vec![
                    ("TENANCY_DB_DATA_DIR", "d"),
                    ("TENANCY_DB_CATALOG_CACHE_TTL", "soon"),
                ],
                "TENANCY_DB_CATALOG_CACHE_TTL",
            ),
            (
                vec![
                    ("TENANCY_DB_DATA_DIR", "d"),
                    ("TENANCY_DB_STATMENT_TIMEOUT", "1s"),
                ],
                "TENANCY_DB_STATMENT_TIMEOUT",
            ),
            (
                vec![("TENANCY_DB_NAMING_PREFIX", "x")],
                "TENANCY_DB_DATA_DIR",
            ),
        ] {
            let error = DbConfig::from_vars(vars).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.to_string().contains(named), "{named}: {error}");
        }
    }

    #[test]
    fn files_read_with_defaults_and_refuse_unknown_keys() {
        let config: DbConfig = serde_json::from_value(serde_json::json!({
            "credentials": secret(),
            "servers": [
                {"kind": "postgres", "name": "eu-1", "admin_url": "postgres://postgres@db/p",
                 "statement_timeout": "5s", "pool": {"max_connections": 16}},
                {"kind": "sqlite", "name": "embedded", "data_dir": "./data"}
            ]
        }))
        .unwrap();
        assert_eq!(config.catalog_server.as_str(), "eu-1");
        let ServerConfig::Postgres(server) = &config.servers[0] else {
            panic!("a PostgreSQL server");
        };
        assert_eq!(server.statement_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            server.idle_in_transaction_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(server.pool.max_connections, 16);

        for (file, named) in [
            (
                serde_json::json!({"servers": [{"kind": "sqlite", "name": "e", "data_dir": "d",
                                                 "max_conections": 3}]}),
                "max_conections",
            ),
            (
                serde_json::json!({"servers": [{"kind": "postgres", "name": "m",
                                                 "admin_url": "postgres://x@db/p"}]}),
                "credential secret",
            ),
            (serde_json::json!({"servers": []}), "servers"),
        ] {
            let error = serde_json::from_value::<DbConfig>(file).unwrap_err();
            assert!(error.to_string().contains(named), "{named}: {error}");
        }
    }
}
