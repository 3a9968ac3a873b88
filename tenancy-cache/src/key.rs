//! The one place cache keys are built.
//!
//! Every key the backend sees is `{tenant prefix}g{generation}:{namespace}:{caller part}`,
//! the tenant prefix coming from [`Naming`] (`tenancy:acme:`, or `tenancy:{acme}:` when each
//! tenant's keys share one Redis Cluster slot). The tenant prefix comes first and is made
//! only from a validated [`TenantId`], so no caller part can produce a key of another
//! tenant. The caller part is percent-encoded: `{`, `}` (Redis Cluster hash tags), glob
//! characters (`*`, `?`, `[`, `]`, `\`, which ACL patterns and `SCAN MATCH` read), `%`,
//! spaces, control and non-ASCII bytes never reach the backend raw, so a caller part can
//! neither move a key to another hash slot nor widen a pattern. `:` is kept: it is safe
//! after the fixed prefix and keeps keys readable.
//!
//! The generation is part of every key, so bumping it (one `INCR`) makes every older key of
//! the tenant unreachable at once, whatever their number; they expire by their TTL or go
//! with the next purge.

use std::fmt::Write as _;

use tenancy_core::TenantId;
use tenancy_core::naming::Naming;

use crate::error::{Error, ErrorKind};

/// The longest caller part of a key, in bytes, before encoding.
pub const MAX_KEY_LEN: usize = 512;

/// The longest application namespace, in bytes.
pub(crate) const MAX_NAMESPACE_LEN: usize = 32;

/// Builds every key of one cache: its naming, namespace and key layout.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    naming: Naming,
    namespace: Box<str>,
    hash_tag: bool,
}

impl KeySpace {
    pub(crate) fn new(naming: Naming, namespace: &str, hash_tag: bool) -> Result<Self, Error> {
        validate_namespace(namespace)?;
        Ok(KeySpace {
            naming,
            namespace: namespace.into(),
            hash_tag,
        })
    }

    /// `tenancy:acme:` or `tenancy:{acme}:`.
    pub(crate) fn tenant_prefix(&self, tenant: &TenantId) -> String {
        if self.hash_tag {
            self.naming.hash_tagged_key_prefix(tenant)
        } else {
            self.naming.key_prefix(tenant)
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The key holding the tenant's generation. Data keys have `g` and a digit where this
    /// has `gen`, so none can equal it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn generation_key(&self, tenant: &TenantId) -> String {
        let mut key = self.tenant_prefix(tenant);
        key.push_str("gen");
        key
    }

    /// The backend key of the caller's `key` for `tenant` at `generation`.
    pub(crate) fn data_key(
        &self,
        tenant: &TenantId,
        generation: u64,
        key: &str,
    ) -> Result<String, Error> {
        check_key(key)?;
        let mut out = self.tenant_prefix(tenant);
        out.reserve(24 + self.namespace.len() + key.len());
        out.push('g');
        // Formatting into the key itself: no allocation of its own.
        let _ = write!(out, "{generation}");
        out.push(':');
        out.push_str(&self.namespace);
        out.push(':');
        encode_into(key, &mut out);
        Ok(out)
    }

    /// A glob pattern that matches every key of `tenant` and nothing else, for `SCAN MATCH`
    /// and ACL key patterns.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn tenant_pattern(&self, tenant: &TenantId) -> String {
        let mut pattern = glob_escape(&self.tenant_prefix(tenant));
        pattern.push('*');
        pattern
    }
}

fn validate_namespace(namespace: &str) -> Result<(), Error> {
    let ok = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE_LEN
        && namespace.starts_with(|c: char| c.is_ascii_lowercase())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "cache namespace {:?} is invalid: use 1 to {MAX_NAMESPACE_LEN} lowercase ASCII \
                 letters, digits, '-' and '_', starting with a letter",
                namespace.chars().take(40).collect::<String>()
            ),
        ))
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "a cache key is empty: name what is cached (\"user:4271:recent_activity\")",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!(
                "a cache key is {} bytes long; the limit is {MAX_KEY_LEN}: hash long inputs \
                 into the key instead",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Bytes kept as they are in the caller part; everything else is written `%XX`.
fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b':'
                | b'/'
                | b'='
                | b','
                | b'@'
                | b'+'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b';'
        )
}

/// Percent-encodes the caller part of a key. Injective: `%` itself is encoded.
pub(crate) fn encode_into(key: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key.as_bytes() {
        if kept(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

/// Escapes the characters a Redis glob pattern reads specially.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(hash_tag: bool) -> KeySpace {
        KeySpace::new(Naming::new("tt").unwrap(), "app", hash_tag).unwrap()
    }

    fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn keys_start_with_the_tenant_prefix_and_generation() {
        let keys = space(false);
        assert_eq!(
            keys.data_key(&id("acme"), 7, "user:4271:recent_activity")
                .unwrap(),
            "tt:acme:g7:app:user:4271:recent_activity"
        );
        assert_eq!(keys.generation_key(&id("acme")), "tt:acme:gen");
        let tagged = space(true);
        assert_eq!(
            tagged.data_key(&id("acme"), 1, "x").unwrap(),
            "tt:{acme}:g1:app:x"
        );
        assert_eq!(tagged.tenant_pattern(&id("acme")), "tt:{acme}:*");
    }

    #[test]
    fn hostile_caller_parts_are_encoded() {
        let keys = space(true);
        let key = keys
            .data_key(&id("acme"), 1, "}{beta}:*?[x]\\ %\n\u{e9}")
            .unwrap();
        assert_eq!(
            key,
            "tt:{acme}:g1:app:%7D%7Bbeta%7D:%2A%3F%5Bx%5D%5C%20%25%0A%C3%A9"
        );
        // Nothing the caller wrote opens or closes a hash tag or a glob.
        let caller = &key["tt:{acme}:".len()..];
        assert!(!caller.contains(['{', '}', '*', '?', '[', ']', '\\', ' ']));
    }

    #[test]
    fn encoding_is_injective_on_tricky_pairs() {
        let keys = space(false);
        let pairs = [("a%7Bb", "a{b"), ("a b", "a%20b"), ("%", "%25")];
        for (a, b) in pairs {
            assert_ne!(
                keys.data_key(&id("acme"), 1, a).unwrap(),
                keys.data_key(&id("acme"), 1, b).unwrap()
            );
        }
    }

    #[test]
    fn empty_and_long_keys_are_refused() {
        let keys = space(false);
        let err = keys.data_key(&id("acme"), 1, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
        let err = keys
            .data_key(&id("acme"), 1, &"k".repeat(MAX_KEY_LEN + 1))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
        assert!(
            keys.data_key(&id("acme"), 1, &"k".repeat(MAX_KEY_LEN))
                .is_ok()
        );
    }

    #[test]
    fn namespaces_are_validated() {
        for bad in ["", "App", "a:b", "a{b}", "1a", &"a".repeat(33)] {
            let err = KeySpace::new(Naming::new("tt").unwrap(), bad, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn a_tenant_pattern_never_matches_a_longer_tenant() {
        let keys = space(false);
        let pattern = keys.tenant_pattern(&id("acme"));
        assert_eq!(pattern, "tt:acme:*");
        let other = keys.data_key(&id("acme-corp"), 1, "x").unwrap();
        assert!(!other.starts_with(&pattern[..pattern.len() - 1]));
    }
}
