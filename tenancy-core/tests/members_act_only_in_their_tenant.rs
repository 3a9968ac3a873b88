//! Authentication composes with `TenantLayer`: an actor named by the application's
//! authentication reaches the handler in the context only if the application's
//! `Membership` places it in the resolved tenant; a user of tenant A presenting tenant B's
//! host is refused with 403 before any handler runs. Refusals take the shape the hook
//! gives them, and never carry a membership backend's error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use tenancy_core::http::resolve::Subdomain;
use tenancy_core::http::{Json, Membership, Refusal, RequireMemberLayer, TenantLayer};
use tenancy_core::{Actor, Error, ErrorKind, InMemoryCatalog, Tenant, TenantContext, TenantId};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn catalog() -> InMemoryCatalog {
    let operator = tenancy_test::operator();
    let catalog = InMemoryCatalog::new();
    for tenant in ["acme", "beta"] {
        // HTTP only: no database placement is needed.
        catalog
            .create(
                &operator,
                Tenant::without_placement(tenant.parse().unwrap(), tenant),
            )
            .unwrap();
    }
    catalog
}

/// Jane belongs to acme, Omar to beta; `down` makes every check fail with a secret in
/// the error.
struct Members {
    down: bool,
}

impl Membership for Members {
    async fn is_member(&self, actor: &Actor, tenant: &TenantId) -> Result<bool, Error> {
        if self.down {
            return Err(Error::new(
                ErrorKind::CatalogUnavailable,
                "ldap://admin:hunter2@directory.internal refused",
            ));
        }
        Ok(matches!(
            (actor.id(), tenant.as_str()),
            ("jane", "acme") | ("omar", "beta")
        ))
    }
}

/// A stack of TenantLayer, a header authentication and RequireMemberLayer around a probe
/// that answers with the actor and tenant it sees in scope and in the extensions.
fn stack(
    members: Members,
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Error> + Clone {
    ServiceBuilder::new()
        .layer(TenantLayer::new(
            Subdomain::of("example.com").unwrap(),
            catalog(),
        ))
        .map_request(|mut request: Request<String>| {
            let actor = match request.headers().get("x-user").map(|v| v.to_str().unwrap()) {
                Some("anonymous") => Some(Actor::anonymous()),
                Some(user) => Some(Actor::user(user, user).unwrap()),
                None => None,
            };
            if let Some(actor) = actor {
                request.extensions_mut().insert(actor);
            }
            request
        })
        .layer(RequireMemberLayer::new(members).refuse_with(Json))
        .service(service_fn(move |request: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let scoped = TenantContext::current()?;
                let extension = request.extensions().get::<TenantContext>().unwrap();
                assert_eq!(scoped.actor(), extension.actor());
                Ok::<_, Error>(Response::new(format!(
                    "{} in {}",
                    scoped.actor().id(),
                    scoped.tenant()
                )))
            }
        }))
}

async fn send(members: Members, host: &str, user: Option<&str>) -> (StatusCode, String, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut request = Request::get("/records").header("host", host);
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    let response = stack(members, Arc::clone(&calls))
        .oneshot(request.body(String::new()).unwrap())
        .await
        .unwrap();
    (
        response.status(),
        response.into_body(),
        calls.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_member_reaches_the_handler_as_themself() {
    let up = || Members { down: false };
    assert_eq!(
        send(up(), "acme.example.com", Some("jane")).await,
        (StatusCode::OK, String::from("jane in acme"), 1)
    );
    assert_eq!(
        send(up(), "beta.example.com", Some("omar")).await,
        (StatusCode::OK, String::from("omar in beta"), 1)
    );
}

#[tokio::test]
async fn a_user_of_tenant_a_at_tenant_bs_host_is_forbidden() {
    let (status, body, calls) =
        send(Members { down: false }, "beta.example.com", Some("jane")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(calls, 0, "the handler never ran");
    assert_eq!(
        body,
        r#"{"status":403,"error":"`jane` is not a member of tenant `beta`"}"#
    );
}

#[tokio::test]
async fn no_actor_or_the_anonymous_one_is_unauthenticated() {
    for user in [None, Some("anonymous")] {
        let (status, _, calls) = send(Members { down: false }, "acme.example.com", user).await;
        assert_eq!((status, calls), (StatusCode::UNAUTHORIZED, 0), "{user:?}");
    }
}

#[tokio::test]
async fn a_failed_membership_check_refuses_without_its_error() {
    let (status, body, calls) =
        send(Members { down: true }, "acme.example.com", Some("jane")).await;
    assert_eq!((status, calls), (StatusCode::SERVICE_UNAVAILABLE, 0));
    assert!(
        !body.contains("hunter2") && !body.contains("directory.internal"),
        "{body}"
    );
}

#[tokio::test]
async fn require_member_without_tenant_layer_says_so() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let service = ServiceBuilder::new()
        .layer(RequireMemberLayer::new(Members { down: false }))
        .service(service_fn(move |_request: Request<String>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Error>(Response::new(String::new())) }
        }));
    let mut request = Request::get("/").body(String::new()).unwrap();
    request
        .extensions_mut()
        .insert(Actor::user("jane", "Jane").unwrap());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.body().contains("TenantLayer"),
        "{}",
        response.body()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tenant_layer_refusals_take_the_hooks_shape() {
    let page = |refusal: &Refusal<'_>| -> Response<String> {
        if !refusal.accepts("text/html") {
            return refusal.json();
        }
        let mut response =
            Response::new(format!("<p>{}</p>", refusal.message().replace('<', "&lt;")));
        *response.status_mut() = refusal.status();
        response
            .headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        response
    };
    let service = TenantLayer::new(Subdomain::of("example.com").unwrap(), catalog())
        .refuse_with(page)
        .layer(service_fn(|_request: Request<String>| async {
            Ok::<_, Error>(Response::new(String::from("served")))
        }));
    let request = |accept: &str| {
        Request::get("/")
            .header("host", "nobody.example.com")
            .header("accept", accept)
            .body(String::new())
            .unwrap()
    };
    let html = service.clone().oneshot(request("text/html")).await.unwrap();
    assert_eq!(html.status(), StatusCode::NOT_FOUND);
    assert_eq!(html.headers()["content-type"], "text/html");
    assert_eq!(html.body(), "<p>unknown tenant `nobody`</p>");
    let json = service.oneshot(request("application/json")).await.unwrap();
    assert_eq!(json.status(), StatusCode::NOT_FOUND);
    assert_eq!(json.headers()["content-type"], "application/json");
    assert_eq!(
        json.body(),
        r#"{"status":404,"error":"unknown tenant `nobody`"}"#
    );
}

#[cfg(feature = "axum")]
mod axum_integration {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: axum::response::Response) -> String {
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    async fn whoami(ctx: TenantContext) -> String {
        ctx.tenant().to_string()
    }

    async fn fails(kind: axum::extract::Path<String>) -> Result<String, Error> {
        let kind = match kind.as_str() {
            "unknown" => ErrorKind::UnknownTenant,
            "suspended" => ErrorKind::TenantSuspended,
            _ => ErrorKind::CatalogUnavailable,
        };
        Err(Error::new(kind, "postgres://u:s3cret@db/catalog: details"))
    }

    fn get_request(path: &str) -> Request<Body> {
        Request::get(path)
            .header("host", "acme.example.com")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn the_extractor_says_when_tenant_layer_is_missing() {
        let bare = Router::new().route("/whoami", get(whoami));
        let response = bare.oneshot(get_request("/whoami")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(response).await.contains("TenantLayer"));

        let layered = Router::new()
            .route("/whoami", get(whoami))
            .layer(TenantLayer::new(
                Subdomain::of("example.com").unwrap(),
                catalog(),
            ));
        let response = layered.oneshot(get_request("/whoami")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, "acme");
    }

    #[tokio::test]
    async fn errors_answer_with_the_shared_status_and_no_secret() {
        let app = Router::new().route("/fail/{kind}", get(fails));
        for (kind, status) in [
            ("unknown", StatusCode::NOT_FOUND),
            ("suspended", StatusCode::FORBIDDEN),
            ("down", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let response = app
                .clone()
                .oneshot(get_request(&format!("/fail/{kind}")))
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{kind}");
            let text = body(response).await;
            assert!(
                text.starts_with(&format!("{{\"status\":{}", status.as_u16())),
                "{text}"
            );
            // A fault of the service is not described: its message may name hosts or
            // credentials. (A fault of the request is, by its own message.)
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(
                    !text.contains("s3cret") && !text.contains("postgres"),
                    "{text}"
                );
            } else {
                assert!(text.contains("details"), "{text}");
            }
        }
    }
}
