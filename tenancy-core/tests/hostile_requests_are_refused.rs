//! Every request that does not name exactly one valid, known, active tenant is answered by
//! `TenantLayer` with the right status and a short reason, and never reaches the inner
//! service; a request that does runs with its tenant's context in scope and in extensions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderName, Request, Response, StatusCode};
use tenancy_core::http::TenantLayer;
use tenancy_core::http::resolve::{Chain, HostMap, PathPrefix, Resolve, Subdomain, TenantHeader};
use tenancy_core::{
    Catalog, Error, ErrorKind, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant,
    TenantContext, TenantId, TenantStatus,
};
use tower::{Layer, Service, ServiceExt, service_fn};

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn catalog() -> InMemoryCatalog {
    let operator = tenancy_test::operator();
    let catalog = InMemoryCatalog::new();
    let placement = Placement::new(
        ServerName::new("embedded").unwrap(),
        IsolationMode::Database,
    );
    for (tenant, status) in [
        ("acme", TenantStatus::Active),
        ("beta", TenantStatus::Active),
        ("frozen", TenantStatus::Suspended),
        ("gone", TenantStatus::Archived),
    ] {
        catalog
            .create(
                &operator,
                Tenant::new(id(tenant), tenant, placement.clone()).with_status(status),
            )
            .unwrap();
    }
    catalog
}

/// The inner service: answers with the tenant it sees in scope and in extensions, and
/// counts its calls.
#[derive(Clone)]
struct Probe {
    calls: Arc<AtomicUsize>,
}

impl Probe {
    fn new() -> Self {
        Probe {
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = Error,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let calls = Arc::clone(&self.calls);
        service_fn(move |request: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let in_scope = TenantContext::current()?;
                let in_extensions = request
                    .extensions()
                    .get::<TenantContext>()
                    .expect("the context is in the extensions");
                assert_eq!(in_scope.tenant(), in_extensions.tenant());
                Ok(Response::new(format!("tenant={}", in_scope.tenant())))
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn send<R: Resolve + Clone + 'static>(
    resolver: R,
    catalog: impl Catalog + Clone + 'static,
    request: Request<String>,
) -> (StatusCode, String, usize) {
    let probe = Probe::new();
    let service = TenantLayer::new(resolver, catalog).layer(probe.service());
    let response = service.oneshot(request).await.expect("the layer answers");
    let status = response.status();
    if status != StatusCode::OK {
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
    }
    (status, response.into_body(), probe.calls())
}

fn with_host(host: &str) -> Request<String> {
    Request::get("/records")
        .header("host", host)
        .body(String::new())
        .unwrap()
}

fn subdomain() -> Subdomain {
    Subdomain::of("example.com").unwrap()
}

async fn refused(
    resolver: impl Resolve + Clone + 'static,
    request: Request<String>,
) -> (StatusCode, String) {
    let (status, body, calls) = send(resolver, catalog(), request).await;
    assert_ne!(status, StatusCode::OK, "accepted: {body}");
    assert_eq!(calls, 0, "a refused request reached the inner service");
    assert!(body.len() < 300, "the refusal says too much: {body}");
    (status, body)
}

#[tokio::test]
async fn a_valid_subdomain_runs_in_its_tenant_scope() {
    let (status, body, calls) = send(subdomain(), catalog(), with_host("acme.example.com")).await;
    assert_eq!(
        (status, body.as_str(), calls),
        (StatusCode::OK, "tenant=acme", 1)
    );
    // DNS names are case-insensitive.
    let (status, body, _) = send(subdomain(), catalog(), with_host("ACME.Example.COM")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=acme"));
}

#[tokio::test]
async fn unknown_suspended_and_archived_tenants_are_refused() {
    let (status, body) = refused(subdomain(), with_host("nobody.example.com")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "unknown tenant `nobody`\n");
    let (status, body) = refused(subdomain(), with_host("frozen.example.com")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "tenant `frozen` is suspended\n")
    );
    let (status, body) = refused(subdomain(), with_host("gone.example.com")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "tenant `gone` is archived\n")
    );
}

#[tokio::test]
async fn hostile_hosts_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("acme.example.com:8080", "port 8080"),
        ("acme.example.com:@evil", "userinfo"),
        ("user@acme.example.com", "userinfo"),
        ("acme.example.com.", "trailing dot"),
        ("127.0.0.1", "IP address"),
        ("[::1]", "IP address"),
        ("[::1]:443", "IP address"),
        ("a.b.example.com", "more than one label"),
        ("acme..example.com", "not a valid host name"),
        ("ac_me.example.com", "not a valid host name"),
        ("Acme-.example.com", "ends with '-'"),
        ("xn--80ak6aa92e.example.com", "--"),
        ("a%2A.example.com", "not a valid host name"),
        ("acme.example.com:abc", "invalid port"),
    ];
    for (host, reason) in cases {
        let (status, body) = refused(subdomain(), with_host(host)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {body}");
        assert!(
            body.contains(reason),
            "{host}: expected {reason:?} in {body:?}"
        );
    }
}

#[tokio::test]
async fn hosts_outside_the_base_domain_name_no_tenant() {
    for host in [
        "acme.example.com.evil.net",
        "acmeexample.com",
        "example.com",
        "evil.net",
    ] {
        let (status, body) = refused(subdomain(), with_host(host)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}");
        assert!(body.contains("names no tenant"), "{host}: {body}");
    }
}

#[tokio::test]
async fn a_configured_port_is_accepted() {
    let resolver = Subdomain::of("localhost").unwrap().accept_port(3000);
    let (status, body, _) = send(resolver, catalog(), with_host("acme.localhost:3000")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=acme"));
}

#[tokio::test]
async fn duplicate_host_headers_are_refused() {
    let request = Request::get("/")
        .header("host", "acme.example.com")
        .header("host", "beta.example.com")
        .body(String::new())
        .unwrap();
    let (status, body) = refused(subdomain(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("2 Host headers"), "{body}");
}

#[tokio::test]
async fn host_header_and_request_target_must_agree() {
    let request = Request::get("http://beta.example.com/records")
        .header("host", "acme.example.com")
        .body(String::new())
        .unwrap();
    let (status, body) = refused(subdomain(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("different hosts"), "{body}");
    // An absolute-form target alone (HTTP/2's :authority) is used when no Host is sent.
    let request = Request::get("http://acme.example.com/records")
        .body(String::new())
        .unwrap();
    let (status, body, _) = send(subdomain(), catalog(), request).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=acme"));
}

fn header_resolver() -> TenantHeader {
    TenantHeader::new(HeaderName::from_static("x-tenant-id"))
}

fn with_tenant_header(value: &[u8]) -> Request<String> {
    Request::get("/")
        .header("x-tenant-id", http::HeaderValue::from_bytes(value).unwrap())
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn hostile_tenant_headers_are_refused() {
    let long = "a".repeat(1000);
    let cases: Vec<&[u8]> = vec![
        b"",
        b"Acme",
        b"a\"; drop table records; --",
        b"acme*",
        b"acme?",
        b"{acme}",
        b"[acme]",
        b"acme:beta",
        b"..",
        b"../beta",
        b"acme\\beta",
        "\u{0430}cme".as_bytes(),
        "ac\u{200B}me".as_bytes(),
        "acme\u{202E}".as_bytes(),
        "\u{FF41}cme".as_bytes(),
        b"public",
        b"template0",
        long.as_bytes(),
    ];
    for value in cases {
        let (status, body) = refused(header_resolver(), with_tenant_header(value)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}: {body}");
        assert!(
            !body.contains('\u{202E}'),
            "the refusal carries an override: {body:?}"
        );
    }
}

#[tokio::test]
async fn control_characters_cannot_be_smuggled_in_headers() {
    // `http` itself refuses CR, LF and NUL in header values: they never reach a resolver.
    for value in [&b"acme\r\nx-tenant-id: beta"[..], b"acme\0", b"acme\n"] {
        assert!(http::HeaderValue::from_bytes(value).is_err(), "{value:?}");
    }
}

#[tokio::test]
async fn duplicate_tenant_headers_are_refused() {
    let request = Request::get("/")
        .header("x-tenant-id", "acme")
        .header("x-tenant-id", "beta")
        .body(String::new())
        .unwrap();
    let (status, body) = refused(header_resolver(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("more than one"), "{body}");
}

#[tokio::test]
async fn header_and_subdomain_naming_different_tenants_conflict() {
    let chain = Chain::new().or(subdomain()).or(header_resolver());
    let request = Request::get("/")
        .header("host", "acme.example.com")
        .header("x-tenant-id", "beta")
        .body(String::new())
        .unwrap();
    let (status, body) = refused(chain.clone(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("two tenants"), "{body}");

    // Agreeing resolvers are fine, and either one alone is enough.
    let agree = Request::get("/")
        .header("host", "acme.example.com")
        .header("x-tenant-id", "acme")
        .body(String::new())
        .unwrap();
    let (status, _, _) = send(chain.clone(), catalog(), agree).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(chain, catalog(), with_tenant_header(b"beta")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=beta"));
}

#[tokio::test]
async fn an_error_in_the_chain_is_final() {
    // The subdomain resolver refuses the host; the valid header must not rescue it.
    let chain = Chain::new().or(subdomain()).or(header_resolver());
    let request = Request::get("/")
        .header("host", "acme.example.com:8080")
        .header("x-tenant-id", "acme")
        .body(String::new())
        .unwrap();
    let (status, _) = refused(chain, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn path_prefix_segments_are_checked() {
    let resolver = PathPrefix::new("/t/").unwrap();
    let ok = Request::get("/t/acme/records/7")
        .body(String::new())
        .unwrap();
    let (status, body, _) = send(resolver.clone(), catalog(), ok).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=acme"));
    for path in [
        "/t/../beta/records",
        "/t//records",
        "/t/ac%6De/records",
        "/t/ACME/x",
        "/t/",
    ] {
        let request = Request::get(path).body(String::new()).unwrap();
        let (status, body) = refused(resolver.clone(), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    assert!(PathPrefix::new("t").is_err());
}

#[tokio::test]
async fn host_map_resolves_exact_hosts_only() {
    let map = HostMap::new()
        .host("records.acme-pharma.com", id("acme"))
        .unwrap()
        .host("Beta.Example", id("beta"))
        .unwrap();
    let (status, body, _) =
        send(map.clone(), catalog(), with_host("records.acme-pharma.com")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=acme"));
    let (status, body, _) = send(map.clone(), catalog(), with_host("beta.example")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tenant=beta"));
    for host in [
        "records.acme-pharma.com.evil.net",
        "evil.records.acme-pharma.com",
        "acme-pharma.com",
    ] {
        let (status, _) = refused(map.clone(), with_host(host)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}");
    }
    // A host cannot be mapped twice to different tenants, nor be malformed.
    assert!(map.clone().host("beta.example", id("acme")).is_err());
    assert!(HostMap::new().host("acme.example:80", id("acme")).is_err());
}

/// A catalog that cannot be reached, whose error names a secret.
#[derive(Clone)]
struct DownCatalog;

impl Catalog for DownCatalog {
    async fn lookup(&self, _id: &TenantId) -> Result<Option<Tenant>, Error> {
        Err(Error::new(
            ErrorKind::CatalogUnavailable,
            "connection to postgres://platform:s3cret@10.0.0.5/catalog refused",
        ))
    }
}

#[tokio::test]
async fn an_unreachable_catalog_fails_closed_without_leaking_its_error() {
    let (status, body, calls) = send(subdomain(), DownCatalog, with_host("acme.example.com")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls, 0);
    assert!(
        !body.contains("s3cret") && !body.contains("10.0.0.5"),
        "{body}"
    );
}

#[tokio::test]
async fn correlation_ids_come_from_a_valid_header_or_are_generated() {
    let catalog = catalog();
    let service = TenantLayer::new(subdomain(), catalog).layer(service_fn(
        |request: Request<String>| async move {
            let ctx = request.extensions().get::<TenantContext>().unwrap().clone();
            Ok::<_, Error>(Response::new(ctx.correlation_id().to_string()))
        },
    ));
    let request = Request::get("/")
        .header("host", "acme.example.com")
        .header("x-request-id", "req-123")
        .body(String::new())
        .unwrap();
    let body = service.clone().oneshot(request).await.unwrap().into_body();
    assert_eq!(body, "req-123");
    let request = Request::get("/")
        .header("host", "acme.example.com")
        .header("x-request-id", "bad id with spaces")
        .body(String::new())
        .unwrap();
    let body = service.oneshot(request).await.unwrap().into_body();
    assert_eq!(
        body.len(),
        32,
        "a generated id replaces an invalid one: {body}"
    );
}
