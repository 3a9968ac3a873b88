//! Finding the tenant a request is for: the [`Resolve`] strategy and its resolvers.
//!
//! A resolver answers `Ok(Some(id))` when the request names a tenant its way, `Ok(None)`
//! when the request does not use its way at all, and `Err` when the request uses its way
//! badly (two `Host` headers, a port nobody configured, an invalid id). Errors are final:
//! a [`Chain`] does not try the next resolver after one, it refuses the request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use http::header::{HOST, HeaderName};
use http::request::Parts;

use crate::error::{Error, ErrorKind, quote};
use crate::id::TenantId;

/// A way to find the tenant of a request from its head.
///
/// Implemented by the resolvers in this module and by any closure
/// `Fn(&Parts) -> Result<Option<TenantId>, Error>`:
///
/// ```
/// use http::request::Parts;
/// use tenancy_core::{Error, TenantId, http::resolve::Resolve};
///
/// // Tenants named by a query parameter `?tenant=` (an example, not a recommendation).
/// let by_query = |parts: &Parts| -> Result<Option<TenantId>, Error> {
///     let query = parts.uri.query().unwrap_or("");
///     query
///         .split('&')
///         .find_map(|pair| pair.strip_prefix("tenant="))
///         .map(TenantId::new)
///         .transpose()
/// };
/// let (parts, ()) = http::Request::get("/x?tenant=acme").body(()).unwrap().into_parts();
/// assert_eq!(by_query.resolve(&parts)?.unwrap().as_str(), "acme");
/// # Ok::<(), Error>(())
/// ```
pub trait Resolve: Send + Sync {
    /// The tenant the request names this resolver's way, if it does.
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error>;

    /// Where this resolver looks, for messages: "header `x-tenant-id`".
    fn describe(&self) -> String {
        String::from("a custom resolver")
    }
}

impl<F> Resolve for F
where
    F: Fn(&Parts) -> Result<Option<TenantId>, Error> + Send + Sync,
{
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        self(request)
    }
}

fn malformed(message: String) -> Error {
    Error::new(ErrorKind::MalformedRequest, message)
}

/// Which ports a host-based resolver accepts in the `Host` header. None by default: a port
/// in production traffic usually means something reached the service around its proxy.
#[derive(Debug, Clone, Default)]
struct AcceptedPorts(Vec<u16>);

/// The host a request is addressed to, normalised to lowercase and checked: one `Host`
/// header at most, agreeing with the request target's authority, no userinfo, no IP
/// literal, no trailing dot, no empty label, and a port only if accepted.
fn request_host<'a>(
    parts: &'a Parts,
    ports: &AcceptedPorts,
) -> Result<Option<Cow<'a, str>>, Error> {
    let mut headers = parts.headers.get_all(HOST).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err(malformed(format!(
            "the request has {} Host headers; send exactly one",
            parts.headers.get_all(HOST).iter().count()
        )));
    }
    let header = header
        .map(|value| {
            value
                .to_str()
                .map_err(|_| malformed(String::from("the Host header is not printable ASCII")))
        })
        .transpose()?;
    let target = parts.uri.authority().map(|a| a.as_str());
    let raw = match (header, target) {
        (Some(h), Some(t)) if !h.eq_ignore_ascii_case(t) => {
            return Err(malformed(format!(
                "the Host header {} and the request target {} name different hosts",
                quote(h),
                quote(t)
            )));
        }
        (Some(h), _) => h,
        (None, Some(t)) => t,
        (None, None) => return Ok(None),
    };
    normalise_host(raw, ports).map(Some)
}

fn normalise_host<'a>(raw: &'a str, ports: &AcceptedPorts) -> Result<Cow<'a, str>, Error> {
    if raw.contains('@') {
        return Err(malformed(format!(
            "host {} carries userinfo ('@'); send a plain host name",
            quote(raw)
        )));
    }
    if raw.starts_with('[') {
        return Err(malformed(format!(
            "host {} is an IP address literal; tenants are addressed by name",
            quote(raw)
        )));
    }
    let host = match raw.rsplit_once(':') {
        None => raw,
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) if ports.0.contains(&port) => host,
            Ok(port) => {
                return Err(malformed(format!(
                    "host {} has port {port}, which this service does not expect; \
                     configure the resolver with `.accept_port({port})` if it should",
                    quote(raw)
                )));
            }
            Err(_) => {
                return Err(malformed(format!(
                    "host {} has an invalid port",
                    quote(raw)
                )));
            }
        },
    };
    if host.ends_with('.') {
        return Err(malformed(format!(
            "host {} ends with '.'; send the name without the trailing dot",
            quote(raw)
        )));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Err(malformed(format!(
            "host {} is an IP address; tenants are addressed by name",
            quote(raw)
        )));
    }
    let well_formed = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| !label.is_empty());
    if !well_formed {
        return Err(malformed(format!(
            "host {} is not a valid host name",
            quote(raw)
        )));
    }
    // DNS names are case-insensitive; the tenant id taken from them is not.
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Resolves exact host names to tenants: `pharma.example.com` → `acme`.
///
/// A host not in the map is not this resolver's business (`Ok(None)`); a malformed host is
/// an error.
#[derive(Debug, Clone, Default)]
pub struct HostMap {
    hosts: HashMap<String, TenantId>,
    ports: AcceptedPorts,
}

impl HostMap {
    /// An empty map.
    pub fn new() -> Self {
        HostMap::default()
    }

    /// Maps `host` (matched case-insensitively) to `tenant`. Fails if the host is not a
    /// plain host name or is already mapped to another tenant.
    pub fn host(mut self, host: &str, tenant: TenantId) -> Result<Self, Error> {
        let host = normalise_host(host, &AcceptedPorts::default())?.into_owned();
        if let Some(existing) = self.hosts.get(&host).filter(|t| **t != tenant) {
            return Err(malformed(format!(
                "host `{host}` is already mapped to tenant `{existing}`"
            )));
        }
        self.hosts.insert(host, tenant);
        Ok(self)
    }

    /// Accepts `port` in the `Host` header (for local development: `localhost:3000`).
    pub fn accept_port(mut self, port: u16) -> Self {
        self.ports.0.push(port);
        self
    }
}

impl Resolve for HostMap {
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        Ok(request_host(request, &self.ports)?.and_then(|host| self.hosts.get(&*host).cloned()))
    }

    fn describe(&self) -> String {
        String::from("a mapped host name")
    }
}

/// Resolves the one label before a base domain: `acme.example.com` → `acme`.
///
/// The host must end in `.` + base domain exactly (so `acme.example.com.evil.net` and
/// `acmeexample.com` are not matched) and carry exactly one label before it
/// (`a.b.example.com` is refused). The base domain itself is not matched.
#[derive(Debug, Clone)]
pub struct Subdomain {
    dot_base: String,
    ports: AcceptedPorts,
}

impl Subdomain {
    /// Tenants are subdomains of `base` (`example.com`).
    pub fn of(base: &str) -> Result<Self, Error> {
        let base = normalise_host(base, &AcceptedPorts::default())?;
        Ok(Subdomain {
            dot_base: format!(".{base}"),
            ports: AcceptedPorts::default(),
        })
    }

    /// Accepts `port` in the `Host` header (for local development: `acme.localhost:3000`).
    pub fn accept_port(mut self, port: u16) -> Self {
        self.ports.0.push(port);
        self
    }
}

impl Resolve for Subdomain {
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        let Some(host) = request_host(request, &self.ports)? else {
            return Ok(None);
        };
        let Some(label) = host.strip_suffix(&self.dot_base) else {
            return Ok(None);
        };
        if label.contains('.') {
            return Err(malformed(format!(
                "host {} has more than one label before `{}`",
                quote(&host),
                &self.dot_base[1..]
            )));
        }
        TenantId::new(label).map(Some)
    }

    fn describe(&self) -> String {
        format!("a subdomain of `{}`", &self.dot_base[1..])
    }
}

/// Resolves a tenant id sent in a header: `x-tenant-id: acme`.
///
/// Sending the header twice is an error, not a choice between the two.
#[derive(Debug, Clone)]
pub struct TenantHeader {
    name: HeaderName,
}

impl TenantHeader {
    /// Tenants are named by the header `name`.
    pub fn new(name: HeaderName) -> Self {
        TenantHeader { name }
    }
}

impl Resolve for TenantHeader {
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        let mut values = request.headers.get_all(&self.name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(malformed(format!(
                "the request has more than one `{}` header; send exactly one",
                self.name
            )));
        }
        let value = value
            .to_str()
            .map_err(|_| malformed(format!("the `{}` header is not printable ASCII", self.name)))?;
        TenantId::new(value).map(Some)
    }

    fn describe(&self) -> String {
        format!("header `{}`", self.name)
    }
}

/// Resolves the path segment after a fixed prefix: with prefix `/t/`, `/t/acme/records` →
/// `acme`. The path is not rewritten; route on the full path.
#[derive(Debug, Clone)]
pub struct PathPrefix {
    prefix: String,
}

impl PathPrefix {
    /// Tenants are named by the segment after `prefix`, which must start and end with `/`.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        if !(prefix.starts_with('/') && prefix.ends_with('/')) {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("path prefix {} must start and end with '/'", quote(prefix)),
            ));
        }
        Ok(PathPrefix {
            prefix: prefix.to_owned(),
        })
    }
}

impl Resolve for PathPrefix {
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        let Some(rest) = request.uri.path().strip_prefix(&self.prefix) else {
            return Ok(None);
        };
        let segment = rest.split('/').next().unwrap_or_default();
        // No percent-decoding: an encoded id (`ac%6De`) is an invalid id, not `acme`.
        TenantId::new(segment).map(Some)
    }

    fn describe(&self) -> String {
        format!("a path under `{}`", self.prefix)
    }
}

/// Tries several resolvers: the first tenant found wins, and two resolvers that find two
/// different tenants in one request make it an error (a header saying `beta` on
/// `acme.example.com` is refused, not settled by precedence).
///
/// ```
/// use http::HeaderName;
/// use tenancy_core::http::resolve::{Chain, Resolve, Subdomain, TenantHeader};
///
/// let resolver = Chain::new()
///     .or(Subdomain::of("example.com")?)
///     .or(TenantHeader::new(HeaderName::from_static("x-tenant-id")));
///
/// let (parts, ()) = http::Request::get("/")
///     .header("host", "acme.example.com")
///     .header("x-tenant-id", "beta")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let conflict = resolver.resolve(&parts).unwrap_err();
/// assert_eq!(conflict.kind(), tenancy_core::ErrorKind::ConflictingTenants);
/// # Ok::<(), tenancy_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Chain {
    resolvers: Vec<Arc<dyn Resolve>>,
}

impl Chain {
    /// A chain with no resolvers (it finds no tenant).
    pub fn new() -> Self {
        Chain::default()
    }

    /// Adds `resolver` after the ones already in the chain.
    pub fn or(mut self, resolver: impl Resolve + 'static) -> Self {
        self.resolvers.push(Arc::new(resolver));
        self
    }
}

impl Resolve for Chain {
    fn resolve(&self, request: &Parts) -> Result<Option<TenantId>, Error> {
        let mut found: Option<(TenantId, &Arc<dyn Resolve>)> = None;
        for resolver in &self.resolvers {
            let Some(id) = resolver.resolve(request)? else {
                continue;
            };
            match &found {
                None => found = Some((id, resolver)),
                Some((first, by)) if *first != id => {
                    return Err(Error::new(
                        ErrorKind::ConflictingTenants,
                        format!(
                            "the request names two tenants: `{first}` by {} and `{id}` by {}",
                            by.describe(),
                            resolver.describe()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(found.map(|(id, _)| id))
    }

    fn describe(&self) -> String {
        let all: Vec<String> = self.resolvers.iter().map(|r| r.describe()).collect();
        if all.is_empty() {
            String::from("nothing (the chain is empty)")
        } else {
            all.join(" or ")
        }
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("resolvers", &self.describe())
            .finish()
    }
}
