#![doc = include_str!("../README.md")]

mod canary;
mod services;
#[cfg(feature = "db")]
mod template;
mod tenants;

#[cfg(feature = "http")]
pub mod http;

pub use canary::Canaries;
pub use services::Service;
#[cfg(feature = "db")]
pub use template::{TestTenant, TestTenants};
pub use tenants::{operator, unique_tenant};

/// The `tenancy-db` this crate was built with, so tests name the same types.
#[cfg(feature = "db")]
pub use tenancy_db;

// Not part of the API: the helpers the tenancy crates' own tests and benchmarks share.
#[cfg(feature = "internal")]
#[doc(hidden)]
pub mod bench;
#[cfg(all(feature = "internal", feature = "db"))]
#[doc(hidden)]
pub mod db;
#[cfg(feature = "log")]
#[doc(hidden)]
pub mod log;
#[cfg(feature = "redis")]
#[doc(hidden)]
pub mod redis;
#[cfg(feature = "internal")]
#[doc(hidden)]
pub mod rounds;
#[cfg(feature = "storage")]
#[doc(hidden)]
pub mod storage;
#[cfg(feature = "internal")]
#[doc(hidden)]
pub use tenants::{TEST_PREFIX, naming};

/// Every message of `error` and its sources, joined with `: ` as `anyhow` prints them with
/// `{:#}`: what a person reads in a log. Tests assert on this, since each layer's message
/// says only what failed there and the details are in the causes.
#[cfg(feature = "internal")]
#[doc(hidden)]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}
