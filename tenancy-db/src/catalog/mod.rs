//! The persistent tenant catalog and the platform log ([`store`]), and the replica every
//! handle admits tenants with ([`replica`]).

mod replica;
mod store;

pub(crate) use replica::CachedCatalog;
pub use store::PlatformEvent;
pub(crate) use store::{CatalogStore, now_ms, unknown};
