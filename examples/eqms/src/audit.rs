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
use serde::Deserialize;
use tenancy_audit::{AuditTrail, Entry, Event, IsolationEvidence, Report, Scope, verify_trail};
use tenancy_core::TenantContext;
use tenancy_db::Transaction;

use crate::{ApiError, Capa, Eqms};

/// The record type CAPAs are recorded under.
pub const RECORD_TYPE: &str = "capa";

/// CAPAs are regulated: every change but their creation needs a reason.
pub(crate) fn trail() -> AuditTrail {
    AuditTrail::new().regulated(RECORD_TYPE)
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

/// Records a status change of a CAPA from `before` to `after` in `tx`, with its reason.
pub(crate) async fn record_status_change(
    tx: &mut Transaction,
    ctx: &TenantContext,
    before: &Capa,
    after: &Capa,
    reason: &str,
) -> Result<(), ApiError> {
    let event = Event::status_change(RECORD_TYPE, &after.id)
        .old_value(value(before))
        .new_value(value(after))
        .reason(reason);
    trail().record(tx, ctx, event).await?;
    Ok(())
}

/// The CAPA's entries, oldest first; `RowNotFound` (404) when the tenant has no such CAPA.
pub(crate) async fn entries(
    app: &Eqms,
    ctx: &TenantContext,
    id: &str,
) -> Result<Vec<Entry>, ApiError> {
    let mut tx = app.db.transaction(ctx).await?;
    tx.query_one("SELECT id FROM capas WHERE id = $1", &[id.into()])
        .await?;
    let entries = trail().history(&mut tx, RECORD_TYPE, id).await?;
    tx.commit().await?;
    Ok(entries)
}

/// `GET /api/capas/{id}/history`: the CAPA's entries, oldest first; 404 when the tenant
/// has no such CAPA.
pub(crate) async fn history(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    Ok(Json(entries(&app, &ctx, &id).await?))
}

/// How many of the trail's newest entries the inspector's view lists.
pub const INSPECTION_LIMIT: i64 = 500;

/// One line of the tenant's trail as the inspector's view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrailLine {
    /// Its place in the chain.
    pub seq: i64,
    /// When, UTC.
    pub recorded_at: String,
    /// Who: their name at the time.
    pub actor_name: String,
    /// What (`create`, `status_change`, `signature`, `export`, ...).
    pub action: String,
    /// Which kind of record (`capa`, ...).
    pub record_type: String,
    /// Which record.
    pub record_id: String,
    /// Why, for a change.
    pub reason: Option<String>,
    /// What a signature means.
    pub signature_meaning: Option<String>,
}

/// What the inspector's view shows: the tenant's trail, newest first, and the verification
/// of its live chain from the first entry to the head (each entry's hash, each link, no
/// gap), by tenancy-audit's verifier.
pub(crate) async fn inspection(
    app: &Eqms,
    ctx: &TenantContext,
) -> Result<(Vec<TrailLine>, Report), ApiError> {
    let mut tx = app.db.transaction(ctx).await?;
    let report = verify_trail(&mut tx).await?;
    let lines = tx
        .query_as(
            "SELECT seq, recorded_at, actor_name, action, record_type, record_id, reason, \
             signature_meaning \
             FROM tenancy_audit ORDER BY seq DESC LIMIT $1",
            &[INSPECTION_LIMIT.into()],
        )
        .await?;
    tx.commit().await?;
    Ok((lines, report))
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
