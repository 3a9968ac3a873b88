//! Signed checkpoints: the chain head, signed with the platform's Ed25519 key and stored in
//! the tenant's bucket, outside the database. Someone with database access who rewrites
//! the whole chain consistently (triggers dropped, every hash recomputed) leaves a chain
//! that verifies on its own; it no longer has the hash the checkpoint signed.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use tenancy_core::TenantContext;
use tenancy_db::Transaction;
use tenancy_storage::{ListRequest, PutOptions, TenantBucket};

use crate::entry::{Action, Event};
use crate::error::{Error, ErrorKind};
use crate::schema::COLUMNS;
use crate::trail::{AuditTrail, entry_from_row, head};
use crate::verify::{Problem, Report, verify_trail};
use tenancy_core::hex;

/// The format name of a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "tenancy-audit-checkpoint/1";

/// Where checkpoints are kept in the tenant's bucket: `audit/checkpoints/<seq, 20 digits>.json`.
pub const CHECKPOINT_PREFIX: &str = "audit/checkpoints/";

/// The platform's signing key. `Debug` never prints it.
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from the 32-byte Ed25519 secret key `seed`, named `key_id` in what it signs
    /// (so a verifier can pick the right public key after a rotation).
    pub fn from_seed(seed: &[u8; 32], key_id: &str) -> Self {
        CheckpointSigner {
            key: SigningKey::from_bytes(seed),
            key_id: key_id.to_owned(),
        }
    }

    /// The public key an inspector verifies with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The tenant.
    pub tenant: String,
    /// The head's sequence number.
    pub seq: u64,
    /// The head's hash.
    pub hash: String,
    /// When it was signed, by the database's clock.
    pub signed_at: String,
    /// Which platform key signed it.
    pub key_id: String,
    /// The Ed25519 signature of [`Checkpoint::signed_bytes`], lowercase hex.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: `tenancy-audit-checkpoint/v1\n`, then the tenant, seq, hash,
    /// signed_at and key_id, each as `<length>:<bytes>,` like the entries' encoding.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"tenancy-audit-checkpoint/v1\n".to_vec();
        for field in [
            self.tenant.as_str(),
            &self.seq.to_string(),
            &self.hash,
            &self.signed_at,
            &self.key_id,
        ] {
            out.extend_from_slice(format!("{}:", field.len()).as_bytes());
            out.extend_from_slice(field.as_bytes());
            out.push(b',');
        }
        out
    }

    /// Whether the signature is `key`'s over this checkpoint.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        let Some(bytes) = unhex::<64>(&self.signature) else {
            return false;
        };
        key.verify(&self.signed_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    }

    /// The object key of this checkpoint in the tenant's bucket.
    pub fn object_key(&self) -> String {
        format!("{CHECKPOINT_PREFIX}{:020}.json", self.seq)
    }
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0; N];
    for (n, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[n] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

fn storage_error(what: &str, error: tenancy_storage::Error) -> Error {
    Error::with_source(ErrorKind::Io, what.to_owned(), error)
}

impl AuditTrail {
    /// Signs the chain head of `tx`'s tenant with `signer`, stores the checkpoint in the
    /// tenant's `bucket`, and records it in the trail (in `tx`). Call it periodically
    /// (a scheduled job per tenant) and at each export.
    pub async fn checkpoint(
        &self,
        tx: &mut Transaction,
        ctx: &TenantContext,
        signer: &CheckpointSigner,
        bucket: &TenantBucket,
    ) -> Result<Checkpoint, Error> {
        if tx.tenant() != ctx.tenant() || bucket.tenant() != ctx.tenant() {
            return Err(Error::new(
                ErrorKind::InvalidEvent,
                "the transaction, the bucket and the context must be of one tenant",
            ));
        }
        let (seq, hash) = head(tx).await?;
        let now = crate::schema::now(tx.postgres().is_ok());
        let signed_at: String = tx
            .query_one(&format!("SELECT {now}"), &[])
            .await?
            .try_get(0)?;
        let mut checkpoint = Checkpoint {
            format: CHECKPOINT_FORMAT.to_owned(),
            tenant: ctx.tenant().as_str().to_owned(),
            seq,
            hash,
            signed_at,
            key_id: signer.key_id.clone(),
            signature: String::new(),
        };
        checkpoint.signature = hex(&signer.key.sign(&checkpoint.signed_bytes()).to_bytes());
        let body = serde_json::to_vec_pretty(&checkpoint)
            .map_err(|error| Error::with_source(ErrorKind::Io, "encoding the checkpoint", error))?;
        bucket
            .put(
                &checkpoint.object_key(),
                body,
                &PutOptions::new().content_type("application/json"),
            )
            .await
            .map_err(|error| {
                storage_error("storing the checkpoint in the tenant's bucket", error)
            })?;
        self.record(
            tx,
            ctx,
            Event::new(Action::Checkpoint, "audit_trail", ctx.tenant().as_str()).new_value(
                serde_json::json!({
                    "seq": checkpoint.seq,
                    "hash": checkpoint.hash,
                    "key_id": checkpoint.key_id,
                    "object": checkpoint.object_key(),
                }),
            ),
        )
        .await?;
        Ok(checkpoint)
    }
}

/// The checkpoint with the highest number in the tenant's bucket, if any.
pub async fn latest_checkpoint(bucket: &TenantBucket) -> Result<Option<Checkpoint>, Error> {
    let mut request = ListRequest::prefix(CHECKPOINT_PREFIX);
    let mut latest: Option<String> = None;
    loop {
        let page = bucket
            .list(&request)
            .await
            .map_err(|error| storage_error("listing the tenant's checkpoints", error))?;
        for object in &page.objects {
            if latest.as_ref().is_none_or(|key| &object.key > key) {
                latest = Some(object.key.clone());
            }
        }
        match page.next {
            Some(token) => request = request.after(token),
            None => break,
        }
    }
    let Some(key) = latest else {
        return Ok(None);
    };
    let bytes = bucket
        .get_bytes(&key)
        .await
        .map_err(|error| storage_error("reading the tenant's checkpoint", error))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        Error::with_source(
            ErrorKind::Corrupt,
            "the tenant's latest checkpoint is not a checkpoint of this format",
            error,
        )
    })
}

/// Verifies the live trail of `tx`'s tenant ([`verify_trail`]), then its latest checkpoint
/// in `bucket`: signed by `key`, for this tenant, and the trail's entry at its number has
/// the hash it signed. A chain rewritten whole is reported at the checkpoint's number.
pub async fn verify_trail_with_checkpoint(
    tx: &mut Transaction,
    bucket: &TenantBucket,
    key: &VerifyingKey,
) -> Result<Report, Error> {
    let mut report = verify_trail(tx).await?;
    if report.problem.is_some() {
        return Ok(report);
    }
    let Some(checkpoint) = latest_checkpoint(bucket).await? else {
        return Ok(report);
    };
    let fail = |seq: Option<u64>, what: &str| Problem {
        seq,
        what: what.to_owned(),
    };
    if checkpoint.tenant != tx.tenant().as_str() || !checkpoint.verify_signature(key) {
        report.problem = Some(fail(
            None,
            "the latest checkpoint is not signed by the platform key for this tenant",
        ));
        return Ok(report);
    }
    if checkpoint.seq == 0 {
        return Ok(report);
    }
    let seq = i64::try_from(checkpoint.seq).unwrap_or(i64::MAX);
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenancy_audit WHERE seq = $1"),
            &[seq.into()],
        )
        .await?;
    let matches = match row {
        Some(row) => entry_from_row(&row)?.hash == checkpoint.hash,
        None => false,
    };
    if !matches {
        report.problem = Some(fail(
            Some(checkpoint.seq),
            "not the entry the signed checkpoint names: the chain was rewritten",
        ));
    }
    Ok(report)
}
