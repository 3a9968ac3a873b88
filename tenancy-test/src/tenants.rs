//! Tenant fixtures: ids unique per test and per run.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tenancy_core::naming::Naming;
use tenancy_core::{Actor, PlatformContext, TenantId};

/// The naming prefix of every database, role, schema, bucket and key prefix tests create.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub))]
pub const TEST_PREFIX: &str = "tt";

/// Naming for test resources: everything derived with it starts with `tt`.
#[cfg_attr(not(feature = "internal"), allow(unreachable_pub, dead_code))]
pub fn naming() -> Naming {
    Naming::new(TEST_PREFIX).expect("the test prefix is valid")
}

/// A short id for this test process: base-36 of the time and process id, so two runs (or
/// two test binaries of one run) never hand out the same tenant.
pub(crate) fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos();
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
        base36(mixed % 36u64.pow(8))
    })
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// A tenant id unique to this call in this run: `{label}-{run}{n}`.
///
/// `label` says what the tenant is for in the test (`acme`, `victim`); it must be a valid
/// tenant id of at most 24 bytes.
pub fn unique_tenant(label: &str) -> TenantId {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    assert!(
        label.len() <= 24,
        "unique_tenant label {label:?} is too long: keep it to 24 bytes"
    );
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{label}-{}{}", run_id(), base36(u64::from(n)));
    TenantId::new(&id).unwrap_or_else(|e| panic!("unique_tenant({label:?}): {e}"))
}

/// An operator for fixtures that provision and tear down tenants.
pub fn operator() -> PlatformContext {
    PlatformContext::new(Actor::service("tenancy-test").expect("a valid actor"))
        .expect("a service operator")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_valid() {
        let ids: HashSet<TenantId> = (0..10_000).map(|_| unique_tenant("acme")).collect();
        assert_eq!(ids.len(), 10_000);
        let longest = unique_tenant(&"a".repeat(24));
        assert!(longest.as_str().len() <= TenantId::MAX_LEN);
    }

    #[test]
    fn test_names_carry_the_test_prefix() {
        let id = unique_tenant("acme");
        assert!(naming().sql_name(&id).starts_with("tt_acme_"));
    }
}
