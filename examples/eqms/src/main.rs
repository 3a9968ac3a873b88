//! Run with: cargo run -p example-eqms
//!
//! Starts the reference app on 127.0.0.1 (port `EQMS_PORT`, 3000 by default) with its data
//! under `EQMS_DATA_DIR` (a directory in the system's temporary directory by default),
//! seeds two demo tenants, and prints the URLs to try. Stop it with Ctrl-C. Everything is
//! embedded by default; `TENANCY_DB_URL` (with `TENANCY_DB_SECRET` and
//! `EQMS_TENANT_ISOLATION`) puts the tenant databases on PostgreSQL, `EQMS_REDIS_URL` the
//! cache on Redis, `EQMS_QUEUE_URL` the queue on Redis or PostgreSQL, `EQMS_S3_URL` the
//! attachments on S3 (see `example_eqms::Config`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use example_eqms::{
    Config, DEMO_QA_LEADS, DEMO_TENANTS, Eqms, OPERATOR, StartError, demo_password,
};

#[tokio::main]
async fn main() -> Result<(), StartError> {
    let port: u16 = match std::env::var("EQMS_PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("EQMS_PORT={port:?} is not a port number"))?,
        Err(_) => 3000,
    };
    let data_dir = std::env::var_os("EQMS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tenancy-eqms-demo"));
    let app = Eqms::open_with(&data_dir, Config::from_env()?).await?;
    app.logs().install_global()?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|error| format!("cannot listen on 127.0.0.1:{port} ({error}); set EQMS_PORT"))?;

    let (acme, _, jane, _, _) = DEMO_TENANTS[0];
    let (beta, _, omar, _, _) = DEMO_TENANTS[1];
    let base = format!("http://127.0.0.1:{port}");
    println!("eQMS listening on {base} (data in {})", data_dir.display());
    println!();
    println!("Open in a browser and sign in (demo passwords, for this demo only):");
    for (tenant, firm, user, name, _) in DEMO_TENANTS {
        println!("  http://{tenant}.localhost:{port}/   {firm}");
        println!("      {user} / {}   ({name})", demo_password(user));
        for (_, lead, lead_name) in DEMO_QA_LEADS.iter().filter(|(t, _, _)| *t == tenant) {
            println!(
                "      {lead} / {}   ({lead_name}, QA lead: the inspector's view)",
                demo_password(lead)
            );
        }
    }
    println!();
    let auth = format!("-u {jane}:{}", demo_password(jane));
    println!("Or the JSON API, with HTTP Basic credentials:");
    println!("  curl {auth} -H 'Host: {acme}.localhost:{port}' {base}/api/capas");
    println!(
        "  curl {auth} -H 'Host: {acme}.localhost:{port}' -H 'content-type: application/json' \\\n    \
         -d '{{\"reference\":\"CAPA-2026-101\",\"title\":\"Label mix-up on line 2\"}}' {base}/api/capas"
    );
    println!(
        "  curl {auth} -X PUT -H 'Host: {acme}.localhost:{port}' -H 'content-type: application/json' \\\n    \
         -d '{{\"status\":\"investigating\",\"reason\":\"root cause analysis\"}}' {base}/api/capas/<id>/status"
    );
    println!(
        "  curl {auth} -H 'Host: {beta}.localhost:{port}' {base}/api/capas   # 403: {jane} is not in {beta}"
    );
    println!(
        "  curl -u {omar}:{} -H 'Host: {beta}.localhost:{port}' {base}/api/capas/<id of an {acme} CAPA>   # 404",
        demo_password(omar)
    );
    println!(
        "  curl {auth} -H 'Host: {acme}.localhost:{port}' -o audit.tar {base}/api/audit/export   # tar xf audit.tar"
    );
    println!("  curl {base}/health");
    println!(
        "  curl -u {}:{} {base}/operator/tenants",
        OPERATOR.0,
        demo_password(OPERATOR.0)
    );
    println!("The README lists every route.");

    // The job worker runs next to the server and stops with it.
    let worker = app.jobs().start_worker();
    let served = axum::serve(listener, app.router(port))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    worker.stop().await?;
    served?;
    Ok(())
}
