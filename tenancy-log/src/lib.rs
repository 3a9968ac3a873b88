#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod escape;
mod layer;
mod panic;
mod policy;
mod regulated;
mod sink;
mod time;
mod visit;

pub use config::{LogConfig, install};
pub use error::{Error, ErrorKind};
pub use layer::{Builder, Format, RedactingLayer, SinkEvents};
pub use panic::install_panic_hook;
pub use policy::{Classification, Mode, Policy, PolicyBuilder, PolicyConfig};
pub use regulated::{REGULATED_PLACEHOLDER, Regulated};
pub use sink::{DirectorySink, TenantRecord, TenantSink};
pub use visit::REDACTED_PLACEHOLDER;

/// The `tracing` this crate is built on, for a matching version.
pub use tracing;
/// The `tracing-subscriber` this crate is built on, for a matching version.
pub use tracing_subscriber;

use tenancy_core::TenantContext;

/// A span named `tenant` with the field `tenant.id`, created in `ctx`'s scope.
///
/// Events inside it are stamped with `ctx`'s tenant even on a thread where the context is
/// not in scope (a blocking task that entered the span), and layers that turn span fields
/// into attributes, such as `tracing-opentelemetry`, give every span under it the tenant as
/// the attribute `tenant.id`. No dependency is needed for that: the field is an ordinary
/// span field.
///
/// ```
/// use tenancy_core::{Actor, TenantContext};
///
/// let ctx = TenantContext::new("acme".parse()?, Actor::anonymous());
/// let span = tenancy_log::tenant_span(&ctx);
/// std::thread::spawn(move || {
///     let _entered = span.enter();
///     tracing::info!("stamped acme, though no context is in scope on this thread");
/// })
/// .join()
/// .unwrap();
/// # Ok::<(), tenancy_core::Error>(())
/// ```
pub fn tenant_span(ctx: &TenantContext) -> tracing::Span {
    ctx.in_scope(|| tracing::info_span!(target: "tenancy_log", "tenant", tenant.id = %ctx.tenant()))
}
