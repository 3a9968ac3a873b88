//! Run with: cargo bench -p example-eqms --bench end_to_end
//!
//! The cost of isolation end to end: requests per second and p99 latency of the app's read
//! endpoint (`GET /api/capas/{id}`) and its audited write (`PUT /api/capas/{id}/status`: a
//! status change with its audit entry, activity row and cache invalidation), through the
//! whole tenant stack (`Eqms::router`) and through the single-tenant build of the same
//! handlers (`Eqms::single_tenant_router`: no resolution, admission, authentication,
//! membership or log pipeline). On the embedded defaults (SQLite files, in-process cache,
//! SQLite queue) and on servers (PostgreSQL, a database per tenant; cache and queue on
//! Redis). On the embedded defaults the read is also served from one fixed SQLite
//! connection with no tenancy at all: the floor.
//!
//! Every server runs in this process on loopback; Debian's `wrk` (`apt-get install wrk`)
//! loads them in turns, for a bounded time per run, and the report gives the median over
//! rounds of each figure and of each ratio, paired round by round (the machine is shared
//! and noisy; a ratio of two runs made seconds apart is the figure to quote).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path as FsPath;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use example_eqms::{Capa, Config, Eqms};
use tenancy_core::{Actor, TenantContext};
use tenancy_db::rusqlite::{self, Connection};
use tenancy_db::{DbConfig, Secret};
use tenancy_log::tracing_subscriber::fmt::writer::BoxMakeWriter;
use tenancy_test::Service;

const ROUNDS: usize = 3;
const SECONDS_PER_RUN: u32 = 3;
const CONNECTIONS: u32 = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The floor for the read: the same statement on one fixed connection, no tenant anywhere.
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

/// One load run's figures.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p99_ms: f64,
}

/// What wrk reached against `url` with `host` as the Host header and `cookie` as the Cookie
/// header; `script` (a wrk Lua file) makes the request a write.
fn wrk(url: &str, host: &str, cookie: &str, script: Option<&FsPath>) -> Run {
    let mut command = Command::new("wrk");
    command.args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{SECONDS_PER_RUN}s"),
        "--latency",
        "-H",
        &format!("Host: {host}"),
        "-H",
        &format!("Cookie: {cookie}"),
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs: apt-get install -y wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99_ms = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .and_then(|value| milliseconds(value.trim()))
        .unwrap_or_else(|| panic!("no 99% latency in wrk's output:\n{text}"));
    Run { rps, p99_ms }
}

/// wrk's `1.23ms`, `456.00us` or `1.01s`, in milliseconds.
fn milliseconds(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        _ => None,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Serves `router` on a loopback port of its own; returns the port.
async fn serve(router: Router) -> Result<u16, BoxError> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let port = listener.local_addr()?.port();
    // The server runs until the process ends; no tenant scope is involved here.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

/// One variant under load: its name, URL base, Host header and session cookie (if it
/// takes one).
struct Target {
    name: &'static str,
    port: u16,
    host: String,
    cookie: String,
}

/// Signs jane in through `router` at `host`, once (a session costs no password check per
/// request), and returns the session cookie.
async fn sign_in(router: &Router, host: &str) -> Result<String, BoxError> {
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

/// Loads every target with every request kind, `ROUNDS` times in turns, and prints the
/// medians and the paired ratios to the first target (the whole stack) against the second
/// (the single-tenant build).
async fn measure(
    setup: &str,
    targets: Vec<Target>,
    requests: Vec<(&'static str, String, Option<std::path::PathBuf>, usize)>,
) -> Result<(), BoxError> {
    println!(
        "\n{setup}: wrk -t1 -c{CONNECTIONS} -d{SECONDS_PER_RUN}s --latency, {ROUNDS} rounds in turns"
    );
    let targets = Arc::new(targets);
    for (kind, path, script, served_by) in requests {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); served_by];
        let mut ratios = Vec::new();
        for round in 0..ROUNDS {
            let (targets, path, script) = (Arc::clone(&targets), path.clone(), script.clone());
            // wrk waits on a blocking thread while the servers run on the runtime's workers;
            // no tenant scope is involved on this thread.
            #[allow(clippy::disallowed_methods)]
            let round_runs = tokio::task::spawn_blocking(move || {
                let mut round_runs = vec![
                    Run {
                        rps: 0.0,
                        p99_ms: 0.0
                    };
                    served_by
                ];
                // Rotate which goes first, so none always follows a pause.
                for k in 0..served_by {
                    let n = (round + k) % served_by;
                    let target = &targets[n];
                    let url = format!("http://127.0.0.1:{}{path}", target.port);
                    round_runs[n] = wrk(&url, &target.host, &target.cookie, script.as_deref());
                }
                round_runs
            })
            .await?;
            ratios.push(round_runs[0].rps / round_runs[1].rps);
            for (n, run) in round_runs.into_iter().enumerate() {
                runs[n].push(run);
            }
        }
        for (n, runs) in runs.into_iter().enumerate() {
            println!(
                "  {kind:<14} {:<22} {:>7.0} req/s   p99 {:>6.2} ms",
                targets[n].name,
                median(runs.iter().map(|r| r.rps).collect()),
                median(runs.iter().map(|r| r.p99_ms).collect()),
            );
        }
        println!(
            "  {kind:<14} tenant stack / single-tenant build: {:.3} (paired, median of {ROUNDS})",
            median(ratios)
        );
    }
    Ok(())
}

/// The first CAPA of the demo tenant `acme`.
async fn first_capa(app: &Eqms, ctx: &TenantContext) -> Result<Capa, BoxError> {
    let mut tx = app.db().transaction(ctx).await?;
    let capa: Capa = tx
        .query_one_as(
            "SELECT id, reference, title, description, status, created_by FROM capas",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(capa)
}

/// The wrk script of the audited write: a status change with its reason.
fn write_script(dir: &FsPath) -> Result<std::path::PathBuf, BoxError> {
    let script = dir.join("status-change.lua");
    std::fs::write(
        &script,
        "wrk.method = \"PUT\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.body = '{\"status\":\"investigating\",\"reason\":\"benchmark\"}'\n",
    )?;
    Ok(script)
}

/// The app on `config` measured both ways (and, on the embedded defaults, the read's floor).
async fn run_setup(
    setup: &str,
    dir: &FsPath,
    config: Config,
    embedded: bool,
) -> Result<(), BoxError> {
    let app = Eqms::open_with(dir, config).await?;
    let ctx = TenantContext::new("acme".parse()?, Actor::user("jane", "Jane Doe")?);
    let capa = first_capa(&app, &ctx).await?;
    let stack = app.router(0);
    let cookie = sign_in(&stack, "acme.localhost").await?;
    let stack_port = serve(stack).await?;
    let single_port = serve(app.single_tenant_router(ctx.clone())).await?;
    let mut targets = vec![
        Target {
            name: "tenant stack",
            port: stack_port,
            host: "acme.localhost".to_owned(),
            cookie,
        },
        Target {
            name: "single-tenant build",
            port: single_port,
            host: "localhost".to_owned(),
            cookie: String::new(),
        },
    ];
    let read_path = format!("/api/capas/{}", capa.id);
    let mut read_served_by = 2;
    if embedded {
        let fixed = Connection::open_with_flags(
            dir.join("tenancy_acme.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let fixed_router = Router::new()
            .route("/api/capas/{id}", get(read_fixed))
            .with_state(Arc::new(Mutex::new(fixed)));
        targets.push(Target {
            name: "fixed connection",
            port: serve(fixed_router).await?,
            host: "localhost".to_owned(),
            cookie: String::new(),
        });
        read_served_by = 3;
    }
    let script = write_script(dir)?;
    measure(
        setup,
        targets,
        vec![
            ("read", read_path.clone(), None, read_served_by),
            (
                "audited write",
                format!("{read_path}/status"),
                Some(script),
                2,
            ),
        ],
    )
    .await?;
    for tenant in ["acme", "beta"] {
        let _ = app
            .cache()
            .platform()
            .purge(app.operator(), &tenant.parse()?)
            .await;
    }
    Ok(())
}

/// `config` with the ops stream formatted and redacted as always, then discarded rather
/// than printed among the figures (the per-tenant log files are still written).
fn quiet(config: Config) -> Config {
    Config {
        ops_writer: BoxMakeWriter::new(std::io::sink),
        ..config
    }
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("eqms-bench-{}", std::process::id()));
    let servers_dir = dir.join("servers");
    let prefix = tenancy_test::db::unique_prefix();
    let queue_name = format!("eqms-bench-{}", std::process::id());
    let result = runtime.block_on(async {
        run_setup(
            "embedded defaults (SQLite, in-process cache, SQLite queue)",
            &dir,
            quiet(Config::default()),
            true,
        )
        .await?;
        let redis = Service::Redis.require();
        let config = Config {
            db: Some(
                DbConfig::postgres(
                    Service::Postgres.require(),
                    Secret::new("eqms-bench-secret-of-thirty-two-bytes")?,
                )
                .naming_prefix(&prefix),
            ),
            redis_url: Some(redis.clone()),
            cache_namespace: format!("b{}", std::process::id()),
            queue_url: Some(redis),
            queue_name: queue_name.clone(),
            ..quiet(Config::default())
        };
        run_setup(
            "servers (PostgreSQL database per tenant, Redis cache and queue)",
            &servers_dir,
            config,
            false,
        )
        .await
    });
    runtime.block_on(async {
        tenancy_test::db::drop_deployment(&prefix).await;
        tenancy_test::redis::remove_keys(&Service::Redis.url(), &format!("*{queue_name}*")).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
