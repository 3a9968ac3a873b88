//! The tenant catalog: which tenants exist, whether they may be served, and where their
//! data lives.
//!
//! [`Catalog`] is the lookup every layer consults before serving a tenant;
//! [`Catalog::admit`] turns a lookup into a decision (unknown, suspended and archived
//! tenants are refused before any I/O on their behalf). [`InMemoryCatalog`] serves tests
//! and embedded use; persistent catalogs live with the database layer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use crate::context::PlatformContext;
use crate::error::{Error, ErrorKind, quote};
use crate::id::TenantId;

/// Whether a tenant may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum TenantStatus {
    /// Served normally.
    Active,
    /// Temporarily refused (unpaid, under investigation); data kept and reachable by
    /// platform operations.
    Suspended,
    /// Refused for good; data kept for its retention period and reachable by platform
    /// operations (export, restore) only.
    Archived,
}

impl TenantStatus {
    /// The lowercase name used in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Archived => "archived",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a tenant's rows are kept apart from other tenants' on its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum IsolationMode {
    /// A database of its own (on an embedded server: a file of its own).
    Database,
    /// A schema of its own in a shared database.
    Schema,
    /// Rows in shared tables, fenced by row-level security.
    Row,
}

impl IsolationMode {
    /// The lowercase name used in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationMode::Database => "database",
            IsolationMode::Schema => "schema",
            IsolationMode::Row => "row",
        }
    }
}

impl fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a configured database server (`eu-1`, `embedded`): the catalog records the
/// name, the deployment's configuration maps it to an address and credentials.
///
/// 1 to 63 lowercase ASCII letters, digits, `-` and `_`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct ServerName(Arc<str>);

impl ServerName {
    /// Validates a server name.
    pub fn new(name: &str) -> Result<Self, Error> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "server name {} is invalid: use 1 to 63 lowercase ASCII letters, digits, \
                     '-' and '_', starting with a letter",
                    quote(name)
                ),
            ));
        }
        Ok(ServerName(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ServerName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        ServerName::new(s)
    }
}

impl TryFrom<String> for ServerName {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Error> {
        ServerName::new(&value)
    }
}

impl From<ServerName> for String {
    fn from(name: ServerName) -> Self {
        name.0.to_string()
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a tenant's data lives: which server, isolated how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Placement {
    /// The configured server that holds the tenant's data.
    pub server: ServerName,
    /// How the tenant is kept apart from others on that server.
    pub isolation: IsolationMode,
}

impl Placement {
    /// A placement on `server` with `isolation`.
    pub fn new(server: ServerName, isolation: IsolationMode) -> Self {
        Placement { server, isolation }
    }
}

/// A tenant as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// The firm's name, for people.
    pub display_name: String,
    /// Whether it may be served.
    pub status: TenantStatus,
    /// Where its database lives; `None` for a tenant no database layer serves (an
    /// HTTP-only service, a catalog kept for routing alone). `tenancy-db` refuses to serve
    /// a tenant without one.
    pub placement: Option<Placement>,
    /// When it was created.
    pub created_at: SystemTime,
}

impl Tenant {
    /// An active tenant created now, whose database is at `placement`.
    pub fn new(id: TenantId, display_name: impl Into<String>, placement: Placement) -> Self {
        Tenant {
            placement: Some(placement),
            ..Tenant::without_placement(id, display_name)
        }
    }

    /// An active tenant created now with no database placement: for services that resolve
    /// and admit tenants (HTTP, jobs) without a `tenancy` database layer.
    pub fn without_placement(id: TenantId, display_name: impl Into<String>) -> Self {
        Tenant {
            id,
            display_name: display_name.into(),
            status: TenantStatus::Active,
            placement: None,
            created_at: SystemTime::now(),
        }
    }

    /// Where the tenant's database lives; an error naming the tenant if the catalog records
    /// none.
    pub fn require_placement(&self) -> Result<&Placement, Error> {
        self.placement.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::NoPlacement,
                format!(
                    "tenant `{}` has no database placement in the catalog; create it with one to serve it from a database",
                    self.id
                ),
            )
        })
    }

    /// The same tenant with another status.
    pub fn with_status(mut self, status: TenantStatus) -> Self {
        self.status = status;
        self
    }

    /// `Ok` if the tenant may be served; the refusal otherwise.
    pub fn check_active(&self) -> Result<(), Error> {
        let kind = match self.status {
            TenantStatus::Active => return Ok(()),
            TenantStatus::Suspended => ErrorKind::TenantSuspended,
            TenantStatus::Archived => ErrorKind::TenantArchived,
        };
        Err(Error::new(
            kind,
            format!("tenant `{}` is {}", self.id, self.status),
        ))
    }
}

/// Looks tenants up: the source of truth for which tenants exist and may be served.
///
/// Implementations answer `Ok(None)` for a tenant they do not know and `Err` (kind
/// [`ErrorKind::CatalogUnavailable`]) when they cannot tell; callers fail closed on both.
pub trait Catalog: Send + Sync {
    /// The catalog's record of `id`, if there is one.
    fn lookup(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>, Error>> + Send;

    /// The record of `id` if the tenant may be served; otherwise an error of kind
    /// [`ErrorKind::UnknownTenant`], [`ErrorKind::TenantSuspended`],
    /// [`ErrorKind::TenantArchived`] or [`ErrorKind::CatalogUnavailable`].
    fn admit(&self, id: &TenantId) -> impl Future<Output = Result<Tenant, Error>> + Send {
        async move {
            let tenant = self.lookup(id).await?.ok_or_else(|| {
                Error::new(ErrorKind::UnknownTenant, format!("unknown tenant `{id}`"))
            })?;
            tenant.check_active()?;
            Ok(tenant)
        }
    }
}

impl<C: Catalog + ?Sized> Catalog for Arc<C> {
    fn lookup(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>, Error>> + Send {
        (**self).lookup(id)
    }
}

impl<C: Catalog + ?Sized> Catalog for &C {
    fn lookup(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>, Error>> + Send {
        (**self).lookup(id)
    }
}

type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Tenant>, Error>> + Send + 'a>>;

/// The object-safe form of [`Catalog`], behind [`SharedCatalog`].
trait ErasedCatalog: Send + Sync {
    /// Takes the id by value so the future borrows only the catalog.
    fn lookup_boxed(&self, id: TenantId) -> LookupFuture<'_>;
}

impl<C: Catalog> ErasedCatalog for C {
    fn lookup_boxed(&self, id: TenantId) -> LookupFuture<'_> {
        Box::pin(async move { self.lookup(&id).await })
    }
}

/// Any [`Catalog`], type-erased and cheap to clone, so that the HTTP layer, the database
/// layer and job workers can share one catalog (and its cache) without naming its type.
#[derive(Clone)]
pub struct SharedCatalog(Arc<dyn ErasedCatalog>);

impl SharedCatalog {
    /// Wraps `catalog`.
    pub fn new(catalog: impl Catalog + 'static) -> Self {
        SharedCatalog(Arc::new(catalog))
    }
}

impl Catalog for SharedCatalog {
    fn lookup(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>, Error>> + Send {
        self.0.lookup_boxed(id.clone())
    }
}

impl fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCatalog").finish_non_exhaustive()
    }
}

/// A catalog held in memory, for tests and embedded use. Clones share the same tenants.
///
/// ```
/// use tenancy_core::{Actor, Catalog, ErrorKind, InMemoryCatalog, PlatformContext, Tenant};
/// use tenancy_core::{IsolationMode, Placement, ServerName, TenantStatus};
///
/// # async fn run() -> Result<(), tenancy_core::Error> {
/// let operator = PlatformContext::new(Actor::user("ops-1", "Olga Operator")?)?;
/// let catalog = InMemoryCatalog::new();
/// let placement = Placement::new(ServerName::new("embedded")?, IsolationMode::Database);
/// catalog.create(&operator, Tenant::new("acme".parse()?, "Acme Pharma", placement))?;
///
/// assert!(catalog.admit(&"acme".parse()?).await.is_ok());
/// catalog.set_status(&operator, &"acme".parse()?, TenantStatus::Suspended)?;
/// let refused = catalog.admit(&"acme".parse()?).await.unwrap_err();
/// assert_eq!(refused.kind(), ErrorKind::TenantSuspended);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct InMemoryCatalog {
    tenants: Arc<RwLock<HashMap<TenantId, Tenant>>>,
}

impl InMemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        InMemoryCatalog::default()
    }

    /// Adds a tenant; fails with [`ErrorKind::TenantExists`] if the id is taken.
    pub fn create(&self, _operator: &PlatformContext, tenant: Tenant) -> Result<(), Error> {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if tenants.contains_key(&tenant.id) {
            return Err(Error::new(
                ErrorKind::TenantExists,
                format!("tenant `{}` already exists", tenant.id),
            ));
        }
        tenants.insert(tenant.id.clone(), tenant);
        Ok(())
    }

    /// Changes a tenant's status; fails with [`ErrorKind::UnknownTenant`] if there is none.
    pub fn set_status(
        &self,
        _operator: &PlatformContext,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), Error> {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        match tenants.get_mut(id) {
            Some(tenant) => {
                tenant.status = status;
                Ok(())
            }
            None => Err(Error::new(
                ErrorKind::UnknownTenant,
                format!("unknown tenant `{id}`"),
            )),
        }
    }

    /// Removes a tenant, returning its record if it was there.
    pub fn remove(&self, _operator: &PlatformContext, id: &TenantId) -> Option<Tenant> {
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }

    /// Every tenant, in id order.
    pub fn list(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

impl Catalog for InMemoryCatalog {
    fn lookup(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>, Error>> + Send {
        let found = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        std::future::ready(Ok(found))
    }
}

impl fmt::Debug for InMemoryCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("InMemoryCatalog")
            .field("tenants", &count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_checked() {
        assert!(ServerName::new("eu-1").is_ok());
        assert!(ServerName::new("embedded_2").is_ok());
        for bad in ["", "EU", "1eu", "eu.1", "eu 1", &"a".repeat(64)] {
            assert_eq!(
                ServerName::new(bad).unwrap_err().kind(),
                ErrorKind::InvalidName
            );
        }
    }
}
