//! [`TenantLayer`]: the tower layer that makes [`TenantService`]s.

use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use tower_layer::Layer;

use super::{PlainText, Refuse, Shared, TenantService};

/// Resolves, admits and scopes the tenant of every request; see the [module
/// docs](crate::http).
///
/// The correlation id of each request's context is taken from the `x-request-id` header
/// when it holds a valid one, and generated otherwise.
#[derive(Clone)]
pub struct TenantLayer<R, C> {
    resolver: R,
    catalog: C,
    correlation_header: Option<HeaderName>,
    refuse: Arc<dyn Refuse>,
}

impl<R, C> TenantLayer<R, C> {
    /// A layer that resolves tenants with `resolver` and admits them with `catalog`.
    pub fn new(resolver: R, catalog: C) -> Self {
        TenantLayer {
            resolver,
            catalog,
            correlation_header: Some(HeaderName::from_static("x-request-id")),
            refuse: Arc::new(PlainText),
        }
    }

    /// Shapes refusals with `refuse` instead of [`PlainText`]: [`Json`](super::Json) for
    /// an API, a closure that renders a page for browsers (see [`Refuse`]).
    pub fn refuse_with(mut self, refuse: impl Refuse) -> Self {
        self.refuse = Arc::new(refuse);
        self
    }

    /// Takes correlation ids from the header `name` instead of `x-request-id`; `None`
    /// always generates them.
    pub fn correlation_header(mut self, name: Option<HeaderName>) -> Self {
        self.correlation_header = name;
        self
    }
}

impl<S, R: Clone, C: Clone> Layer<S> for TenantLayer<R, C> {
    type Service = TenantService<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            shared: Arc::new(Shared {
                resolver: self.resolver.clone(),
                catalog: self.catalog.clone(),
                correlation_header: self.correlation_header.clone(),
                refuse: Arc::clone(&self.refuse),
            }),
        }
    }
}

impl<R, C> fmt::Debug for TenantLayer<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayer")
            .field("correlation_header", &self.correlation_header)
            .finish_non_exhaustive()
    }
}
