//! The layers wired into the reference app, called over HTTP as users of two tenants:
//! logs (CAPA titles never in the ops stream, whole in the tenant's own file), the cached
//! recent-activity widget (two firms whose users share an id never see each other's
//! titles, in process and on Redis), and the notify-the-approver job (it runs under the
//! CAPA's tenant and its notification lands there only, on SQLite, Redis and PostgreSQL).

use std::time::{Duration, Instant};

use example_eqms::activity::ActivityEntry;
use example_eqms::jobs::Notification;
use example_eqms::{Capa, CapaStatus, Config, DEMO_TENANTS, Eqms, SignUp, demo_password};
use futures::FutureExt as _;
use http::StatusCode;
use tenancy_core::{IsolationMode, TenantId};
use tenancy_db::{DbConfig, Secret};
use tenancy_storage::Layout;
use tenancy_test::http::TestClient;
use tenancy_test::log::{LogCapture, canary};
use tenancy_test::storage::{Backend as StorageBackend, TestStorage};
use tenancy_test::{Service, unique_tenant};

mod support;
use support::{DataDir, client_of as client, id, new_capa, status_change};

async fn create(
    client: &TestClient<axum::Router>,
    tenant: &TenantId,
    user: &str,
    title: &str,
) -> Capa {
    let reference = format!("CAPA-{}", uuid::Uuid::new_v4().simple());
    let response = client
        .call(tenant)
        .user(user)
        .post_json("/api/capas", &new_capa(&reference, title))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
    response.json()
}

async fn set_status(
    client: &TestClient<axum::Router>,
    tenant: &TenantId,
    user: &str,
    capa: &str,
    status: CapaStatus,
) -> StatusCode {
    client
        .call(tenant)
        .user(user)
        .put_json(&format!("/api/capas/{capa}/status"), &status_change(status))
        .await
        .status()
}

/// Signs a firm up with `user` as its first member.
async fn sign_up(client: &TestClient<axum::Router>, tenant: &TenantId, user: &str) {
    let response = client
        .untenanted()
        .post_json(
            "/signup",
            &SignUp {
                tenant: tenant.to_string(),
                name: format!("Firm {tenant}"),
                user: user.to_owned(),
                user_name: format!("User {user}"),
                password: demo_password(user),
            },
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text()
    );
}

/// Polls the tenant's notifications until there are `n` of them (or fails after 30 s).
async fn notifications_until(
    client: &TestClient<axum::Router>,
    tenant: &TenantId,
    user: &str,
    n: usize,
) -> Vec<Notification> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<Notification> = client
            .call(tenant)
            .user(user)
            .get("/api/notifications")
            .await
            .json();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capa_titles_never_reach_the_ops_stream_and_stay_in_their_tenants_log() {
    let dir = DataDir::new("logs");
    let ops = LogCapture::new();
    let config = Config {
        ops_writer: tenancy_log::tracing_subscriber::fmt::writer::BoxMakeWriter::new(ops.clone()),
        ..Config::default()
    };
    let app = Eqms::open_with(&dir.0, config)
        .await
        .expect("the app starts");
    let worker = app.jobs().start_worker();
    let client = client(&app);
    let (acme, beta) = (id("acme"), id("beta"));

    // The app's whole flow at acme, with a canary title: create, investigate, approval
    // (the job reads the title and logs it), list, activity.
    let title = canary("capa-title");
    let capa = create(&client, &acme, "jane", &title).await;
    assert_eq!(
        set_status(&client, &acme, "jane", &capa.id, CapaStatus::Investigating).await,
        StatusCode::OK
    );
    assert_eq!(
        set_status(&client, &acme, "jane", &capa.id, CapaStatus::Approval).await,
        StatusCode::OK
    );
    let notes = notifications_until(&client, &acme, "jane", 1).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    let _ = client.call(&acme).user("jane").get("/api/activity").await;
    // And beta works meanwhile; omar also tries acme's CAPA from beta's host.
    let beta_title = canary("beta-title");
    create(&client, &beta, "omar", &beta_title).await;
    assert_eq!(
        set_status(&client, &beta, "omar", &capa.id, CapaStatus::Approval).await,
        StatusCode::NOT_FOUND
    );
    worker.stop().await.expect("the worker stops");

    let ops_text = ops.text();
    let lines = ops.lines();
    let created: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("CAPA created"))
        .collect();
    // The two demo CAPAs seeded at start, and the two made here.
    assert_eq!(created.len(), 4, "every creation is logged:\n{ops_text}");
    for (_, _, _, _, seeded) in DEMO_TENANTS {
        assert!(
            !ops_text.contains(seeded),
            "a seeded title leaked:\n{ops_text}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("approver notified")),
        "the job logs:\n{ops_text}"
    );
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        if line.contains("CAPA created")
            || line.contains("approver notified")
            || line.contains("status changed")
        {
            let tenant = value["tenant"].as_str().expect("stamped with a tenant");
            assert!(tenant == "acme" || tenant == "beta", "{line}");
            assert_eq!(value["fields"]["capa.title"], "[redacted]", "{line}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("approver notified") && l.contains("\"tenant\":\"acme\"")),
        "{ops_text}"
    );
    assert!(
        !ops_text.contains(&title),
        "acme's CAPA title leaked into the ops stream:\n{ops_text}"
    );
    assert!(
        !ops_text.contains(&beta_title),
        "beta's CAPA title leaked into the ops stream:\n{ops_text}"
    );

    // Each tenant's own file has its titles, never the other's.
    let acme_log = std::fs::read_to_string(app.logs().tenant_log(&acme)).expect("acme's log");
    let beta_log = std::fs::read_to_string(app.logs().tenant_log(&beta)).expect("beta's log");
    assert!(acme_log.contains(&title), "{acme_log}");
    assert!(
        acme_log.contains("approver notified"),
        "the job's event reached acme's file: {acme_log}"
    );
    assert!(!acme_log.contains(&beta_title), "{acme_log}");
    assert!(beta_log.contains(&beta_title), "{beta_log}");
    assert!(!beta_log.contains(&title), "{beta_log}");
}

// ---------------------------------------------------------------------------------------
// Cache: the brief's widget scenario

async fn widget_scenario(redis_url: Option<String>) {
    let dir = DataDir::new("cache");
    let config = Config {
        redis_url,
        ..Config::default()
    };
    let app = Eqms::open_with(&dir.0, config)
        .await
        .expect("the app starts");
    let client = client(&app);
    // Two firms, each with a user #4271: the same id, two people.
    let (a, b) = (unique_tenant("widget-a"), unique_tenant("widget-b"));
    sign_up(&client, &a, "4271").await;
    sign_up(&client, &b, "4271").await;
    app.directory().add_member("4271", "User 4271", &a);
    app.directory().add_member("4271", "User 4271", &b);

    let outcome = std::panic::AssertUnwindSafe(async {
        let title_a = canary("widget-a");
        let capa_a = create(&client, &a, "4271", &title_a).await;

        let first = client.call(&a).user("4271").get("/api/activity").await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["x-tenancy-cache"], "miss");
        let seen: Vec<ActivityEntry> = first.json();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].title, title_a);
        let again = client.call(&a).user("4271").get("/api/activity").await;
        assert_eq!(
            again.headers()["x-tenancy-cache"],
            "hit",
            "the widget is cached"
        );

        // User #4271 at B, same id, same path: never A's titles, cached or not.
        for _ in 0..2 {
            let at_b = client.call(&b).user("4271").get("/api/activity").await;
            assert_eq!(at_b.status(), StatusCode::OK);
            assert!(
                !at_b.text().contains(&title_a),
                "A's title at B: {}",
                at_b.text()
            );
            let seen: Vec<ActivityEntry> = at_b.json();
            assert!(seen.is_empty(), "{seen:?}");
        }
        let title_b = canary("widget-b");
        create(&client, &b, "4271", &title_b).await;
        let at_b = client.call(&b).user("4271").get("/api/activity").await;
        assert_eq!(
            at_b.headers()["x-tenancy-cache"],
            "miss",
            "B's change invalidated B's widget"
        );
        let seen: Vec<ActivityEntry> = at_b.json();
        assert_eq!(
            seen.iter().map(|e| e.title.as_str()).collect::<Vec<_>>(),
            [title_b.as_str()]
        );

        // A's cached widget still shows A's only; A's change invalidates it.
        let at_a = client.call(&a).user("4271").get("/api/activity").await;
        assert!(!at_a.text().contains(&title_b), "{}", at_a.text());
        assert_eq!(
            set_status(&client, &a, "4271", &capa_a.id, CapaStatus::Investigating).await,
            StatusCode::OK
        );
        let at_a = client.call(&a).user("4271").get("/api/activity").await;
        assert_eq!(at_a.headers()["x-tenancy-cache"], "miss");
        let seen: Vec<ActivityEntry> = at_a.json();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].action, "investigating");
        assert!(!at_a.text().contains(&title_b), "{}", at_a.text());
    })
    .catch_unwind()
    .await;
    for tenant in [&a, &b] {
        app.cache()
            .platform()
            .purge(app.operator(), tenant)
            .await
            .expect("purge the test's keys");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_widget_never_shows_one_firms_titles_to_the_other_in_process() {
    widget_scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_widget_never_shows_one_firms_titles_to_the_other_on_redis() {
    widget_scenario(Some(Service::Redis.require())).await;
}

// ---------------------------------------------------------------------------------------
// Jobs: notify the approver

/// A queue of the test's own on `queue_url` (a SQLite file when `None`).
fn queue_config(queue_url: Option<String>) -> Config {
    Config {
        queue_url,
        queue_name: format!("eqms-test-{}", uuid::Uuid::new_v4().simple()),
        ..Config::default()
    }
}

/// An app opened with `config` runs the approval flow ([`approval_flow`]); the queue's
/// Redis keys are removed afterwards.
async fn approval_scenario(config: Config) {
    let dir = DataDir::new("jobs");
    let (queue_url, queue_name) = (config.queue_url.clone(), config.queue_name.clone());
    let app = Eqms::open_with(&dir.0, config)
        .await
        .expect("the app starts");
    let outcome = std::panic::AssertUnwindSafe(approval_flow(&app))
        .catch_unwind()
        .await;
    remove_queue_keys(queue_url, &queue_name).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The approval flow on the demo tenants: the job runs under the CAPA's tenant and its
/// notification lands there only. The app's worker runs meanwhile.
async fn approval_flow(app: &Eqms) {
    let worker = app.jobs().start_worker();
    let client = client(app);
    let (acme, beta) = (id("acme"), id("beta"));
    let outcome = std::panic::AssertUnwindSafe(async {
        let title = canary("approval");
        let capa = create(&client, &acme, "jane", &title).await;
        // Omar, at beta, tries to push acme's CAPA to approval: 404, no job.
        assert_eq!(
            set_status(&client, &beta, "omar", &capa.id, CapaStatus::Approval).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            set_status(&client, &acme, "jane", &capa.id, CapaStatus::Investigating).await,
            StatusCode::OK
        );
        assert_eq!(
            set_status(&client, &acme, "jane", &capa.id, CapaStatus::Approval).await,
            StatusCode::OK
        );

        let notes = notifications_until(&client, &acme, "jane", 1).await;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].capa_id, capa.id);
        assert_eq!(
            notes[0].requested_by, "jane",
            "the job ran with the pusher's actor"
        );
        assert!(notes[0].message.contains(&title), "{notes:?}");
        // A beta job pushed next runs under beta, and acme still has just its own.
        let beta_capa = create(&client, &beta, "omar", &canary("beta-approval")).await;
        assert_eq!(
            set_status(&client, &beta, "omar", &beta_capa.id, CapaStatus::Approval).await,
            StatusCode::OK
        );
        let beta_notes = notifications_until(&client, &beta, "omar", 1).await;
        assert_eq!(beta_notes.len(), 1, "{beta_notes:?}");
        assert_eq!(beta_notes[0].capa_id, beta_capa.id);
        assert!(!serde_json::to_string(&beta_notes).unwrap().contains(&title));
        // Both jobs have run: acme's list is read once more, as it stands.
        let acme_notes: Vec<Notification> = client
            .call(&acme)
            .user("jane")
            .get("/api/notifications")
            .await
            .json();
        assert_eq!(
            acme_notes.len(),
            1,
            "nothing of beta's at acme: {acme_notes:?}"
        );
        // Omar cannot read acme's notifications from acme's host.
        let refused = client
            .call(&acme)
            .user("omar")
            .get("/api/notifications")
            .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    })
    .catch_unwind()
    .await;
    worker.stop().await.expect("the worker stops");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Removes a Redis queue's keys.
async fn remove_queue_keys(queue_url: Option<String>, queue_name: &str) {
    if let Some(url) = queue_url.filter(|u| u.starts_with("redis")) {
        tenancy_test::redis::remove_keys(&url, &format!("*{queue_name}*")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_is_notified_in_the_capas_tenant_only_on_sqlite() {
    approval_scenario(queue_config(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_is_notified_in_the_capas_tenant_only_on_redis() {
    approval_scenario(queue_config(Some(Service::Redis.require()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_is_notified_in_the_capas_tenant_only_on_postgres() {
    // A database of the test's own for the queue, dropped afterwards.
    let admin = Service::Postgres.require();
    let database = format!("eqms_queue_{}", uuid::Uuid::new_v4().simple());
    let server = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    // The name is `eqms_queue_` and hex digits only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&server)
        .await
        .expect("create the queue database");
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    let outcome = std::panic::AssertUnwindSafe(approval_scenario(queue_config(Some(format!(
        "{base}/{database}"
    )))))
    .catch_unwind()
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&server)
    .await
    .expect("drop the queue database");
    server.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------
// The whole app on servers

/// The app with its tenant databases on the test PostgreSQL server (a deployment of the
/// test's own, new tenants placed with `isolation`), its cache and queue on Redis and its
/// attachments on S3: the widget and an attachment of one demo tenant never reach the
/// other, and the approval flow keeps them apart. Everything the test made is removed.
async fn on_servers(isolation: IsolationMode) {
    let prefix = tenancy_test::db::unique_prefix();
    let secret = Secret::new("eqms-test-secret-of-thirty-two-bytes").expect("a long secret");
    let storage = TestStorage::new(StorageBackend::S3, Layout::BucketPerTenant);
    let redis = Service::Redis.require();
    let config = Config {
        db: Some(
            DbConfig::postgres(Service::Postgres.require(), secret)
                .naming_prefix(&prefix)
                .pool(&tenancy_test::db::test_pool()),
        ),
        isolation,
        redis_url: Some(redis.clone()),
        cache_namespace: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
        storage: Some(storage.config().clone()),
        ..queue_config(Some(redis))
    };
    let (queue_url, queue_name) = (config.queue_url.clone(), config.queue_name.clone());
    let dir = DataDir::new("servers");
    let app = Eqms::open_with(&dir.0, config)
        .await
        .expect("the app starts on PostgreSQL, Redis and S3");
    let (acme, beta) = (id("acme"), id("beta"));
    let outcome = std::panic::AssertUnwindSafe(async {
        let client = client(&app);
        let title = canary("servers");
        let capa = create(&client, &acme, "jane", &title).await;
        let at_beta = client
            .call(&beta)
            .user("omar")
            .get(&format!("/api/capas/{}", capa.id))
            .await;
        assert_eq!(
            at_beta.status(),
            StatusCode::NOT_FOUND,
            "{}",
            at_beta.text()
        );
        let widget = client.call(&beta).user("omar").get("/api/activity").await;
        assert_eq!(widget.status(), StatusCode::OK);
        assert!(!widget.text().contains(&title), "{}", widget.text());

        let evidence = serde_json::json!({ "finding": canary("servers-file") });
        let path = format!("/api/capas/{}/attachments/evidence.json", capa.id);
        let put = client
            .call(&acme)
            .user("jane")
            .put_json(&path, &evidence)
            .await;
        assert_eq!(put.status(), StatusCode::CREATED, "{}", put.text());
        let got = client.call(&acme).user("jane").get(&path).await;
        assert_eq!(got.json::<serde_json::Value>(), evidence);
        let stolen = client.call(&beta).user("omar").get(&path).await;
        assert_eq!(stolen.status(), StatusCode::NOT_FOUND, "{}", stolen.text());
        assert!(
            !stolen
                .text()
                .contains(evidence["finding"].as_str().unwrap())
        );

        approval_flow(&app).await;
    })
    .catch_unwind()
    .await;
    for tenant in [&acme, &beta] {
        let _ = app.cache().platform().purge(app.operator(), tenant).await;
    }
    remove_queue_keys(queue_url, &queue_name).await;
    drop(app);
    tenancy_test::db::drop_deployment(&prefix).await;
    drop(storage);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_keeps_tenants_apart_on_postgres_databases_redis_and_s3() {
    on_servers(IsolationMode::Database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_keeps_tenants_apart_on_postgres_schemas_redis_and_s3() {
    on_servers(IsolationMode::Schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_keeps_tenants_apart_on_postgres_rows_redis_and_s3() {
    on_servers(IsolationMode::Row).await;
}
