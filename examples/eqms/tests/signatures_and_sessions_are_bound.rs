//! Electronic signatures are bound to their record, and sessions to their tenant: a
//! signature shows its printed name, time and meaning on the record's page and in the
//! trail; moved onto another CAPA it fails verification; a wrong password signs nothing; a
//! session's first signature takes both components. A session cookie issued at one
//! tenant's host names nobody at another's.

use example_eqms::signatures::{self, CheckedSignature, Meaning, Signature};
use example_eqms::{Capa, CapaStatus, demo_password};
use http::StatusCode;
use tenancy_audit::Entry;

mod support;
use support::*;

async fn signature_rows(app: &example_eqms::Eqms, tenant: &str) -> Vec<Signature> {
    let mut tx = app.db().transaction(&reader(tenant)).await.unwrap();
    let rows = tx
        .query_as(
            "SELECT id, capa_id, signer_id, signer_name, signed_at, meaning, content_hash, binding \
             FROM signatures ORDER BY signed_at",
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

async fn trail_len(app: &example_eqms::Eqms, tenant: &str) -> i64 {
    let mut tx = app.db().transaction(&reader(tenant)).await.unwrap();
    let row = tx
        .query_one("SELECT count(*) FROM tenancy_audit", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    row.get(0)
}

#[tokio::test]
async fn a_signature_closes_the_capa_and_shows_who_when_and_what_it_means() {
    let (_dir, _app, client) = start("sign").await;
    let capa = create(&client, "acme", "jane", "CAPA-S-1", "Torn blister foil").await;
    set_status(&client, "acme", "jane", &capa.id, CapaStatus::Approval).await;
    let request = sign_request("jane", &demo_password("jane"), Meaning::Responsibility);
    let response = sign(&client, "acme", "jane", &capa.id, &request).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
    let signature: Signature = response.json();
    assert_eq!(
        (signature.signer_id.as_str(), signature.signer_name.as_str()),
        ("jane", "Jane Doe")
    );
    assert_eq!(signature.meaning, "responsibility");
    assert!(
        signature.signed_at.ends_with('Z'),
        "UTC: {}",
        signature.signed_at
    );

    // Closed, verified, in the trail with its meaning at the signature's time.
    let now: Capa = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}", capa.id))
        .await
        .json();
    assert_eq!(now.status, CapaStatus::Closed);
    let listed: Vec<CheckedSignature> = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}/signatures", capa.id))
        .await
        .json();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].verified);
    let history: Vec<Entry> = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}/history", capa.id))
        .await
        .json();
    let entry = history.last().unwrap();
    assert_eq!(entry.action, "signature");
    assert_eq!(
        entry.signature_meaning.as_deref(),
        Some("Responsibility of")
    );
    assert_eq!(entry.recorded_at, signature.signed_at);
    assert_eq!(
        history[history.len() - 2].reason.as_deref(),
        Some("corrective action effective"),
        "the close carries the signer's reason"
    );

    // The record's page shows the printed name, the date and time, and the meaning.
    let page = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/capas/{}", capa.id))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text();
    for shown in [
        "Responsibility of Jane Doe",
        signature.signed_at.as_str(),
        "meaning: responsibility",
        "verified: bound to this record",
    ] {
        assert!(html.contains(shown), "{shown} not on the page:\n{html}");
    }
}

#[tokio::test]
async fn a_signature_moved_to_another_capa_fails_verification() {
    let (_dir, app, client) = start("moved").await;
    let first = create(&client, "acme", "jane", "CAPA-M-1", "First").await;
    let second = create(&client, "acme", "jane", "CAPA-M-2", "Second").await;
    close(&client, "acme", "jane", &first.id).await;
    close(&client, "acme", "jane", &second.id).await;

    // Someone with database access moves the first signature onto the second CAPA.
    let mut tx = app.db().transaction(&reader("acme")).await.unwrap();
    tx.execute(
        "UPDATE signatures SET capa_id = $1 WHERE capa_id = $2",
        &[second.id.as_str().into(), first.id.as_str().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let listed: Vec<CheckedSignature> = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}/signatures", second.id))
        .await
        .json();
    assert_eq!(listed.len(), 2);
    let verdicts: Vec<bool> = listed.iter().map(|s| s.verified).collect();
    assert_eq!(verdicts.iter().filter(|v| **v).count(), 1, "{listed:?}");
    let moved = listed.iter().find(|s| !s.verified).unwrap();
    let second_now: Capa = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}", second.id))
        .await
        .json();
    assert!(!signatures::verify(&moved.signature, &second_now));
    // Even with its content hash copied over, the binding gives it away.
    let mut forged = moved.signature.clone();
    forged.content_hash = signatures::content_hash(&second_now);
    assert!(!signatures::verify(&forged, &second_now));

    let page = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/capas/{}", second.id))
        .await
        .text();
    assert!(page.contains("NOT VERIFIED"), "{page}");
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_user_id_signs_nothing() {
    let (_dir, app, client) = start("refused").await;
    let capa = create(&client, "acme", "jane", "CAPA-W-1", "Wrong password").await;
    set_status(&client, "acme", "jane", &capa.id, CapaStatus::Approval).await;
    let trail_before = trail_len(&app, "acme").await;

    let wrong = sign_request("jane", "not-janes-password", Meaning::Approval);
    let response = sign(&client, "acme", "jane", &capa.id, &wrong).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.text().contains("nothing was signed"),
        "{}",
        response.text()
    );
    // Another user's id with one's own password.
    let other = sign_request("quinn", &demo_password("jane"), Meaning::Approval);
    let response = sign(&client, "acme", "jane", &capa.id, &other).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The first signature (here: without a session, every one) needs the user id.
    let mut no_user = sign_request("jane", &demo_password("jane"), Meaning::Approval);
    no_user.user = None;
    let response = sign(&client, "acme", "jane", &capa.id, &no_user).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    // No reason, no signature.
    let mut no_reason = sign_request("jane", &demo_password("jane"), Meaning::Approval);
    no_reason.reason = String::new();
    let response = sign(&client, "acme", "jane", &capa.id, &no_reason).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    // Another tenant's record: 404.
    let beta = create(&client, "beta", "omar", "CAPA-W-B", "canary-beta-5157").await;
    let right = sign_request("jane", &demo_password("jane"), Meaning::Approval);
    let response = sign(&client, "acme", "jane", &beta.id, &right).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!response.text().contains("canary-beta"));

    assert_eq!(
        trail_len(&app, "acme").await,
        trail_before,
        "nothing recorded"
    );
    assert!(signature_rows(&app, "acme").await.is_empty());
    assert!(signature_rows(&app, "beta").await.is_empty());
    let still: Capa = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}", capa.id))
        .await
        .json();
    assert_eq!(still.status, CapaStatus::Approval);
}

#[tokio::test]
async fn a_session_is_bound_to_its_tenant_and_its_first_signature_takes_both_components() {
    let (_dir, app, client) = start("session").await;
    let (status, set_cookie, _) = sign_in(&app, "acme", "jane", "wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(set_cookie, None);
    // A member of beta cannot open a session at acme, whatever her password.
    let (status, set_cookie, _) = sign_in(&app, "acme", "omar", &demo_password("omar")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(set_cookie, None);

    let (status, set_cookie, cookie) = sign_in(&app, "acme", "jane", &demo_password("jane")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = set_cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = cookie.unwrap();
    let at_acme = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .get("/api/capas")
        .await;
    assert_eq!(at_acme.status(), StatusCode::OK);
    // The same cookie at beta's host names nobody.
    let at_beta = client
        .call(&id("beta"))
        .header("cookie", &cookie)
        .get("/api/capas")
        .await;
    assert_eq!(
        at_beta.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        at_beta.text()
    );
    assert!(!at_beta.text().contains("Cold-chain"));
    let page = client
        .call(&id("beta"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .get("/capas")
        .await;
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    assert!(page.text().contains("/login"), "{}", page.text());

    // In a session: the first signature needs the user id, the next ones the password.
    let first = create(&client, "acme", "jane", "CAPA-SS-1", "First in session").await;
    let second = create(&client, "acme", "jane", "CAPA-SS-2", "Second in session").await;
    for capa in [&first, &second] {
        set_status(&client, "acme", "jane", &capa.id, CapaStatus::Approval).await;
    }
    let mut password_only = sign_request("jane", &demo_password("jane"), Meaning::Approval);
    password_only.user = None;
    let signed = |capa: &Capa| format!("/api/capas/{}/signatures", capa.id);
    let response = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .post_json(&signed(&first), &password_only)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    let both = sign_request("jane", &demo_password("jane"), Meaning::Approval);
    let response = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .post_json(&signed(&first), &both)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
    let response = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .post_json(&signed(&second), &password_only)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );

    // Signed out, the cookie names nobody.
    let response = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .send(http::Method::POST, "/logout", None)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let after = client
        .call(&id("acme"))
        .header("cookie", &cookie)
        .get("/api/capas")
        .await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}
