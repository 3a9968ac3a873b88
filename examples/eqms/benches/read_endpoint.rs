//! Run with: cargo bench -p example-eqms --bench read_endpoint
//!
//! Requests per second of the app's read endpoint, `GET /api/capas/{id}`, through the whole
//! tenant stack (`TenantLayer` resolving the subdomain and admitting the tenant through the
//! catalog, the session cookie's authentication, `RequireMemberLayer`, the `TenantContext`
//! extractor, a tenant transaction from `TenantDb` and a typed row) next to the same query
//! and the same JSON answer from a handler holding one fixed SQLite connection to the same
//! file, with no tenancy at all. Both servers run in this process on loopback; Debian's
//! `wrk` (`apt-get install wrk`) loads them in turns, for a bounded time per round, and the
//! report is the median over rounds of tenant ÷ fixed, paired round by round.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use example_eqms::{Capa, Eqms};
use tenancy_core::{Actor, TenantContext};
use tenancy_db::rusqlite::{self, Connection};

const ROUNDS: usize = 5;
const SECONDS_PER_RUN: u32 = 3;
const CONNECTIONS: u32 = 8;

/// The baseline handler: the same statement on one fixed connection, no tenant anywhere.
async fn read_fixed(
    State(connection): State<Arc<Mutex<Connection>>>,
    Path(id): Path<String>,
) -> Result<Json<Capa>, axum::http::StatusCode> {
    let connection = connection.lock().expect("not poisoned");
    let capa = connection
        .query_row(
            "SELECT id, reference, title, description, status, created_by FROM capas WHERE id = ?1",
            [&id],
            |row| {
                let status: String = row.get(4)?;
                Ok(Capa {
                    id: row.get(0)?,
                    reference: row.get(1)?,
                    title: row.get(2)?,
                    description: row.get(3)?,
                    status: serde_json::from_value(serde_json::Value::String(status))
                        .expect("a known status"),
                    created_by: row.get(5)?,
                })
            },
        )
        .map_err(|_| axum::http::StatusCode::NOT_FOUND)?;
    Ok(Json(capa))
}

/// The middle variant: the tenant transaction and typed row, with a fixed context and none
/// of the HTTP layers, to split the cost between the layers and the database handle.
async fn read_in_fixed_context(
    State((app, ctx)): State<(Eqms, TenantContext)>,
    Path(id): Path<String>,
) -> Result<Json<Capa>, tenancy_db::Error> {
    let mut tx = app.db().transaction(&ctx).await?;
    let capa = tx
        .query_one_as(
            "SELECT id, reference, title, description, status, created_by FROM capas WHERE id = $1",
            &[id.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(capa))
}

/// Requests per second that wrk reached against `url` with `host` as the Host header and
/// `cookie` as the Cookie header.
fn wrk(url: &str, host: &str, cookie: &str) -> f64 {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS_PER_RUN}s"),
            "-H",
            &format!("Host: {host}"),
            "-H",
            &format!("Cookie: {cookie}"),
            url,
        ])
        .output()
        .expect("wrk runs: apt-get install -y wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

/// Signs jane in through the router (once: a session costs no password check per request)
/// and returns the session cookie.
async fn sign_in(
    router: &Router,
    host: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use tower::ServiceExt as _;
    let request = axum::http::Request::post("/login")
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!(
            "user=jane&password={}",
            example_eqms::demo_password("jane")
        )))?;
    let response = router.clone().oneshot(request).await?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .ok_or("signing in gave no session cookie")?
        .to_str()?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("eqms-bench-{}", std::process::id()));
    let result = runtime.block_on(async {
        let app = Eqms::open(&dir).await?;
        let ctx = TenantContext::new("acme".parse()?, Actor::service("bench")?);
        let mut tx = app.db().transaction(&ctx).await?;
        let capa: Capa = tx
            .query_one_as(
                "SELECT id, reference, title, description, status, created_by FROM capas",
                &[],
            )
            .await?;
        tx.commit().await?;

        let tenant_listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let tenant_port = tenant_listener.local_addr()?.port();
        let tenant_router = app.router(tenant_port);
        let cookie = sign_in(&tenant_router, &format!("acme.localhost:{tenant_port}")).await?;
        let fixed = Connection::open_with_flags(
            dir.join("tenancy_acme.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let fixed_router = Router::new()
            .route("/api/capas/{id}", get(read_fixed))
            .with_state(Arc::new(Mutex::new(fixed)));
        let fixed_listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let fixed_port = fixed_listener.local_addr()?.port();
        let tx_router = Router::new()
            .route("/api/capas/{id}", get(read_in_fixed_context))
            .with_state((app.clone(), ctx.clone()));
        let tx_listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let tx_port = tx_listener.local_addr()?.port();
        // The servers run on the runtime's workers; wrk runs on blocking threads below.
        #[allow(clippy::disallowed_methods)]
        let servers = [
            tokio::spawn(async move { axum::serve(tenant_listener, tenant_router).await }),
            tokio::spawn(async move { axum::serve(fixed_listener, fixed_router).await }),
            tokio::spawn(async move { axum::serve(tx_listener, tx_router).await }),
        ];

        let path = format!("/api/capas/{}", capa.id);
        let tenant_url = format!("http://127.0.0.1:{tenant_port}{path}");
        let fixed_url = format!("http://127.0.0.1:{fixed_port}{path}");
        let tenant_host = format!("acme.localhost:{tenant_port}");
        let fixed_host = format!("127.0.0.1:{fixed_port}");
        let tx_url = format!("http://127.0.0.1:{tx_port}{path}");
        let tx_host = format!("127.0.0.1:{tx_port}");
        println!(
            "GET {path}: wrk -t1 -c{CONNECTIONS} -d{SECONDS_PER_RUN}s, {ROUNDS} rounds in turns"
        );
        let (mut tenant_rps, mut fixed_rps, mut tx_rps) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ratios, mut tx_ratios) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let cookie = cookie.clone();
            let targets = [
                (tenant_url.clone(), tenant_host.clone()),
                (fixed_url.clone(), fixed_host.clone()),
                (tx_url.clone(), tx_host.clone()),
            ];
            // The servers run on the runtime's workers; wrk waits on a blocking thread. No
            // tenant scope is involved on this thread.
            #[allow(clippy::disallowed_methods)]
            let [tenant, fixed, in_tx] = tokio::task::spawn_blocking(move || {
                // Rotate which goes first, so none always follows a pause.
                let mut rps = [0.0; 3];
                for k in 0..3 {
                    let n = (round + k) % 3;
                    rps[n] = wrk(&targets[n].0, &targets[n].1, &cookie);
                }
                rps
            })
            .await?;
            println!(
                "round {round}: tenant stack {tenant:>7.0} req/s | tenant transaction alone {in_tx:>7.0} req/s | \
                 fixed connection {fixed:>7.0} req/s | stack / fixed {:.3}",
                tenant / fixed
            );
            tenant_rps.push(tenant);
            fixed_rps.push(fixed);
            tx_rps.push(in_tx);
            ratios.push(tenant / fixed);
            tx_ratios.push(in_tx / fixed);
        }
        println!(
            "median req/s: tenant stack {:.0}, tenant transaction alone {:.0}, fixed connection {:.0}",
            median(tenant_rps),
            median(tx_rps),
            median(fixed_rps),
        );
        println!(
            "paired ratios (median over rounds): tenant stack / fixed connection {:.3}; \
             tenant transaction alone / fixed connection {:.3}",
            median(ratios),
            median(tx_ratios),
        );
        for server in servers {
            server.abort();
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
