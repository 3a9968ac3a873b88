//! [`Tenanted<T>`]: the envelope for anything that crosses a process boundary.
//!
//! A job, a message or an event leaves the process that made it with its tenant, actor and
//! correlation id written beside the body, so the process that picks it up re-establishes
//! the context from the payload instead of inferring it. Decoding is strict: a missing or
//! invalid tenant, an unknown field and a field given twice are all errors.

use crate::context::{Actor, CorrelationId, TenantContext};
use crate::id::TenantId;

/// A body with the tenant context it belongs to.
///
/// ```
/// use tenancy_core::{Actor, TenantContext, Tenanted};
///
/// let ctx = TenantContext::new("acme".parse()?, Actor::user("u-7", "Jane Doe")?);
/// let job = Tenanted::new(&ctx, "recalculate-capa-42".to_string());
/// let wire = serde_json::to_string(&job).unwrap();
///
/// let received: Tenanted<String> = serde_json::from_str(&wire).unwrap();
/// let (ctx, body) = received.into_parts();
/// assert_eq!(ctx.tenant().as_str(), "acme");
/// assert_eq!(body, "recalculate-capa-42");
///
/// // A payload that names no tenant is refused.
/// assert!(serde_json::from_str::<Tenanted<String>>(r#"{"body":"x"}"#).is_err());
/// # Ok::<(), tenancy_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenanted<T> {
    tenant: TenantId,
    actor: Actor,
    correlation_id: CorrelationId,
    body: T,
}

impl<T> Tenanted<T> {
    /// Wraps `body` with the tenant, actor and correlation id of `ctx`.
    pub fn new(ctx: &TenantContext, body: T) -> Self {
        Tenanted {
            tenant: ctx.tenant().clone(),
            actor: ctx.actor().clone(),
            correlation_id: ctx.correlation_id().clone(),
            body,
        }
    }

    /// The tenant the body belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The principal that sent it.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The context the body was sent under, re-established.
    pub fn context(&self) -> TenantContext {
        TenantContext::with_parts(
            self.tenant.clone(),
            self.actor.clone(),
            self.correlation_id.clone(),
        )
    }

    /// The context and the body, taken apart.
    pub fn into_parts(self) -> (TenantContext, T) {
        let ctx = TenantContext::with_parts(self.tenant, self.actor, self.correlation_id);
        (ctx, self.body)
    }
}
