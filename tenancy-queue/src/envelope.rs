//! The wire form of a job: a [`Tenanted`] envelope around the job's JSON text, optionally
//! signed, and [`RawJob`], the type the backend hands the worker before anything is trusted.
//!
//! ```json
//! {"tenant":"acme","actor":{"kind":"user","id":"u-7","display_name":"Jane Doe"},
//!  "correlation_id":"4b1f…","body":{"job":"{\"capa\":42}","signature":"9c0e…"}}
//! ```
//!
//! The job travels as JSON *text* inside the envelope so that the signature covers the
//! exact bytes that were pushed, whatever a backend does to JSON it stores.

use std::fmt;
use tenancy_core::hex;

use hmac::{Hmac, KeyInit, Mac};
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tenancy_core::{TenantContext, TenantId, Tenanted};

use crate::error::{Error, ErrorKind, Rejection, RejectionKind};

/// A job as the backend stores it and hands it to the worker: not yet checked.
///
/// The worker's apalis `Args` type. It decodes from any JSON value, keeping every field of
/// an object in order (duplicates included), so that a hostile or damaged payload reaches
/// [`RetenantLayer`](crate::RetenantLayer) and is rejected there, killed and kept in the
/// dead set, instead of failing inside the backend. It cannot be built by hand: jobs are
/// pushed through [`TenantQueue`](crate::TenantQueue). `Debug` does not print the payload.
#[derive(Clone)]
pub struct RawJob(Repr);

#[derive(Clone)]
enum Repr {
    Object(Vec<(String, Value)>),
    NotAnObject,
}

impl fmt::Debug for RawJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Object(fields) => f
                .debug_struct("RawJob")
                .field("fields", &fields.len())
                .finish_non_exhaustive(),
            Repr::NotAnObject => f.write_str("RawJob(not an object)"),
        }
    }
}

impl Serialize for RawJob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Repr::NotAnObject => serializer.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for RawJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawJobVisitor)
    }
}

struct RawJobVisitor;

impl<'de> Visitor<'de> for RawJobVisitor {
    type Value = RawJob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawJob, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            fields.push((key, value));
        }
        Ok(RawJob(Repr::Object(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawJob, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawJob, E> {
        Ok(RawJob(Repr::NotAnObject))
    }
}

/// The body of the envelope: the job's JSON text and, with signing on, its signature.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobBody {
    job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// A key for signing envelopes (HMAC-SHA256): the producer signs the tenant, actor,
/// correlation id and job, and the worker rejects a job whose signature does not match.
///
/// Give producers and workers of a queue the same key, from a secret store. `Debug` does
/// not print it.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl SigningKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from at least 32 bytes of secret material.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < Self::MIN_LEN {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!(
                    "the signing key has {} bytes: use at least {} bytes of random secret",
                    secret.len(),
                    Self::MIN_LEN
                ),
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Ok(SigningKey(mac))
    }

    fn mac(&self, ctx: &TenantContext, job: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        // Every part length-prefixed, so no two different envelopes sign the same bytes.
        let actor = ctx.actor();
        let kind = serde_json::to_string(&actor.kind()).expect("an enum serializes");
        for part in [
            "tenancy-queue/v1",
            ctx.tenant().as_str(),
            &kind,
            actor.id(),
            actor.display_name(),
            ctx.correlation_id().as_str(),
            job,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    fn sign(&self, ctx: &TenantContext, job: &str) -> String {
        hex(&self.mac(ctx, job).finalize().into_bytes())
    }

    fn verify(&self, ctx: &TenantContext, job: &str, signature: &str) -> bool {
        match unhex(signature) {
            Some(bytes) => self.mac(ctx, job).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Wraps `job` in the envelope of `ctx`, signed with `key` if there is one.
pub(crate) fn seal<T: Serialize>(
    ctx: &TenantContext,
    job: &T,
    key: Option<&SigningKey>,
) -> Result<RawJob, Error> {
    let text = serde_json::to_string(job).map_err(|e| {
        Error::with_source(ErrorKind::Encode, "the job could not be encoded as JSON", e)
    })?;
    let signature = key.map(|key| key.sign(ctx, &text));
    let envelope = Tenanted::new(
        ctx,
        JobBody {
            job: text,
            signature,
        },
    );
    // Through the text form, so the fields keep the envelope's order (tenant first):
    // `serde_json::Value` would sort them.
    serde_json::to_string(&envelope)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Encode,
                "the envelope could not be encoded as JSON",
                e,
            )
        })
}

/// The tenant a raw job claims, if it names exactly one valid tenant id: for logs.
pub(crate) fn claimed_tenant(raw: &RawJob) -> Option<TenantId> {
    let Repr::Object(fields) = &raw.0 else {
        return None;
    };
    let mut tenants = fields.iter().filter(|(key, _)| key == "tenant");
    match (tenants.next(), tenants.next()) {
        (Some((_, Value::String(id))), None) => id.parse().ok(),
        _ => None,
    }
}

/// Opens the envelope: the context it was pushed under and the job, or why it is refused.
///
/// Checks the envelope only; whether the tenant may be served is the catalog's call.
pub(crate) fn open<T: DeserializeOwned>(
    raw: &RawJob,
    key: Option<&SigningKey>,
) -> Result<(TenantContext, T), Rejection> {
    let Repr::Object(fields) = &raw.0 else {
        return Err(Rejection::new(
            RejectionKind::MalformedEnvelope,
            "the job is not a tenant envelope (not a JSON object)",
        ));
    };
    let tenants = fields.iter().filter(|(key, _)| key == "tenant").count();
    if tenants == 0 {
        return Err(Rejection::new(
            RejectionKind::MissingTenant,
            "the job names no tenant",
        ));
    }
    if tenants > 1 {
        return Err(Rejection::new(
            RejectionKind::DuplicateTenant,
            "the job names its tenant more than once",
        ));
    }
    let mut map = serde_json::Map::with_capacity(fields.len());
    for (key, value) in fields {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(Rejection::new(
                RejectionKind::MalformedEnvelope,
                "a field of the job's envelope is given more than once",
            ));
        }
    }
    match map.get("tenant") {
        Some(Value::String(id)) if id.parse::<TenantId>().is_ok() => {}
        _ => {
            return Err(Rejection::new(
                RejectionKind::MalformedTenant,
                "the job's tenant is not a valid tenant id",
            ));
        }
    }
    // serde's messages may quote payload values: the reason names the envelope, not them.
    let envelope = Tenanted::<JobBody>::deserialize(Value::Object(map)).map_err(|_| {
        Rejection::new(
            RejectionKind::MalformedEnvelope,
            "the job's envelope has missing, unknown or ill-typed fields",
        )
    })?;
    let (ctx, body) = envelope.into_parts();
    if let Some(key) = key {
        let Some(signature) = body.signature.as_deref() else {
            return Err(Rejection::new(
                RejectionKind::MissingSignature,
                format!("the job for tenant `{}` is not signed", ctx.tenant()),
            ));
        };
        if !key.verify(&ctx, &body.job, signature) {
            return Err(Rejection::new(
                RejectionKind::BadSignature,
                format!(
                    "the signature of the job for tenant `{}` does not match: it was altered \
                     after it was pushed, or signed with another key",
                    ctx.tenant()
                ),
            ));
        }
    }
    let job = serde_json::from_str(&body.job).map_err(|_| {
        Rejection::new(
            RejectionKind::MalformedJob,
            format!(
                "the job for tenant `{}` does not decode as this worker's job type",
                ctx.tenant()
            ),
        )
    })?;
    Ok((ctx, job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::Actor;

    fn ctx(tenant: &str) -> TenantContext {
        TenantContext::new(tenant.parse().unwrap(), Actor::user("u-1", "Jane").unwrap())
    }

    fn raw(text: &str) -> RawJob {
        serde_json::from_str(text).unwrap()
    }

    fn kind(text: &str, key: Option<&SigningKey>) -> RejectionKind {
        open::<u32>(&raw(text), key).unwrap_err().kind()
    }

    #[test]
    fn a_sealed_job_opens_under_its_context() {
        let ctx = ctx("acme");
        let sealed = seal(&ctx, &42u32, None).unwrap();
        let wire = serde_json::to_string(&sealed).unwrap();
        let (opened, job) = open::<u32>(&raw(&wire), None).unwrap();
        assert_eq!(job, 42);
        assert_eq!(opened.tenant(), ctx.tenant());
        assert_eq!(opened.actor(), ctx.actor());
        assert_eq!(opened.correlation_id(), ctx.correlation_id());
    }

    #[test]
    fn every_bad_envelope_has_its_reason() {
        let wire = serde_json::to_string(&seal(&ctx("acme"), &1u32, None).unwrap()).unwrap();
        let body = wire.split_once(",\"actor\"").unwrap().1;
        assert_eq!(kind("[1,2]", None), RejectionKind::MalformedEnvelope);
        assert_eq!(kind("\"acme\"", None), RejectionKind::MalformedEnvelope);
        assert_eq!(
            kind(&format!("{{\"actor\"{body}"), None),
            RejectionKind::MissingTenant
        );
        assert_eq!(
            kind(
                &format!("{{\"tenant\":\"acme\",\"tenant\":\"evil\",\"actor\"{body}"),
                None
            ),
            RejectionKind::DuplicateTenant
        );
        assert_eq!(
            kind(&format!("{{\"tenant\":\"ACME;drop\",\"actor\"{body}"), None),
            RejectionKind::MalformedTenant
        );
        assert_eq!(
            kind(&format!("{{\"tenant\":7,\"actor\"{body}"), None),
            RejectionKind::MalformedTenant
        );
        assert_eq!(
            kind(
                &format!("{{\"tenant\":\"acme\",\"extra\":1,\"actor\"{body}"),
                None
            ),
            RejectionKind::MalformedEnvelope
        );
        let twice = wire.replacen("{\"tenant\"", "{\"body\":null,\"tenant\"", 1);
        assert_eq!(kind(&twice, None), RejectionKind::MalformedEnvelope);
        let not_u32 = serde_json::to_string(&seal(&ctx("acme"), &"x", None).unwrap()).unwrap();
        assert_eq!(kind(&not_u32, None), RejectionKind::MalformedJob);
    }

    #[test]
    fn signatures_cover_the_tenant_and_the_job() {
        let key = SigningKey::new(&[7; 32]).unwrap();
        let other = SigningKey::new(&[8; 32]).unwrap();
        let wire = serde_json::to_string(&seal(&ctx("acme"), &5u32, Some(&key)).unwrap()).unwrap();
        assert_eq!(open::<u32>(&raw(&wire), Some(&key)).unwrap().1, 5);
        assert_eq!(kind(&wire, Some(&other)), RejectionKind::BadSignature);
        let moved = wire.replace("\"tenant\":\"acme\"", "\"tenant\":\"globex\"");
        assert_eq!(kind(&moved, Some(&key)), RejectionKind::BadSignature);
        let edited = wire.replace("\"job\":\"5\"", "\"job\":\"6\"");
        assert_ne!(edited, wire);
        assert_eq!(kind(&edited, Some(&key)), RejectionKind::BadSignature);
        let unsigned = serde_json::to_string(&seal(&ctx("acme"), &5u32, None).unwrap()).unwrap();
        assert_eq!(kind(&unsigned, Some(&key)), RejectionKind::MissingSignature);
        assert!(SigningKey::new(&[1; 31]).is_err());
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn debug_does_not_print_the_payload() {
        let sealed = seal(&ctx("acme"), &"secret deviation text", None).unwrap();
        assert!(!format!("{sealed:?}").contains("secret"));
    }
}
