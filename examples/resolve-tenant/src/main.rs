//! Run with: cargo run -p example-resolve-tenant
//!
//! Sends a handful of requests, well-formed and hostile, through a `TenantLayer` and prints
//! what each one resolved to: the tenant context the inner service saw, or the refusal the
//! layer answered with. No servers are needed; requests go through the service in-process.

use http::{HeaderName, Request, Response};
use tenancy_core::http::TenantLayer;
use tenancy_core::http::resolve::{Chain, Subdomain, TenantHeader};
use tenancy_core::{Actor, InMemoryCatalog, PlatformContext, Tenant, TenantContext, TenantStatus};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let operator = PlatformContext::new(Actor::user("ops-1", "Olga Operator")?)?;
    let catalog = InMemoryCatalog::new();
    // Resolution needs no database: these tenants have no placement.
    catalog.create(
        &operator,
        Tenant::without_placement("acme".parse()?, "Acme Pharma"),
    )?;
    catalog.create(
        &operator,
        Tenant::without_placement("globex".parse()?, "Globex Biotech")
            .with_status(TenantStatus::Suspended),
    )?;

    let resolver = Chain::new()
        .or(Subdomain::of("eqms.example")?)
        .or(TenantHeader::new(HeaderName::from_static("x-tenant-id")));
    let mut service = ServiceBuilder::new()
        .layer(TenantLayer::new(resolver, catalog))
        .service(service_fn(|_request: Request<String>| async {
            // The handler was not handed the context: it finds it in scope.
            let ctx = TenantContext::current()?;
            Ok::<_, BoxError>(Response::new(format!("{ctx:?}")))
        }));

    let requests: [(&str, &[(&str, &str)]); 7] = [
        ("a tenant's subdomain", &[("host", "acme.eqms.example")]),
        ("the tenant header", &[("x-tenant-id", "acme")]),
        ("a suspended tenant", &[("host", "globex.eqms.example")]),
        ("an unknown tenant", &[("host", "initech.eqms.example")]),
        ("no tenant at all", &[]),
        ("a suffix attack", &[("host", "acme.eqms.example.evil.net")]),
        (
            "host and header disagree",
            &[("host", "acme.eqms.example"), ("x-tenant-id", "globex")],
        ),
    ];
    for (what, headers) in requests {
        let mut request = Request::get("/records");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = service
            .ready()
            .await?
            .call(request.body(String::new())?)
            .await?;
        println!(
            "{what:<26} {:>3}  {}",
            response.status().as_u16(),
            response.body().trim_end()
        );
    }
    Ok(())
}
