//! Run with: cargo bench -p tenancy-core --features http --bench tenant_layer
//!
//! The hot path of one request through `TenantLayer` (resolve the host, look the tenant up
//! in an in-memory catalog of 1,000 tenants, enter its scope) next to the same inner
//! service without the layer, interleaved in one run. Every variant builds the same request,
//! so the difference is the layer's own cost.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{HeaderName, Request, Response};
use tenancy_core::http::TenantLayer;
use tenancy_core::http::resolve::{Chain, Subdomain, TenantHeader};
use tenancy_core::{
    Actor, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant, TenantContext,
};
use tenancy_test::bench::Comparison;
use tower::{Layer, Service, service_fn};

/// Polls a future that completes without waiting (every future here does) to its output.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked service is expected to complete at once"),
    }
}

fn request() -> Request<String> {
    Request::get("/records/42")
        .header("host", "tenant-500.eqms.example")
        .body(String::new())
        .expect("a valid request")
}

fn call<S>(service: &mut S) -> Response<String>
where
    S: Service<Request<String>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    complete(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    complete(service.call(request())).expect("a response")
}

fn main() {
    let operator = tenancy_test::operator();
    let catalog = InMemoryCatalog::new();
    let placement = Placement::new(
        ServerName::new("embedded").expect("valid"),
        IsolationMode::Database,
    );
    for n in 0..1_000 {
        let id = format!("tenant-{n}").parse().expect("valid id");
        catalog
            .create(
                &operator,
                Tenant::new(id, format!("Firm {n}"), placement.clone()),
            )
            .expect("a new tenant");
    }

    let inner = service_fn(|request: Request<String>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(request.uri().path().to_owned()))
    });
    let mut plain = inner;
    let ctx = TenantContext::new("tenant-500".parse().expect("valid"), Actor::anonymous());
    let mut scoped_only = service_fn(move |request: Request<String>| {
        ctx.scope(async move {
            Ok::<_, std::convert::Infallible>(Response::new(request.uri().path().to_owned()))
        })
    });
    let subdomain = Subdomain::of("eqms.example").expect("valid base domain");
    let mut layered = TenantLayer::new(subdomain.clone(), catalog.clone()).layer(inner);
    let chain = Chain::new()
        .or(subdomain)
        .or(TenantHeader::new(HeaderName::from_static("x-tenant-id")));
    let mut layered_chain = TenantLayer::new(chain, catalog).layer(inner);

    // The layered service must really resolve the tenant, or the figures mean nothing.
    assert_eq!(call(&mut layered).status(), 200);

    Comparison::new("one request through TenantLayer vs the bare service")
        .rounds(40)
        .iterations(20_000)
        .baseline("bare service", || {
            black_box(call(&mut plain));
        })
        .variant("bare service in ctx.scope", || {
            black_box(call(&mut scoped_only));
        })
        .variant("TenantLayer(subdomain)", || {
            black_box(call(&mut layered));
        })
        .variant("TenantLayer(subdomain | header)", || {
            black_box(call(&mut layered_chain));
        })
        .run();
}
