//! Electronic signatures (21 CFR 11.50, 11.70, 11.200): a CAPA awaiting approval is closed
//! by signing it.
//!
//! - The signer re-enters their password, and at the first signing of a session their user
//!   id too (two distinct components, 11.200(a)(1)(i)); a signature with a wrong user id or
//!   password is refused with 401 and nothing is written.
//! - They pick the meaning: review, approval or responsibility (11.50(a)(3)).
//! - The signature row holds the signer's id and printed name, the UTC time (the audit
//!   entry's, from the database clock) and the meaning, and a binding: SHA-256 over the
//!   signature's fields, the CAPA's id and the hash of the CAPA's content as signed. A row
//!   copied or moved onto another CAPA, or a CAPA changed after signing, fails
//!   [`verify`] (11.70).
//! - The close (a status change, with its reason) and the signature are both entries of
//!   the tenant's audit trail, written in the same transaction as the row.
//!
//! `POST /api/capas/{id}/signatures` `{"meaning","password","user","reason"}` signs;
//! `GET /api/capas/{id}/signatures` lists the CAPA's signatures, each with its verification.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy_audit::Event;
use tenancy_core::TenantContext;
use tenancy_db::Migration;

use crate::accounts::SessionToken;
use crate::audit::{RECORD_TYPE, record_status_change, trail};
use crate::{ApiError, CAPA_COLUMNS, Capa, CapaStatus, Eqms, activity};

/// The signatures table, as migration `version`.
pub(crate) fn migration(version: u32) -> Migration {
    // `tenant_column` and the key's extra column are the row-level tenants' `tenant_id`.
    let table = |tenant_column: &str, key: &str| {
        format!(
            "CREATE TABLE signatures (
                {tenant_column}
                id text NOT NULL,
                capa_id text NOT NULL,
                signer_id text NOT NULL,
                signer_name text NOT NULL,
                signed_at text NOT NULL,
                meaning text NOT NULL CHECK (meaning IN ('review', 'approval', 'responsibility')),
                content_hash text NOT NULL,
                binding text NOT NULL,
                PRIMARY KEY ({key})
            );
            CREATE INDEX signatures_by_capa ON signatures (capa_id)"
        )
    };
    Migration::new(version, "electronic signatures")
        .sqlite(&table("", "id"))
        .postgres(&table("", "id"))
        .row_level(&crate::fenced(
            &table("tenant_id text NOT NULL,", "tenant_id, id"),
            &["signatures"],
        ))
}

/// What a signature means (21 CFR 11.50(a)(3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Meaning {
    /// The signer reviewed the record.
    Review,
    /// The signer approves the record.
    Approval,
    /// The signer takes responsibility for the record.
    Responsibility,
}

impl Meaning {
    /// Every meaning, as offered.
    pub const ALL: [Meaning; 3] = [Meaning::Review, Meaning::Approval, Meaning::Responsibility];

    /// The stored name: `review`, `approval`, `responsibility`.
    pub fn as_str(self) -> &'static str {
        match self {
            Meaning::Review => "review",
            Meaning::Approval => "approval",
            Meaning::Responsibility => "responsibility",
        }
    }

    /// How the signed record shows it: `Reviewed by`, `Approved by`, `Responsibility of`.
    pub fn statement(self) -> &'static str {
        match self {
            Meaning::Review => "Reviewed by",
            Meaning::Approval => "Approved by",
            Meaning::Responsibility => "Responsibility of",
        }
    }

    /// The meaning of a stored name.
    pub fn parse(name: &str) -> Option<Meaning> {
        Meaning::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// What signing takes.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignRequest {
    /// What the signature means.
    pub meaning: Meaning,
    /// The signer's password, entered again.
    pub password: String,
    /// The signer's user id: required at the first signing of a session (and always
    /// without a session).
    #[serde(default)]
    pub user: Option<String>,
    /// Why the CAPA is closed (recorded with the close).
    #[serde(default)]
    pub reason: String,
}

impl std::fmt::Debug for SignRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignRequest")
            .field("meaning", &self.meaning)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A signature, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Its own id.
    pub id: String,
    /// The signed CAPA.
    pub capa_id: String,
    /// The signer's user id.
    pub signer_id: String,
    /// The signer's printed name.
    pub signer_name: String,
    /// When, UTC (RFC 3339), by the database's clock: the time of its audit entry.
    pub signed_at: String,
    /// `review`, `approval` or `responsibility`.
    pub meaning: String,
    /// SHA-256 of the CAPA's content as signed (its JSON).
    pub content_hash: String,
    /// SHA-256 over the fields above: what ties this signature to this record.
    pub binding: String,
}

/// A signature and whether it still verifies against its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedSignature {
    /// The signature.
    #[serde(flatten)]
    pub signature: Signature,
    /// Whether it is bound to this CAPA, as it is now.
    pub verified: bool,
}

const SIGNATURE_COLUMNS: &str =
    "id, capa_id, signer_id, signer_name, signed_at, meaning, content_hash, binding";

/// SHA-256 of the CAPA's JSON, lowercase hex.
pub fn content_hash(capa: &Capa) -> String {
    let json = serde_json::to_vec(capa).expect("a CAPA serializes to JSON");
    tenancy_core::hex(&Sha256::digest(json))
}

/// The binding of `signature`: SHA-256 of a versioned tag and each field but the binding,
/// each as `<length>:<bytes>,` so that no two field lists encode alike.
pub fn binding(signature: &Signature) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"eqms-signature/v1\n");
    for field in [
        &signature.id,
        &signature.capa_id,
        &signature.signer_id,
        &signature.signer_name,
        &signature.signed_at,
        &signature.meaning,
        &signature.content_hash,
    ] {
        hasher.update(format!("{}:", field.len()));
        hasher.update(field);
        hasher.update(b",");
    }
    tenancy_core::hex(&hasher.finalize())
}

/// Whether `signature` is bound to `capa` as it is now: its record id, its content hash
/// and its binding all hold.
pub fn verify(signature: &Signature, capa: &Capa) -> bool {
    signature.capa_id == capa.id
        && signature.content_hash == content_hash(capa)
        && signature.binding == binding(signature)
}

/// Signs the CAPA `id` as the actor of `ctx`, which closes it. `session` is the request's
/// session, if it came with one.
pub(crate) async fn sign(
    app: &Eqms,
    ctx: &TenantContext,
    session: Option<&SessionToken>,
    id: &str,
    request: &SignRequest,
) -> Result<(Capa, Signature), ApiError> {
    let reason = request.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::ReasonRequired);
    }
    let signer = ctx.actor();
    let first_of_session = session.is_none_or(|token| !app.sessions.has_signed(token));
    match request.user.as_deref().map(str::trim) {
        Some(user) if user != signer.id() => return Err(ApiError::SignatureRefused),
        None | Some("") if first_of_session => return Err(ApiError::SignerIdRequired),
        _ => {}
    }
    if app
        .directory
        .check_password(signer.id(), &request.password)
        .is_none()
    {
        return Err(ApiError::SignatureRefused);
    }

    let mut tx = app.db.transaction(ctx).await?;
    let before: Capa = tx
        .query_one_as(
            &format!("SELECT {CAPA_COLUMNS} FROM capas WHERE id = $1"),
            &[id.into()],
        )
        .await?;
    if before.status != CapaStatus::Approval {
        return Err(ApiError::NotAwaitingApproval(before.status));
    }
    let closed = Capa {
        status: CapaStatus::Closed,
        ..before.clone()
    };
    record_status_change(&mut tx, ctx, &before, &closed, reason).await?;
    tx.execute(
        "UPDATE capas SET status = 'closed' WHERE id = $1",
        &[id.into()],
    )
    .await?;
    let mut signature = Signature {
        id: uuid::Uuid::new_v4().to_string(),
        capa_id: closed.id.clone(),
        signer_id: signer.id().to_owned(),
        signer_name: signer.display_name().to_owned(),
        signed_at: String::new(),
        meaning: request.meaning.as_str().to_owned(),
        content_hash: content_hash(&closed),
        binding: String::new(),
    };
    let event = Event::signature(RECORD_TYPE, id, request.meaning.statement()).new_value(
        serde_json::json!({
            "signature_id": signature.id,
            "meaning": signature.meaning,
            "content_hash": signature.content_hash,
        }),
    );
    // The entry's time, from the database's clock, is the signature's time.
    signature.signed_at = trail().record(&mut tx, ctx, event).await?.recorded_at;
    signature.binding = binding(&signature);
    tx.execute(
        &format!(
            "INSERT INTO signatures ({SIGNATURE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        &[
            signature.id.as_str().into(),
            signature.capa_id.as_str().into(),
            signature.signer_id.as_str().into(),
            signature.signer_name.as_str().into(),
            signature.signed_at.as_str().into(),
            signature.meaning.as_str().into(),
            signature.content_hash.as_str().into(),
            signature.binding.as_str().into(),
        ],
    )
    .await?;
    activity::record(&mut tx, ctx, &closed, "closed").await?;
    tx.commit().await?;
    if let Some(token) = session {
        app.sessions.signed(token);
    }
    tracing::info!(
        capa.id = %closed.id,
        capa.title = %closed.title,
        meaning = signature.meaning.as_str(),
        "CAPA signed and closed"
    );
    activity::invalidate(app, ctx).await;
    Ok((closed, signature))
}

/// The CAPA's signatures, oldest first, each verified against the CAPA as it is now.
pub(crate) async fn signatures_of(
    app: &Eqms,
    ctx: &TenantContext,
    capa: &Capa,
) -> Result<Vec<CheckedSignature>, ApiError> {
    let mut tx = app.db.transaction(ctx).await?;
    let rows: Vec<Signature> = tx
        .query_as(
            &format!(
                "SELECT {SIGNATURE_COLUMNS} FROM signatures WHERE capa_id = $1 ORDER BY signed_at"
            ),
            &[capa.id.as_str().into()],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|signature| CheckedSignature {
            verified: verify(&signature, capa),
            signature,
        })
        .collect())
}

/// `POST /api/capas/{id}/signatures`: signs (and so closes) the CAPA; 201 with the
/// signature.
pub(crate) async fn sign_json(
    State(app): State<Eqms>,
    ctx: TenantContext,
    session: Option<Extension<SessionToken>>,
    UrlPath(id): UrlPath<String>,
    Json(request): Json<SignRequest>,
) -> Result<(StatusCode, Json<Signature>), ApiError> {
    let session = session.map(|Extension(token)| token);
    let (_, signature) = sign(&app, &ctx, session.as_ref(), &id, &request).await?;
    Ok((StatusCode::CREATED, Json(signature)))
}

/// `GET /api/capas/{id}/signatures`: the CAPA's signatures, each with `verified`.
pub(crate) async fn list(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<CheckedSignature>>, ApiError> {
    let capa = crate::capa(&app, &ctx, &id).await?;
    Ok(Json(signatures_of(&app, &ctx, &capa).await?))
}
