//! Property tests: a tenant id survives display and parse unchanged, any string either
//! parses to itself or is refused, and no two distinct ids derive the same database, role,
//! schema, bucket or cache-key prefix, even at the longest lengths PostgreSQL would truncate.

use proptest::prelude::*;
use tenancy_core::TenantId;
use tenancy_core::naming::Naming;

/// Valid ids, including long ones near the 40-byte limit.
fn tenant_id() -> impl Strategy<Value = TenantId> {
    "[a-z][a-z0-9]{0,12}(-[a-z0-9]{1,8}){0,3}"
        .prop_filter_map("valid tenant id", |s| TenantId::new(&s).ok())
}

proptest! {
    #[test]
    fn display_then_parse_round_trips(id in tenant_id()) {
        let shown = id.to_string();
        let parsed: TenantId = shown.parse().unwrap();
        prop_assert_eq!(&parsed, &id);
        prop_assert_eq!(parsed.as_str(), shown.as_str());
    }

    #[test]
    fn any_string_parses_to_itself_or_is_refused(s in "\\PC{0,50}") {
        if let Ok(id) = TenantId::new(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert!(s.len() <= TenantId::MAX_LEN);
        }
    }

    #[test]
    fn distinct_ids_never_share_a_derived_name(a in tenant_id(), b in tenant_id()) {
        prop_assume!(a != b);
        let naming = Naming::new("tenancy").unwrap();
        prop_assert_ne!(naming.sql_name(&a), naming.sql_name(&b));
        prop_assert_ne!(naming.bucket(&a), naming.bucket(&b));
        prop_assert_ne!(naming.key_prefix(&a), naming.key_prefix(&b));
        // A key prefix is never a prefix of another tenant's: `SCAN tenancy:ab*` cannot
        // match keys of `abc`.
        prop_assert!(!naming.key_prefix(&a).starts_with(&naming.key_prefix(&b)));
    }

    #[test]
    fn long_ids_stay_distinct_inside_postgres_limit(
        stem in "[a-z]{30}",
        tail_a in "[a-z0-9]{1,9}",
        tail_b in "[a-z0-9]{1,9}",
    ) {
        prop_assume!(tail_a != tail_b);
        let a = TenantId::new(&format!("{stem}{tail_a}")).unwrap();
        let b = TenantId::new(&format!("{stem}{tail_b}")).unwrap();
        let naming = Naming::new(&"p".repeat(16)).unwrap();
        let (name_a, name_b) = (naming.sql_name(&a), naming.sql_name(&b));
        // PostgreSQL keeps the first 63 bytes of an identifier.
        prop_assert!(name_a.len() <= 63 && name_b.len() <= 63);
        prop_assert_ne!(&name_a[..name_a.len().min(63)], &name_b[..name_b.len().min(63)]);
        let (bucket_a, bucket_b) = (naming.bucket(&a), naming.bucket(&b));
        prop_assert!(bucket_a.len() <= 63);
        prop_assert_ne!(bucket_a, bucket_b);
    }
}

#[test]
fn ids_differing_only_by_hyphen_placement_stay_distinct() {
    // `-` becomes `_` in SQL names; ids cannot contain `_`, so `a-bc` and `ab-c` stay apart.
    let naming = Naming::new("tenancy").unwrap();
    let a = TenantId::new("a-bc").unwrap();
    let b = TenantId::new("ab-c").unwrap();
    assert_ne!(naming.sql_name(&a), naming.sql_name(&b));
}
