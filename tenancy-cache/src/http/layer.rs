//! [`ResponseCacheLayer`]: the tower layer that makes [`ResponseCache`] services.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::{ResponseCache, Settings};
use crate::cache::Cache;

/// Caches `GET` responses per tenant, and per user where configured; see the [module
/// docs](crate::http).
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    settings: Arc<Settings>,
}

impl ResponseCacheLayer {
    /// Caches responses in `cache` for `ttl`, shared by every user of a tenant.
    pub fn new(cache: Cache, ttl: Duration) -> Self {
        ResponseCacheLayer {
            settings: Arc::new(Settings {
                cache,
                ttl,
                per_user: false,
                vary: Vec::new(),
                max_body_bytes: 1024 * 1024,
                fall_through: true,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    /// Keeps a response per user (the actor of the request's [`TenantContext`]): for
    /// routes whose response depends on who asks. Responses marked
    /// `Cache-Control: private` are cached only in this mode.
    ///
    /// [`TenantContext`]: tenancy_core::TenantContext
    pub fn per_user(self, on: bool) -> Self {
        self.edit(|settings| settings.per_user = on)
    }

    /// Keeps a response per value of the request header `name` (`accept-language`, ...).
    /// A response whose `Vary` names any header not given here is not cached.
    pub fn vary_by(self, name: HeaderName) -> Self {
        self.edit(|settings| settings.vary.push(name))
    }

    /// The largest body cached (1 MiB by default). A body whose length is not known in
    /// advance is never cached: it is passed through as it streams.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.edit(|settings| settings.max_body_bytes = bytes)
    }

    /// What to do when the cache cannot be reached: serve the request uncached (`true`, the
    /// default), or answer `503 Service Unavailable`.
    pub fn fall_through_when_unavailable(self, on: bool) -> Self {
        self.edit(|settings| settings.fall_through = on)
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}
