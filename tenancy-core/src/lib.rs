#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
pub mod axum;
mod catalog;
mod context;
#[cfg(feature = "serde")]
mod envelope;
mod error;
mod id;
mod scope;

#[cfg(feature = "http")]
pub mod http;
pub mod naming;

pub use catalog::{
    Catalog, InMemoryCatalog, IsolationMode, Placement, ServerName, SharedCatalog, Tenant,
    TenantStatus,
};
pub use context::{Actor, ActorKind, CorrelationId, PlatformContext, TenantContext};
#[cfg(feature = "serde")]
pub use envelope::Tenanted;
pub use error::{Error, ErrorKind, quote};
pub use id::TenantId;
pub use scope::Scoped;
