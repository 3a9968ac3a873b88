//! A `Tenanted<T>` payload decodes only when it names exactly one valid tenant and carries
//! nothing it should not: missing, invalid and duplicated tenants, unknown fields and
//! malformed actors are refused.

use serde_json::json;
use tenancy_core::{Actor, ActorKind, CorrelationId, TenantContext, TenantId, Tenanted};

fn decode(text: &str) -> Result<Tenanted<String>, serde_json::Error> {
    serde_json::from_str(text)
}

fn valid() -> serde_json::Value {
    json!({
        "tenant": "acme",
        "actor": {"kind": "user", "id": "u-1", "display_name": "Jane Doe"},
        "correlation_id": "c-1",
        "body": "approve capa-7",
    })
}

#[test]
fn round_trip_keeps_tenant_actor_and_correlation() {
    let ctx = TenantContext::with_parts(
        TenantId::new("acme").unwrap(),
        Actor::user("u-1", "Jane Doe").unwrap(),
        CorrelationId::new("c-1").unwrap(),
    );
    let wire = serde_json::to_string(&Tenanted::new(&ctx, String::from("x"))).unwrap();
    assert_eq!(
        wire,
        r#"{"tenant":"acme","actor":{"kind":"user","id":"u-1","display_name":"Jane Doe"},"correlation_id":"c-1","body":"x"}"#
    );
    let (back, body) = decode(&wire).unwrap().into_parts();
    assert_eq!(back.tenant(), ctx.tenant());
    assert_eq!(back.actor(), ctx.actor());
    assert_eq!(back.correlation_id(), ctx.correlation_id());
    assert_eq!(body, "x");
}

#[test]
fn missing_tenant_is_refused() {
    let mut payload = valid();
    payload.as_object_mut().unwrap().remove("tenant");
    let err = decode(&payload.to_string()).unwrap_err();
    assert!(err.to_string().contains("missing field `tenant`"), "{err}");
}

#[test]
fn invalid_or_null_tenant_is_refused() {
    for tenant in [
        json!("Acme"),
        json!(""),
        json!("a*"),
        json!(null),
        json!(7),
        json!("\u{0430}cme"),
    ] {
        let mut payload = valid();
        payload["tenant"] = tenant.clone();
        assert!(
            decode(&payload.to_string()).is_err(),
            "accepted tenant {tenant}"
        );
    }
}

#[test]
fn unknown_fields_are_refused() {
    let mut payload = valid();
    payload["tenant_override"] = json!("beta");
    let err = decode(&payload.to_string()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");

    let mut payload = valid();
    payload["actor"]["tenant"] = json!("beta");
    assert!(
        decode(&payload.to_string()).is_err(),
        "unknown actor field accepted"
    );
}

#[test]
fn a_duplicated_tenant_field_is_refused() {
    let text = r#"{"tenant":"acme","tenant":"beta","actor":{"kind":"anonymous","id":"anonymous","display_name":"anonymous"},"correlation_id":"c-1","body":"x"}"#;
    let err = decode(text).unwrap_err();
    assert!(
        err.to_string().contains("duplicate field `tenant`"),
        "{err}"
    );

    // Why it matters: decoding through an untyped map silently keeps the last duplicate,
    // so a gateway that inspects `Value` and a worker that decodes it would disagree.
    let untyped: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(untyped["tenant"], "beta");
}

#[test]
fn malformed_actors_are_refused() {
    for actor in [
        json!({"kind": "user", "id": "", "display_name": "Jane"}),
        json!({"kind": "user", "id": "u-1", "display_name": "Jane\u{0007}"}),
        json!({"kind": "root", "id": "u-1", "display_name": "Jane"}),
        json!({"kind": "anonymous", "id": "u-1", "display_name": "Jane"}),
        json!({"kind": "user", "id": "u-1"}),
    ] {
        let mut payload = valid();
        payload["actor"] = actor.clone();
        assert!(
            decode(&payload.to_string()).is_err(),
            "accepted actor {actor}"
        );
    }
    let decoded = decode(&valid().to_string()).unwrap();
    assert_eq!(decoded.actor().kind(), ActorKind::User);
}

#[test]
fn invalid_correlation_ids_are_refused() {
    let mut payload = valid();
    payload["correlation_id"] = json!("has space");
    assert!(decode(&payload.to_string()).is_err());
}
