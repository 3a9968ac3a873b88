//! Connections to PostgreSQL are encrypted and checked as the URL's `sslmode` asks, never
//! fall back to plain text where TLS was required, and no password in a URL shows up in a
//! message or a `Debug` rendering, whatever the URL's shape.

mod common;

use std::path::Path;
use std::time::Duration;

use common::records;
use tenancy_core::IsolationMode;
use tenancy_db::{DbConfig, ErrorKind, Secret, ServerConfig, TenantDb};
use tenancy_test::db::{Backend, TEST_SECRET, TestDb, other_ca, postgres_ca};
use tenancy_test::operator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The test server through `host`, with `params` in the query string.
fn url(host: &str, params: &str) -> String {
    let plain: tenancy_db::tokio_postgres::Config =
        tenancy_test::Service::Postgres.require().parse().unwrap();
    let port = plain.get_ports().first().copied().unwrap_or(5432);
    let user = plain.get_user().unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/postgres?{params}")
}

fn tls(mode: &str, root: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", root.display())
}

fn with_admin_url(config: &mut DbConfig, admin_url: &str) {
    for server in &mut config.servers {
        if let ServerConfig::Postgres(server) = server {
            server.admin_url = admin_url.to_owned();
        }
    }
}

/// Prepares a deployment of its own on `admin_url`, then removes what it made; `Ok` if
/// the preparation worked.
async fn prepare_with(admin_url: &str) -> Result<(), tenancy_db::Error> {
    let prefix = tenancy_test::db::unique_prefix();
    let config =
        DbConfig::postgres(admin_url, Secret::new(TEST_SECRET).unwrap()).naming_prefix(&prefix);
    let db = TenantDb::new(config, records())?;
    let prepared = db.platform().prepare(&operator()).await;
    drop(db);
    tenancy_test::db::drop_deployment(&prefix).await;
    prepared
}

#[tokio::test]
async fn verify_full_connects_every_role_over_tls() {
    let admin_url = url("localhost", &tls("verify-full", &postgres_ca()));
    let fixture = TestDb::with_config(Backend::Postgres, records(), |config| {
        with_admin_url(config, &admin_url);
    })
    .await;
    for isolation in [
        IsolationMode::Database,
        IsolationMode::Schema,
        IsolationMode::Row,
    ] {
        let ctx = fixture.tenant(&format!("tls-{isolation}"), isolation).await;
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let pid: i32 = tx
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // Read by the superuser: a schema tenant's role may not see its own session's
        // details, which belong to the application role.
        let admin = fixture.superuser("postgres").await;
        let row = admin
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(row.get::<_, bool>("ssl"), "{isolation}");
        assert!(
            row.get::<_, String>("version").starts_with("TLSv1."),
            "{isolation}"
        );
    }
}

#[tokio::test]
async fn a_server_that_cannot_be_verified_is_refused() {
    // Signed by an authority the client does not trust.
    let error = prepare_with(&url("localhost", &tls("verify-full", &other_ca())))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DatabaseUnavailable, "{error}");
    assert!(
        tenancy_test::error_chain(&error).contains("certificate"),
        "{}",
        tenancy_test::error_chain(&error)
    );

    // Trusted, but made for `localhost`: verify-full checks the name, verify-ca does not.
    let error = prepare_with(&url("127.0.0.1", &tls("verify-full", &postgres_ca())))
        .await
        .unwrap_err();
    assert!(
        tenancy_test::error_chain(&error).contains("certificate"),
        "{}",
        tenancy_test::error_chain(&error)
    );
    prepare_with(&url("127.0.0.1", &tls("verify-ca", &postgres_ca())))
        .await
        .expect("verify-ca does not check the name");
}

/// A server that answers the TLS request with "no", then records whether the client went
/// on in plain text (sent a startup message).
async fn server_without_tls() -> (String, tokio::task::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "a fake server serves no tenant")]
    let seen = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest first");
        socket.write_all(b"N").await.unwrap();
        let mut next = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), socket.read_exact(&mut next)).await,
            Ok(Ok(_))
        )
    });
    (format!("127.0.0.1:{}", address.port()), seen)
}

#[tokio::test]
async fn require_never_falls_back_to_plain_text() {
    let (address, went_on) = server_without_tls().await;
    let required = format!("postgres://postgres@{address}/postgres?sslmode=require");
    let error = prepare_with(&required).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DatabaseUnavailable, "{error}");
    assert!(
        !went_on.await.unwrap(),
        "a startup message went out in plain text"
    );

    let (address, went_on) = server_without_tls().await;
    let preferred = format!("postgres://postgres@{address}/postgres?sslmode=prefer");
    assert!(prepare_with(&preferred).await.is_err());
    assert!(
        went_on.await.unwrap(),
        "prefer goes on in plain text, as libpq"
    );
}

#[tokio::test]
async fn passwords_in_urls_never_show() {
    let password = "pa/ss@w:rd?1";
    let encoded = "pa%2Fss%40w%3Ard%3F1";
    for admin_url in [
        format!("postgres://admin:{encoded}@127.0.0.1:1/postgres"),
        format!("postgres://admin@127.0.0.1:1/postgres?password={encoded}"),
        format!("host=127.0.0.1 port=1 user=admin password='{password}'"),
        format!("postgres://admin:{encoded}@127.0.0.1:1/postgres?sslmode=bogus"),
    ] {
        let config = DbConfig::postgres(&admin_url, Secret::new(TEST_SECRET).unwrap());
        assert!(!format!("{config:?}").contains("pa/ss"), "{config:?}");
        let shown = match TenantDb::new(config, records()) {
            Err(error) => format!("{} {error:?}", tenancy_test::error_chain(&error)),
            Ok(db) => {
                let error = db.platform().prepare(&operator()).await.unwrap_err();
                format!("{} {error:?} {db:?}", tenancy_test::error_chain(&error))
            }
        };
        assert!(shown.contains("admin"), "the user is shown: {shown}");
        for secret in [password, encoded, "pa/ss", "pa%2F"] {
            assert!(!shown.contains(secret), "{admin_url}: {shown}");
        }
    }
}
