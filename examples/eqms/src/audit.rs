//! The audit trail of CAPAs (tenancy-audit): every change to a CAPA is recorded in the
//! tenant's own trail, in the same transaction as the change; a record's history and the
//! tenant's inspection bundle are served as endpoints.
//!
//! - `GET /api/capas/{id}/history`: the record's entries, oldest first, as JSON (the
//!   entries exactly as stored and hashed; `old_value` and `new_value` are JSON texts).
//! - `GET /api/audit/export`: the tenant's whole trail as an inspection bundle, one tar
//!   file (`application/x-tar`) holding the bundle's directory (`manifest.json`,
//!   `entries.jsonl`, `entries.csv`, `timeline.html`, `SHA256SUMS`). A tar rather than a
//!   JSON document of the files: an inspector unpacks it with any `tar` and runs the
//!   verifier (`tenancy-audit-verify <dir>`) on the files byte for byte as they were
//!   written and summed, with nothing of ours in between. The export is recorded in the
//!   trail.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tenancy_audit::{AuditTrail, Entry, Event, IsolationEvidence, Scope};
use tenancy_core::TenantContext;
use tenancy_db::Transaction;

use crate::{ApiError, Capa, Eqms};

/// The record type CAPAs are recorded under.
pub const RECORD_TYPE: &str = "capa";

fn trail() -> AuditTrail {
    AuditTrail::new()
}

fn value(capa: &Capa) -> serde_json::Value {
    serde_json::to_value(capa).expect("a CAPA serializes to JSON")
}

/// Records the creation of `capa` in `tx`. Call it before the change's own statements
/// fail or commit: the entry lives or dies with the transaction.
pub(crate) async fn record_create(
    tx: &mut Transaction,
    ctx: &TenantContext,
    capa: &Capa,
) -> Result<(), ApiError> {
    let event = Event::create(RECORD_TYPE, &capa.id).new_value(value(capa));
    trail().record(tx, ctx, event).await?;
    Ok(())
}

/// Records a status change of a CAPA from `before` to `after` in `tx`.
pub(crate) async fn record_status_change(
    tx: &mut Transaction,
    ctx: &TenantContext,
    before: &Capa,
    after: &Capa,
) -> Result<(), ApiError> {
    let event = Event::status_change(RECORD_TYPE, &after.id)
        .old_value(value(before))
        .new_value(value(after));
    trail().record(tx, ctx, event).await?;
    Ok(())
}

/// `GET /api/capas/{id}/history`: the CAPA's entries, oldest first; 404 when the tenant
/// has no such CAPA.
pub(crate) async fn history(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    let mut tx = app.db.transaction(&ctx).await?;
    tx.query_one("SELECT id FROM capas WHERE id = $1", &[id.as_str().into()])
        .await?;
    let entries = trail().history(&mut tx, RECORD_TYPE, &id).await?;
    tx.commit().await?;
    Ok(Json(entries))
}

/// Removes a directory or file when dropped: an export's work files never outlive the
/// request, whether it succeeds or not.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `GET /api/audit/export`: the tenant's inspection bundle as one tar file, streamed from
/// a work file under the data directory.
pub(crate) async fn export(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Response, ApiError> {
    let isolation = IsolationEvidence::collect(&app.db, &app.operator, ctx.tenant()).await?;
    let name = format!("audit-{}-{}", ctx.tenant(), uuid::Uuid::new_v4().simple());
    let dir = Scratch(app.exports.join(&name));
    let tar_file = Scratch(app.exports.join(format!("{name}.tar")));
    let mut tx = app.db.transaction(&ctx).await?;
    let manifest = trail()
        .export(&mut tx, &ctx, &Scope::All, Some(isolation), &dir.0)
        .await?;
    tx.commit().await?;

    let (from, to) = (dir.0.clone(), tar_file.0.clone());
    let bundle = format!("audit-{}", ctx.tenant());
    let scope = ctx.clone();
    #[expect(
        clippy::disallowed_methods,
        reason = "the closure enters the request's tenant scope itself"
    )]
    let packing = tokio::task::spawn_blocking(move || scope.in_scope(|| pack(&from, &bundle, &to)));
    packing
        .await
        .map_err(|error| ApiError::Export(std::io::Error::other(error)))?
        .map_err(ApiError::Export)?;
    drop(dir);
    let file = tokio::fs::File::open(&tar_file.0)
        .await
        .map_err(ApiError::Export)?;
    // The open file stays readable after its name is gone (Linux); nothing is left behind
    // if the client goes away mid-download.
    drop(tar_file);

    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    let disposition = format!(
        "attachment; filename=\"audit-{}-{}-{}.tar\"",
        ctx.tenant(),
        manifest.first_seq.unwrap_or(0),
        manifest.last_seq.unwrap_or(0)
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Writes the bundle directory `from` into the tar file `to`, under `bundle/`.
fn pack(from: &Path, bundle: &str, to: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(to)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(bundle, from)?;
    builder
        .into_inner()?
        .into_inner()
        .map_err(|error| error.into_error())?;
    Ok(())
}
