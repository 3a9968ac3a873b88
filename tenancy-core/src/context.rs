//! Who is acting, for which tenant, in which request: [`TenantContext`], [`Actor`],
//! [`CorrelationId`], and the separate [`PlatformContext`] for operators.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, quote};
use crate::id::TenantId;

/// What kind of principal an [`Actor`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum ActorKind {
    /// Nobody has signed in yet: what [`TenantLayer`](crate::http::TenantLayer) sets before
    /// authentication names a user.
    Anonymous,
    /// A person, signed in.
    User,
    /// A program acting on its own account: a scheduler, an integration.
    Service,
}

/// The principal an action is attributed to: who did it, for the audit trail.
///
/// The id is what the audit trail keys on; the display name is what an inspector reads.
/// `Debug` prints the kind and id but not the display name, which is personal data.
#[derive(Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ActorRepr", into = "ActorRepr"))]
pub struct Actor {
    kind: ActorKind,
    id: Arc<str>,
    display_name: Arc<str>,
}

const ACTOR_FIELD_MAX: usize = 256;

fn check_actor_field(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > ACTOR_FIELD_MAX || value.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidActor,
            format!(
                "actor {what} {} is invalid: use 1 to {ACTOR_FIELD_MAX} bytes without control \
                 characters",
                quote(value)
            ),
        ));
    }
    Ok(())
}

impl Actor {
    /// A signed-in person: their stable user id and the name an inspector should read.
    pub fn user(id: &str, display_name: &str) -> Result<Self, Error> {
        Actor::of_kind(ActorKind::User, id, display_name)
    }

    /// A program acting on its own account; its name is both id and display name.
    pub fn service(name: &str) -> Result<Self, Error> {
        Actor::of_kind(ActorKind::Service, name, name)
    }

    /// Nobody yet: the actor of a request before authentication.
    pub fn anonymous() -> Self {
        Actor {
            kind: ActorKind::Anonymous,
            id: Arc::from("anonymous"),
            display_name: Arc::from("anonymous"),
        }
    }

    fn of_kind(kind: ActorKind, id: &str, display_name: &str) -> Result<Self, Error> {
        if kind == ActorKind::Anonymous {
            return Ok(Actor::anonymous());
        }
        check_actor_field("id", id)?;
        check_actor_field("display name", display_name)?;
        Ok(Actor {
            kind,
            id: Arc::from(id),
            display_name: Arc::from(display_name),
        })
    }

    /// What kind of principal this is.
    pub fn kind(&self) -> ActorKind {
        self.kind
    }

    /// The stable id of the principal.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name a person reads in an audit trail.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actor")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The wire form of an [`Actor`]; decoding goes through the same checks as the constructors.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorRepr {
    kind: ActorKind,
    id: String,
    display_name: String,
}

#[cfg(feature = "serde")]
impl TryFrom<ActorRepr> for Actor {
    type Error = Error;

    fn try_from(repr: ActorRepr) -> Result<Self, Error> {
        if repr.kind == ActorKind::Anonymous
            && (repr.id != "anonymous" || repr.display_name != "anonymous")
        {
            return Err(Error::new(
                ErrorKind::InvalidActor,
                "an anonymous actor has id and display name \"anonymous\"",
            ));
        }
        Actor::of_kind(repr.kind, &repr.id, &repr.display_name)
    }
}

#[cfg(feature = "serde")]
impl From<Actor> for ActorRepr {
    fn from(actor: Actor) -> Self {
        ActorRepr {
            kind: actor.kind,
            id: actor.id.to_string(),
            display_name: actor.display_name.to_string(),
        }
    }
}

/// The id that ties together everything one request or job caused: log lines, jobs it
/// pushed, audit events it wrote.
///
/// 1 to 128 characters of `[A-Za-z0-9._:-]`: a UUID, a W3C trace id and most load-balancer
/// request ids fit.
#[derive(Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct CorrelationId(Arc<str>);

impl CorrelationId {
    const MAX_LEN: usize = 128;

    /// A new, unique correlation id: 32 hexadecimal digits.
    ///
    /// The high half is a per-process random seed (from the operating system, through
    /// `RandomState`), the low half a counter scrambled by a bijection: unique within the
    /// process by construction, and across processes with overwhelming probability.
    pub fn generate() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.finish()
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 32];
        hex(seed, &mut digits[..16]);
        hex(splitmix64(count ^ seed), &mut digits[16..]);
        let id = std::str::from_utf8(&digits).expect("hex digits are ASCII");
        CorrelationId(Arc::from(id))
    }

    /// Validates a correlation id received from elsewhere (a header, a job).
    pub fn new(id: &str) -> Result<Self, Error> {
        let valid = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidCorrelationId,
                format!(
                    "correlation id {} is invalid: use 1 to {} characters of [A-Za-z0-9._:-]",
                    quote(id),
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(CorrelationId(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bijection on `u64` (the SplitMix64 finaliser): distinct counters give distinct,
/// well-scrambled values.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> (60 - 4 * i)) & 0xF) as usize];
    }
}

impl FromStr for CorrelationId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        CorrelationId::new(s)
    }
}

impl TryFrom<String> for CorrelationId {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Error> {
        CorrelationId::new(&value)
    }
}

impl From<CorrelationId> for String {
    fn from(id: CorrelationId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The tenant a piece of work is done for, who is doing it, and the request it belongs to.
///
/// This is the only door to tenant-scoped resources: connections, cache handles, buckets
/// and job pushes are reached through a `TenantContext`, passed explicitly or found with
/// [`TenantContext::current`] inside [`TenantContext::scope`]. Cloning is one reference
/// count.
///
/// ```
/// use tenancy_core::{Actor, TenantContext, TenantId};
///
/// let ctx = TenantContext::new("acme".parse::<TenantId>()?, Actor::user("u-42", "Jane Doe")?);
/// assert_eq!(ctx.tenant().as_str(), "acme");
/// assert_eq!(ctx.actor().display_name(), "Jane Doe");
/// # Ok::<(), tenancy_core::Error>(())
/// ```
#[derive(Clone)]
pub struct TenantContext(Arc<ContextInner>);

struct ContextInner {
    tenant: TenantId,
    actor: Actor,
    correlation_id: CorrelationId,
}

impl TenantContext {
    /// A context for `tenant` acting as `actor`, with a newly generated correlation id.
    pub fn new(tenant: TenantId, actor: Actor) -> Self {
        TenantContext::with_parts(tenant, actor, CorrelationId::generate())
    }

    /// A context with every part given: what a job worker uses to re-establish the context
    /// a job was pushed under.
    pub fn with_parts(tenant: TenantId, actor: Actor, correlation_id: CorrelationId) -> Self {
        TenantContext(Arc::new(ContextInner {
            tenant,
            actor,
            correlation_id,
        }))
    }

    /// The same tenant and correlation id, acting as `actor`: what an authentication layer
    /// does once it knows who is calling.
    pub fn with_actor(&self, actor: Actor) -> Self {
        TenantContext::with_parts(self.tenant().clone(), actor, self.correlation_id().clone())
    }

    /// The same tenant and actor, under `correlation_id`.
    pub fn with_correlation_id(&self, correlation_id: CorrelationId) -> Self {
        TenantContext::with_parts(self.tenant().clone(), self.actor().clone(), correlation_id)
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.0.tenant
    }

    /// Who is acting.
    pub fn actor(&self) -> &Actor {
        &self.0.actor
    }

    /// The request or job this work belongs to.
    pub fn correlation_id(&self) -> &CorrelationId {
        &self.0.correlation_id
    }
}

impl fmt::Debug for TenantContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantContext")
            .field("tenant", &self.0.tenant.as_str())
            .field("actor", &self.0.actor)
            .field("correlation_id", &self.0.correlation_id)
            .finish()
    }
}

/// An operator acting on the platform itself: provisioning, migrations, backups, catalog
/// edits.
///
/// A separate type from [`TenantContext`], with no conversion either way, so a platform
/// operation cannot be handed a tenant's context or the reverse. It names no tenant: the
/// operation names the tenants it touches explicitly.
#[derive(Clone)]
pub struct PlatformContext(Arc<PlatformInner>);

struct PlatformInner {
    operator: Actor,
    correlation_id: CorrelationId,
}

impl PlatformContext {
    /// An operation by `operator` (a user or a service; never anonymous), with a new
    /// correlation id.
    pub fn new(operator: Actor) -> Result<Self, Error> {
        if operator.kind() == ActorKind::Anonymous {
            return Err(Error::new(
                ErrorKind::InvalidActor,
                "platform operations must be attributable: the operator cannot be anonymous",
            ));
        }
        Ok(PlatformContext(Arc::new(PlatformInner {
            operator,
            correlation_id: CorrelationId::generate(),
        })))
    }

    /// Who is operating.
    pub fn operator(&self) -> &Actor {
        &self.0.operator
    }

    /// The operation this work belongs to.
    pub fn correlation_id(&self) -> &CorrelationId {
        &self.0.correlation_id
    }
}

impl fmt::Debug for PlatformContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformContext")
            .field("operator", &self.0.operator)
            .field("correlation_id", &self.0.correlation_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_correlation_ids_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = CorrelationId::generate();
            assert_eq!(id.as_str().len(), 32);
            assert!(CorrelationId::new(id.as_str()).is_ok());
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn correlation_ids_from_outside_are_checked() {
        assert!(CorrelationId::new("3fa85f64-5717-4562-b3fc-2c963f66afa6").is_ok());
        for bad in ["", "a b", "a\nb", "a\u{202e}", &"a".repeat(129)] {
            let err = CorrelationId::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCorrelationId);
        }
    }

    #[test]
    fn actors_are_checked() {
        assert!(Actor::user("", "Jane").is_err());
        assert!(Actor::user("u1", "").is_err());
        assert!(Actor::user("u1", "Jane\nDoe").is_err());
        assert!(Actor::user(&"u".repeat(257), "Jane").is_err());
        let jane = Actor::user("u1", "Jane Doe").unwrap();
        assert_eq!(jane.kind(), ActorKind::User);
        assert!(
            !format!("{jane:?}").contains("Jane"),
            "Debug shows personal data"
        );
    }

    #[test]
    fn platform_context_refuses_anonymous_operator() {
        let err = PlatformContext::new(Actor::anonymous()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidActor);
        let op = PlatformContext::new(Actor::service("provisioner").unwrap()).unwrap();
        assert_eq!(op.operator().id(), "provisioner");
    }

    #[test]
    fn with_actor_keeps_tenant_and_correlation() {
        let ctx = TenantContext::new(TenantId::new("acme").unwrap(), Actor::anonymous());
        let signed_in = ctx.with_actor(Actor::user("u1", "Jane").unwrap());
        assert_eq!(signed_in.tenant(), ctx.tenant());
        assert_eq!(signed_in.correlation_id(), ctx.correlation_id());
        assert_eq!(signed_in.actor().id(), "u1");
    }
}
