//! PostgreSQL: one pool router per server, and the three isolation strategies.
//!
//! Every connection is to one of a few *targets* on the server:
//!
//! | Target | Database | Role | Used for |
//! |---|---|---|---|
//! | `Tenant(id)` | the tenant's own | the tenant's own login role | database-per-tenant transactions |
//! | `Shared(k)` | `{prefix}__shared` | application role `k`: `{prefix}__app`, `{prefix}__app1`, .. (`NOINHERIT`) | schema and row-level transactions |
//! | `Owner(db)` | any tenancy database | `{prefix}__owner` | migrations, the catalog |
//! | `Admin` | the admin URL's | the admin URL's | provisioning |
//!
//! All targets of a server share one [`TenantPools`] budget, so platform work and tenant
//! traffic together never exceed the server's connection cap; on the server that holds the
//! catalog, a few connections of that cap are set aside for catalog lookups
//! ([`DbConfig::catalog_connections`](crate::DbConfig::catalog_connections)), so that a
//! lookup never waits for, or closes, a tenant's connection.

pub(crate) mod address;
mod connect;
mod guard;
mod node_tree;
pub(crate) mod provision;
pub mod rls;
mod session;
mod transaction;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tenancy_core::naming::Naming;
use tenancy_core::{ServerName, TenantId};
use tenancy_pool::{PoolStats, PoolsConfig, Shares, TenantPools};

use self::address::ServerAddress;
pub(crate) use self::session::APPLICATION_SEARCH_PATH;
pub(crate) use self::session::RETURNED as SESSION_CHECK;
use self::session::{Expected, PgManager, Shared, millis};
pub(crate) use self::transaction::{Binding, PgTransaction};
use crate::config::PostgresServer;
use crate::credentials::{BindingKey, Secret};
use crate::error::{Error, ErrorKind};

/// How much longer than the server's statement timeout a statement may run before this
/// crate cancels it: the server's own timeout normally ends it first.
const STATEMENT_GRACE: Duration = Duration::from_secs(1);

/// The custom setting that carries the tenant of a row-level transaction.
pub const TENANT_SETTING: &str = "app.tenant_id";

/// The platform names of one deployment on a server.
#[derive(Debug, Clone)]
pub(crate) struct PgNames {
    pub(crate) naming: Naming,
    /// The login roles of schema and row-level transactions: `NOINHERIT`, each a member
    /// of its share of the schema tenants' roles (so it can only act as one through
    /// `SET ROLE`), no ownership. The first, `{prefix}__app`, also serves row-level
    /// traffic; see [`crate::config::PostgresServer::schema_role_shards`].
    pub(crate) app_roles: Arc<[String]>,
    /// Owns every table (migrations run as it); `BYPASSRLS`.
    pub(crate) owner: String,
    /// A group every database-per-tenant role belongs to: table privileges in tenant
    /// databases are granted to it, and `CONNECT` (granted per tenant) keeps each role in
    /// its own database.
    pub(crate) tenant_group: String,
    pub(crate) shared_db: String,
    pub(crate) template_db: String,
    pub(crate) platform_db: String,
}

impl PgNames {
    pub(crate) fn new(naming: Naming, schema_role_shards: u16) -> Self {
        PgNames {
            app_roles: (0..schema_role_shards.max(1))
                .map(|shard| match shard {
                    0 => naming.platform_sql_name("app"),
                    k => naming.platform_sql_name(&format!("app{k}")),
                })
                .collect(),
            owner: naming.platform_sql_name("owner"),
            tenant_group: naming.platform_sql_name("tenant"),
            shared_db: naming.platform_sql_name("shared"),
            template_db: naming.platform_sql_name("template"),
            platform_db: naming.platform_sql_name("platform"),
            naming,
        }
    }

    /// The database, schema and role of a tenant.
    pub(crate) fn tenant(&self, id: &TenantId) -> String {
        self.naming.sql_name(id)
    }

    /// The application role of row-level traffic, and of every schema tenant when there
    /// is one application role.
    pub(crate) fn app(&self) -> &str {
        &self.app_roles[0]
    }

    /// Which application role acts as the schema tenant whose role is `tenant_role`: a
    /// fixed hash (FNV-1a) of the name, so every process and version agree.
    pub(crate) fn shard_of(&self, tenant_role: &str) -> u16 {
        let hash = tenant_role
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let shards = self.app_roles.len() as u64;
        u16::try_from(hash % shards).expect("fewer than 65,536 shards")
    }

    /// The application role that acts as the schema tenant whose role is `tenant_role`.
    pub(crate) fn app_for(&self, tenant_role: &str) -> &str {
        &self.app_roles[usize::from(self.shard_of(tenant_role))]
    }
}

/// Where a pooled connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Tenant(TenantId),
    /// The shared database, as the application role of this index.
    Shared(u16),
    Owner(Arc<str>),
    /// The platform database, as the owner, for the catalog: like `Owner`, but its
    /// statements are time-limited like tenants', so a locked catalog fails admissions
    /// instead of stalling them.
    Catalog,
    Admin,
    /// The admin URL's superuser in another database: what only a superuser may do there
    /// (an event trigger, revoking built-in functions).
    Superuser(Arc<str>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tenant(id) => write!(f, "tenant `{id}`"),
            Target::Shared(0) => f.write_str("the shared database"),
            Target::Shared(k) => write!(f, "the shared database (application role {k})"),
            Target::Owner(db) => write!(f, "database `{db}` (as owner)"),
            Target::Catalog => f.write_str("the catalog"),
            Target::Admin => f.write_str("the admin connection"),
            Target::Superuser(db) => write!(f, "database `{db}` (as the admin URL's user)"),
        }
    }
}

pub(crate) type PgConnection = tenancy_pool::Connection<PgManager>;

/// One PostgreSQL server.
pub(crate) struct PgServer {
    pub(crate) name: ServerName,
    pub(crate) names: PgNames,
    pub(crate) secret: Secret,
    /// Seals row-level bindings; derived from `secret`.
    pub(crate) binding_key: BindingKey,
    /// Whether the row-level binding is sealed (`PostgresServer::sealed_row_binding`).
    pub(crate) sealed_row_binding: bool,
    /// Each schema or row-level tenant's cap within the shared database's pools.
    shares: Shares<TenantId>,
    /// The statement timeout and a grace, enforced here too: see `PgTransaction::abandon`.
    statement_limit: Option<Duration>,
    pub(crate) pools: TenantPools<Target, PgManager>,
    /// The connections set aside for the catalog, on the server that holds it.
    catalog_pools: Option<TenantPools<Target, PgManager>>,
    /// Held while the template database is migrated or copied (PostgreSQL refuses to copy
    /// a template another session is connected to); holds the fingerprint of the
    /// migrations this process last found it at.
    pub(crate) template: tokio::sync::Mutex<Option<String>>,
    admin_url: String,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("name", &self.name)
            .field("admin_url", &address::describe(&self.admin_url))
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// A server; `catalog_connections` of its budget are set aside for the catalog when it
    /// holds the catalog (0 otherwise).
    pub(crate) fn new(
        config: &PostgresServer,
        naming: Naming,
        secret: Secret,
        catalog_connections: usize,
    ) -> Result<Self, Error> {
        let address = ServerAddress::parse(&config.admin_url).map_err(|error| {
            Error::with_source(
                ErrorKind::Config,
                format!("the admin URL of server `{}` is not usable", config.name),
                error,
            )
        })?;
        let names = PgNames::new(naming, config.schema_role_shards);
        let timeouts = (
            millis(config.statement_timeout),
            millis(config.idle_in_transaction_timeout),
        );
        let options = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            timeouts.0, timeouts.1
        );
        let sealed = config.sealed_row_binding;
        let make = Arc::new({
            let names = names.clone();
            let secret = secret.clone();
            move |target: &Target| {
                let mut pg = address.config.clone();
                pg.application_name("tenancy");
                let login = |pg: &mut tokio_postgres::Config, role: &str, database: &str| {
                    pg.user(role)
                        .password(secret.password_for(role))
                        .dbname(database);
                    Some(role.to_owned())
                };
                let role = match target {
                    Target::Tenant(id) => {
                        let name = names.tenant(id);
                        login(&mut pg, &name, &name)
                    }
                    Target::Shared(k) => {
                        login(&mut pg, &names.app_roles[usize::from(*k)], &names.shared_db)
                    }
                    Target::Owner(database) => login(&mut pg, &names.owner, database),
                    Target::Catalog => login(&mut pg, &names.owner, &names.platform_db),
                    Target::Admin => None,
                    Target::Superuser(database) => {
                        pg.dbname(&**database);
                        None
                    }
                };
                // Tenant traffic and catalog reads are time-limited; platform work is not.
                let limited = matches!(
                    target,
                    Target::Tenant(_) | Target::Shared(_) | Target::Catalog
                );
                if limited {
                    pg.options(&options);
                }
                PgManager {
                    config: Arc::new(pg),
                    tls: address.tls.clone(),
                    expected: Expected {
                        role,
                        timeouts: limited.then_some(timeouts),
                        shared: matches!(target, Target::Shared(_)).then_some(Shared { sealed }),
                    },
                }
            }
        });
        let pools_with = |pool: PoolsConfig| {
            let make = Arc::clone(&make);
            TenantPools::new(pool, move |target: &Target| make(target)).map_err(Error::from_pool)
        };
        let (pools, catalog_pools) = if catalog_connections == 0 {
            (pools_with(config.pool.clone())?, None)
        } else {
            let mut tenants = config.pool.clone();
            tenants.max_connections = tenants
                .max_connections
                .checked_sub(catalog_connections)
                .filter(|left| *left > 0)
                .expect("validated: the catalog server's budget exceeds catalog_connections");
            tenants.max_connections_per_pool = tenants
                .max_connections_per_pool
                .min(tenants.max_connections);
            let mut catalog = config.pool.clone();
            catalog.max_connections = catalog_connections;
            catalog.max_connections_per_pool = catalog_connections;
            (pools_with(tenants)?, Some(pools_with(catalog)?))
        };
        let per_pool = pools.config().max_connections_per_pool;
        let shares = Shares::new(
            config
                .max_connections_per_shared_tenant
                .unwrap_or(per_pool.div_ceil(2)),
        );
        Ok(PgServer {
            shares,
            statement_limit: config
                .statement_timeout
                .map(|timeout| timeout + STATEMENT_GRACE),
            name: config.name.clone(),
            names,
            binding_key: secret.binding_key(),
            sealed_row_binding: config.sealed_row_binding,
            secret,
            pools,
            catalog_pools,
            template: tokio::sync::Mutex::new(None),
            admin_url: config.admin_url.clone(),
        })
    }

    /// The counters of every connection of this server: tenants', platform work's and the
    /// catalog's.
    pub(crate) fn pool_stats(&self) -> PoolStats {
        let stats = self.pools.stats();
        match &self.catalog_pools {
            Some(catalog) => stats + catalog.stats(),
            None => stats,
        }
    }

    /// A transaction on the platform database, where the catalog is, through the
    /// connections set aside for it.
    pub(crate) async fn begin_catalog(&self) -> Result<PgTransaction, Error> {
        let pools = self.catalog_pools.as_ref().unwrap_or(&self.pools);
        let connection = pools
            .get(&Target::Catalog)
            .await
            .map_err(Error::from_pool)?;
        Ok(PgTransaction::begin(
            connection,
            &Binding::Connection,
            &self.binding_key,
            self.statement_limit,
        ))
    }

    /// A pooled connection to `target`.
    pub(crate) async fn connection(&self, target: &Target) -> Result<PgConnection, Error> {
        self.pools.get(target).await.map_err(Error::from_pool)
    }

    /// A transaction on `target` with the tenant bound by `binding`; `BEGIN` and the
    /// binding go out with its first statement.
    pub(crate) async fn begin(
        &self,
        target: &Target,
        binding: Binding,
    ) -> Result<PgTransaction, Error> {
        let connection = self.connection(target).await?;
        let limit = match target {
            Target::Tenant(_) | Target::Shared(_) | Target::Catalog => self.statement_limit,
            _ => None,
        };
        Ok(PgTransaction::begin(
            connection,
            &binding,
            &self.binding_key,
            limit,
        ))
    }

    /// A transaction of `tenant` on a shared database (`Target::Shared`): the tenant's
    /// share of that pool is taken first, and held as long as the transaction, so one
    /// tenant cannot hold every connection other tenants need.
    pub(crate) async fn begin_shared(
        &self,
        target: &Target,
        binding: Binding,
        tenant: &TenantId,
    ) -> Result<PgTransaction, Error> {
        let share = self
            .shares
            .acquire(tenant, self.pools.config().acquire_timeout)
            .await
            .map_err(Error::from_pool)?;
        let mut tx = self.begin(target, binding).await?;
        tx.hold(share);
        Ok(tx)
    }
}

/// `"name"`: a SQL identifier, quoted with every `"` doubled. Derived names (`[a-z0-9_]`)
/// need no escaping, but names read back from the server's catalogs are quoted the same
/// way, in every build: a role an operator named `x"; DROP ..` stays one identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`: a SQL string literal, with quotes doubled.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(shards: u16) -> PgNames {
        PgNames::new(Naming::new("tenancy").unwrap(), shards)
    }

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(ident("tenancy_acme"), "\"tenancy_acme\"");
        assert_eq!(ident("x\"; DROP ROLE y; --"), "\"x\"\"; DROP ROLE y; --\"");
    }

    #[test]
    fn application_roles_are_named_from_the_platform_prefix() {
        assert_eq!(&*names(1).app_roles, ["tenancy__app"]);
        assert_eq!(
            &*names(3).app_roles,
            ["tenancy__app", "tenancy__app1", "tenancy__app2"]
        );
    }

    /// The shard of a tenant must never change between versions: a tenant whose shard
    /// moved would be refused (`SET ROLE` denied) until `Platform::prepare` ran again.
    #[test]
    fn a_tenant_s_application_role_is_fixed_by_its_name() {
        let four = names(4);
        let sixteen = names(16);
        for (role, in_four, in_sixteen) in [
            ("tenancy_acme", 2, 2),
            ("tenancy_globex", 3, 11),
            ("tenancy_initech", 2, 10),
            ("tenancy_umbrella", 0, 8),
        ] {
            assert_eq!(four.shard_of(role), in_four, "{role}");
            assert_eq!(sixteen.shard_of(role), in_sixteen, "{role}");
        }
        assert_eq!(names(1).app_for("tenancy_globex"), "tenancy__app");
        assert_eq!(four.app_for("tenancy_globex"), "tenancy__app3");
    }
}
