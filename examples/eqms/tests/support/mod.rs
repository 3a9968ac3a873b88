//! The fixtures the app's test binaries share: a data directory per test, a client that
//! authenticates as the demo users (HTTP Basic, with their demo passwords), and the CAPA
//! steps most tests take.

#![allow(dead_code, reason = "each test binary uses some of the fixtures")]

use std::path::PathBuf;

use example_eqms::accounts::basic_authorization;
use example_eqms::signatures::{Meaning, SignRequest};
use example_eqms::{Capa, CapaStatus, Eqms, NewCapa, StatusChange, demo_password};
use http::StatusCode;
use http::header::AUTHORIZATION;
use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_test::http::{TestClient, TestResponse};

/// A data directory of the test's own, removed when the test ends.
pub(crate) struct DataDir(pub(crate) PathBuf);

impl DataDir {
    pub(crate) fn new(name: &str) -> Self {
        DataDir(std::env::temp_dir().join(format!(
            "eqms-test-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client of `app`'s router that names tenants by subdomain and users by their demo
/// password (HTTP Basic).
pub(crate) fn client_of(app: &Eqms) -> TestClient<axum::Router> {
    TestClient::new(app.router(3000))
        .tenant_by_subdomain("localhost")
        .user_with(|builder, user| {
            builder.header(
                AUTHORIZATION,
                basic_authorization(user, &demo_password(user)),
            )
        })
}

/// The app on embedded defaults in a data directory of its own, and a client.
pub(crate) async fn start(name: &str) -> (DataDir, Eqms, TestClient<axum::Router>) {
    let dir = DataDir::new(name);
    let app = Eqms::open(&dir.0).await.expect("the app starts");
    let client = client_of(&app);
    (dir, app, client)
}

pub(crate) fn id(tenant: &str) -> TenantId {
    tenant.parse().unwrap()
}

/// A context for reading a tenant's tables behind the API.
pub(crate) fn reader(tenant: &str) -> TenantContext {
    TenantContext::new(id(tenant), Actor::service("test-reader").unwrap())
}

pub(crate) fn new_capa(reference: &str, title: &str) -> NewCapa {
    NewCapa {
        reference: reference.to_owned(),
        title: title.to_owned(),
        description: format!("What happened to {reference}"),
    }
}

/// Opens a CAPA through the API and checks it was (201).
pub(crate) async fn create(
    client: &TestClient<axum::Router>,
    tenant: &str,
    user: &str,
    reference: &str,
    title: &str,
) -> Capa {
    let response = client
        .call(&id(tenant))
        .user(user)
        .post_json("/api/capas", &new_capa(reference, title))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
    response.json()
}

pub(crate) fn status_change(status: CapaStatus) -> StatusChange {
    StatusChange {
        status,
        reason: format!("moved to {} by the test", status.as_str()),
    }
}

pub(crate) async fn set_status(
    client: &TestClient<axum::Router>,
    tenant: &str,
    user: &str,
    capa: &str,
    status: CapaStatus,
) -> StatusCode {
    client
        .call(&id(tenant))
        .user(user)
        .put_json(&format!("/api/capas/{capa}/status"), &status_change(status))
        .await
        .status()
}

/// A signature with both components (user id and password) and a reason.
pub(crate) fn sign_request(user: &str, password: &str, meaning: Meaning) -> SignRequest {
    SignRequest {
        meaning,
        password: password.to_owned(),
        user: Some(user.to_owned()),
        reason: "corrective action effective".to_owned(),
    }
}

/// `POST /api/capas/{capa}/signatures` as `user`.
pub(crate) async fn sign(
    client: &TestClient<axum::Router>,
    tenant: &str,
    user: &str,
    capa: &str,
    request: &SignRequest,
) -> TestResponse {
    client
        .call(&id(tenant))
        .user(user)
        .post_json(&format!("/api/capas/{capa}/signatures"), request)
        .await
}

/// Closes a CAPA the only way there is: into `approval`, then an approval signature.
pub(crate) async fn close(client: &TestClient<axum::Router>, tenant: &str, user: &str, capa: &str) {
    assert_eq!(
        set_status(client, tenant, user, capa, CapaStatus::Approval).await,
        StatusCode::OK
    );
    let request = sign_request(user, &demo_password(user), Meaning::Approval);
    let response = sign(client, tenant, user, capa, &request).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
}

/// Signs in through the login form at `tenant`'s host; the status, the `Set-Cookie`
/// header, and the `name=value` pair of the session cookie (if one was set).
pub(crate) async fn sign_in(
    app: &Eqms,
    tenant: &str,
    user: &str,
    password: &str,
) -> (StatusCode, Option<String>, Option<String>) {
    use tower::ServiceExt as _;
    let form = format!("user={user}&password={password}");
    let request = http::Request::post("/login")
        .header(http::header::HOST, format!("{tenant}.localhost"))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(axum::body::Body::from(form))
        .unwrap();
    let response = app.router(3000).oneshot(request).await.unwrap();
    let set_cookie = response
        .headers()
        .get(http::header::SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned());
    let pair = set_cookie
        .as_deref()
        .map(|value| value.split(';').next().unwrap().to_owned());
    (response.status(), set_cookie, pair)
}
