//! Test support shared by every `tenancy` crate's tests and benchmarks.
//!
//! - [`unique_tenant`]: a tenant id no other test, and no other run, uses, so tests can
//!   share one PostgreSQL, Redis and S3 server.
//! - [`naming`]: the naming prefix of everything tests create, so leftovers of a crashed run
//!   are recognisable (and removable) by their `tt` prefix.
//! - [`Service`]: where each test service listens, and [`Service::require`], which fails a
//!   test with a message naming the service and how to start it, instead of skipping.
//! - [`operator`]: a platform context for fixtures.
//! - [`bench`](mod@bench): a side-by-side benchmark harness that prints ratios.
//! - `db` (feature `db`): a prepared `TenantDb` per test, torn down when the test ends.
//! - `http` (feature `http`): a `TestClient` that calls a tower or axum service in process
//!   as a given tenant and user.
//! - `log` (feature `log`): a `MakeWriter` that captures log output, and canary strings.
//! - `redis` (feature `redis`): a Redis server of the test's own, which it may stop.
//! - `storage` (feature `storage`): a `TenantStorage` per test on the test S3 server or in
//!   a temporary directory, its buckets removed when the test ends; an S3 server of a
//!   test's own to stop mid-test.

pub mod bench;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "redis")]
pub mod redis;
mod services;
#[cfg(feature = "storage")]
pub mod storage;
mod tenants;

pub use services::Service;
pub use tenants::{TEST_PREFIX, naming, operator, unique_tenant};

/// Every message of `error` and its sources, joined with `: ` as `anyhow` prints them with
/// `{:#}`: what a person reads in a log. Tests assert on this, since each layer's message
/// says only what failed there and the details are in the causes.
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
