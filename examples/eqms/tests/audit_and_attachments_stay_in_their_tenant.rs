//! The audit trail and the attachments of the reference app, over HTTP (in process, through
//! the whole router): a CAPA's history is reconstructed from its entries, a change that
//! fails leaves no entry, the tenant's export holds its own trail only and verifies, and a
//! user of one tenant can neither read, list nor write another tenant's attachments, nor
//! climb out of a CAPA's key prefix; attachments on the local default and on S3.

use std::path::{Path, PathBuf};

use example_eqms::attachments::Attachment;
use example_eqms::{Capa, CapaStatus, Config, Eqms, NewCapa};
use http::{Method, StatusCode};
use serde_json::Value;
use tenancy_audit::Entry;
use tenancy_storage::ListRequest;
use tenancy_test::http::TestClient;
use tenancy_test::storage::{Backend, TestStorage};

mod support;
use support::*;

/// Every entry of a tenant's trail, read behind the API.
async fn trail_rows(app: &Eqms, tenant: &str) -> Vec<(i64, String, String)> {
    let mut tx = app.db().transaction(&reader(tenant)).await.unwrap();
    let rows = tx
        .query(
            "SELECT seq, action, record_id FROM tenancy_audit ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    tx.commit().await.unwrap();
    rows
}

fn value(text: &Option<String>) -> Value {
    serde_json::from_str(text.as_deref().expect("a value")).unwrap()
}

#[tokio::test]
async fn a_capas_history_reconstructs_its_changes() {
    let (_dir, _app, client) = start("history").await;
    let capa = create(&client, "acme", "jane", "CAPA-H-1", "Torn blister foil").await;
    assert_eq!(
        set_status(&client, "acme", "jane", &capa.id, CapaStatus::Investigating).await,
        StatusCode::OK
    );
    close(&client, "acme", "jane", &capa.id).await;
    let response = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}/history", capa.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text());
    let history: Vec<Entry> = response.json();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "create",
            "status_change",
            "status_change",
            "status_change",
            "signature"
        ]
    );
    // Every change has its reason; the signature its meaning.
    for entry in &history[1..4] {
        assert!(
            entry.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{entry:?}"
        );
    }
    assert_eq!(history[4].signature_meaning.as_deref(), Some("Approved by"));

    // Replaying the changes gives the record as it is now.
    assert_eq!(history[0].old_value, None);
    let mut state = value(&history[0].new_value);
    for entry in &history[1..4] {
        assert_eq!(
            value(&entry.old_value),
            state,
            "each change starts where the last ended"
        );
        state = value(&entry.new_value);
    }
    let now: Capa = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("/api/capas/{}", capa.id))
        .await
        .json();
    assert_eq!(state, serde_json::to_value(&now).unwrap());
    assert_eq!(now.status, CapaStatus::Closed);

    // Who and which request: the context's actor and correlation id (the close and its
    // signature are one request).
    let mut requests = std::collections::HashSet::new();
    for entry in &history {
        assert_eq!(
            (entry.tenant.as_str(), entry.actor_id.as_str()),
            ("acme", "jane")
        );
        assert_eq!(entry.actor_name, "Jane Doe");
        requests.insert(entry.request_id.clone().expect("a request id"));
    }
    assert_eq!(requests.len(), 4);
    assert_eq!(history[3].request_id, history[4].request_id);

    // Another tenant's user at the other host, or asking its own host for this id.
    let path = format!("/api/capas/{}/history", capa.id);
    let response = client.call(&id("beta")).user("omar").get(&path).await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    let response = client.call(&id("acme")).user("omar").get(&path).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_failed_change_leaves_no_audit_entry() {
    let (_dir, app, client) = start("failed").await;
    let capa = create(&client, "acme", "jane", "CAPA-F-1", "Wrong label stock").await;
    let beta = create(&client, "beta", "omar", "CAPA-F-B", "canary-beta-f00d").await;
    let acme_before = trail_rows(&app, "acme").await;
    let beta_before = trail_rows(&app, "beta").await;

    // The create's entry is written before its insert fails on the duplicate reference:
    // the rollback must take it along.
    let response = client
        .call(&id("acme"))
        .user("jane")
        .post_json(
            "/api/capas",
            &NewCapa {
                reference: "CAPA-F-1".into(),
                title: "again".into(),
                description: String::new(),
            },
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "{}",
        response.text()
    );
    // A closed CAPA cannot be reopened: refused, nothing recorded.
    close(&client, "acme", "jane", &capa.id).await;
    let acme_closed = trail_rows(&app, "acme").await;
    assert_eq!(acme_closed.len(), acme_before.len() + 3);
    assert_eq!(
        set_status(&client, "acme", "jane", &capa.id, CapaStatus::Open).await,
        StatusCode::CONFLICT
    );
    // Another tenant's record: 404, nothing recorded on either side.
    assert_eq!(
        set_status(&client, "acme", "jane", &beta.id, CapaStatus::Closed).await,
        StatusCode::NOT_FOUND
    );

    assert_eq!(trail_rows(&app, "acme").await, acme_closed);
    assert_eq!(trail_rows(&app, "beta").await, beta_before);
    // And the trail still verifies: no gap where the failed change's entry was.
    let mut tx = app.db().transaction(&reader("acme")).await.unwrap();
    let report = tenancy_audit::verify_trail(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// Unpacks the tar `bytes` into `into` and returns the bundle's directory.
fn unpack(bytes: &[u8], into: &Path) -> PathBuf {
    tar::Archive::new(bytes).unpack(into).unwrap();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(into)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one bundle directory: {dirs:?}");
    dirs.pop().unwrap()
}

fn all_files_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

#[tokio::test]
async fn the_export_holds_the_tenants_own_trail_and_verifies() {
    let (dir, _app, client) = start("export").await;
    let acme_capa = create(&client, "acme", "jane", "CAPA-E-A", "canary-acme-51de").await;
    let beta_capa = create(&client, "beta", "omar", "CAPA-E-B", "canary-beta-0b7e").await;
    set_status(&client, "beta", "omar", &beta_capa.id, CapaStatus::Approval).await;
    set_status(
        &client,
        "acme",
        "jane",
        &acme_capa.id,
        CapaStatus::Investigating,
    )
    .await;

    let mut manifests = Vec::new();
    for (tenant, user, own, other) in [
        ("acme", "jane", &acme_capa, &beta_capa),
        ("beta", "omar", &beta_capa, &acme_capa),
    ] {
        let response = client
            .call(&id(tenant))
            .user(user)
            .get("/api/audit/export")
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text());
        assert_eq!(response.headers()["content-type"], "application/x-tar");
        let out = dir.0.join(format!("unpacked-{tenant}"));
        let bundle = unpack(response.bytes(), &out);
        let report = tenancy_audit::verify_bundle(&bundle).unwrap();
        assert!(report.is_ok(), "{tenant}: {report:?}");

        let text = all_files_text(&bundle);
        assert!(
            text.contains(&own.title) && text.contains(&own.id),
            "{tenant}"
        );
        assert!(
            !text.contains(&other.title) && !text.contains(&other.id),
            "{tenant}'s bundle holds another tenant's record"
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["tenant"], tenant);
        manifests.push(manifest);
    }
    // The seeded CAPA, one of the test's, one status change, each tenant.
    assert_eq!(manifests[0]["entries"], 3);
    assert_eq!(manifests[1]["entries"], 3);

    // The export is recorded: the next export holds the first one's entry.
    let response = client
        .call(&id("acme"))
        .user("jane")
        .get("/api/audit/export")
        .await;
    let bundle = unpack(response.bytes(), &dir.0.join("unpacked-acme-2"));
    assert!(tenancy_audit::verify_bundle(&bundle).unwrap().is_ok());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["counts_by_action"]["export"], 1, "{manifest}");
    assert_eq!(manifest["export_entry_seq"], 5);

    // No work files are left behind; a non-member is refused.
    let exports: Vec<_> = std::fs::read_dir(dir.0.join("exports")).unwrap().collect();
    assert!(exports.is_empty(), "{exports:?}");
    let response = client
        .call(&id("beta"))
        .user("jane")
        .get("/api/audit/export")
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// Every key of a tenant's bucket with its bytes, read behind the API.
async fn objects(app: &Eqms, tenant: &str) -> Vec<(String, Vec<u8>)> {
    let bucket = app.storage().bucket(&reader(tenant)).unwrap();
    let page = bucket.list(&ListRequest::all()).await.unwrap();
    let mut objects = Vec::new();
    for object in page.objects {
        let bytes = bucket.get_bytes(&object.key).await.unwrap();
        objects.push((object.key, bytes.to_vec()));
    }
    objects
}

async fn put(
    client: &TestClient<axum::Router>,
    tenant: &str,
    user: &str,
    path: &str,
    body: &str,
) -> StatusCode {
    let response = client
        .call(&id(tenant))
        .user(user)
        .send(Method::PUT, path, Some(body.to_owned()))
        .await;
    response.status()
}

/// The attachment scenario, on whichever storage `app` was opened with.
async fn attachments_stay_in_their_tenant(app: &Eqms) {
    let client = client_of(app);
    let mine = create(&client, "acme", "jane", "CAPA-AT-A", "Scratched vials").await;
    let theirs = create(&client, "beta", "omar", "CAPA-AT-B", "Freezer alarm").await;
    let own = format!("/api/capas/{}/attachments", mine.id);
    let other = format!("/api/capas/{}/attachments", theirs.id);

    // Each member stores, reads and lists their own.
    let report = "{\"finding\":\"canary-acme-a77a\"}";
    assert_eq!(
        put(
            &client,
            "acme",
            "jane",
            &format!("{own}/report.json"),
            report
        )
        .await,
        StatusCode::CREATED
    );
    let secret = "{\"finding\":\"canary-beta-5ec7\"}";
    assert_eq!(
        put(
            &client,
            "beta",
            "omar",
            &format!("{other}/secret.json"),
            secret
        )
        .await,
        StatusCode::CREATED
    );
    let read = client
        .call(&id("acme"))
        .user("jane")
        .get(&format!("{own}/report.json"))
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.text(), report);
    assert_eq!(read.headers()["content-type"], "application/json");
    let listed: Vec<Attachment> = client.call(&id("acme")).user("jane").get(&own).await.json();
    assert_eq!(
        listed,
        [Attachment {
            name: "report.json".into(),
            size: report.len() as u64
        }]
    );
    let acme_before = objects(app, "acme").await;
    let beta_before = objects(app, "beta").await;
    assert_eq!(
        acme_before,
        [(
            format!("capas/{}/attachments/report.json", mine.id),
            report.as_bytes().to_vec()
        )]
    );

    // Jane, at her own host, names beta's CAPA: there is no such CAPA in acme.
    for response in [
        client
            .call(&id("acme"))
            .user("jane")
            .get(&format!("{other}/secret.json"))
            .await,
        client.call(&id("acme")).user("jane").get(&other).await,
    ] {
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{}",
            response.text()
        );
        assert!(!response.text().contains("canary-beta"));
    }
    for name in ["secret.json", "new.json"] {
        assert_eq!(
            put(
                &client,
                "acme",
                "jane",
                &format!("{other}/{name}"),
                "overwritten"
            )
            .await,
            StatusCode::NOT_FOUND
        );
    }
    // At beta's host she is no member.
    let response = client
        .call(&id("beta"))
        .user("jane")
        .get(&format!("{other}/secret.json"))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        put(
            &client,
            "beta",
            "jane",
            &format!("{other}/secret.json"),
            "x"
        )
        .await,
        StatusCode::FORBIDDEN
    );

    // Names that would climb out of the CAPA's prefix are refused before any I/O.
    let tricks = [
        "..".to_owned(),
        ".".to_owned(),
        "%2e%2e".to_owned(),
        "%252e%252e".to_owned(),
        "a%2Fb".to_owned(),
        format!("..%2F..%2F{}%2Fattachments%2Fsecret.json", theirs.id),
        format!(
            "%2e%2e%2f%2e%2e%2f{}%2fattachments%2fsecret.json",
            theirs.id
        ),
        "x%5C..%5Cy".to_owned(),
        "nul%00".to_owned(),
    ];
    for trick in &tricks {
        let path = format!("{own}/{trick}");
        assert_eq!(
            put(&client, "acme", "jane", &path, "escaped").await,
            StatusCode::BAD_REQUEST,
            "PUT {path}"
        );
        let response = client.call(&id("acme")).user("jane").get(&path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "GET {path}");
    }

    // Nothing was written on either side.
    assert_eq!(objects(app, "acme").await, acme_before);
    assert_eq!(objects(app, "beta").await, beta_before);

    // A tenant signed up later gets its bucket at sign-up.
    let sign_up = serde_json::json!({
        "tenant": "gamma", "name": "Gamma Labs", "user": "gail", "user_name": "Gail Grant",
        "password": example_eqms::demo_password("gail")
    });
    let created = client.untenanted().post_json("/signup", &sign_up).await;
    assert_eq!(created.status(), StatusCode::CREATED, "{}", created.text());
    let gamma = create(&client, "gamma", "gail", "CAPA-G-1", "First one").await;
    assert_eq!(
        put(
            &client,
            "gamma",
            "gail",
            &format!("/api/capas/{}/attachments/a.txt", gamma.id),
            "gamma's"
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(objects(app, "gamma").await.len(), 1);
}

#[tokio::test]
async fn attachments_stay_in_their_tenant_on_the_local_default() {
    let (dir, app, _client) = start("attach-local").await;
    attachments_stay_in_their_tenant(&app).await;
    // The default keeps each tenant's objects in its own directory under the data dir.
    let root = dir.0.join(example_eqms::attachments::LOCAL_DIR);
    let mut tenants: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["eqms-acme", "eqms-beta", "eqms-gamma"]);
}

#[tokio::test]
async fn attachments_stay_in_their_tenant_on_s3() {
    // The fixture's buckets (unique prefix) are removed when it is dropped.
    let storage = TestStorage::new(Backend::S3, tenancy_storage::Layout::BucketPerTenant);
    let dir = DataDir::new("attach-s3");
    let app = Eqms::open_with(
        &dir.0,
        Config {
            storage: Some(storage.config().clone()),
            ..Config::default()
        },
    )
    .await
    .expect("the app starts");
    attachments_stay_in_their_tenant(&app).await;
    // Each tenant's object is in that tenant's bucket on the server.
    let raw = storage.raw();
    for tenant in ["acme", "beta", "gamma"] {
        let listed = raw
            .list_objects_v2()
            .bucket(storage.bucket_of(&id(tenant)))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.key_count(), Some(1), "{tenant}");
    }
    assert!(!dir.0.join(example_eqms::attachments::LOCAL_DIR).exists());
}
