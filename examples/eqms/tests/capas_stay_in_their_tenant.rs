//! The reference app called over HTTP (in process, through the whole router) as users of
//! two tenants: each sees and changes its own CAPAs only, a user of one tenant is refused
//! at another's host, and another tenant's record id is a 404 that writes nothing.

use example_eqms::{Capa, CapaStatus, Eqms};
use http::StatusCode;
use serde_json::Value;
use tenancy_core::{Actor, TenantContext};

mod support;
use support::*;

/// Every row of a tenant's `capas` table, read behind the API.
async fn rows(app: &Eqms, tenant: &str) -> Vec<Capa> {
    let ctx = TenantContext::new(id(tenant), Actor::service("test-reader").unwrap());
    let mut tx = app.db().transaction(&ctx).await.unwrap();
    let rows = tx
        .query_as(
            "SELECT id, reference, title, description, status, created_by FROM capas ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

#[tokio::test]
async fn members_create_list_read_and_change_their_own_capas() {
    let (_dir, app, client) = start("crud").await;
    let acme = id("acme");

    let seeded: Vec<Capa> = client
        .call(&acme)
        .user("jane")
        .get("/api/capas")
        .await
        .json();
    assert_eq!(seeded.len(), 1, "{seeded:?}");

    let response = client
        .call(&acme)
        .user("jane")
        .post_json(
            "/api/capas",
            &new_capa("CAPA-2026-101", "Label mix-up on line 2"),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
    let created: Capa = response.json();
    assert_eq!(
        created.created_by, "jane",
        "the context names the authenticated actor"
    );
    assert_eq!(created.status, CapaStatus::Open);

    let read: Capa = client
        .call(&acme)
        .user("jane")
        .get(&format!("/api/capas/{}", created.id))
        .await
        .json();
    assert_eq!(read, created);

    // Closing is a signature, not a status change.
    let response = client
        .call(&acme)
        .user("jane")
        .put_json(
            &format!("/api/capas/{}/status", created.id),
            &status_change(CapaStatus::Closed),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "{}",
        response.text()
    );
    close(&client, "acme", "jane", &created.id).await;
    let response = client
        .call(&acme)
        .user("jane")
        .put_json(
            &format!("/api/capas/{}/status", created.id),
            &status_change(CapaStatus::Open),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "{}",
        response.text()
    );

    let listed: Vec<Capa> = client
        .call(&acme)
        .user("jane")
        .get("/api/capas")
        .await
        .json();
    assert_eq!(listed.len(), 2);
    assert_eq!(rows(&app, "acme").await.len(), 2);
    assert_eq!(rows(&app, "beta").await.len(), 1, "beta is untouched");
}

#[tokio::test]
async fn another_tenants_record_id_is_not_found_and_nothing_is_written() {
    let (_dir, app, client) = start("cross").await;
    let (acme, beta) = (id("acme"), id("beta"));
    let secret: Capa = client
        .call(&beta)
        .user("omar")
        .post_json("/api/capas", &new_capa("CAPA-B-7", "canary-beta-7f3a"))
        .await
        .json();
    let acme_before = rows(&app, "acme").await;
    let beta_before = rows(&app, "beta").await;

    // Jane, a member of acme, asks acme for beta's record: there is no such record in acme.
    let path = format!("/api/capas/{}", secret.id);
    let response = client.call(&acme).user("jane").get(&path).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .call(&acme)
        .user("jane")
        .put_json(
            &format!("{path}/status"),
            &status_change(CapaStatus::Investigating),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        !response.text().contains("canary-beta"),
        "{}",
        response.text()
    );
    let listed = client
        .call(&acme)
        .user("jane")
        .get("/api/capas")
        .await
        .text();
    assert!(
        !listed.contains("canary-beta") && !listed.contains(&secret.id),
        "{listed}"
    );

    // Nothing was written on either side.
    assert_eq!(rows(&app, "acme").await, acme_before);
    assert_eq!(rows(&app, "beta").await, beta_before);
    assert_eq!(
        beta_before
            .iter()
            .find(|c| c.id == secret.id)
            .unwrap()
            .status,
        CapaStatus::Open
    );
}

#[tokio::test]
async fn a_user_of_one_tenant_at_another_tenants_host_is_forbidden() {
    let (_dir, app, client) = start("member").await;
    let beta = id("beta");
    let beta_before = rows(&app, "beta").await;
    for response in [
        client.call(&beta).user("jane").get("/api/capas").await,
        client
            .call(&beta)
            .user("jane")
            .post_json("/api/capas", &new_capa("CAPA-X", "written by an outsider"))
            .await,
    ] {
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{}",
            response.text()
        );
        let body: Value = response.json();
        assert_eq!(body["status"], 403);
        assert!(
            !response.text().contains("Cold-chain"),
            "{}",
            response.text()
        );
    }
    assert_eq!(rows(&app, "beta").await, beta_before, "nothing written");

    // No user at all: 401; an unknown user is no user.
    let response = client.call(&beta).get("/api/capas").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client.call(&beta).user("mallory").get("/api/capas").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A browser is answered with a page, escaped.
    let response = client
        .call(&beta)
        .user("jane")
        .header("accept", "text/html")
        .get("/api/capas")
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.text().starts_with("<!doctype html>"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn errors_answer_through_the_shared_mapping() {
    let (_dir, _app, client) = start("errors").await;
    let acme = id("acme");
    let capa = new_capa("CAPA-DUP", "first");
    let first = client
        .call(&acme)
        .user("jane")
        .post_json("/api/capas", &capa)
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = client
        .call(&acme)
        .user("jane")
        .post_json("/api/capas", &capa)
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(
        again.text(),
        r#"{"status":409,"error":"a CAPA with reference `CAPA-DUP` exists already; choose another reference"}"#
    );
    let missing = client
        .call(&acme)
        .user("jane")
        .get("/api/capas/no-such-id")
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unknown = client
        .call(&id("nobody"))
        .user("jane")
        .get("/api/capas")
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/json",
        "API refusals are JSON"
    );
    let untenanted = client.untenanted().user("jane").get("/api/capas").await;
    assert_eq!(untenanted.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn routes_outside_the_tenant_layer_serve_no_tenant() {
    let (_dir, _app, client) = start("untenanted").await;
    let health = client.untenanted().get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);

    let sign_up = serde_json::json!({
        "tenant": "gamma", "name": "Gamma Labs", "user": "gail", "user_name": "Gail Grant",
        "password": "gail-demo-password"
    });
    let created = client.untenanted().post_json("/signup", &sign_up).await;
    assert_eq!(created.status(), StatusCode::CREATED, "{}", created.text());
    let again = client.untenanted().post_json("/signup", &sign_up).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "{}", again.text());
    let listed: Vec<Capa> = client
        .call(&id("gamma"))
        .user("gail")
        .get("/api/capas")
        .await
        .json();
    assert!(listed.is_empty(), "a new tenant starts empty: {listed:?}");
    // Gail is a member of gamma only.
    let response = client
        .call(&id("acme"))
        .user("gail")
        .get("/api/capas")
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let refused = client
        .untenanted()
        .user("jane")
        .get("/operator/tenants")
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let tenants: Vec<Value> = client
        .untenanted()
        .user("olga")
        .get("/operator/tenants")
        .await
        .json();
    let ids: Vec<&str> = tenants.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme", "beta", "gamma"]);
}

#[tokio::test]
async fn hostile_requests_are_refused_clearly_and_write_nothing() {
    let (_dir, app, client) = start("hostile").await;
    let (acme, beta) = (id("acme"), id("beta"));
    let acme_before = rows(&app, "acme").await;
    let beta_before = rows(&app, "beta").await;
    let error_of = |response: &tenancy_test::http::TestResponse| -> String {
        let body: Value = response.json();
        assert_eq!(body["status"], response.status().as_u16(), "{body}");
        body["error"].as_str().expect("an error message").to_owned()
    };

    // An unknown tenant.
    let response = client
        .call(&id("nobody"))
        .user("jane")
        .post_json("/api/capas", &new_capa("CAPA-H-1", "to nowhere"))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        error_of(&response).contains("nobody"),
        "{}",
        response.text()
    );

    // A malformed JSON body, and one of the wrong shape.
    for body in [
        r#"{"reference": "CAPA-H-2", "title": "#,
        r#"{"reference": 7}"#,
    ] {
        let response = client
            .call(&acme)
            .user("jane")
            .send(http::Method::POST, "/api/capas", Some(body.to_owned()))
            .await;
        assert!(
            response.status() == StatusCode::BAD_REQUEST
                || response.status() == StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {}",
            response.status(),
            response.text()
        );
        assert!(!response.text().is_empty());
    }

    // An oversized body: refused before any handler reads it.
    let huge = new_capa("CAPA-H-3", &"x".repeat(example_eqms::BODY_LIMIT + 1));
    let response = client
        .call(&acme)
        .user("jane")
        .post_json("/api/capas", &huge)
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!response.text().is_empty());

    // A status change with no reason.
    let seeded = &acme_before[0];
    let response = client
        .call(&acme)
        .user("jane")
        .put_json(
            &format!("/api/capas/{}/status", seeded.id),
            &serde_json::json!({"status": "investigating"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        error_of(&response).contains("reason"),
        "{}",
        response.text()
    );

    // Another tenant's record id, for every verb on it.
    let secret = &beta_before[0];
    for response in [
        client
            .call(&acme)
            .user("jane")
            .get(&format!("/api/capas/{}/history", secret.id))
            .await,
        client
            .call(&acme)
            .user("jane")
            .get(&format!("/api/capas/{}/signatures", secret.id))
            .await,
        client
            .call(&acme)
            .user("jane")
            .get(&format!("/capas/{}", secret.id))
            .await,
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(!response.text().contains("Cold-chain"));
    }

    // A suspended tenant: refused at the door, for its own members too.
    app.db()
        .platform()
        .suspend(app.operator(), &beta)
        .await
        .unwrap();
    let response = client
        .call(&beta)
        .user("omar")
        .post_json("/api/capas", &new_capa("CAPA-H-4", "while suspended"))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        error_of(&response).contains("suspended"),
        "{}",
        response.text()
    );
    app.db()
        .platform()
        .resume(app.operator(), &beta)
        .await
        .unwrap();

    assert_eq!(rows(&app, "acme").await, acme_before, "nothing written");
    assert_eq!(rows(&app, "beta").await, beta_before, "nothing written");
}
