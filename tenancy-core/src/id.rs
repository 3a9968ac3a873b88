//! [`TenantId`]: the validated name of a tenant.
//!
//! Every tenant-scoped name in the system (database, role, schema, bucket, cache prefix) is
//! derived from a `TenantId` by [`crate::naming`], so the rules here are what keep those
//! names valid and distinct. Invalid input is rejected with a reason, never rewritten.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, quote};

/// The validated identifier of a tenant.
///
/// A tenant id is 1 to [`TenantId::MAX_LEN`] bytes of lowercase ASCII letters, digits and
/// `-`; it starts with a letter, and has no trailing or doubled `-`. A few names that
/// PostgreSQL, Redis or S3 treat specially are reserved. Anything else is rejected, never
/// rewritten: `Acme` is an error, not `acme`.
///
/// ```
/// use tenancy_core::{ErrorKind, TenantId};
///
/// let id: TenantId = "acme-pharma".parse()?;
/// assert_eq!(id.as_str(), "acme-pharma");
///
/// let err = "Acme".parse::<TenantId>().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidTenantId);
/// # Ok::<(), tenancy_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

/// Names that a database, cache or object store gives a meaning of its own.
const RESERVED: &[&str] = &[
    // PostgreSQL: the default schema, the maintenance database, the template databases.
    "public",
    "postgres",
    "template0",
    "template1",
    // Redis: the user every connection starts as.
    "default",
];

impl TenantId {
    /// The longest tenant id, in bytes.
    ///
    /// 40 leaves room for a prefix of up to [`crate::naming::MAX_PREFIX_LEN`] bytes, a
    /// separator and a suffix inside PostgreSQL's 63-byte identifiers (which it silently
    /// truncates, so two long ids could otherwise meet in one name) and S3's 63-character
    /// bucket names.
    pub const MAX_LEN: usize = 40;

    /// Parses and validates a tenant id; the same as [`str::parse`].
    pub fn new(id: &str) -> Result<Self, Error> {
        validate(id)?;
        Ok(TenantId(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid(id: &str, why: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidTenantId,
        format!(
            "tenant id {} is invalid: {why}; a tenant id is 1 to {} lowercase ASCII letters, \
             digits and single '-', starting with a letter",
            quote(id),
            TenantId::MAX_LEN
        ),
    )
}

fn validate(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidTenantId,
            "tenant id is empty; a tenant id is 1 to 40 lowercase ASCII letters, digits and \
             single '-', starting with a letter",
        ));
    }
    if id.len() > TenantId::MAX_LEN {
        return Err(invalid(
            id,
            format_args!("it is {} bytes long, over the maximum", id.len()),
        ));
    }
    for (position, c) in id.char_indices() {
        match c {
            'a'..='z' | '0'..='9' | '-' => {}
            'A'..='Z' => {
                return Err(invalid(
                    id,
                    format_args!("uppercase {c:?} at byte {position} (ids are not case-folded)"),
                ));
            }
            c if !c.is_ascii() => {
                return Err(invalid(
                    id,
                    format_args!(
                        "non-ASCII character U+{:04X} at byte {position} (look-alike letters are refused)",
                        u32::from(c)
                    ),
                ));
            }
            c => {
                return Err(invalid(
                    id,
                    format_args!("character {:?} at byte {position} is not allowed", c),
                ));
            }
        }
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid(id, "it must start with a letter"));
    }
    if id.ends_with('-') {
        return Err(invalid(id, "it ends with '-'"));
    }
    if id.contains("--") {
        return Err(invalid(id, "it contains \"--\""));
    }
    if RESERVED.contains(&id) {
        return Err(invalid(id, "this name is reserved"));
    }
    // PostgreSQL reserves names starting `pg_` (an id's `-` becomes `_` in SQL names); S3
    // reserves bucket names ending `-s3alias`.
    if id.starts_with("pg-") {
        return Err(invalid(id, "names starting \"pg-\" are reserved"));
    }
    // The bucket is `{prefix}-{id}`, so an id that is `s3alias` ends it the same way.
    if id == "s3alias" || id.ends_with("-s3alias") {
        return Err(invalid(id, "names ending \"s3alias\" are reserved"));
    }
    Ok(())
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::new(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        TenantId::new(value)
    }
}

impl TryFrom<String> for TenantId {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate(&value)?;
        Ok(TenantId(Arc::from(value)))
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TenantId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tenant id")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TenantId, E> {
                TenantId::new(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(input: &str) -> String {
        match TenantId::new(input) {
            Ok(id) => panic!("{input:?} was accepted as {id:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidTenantId, "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn accepts_plain_ids() {
        for ok in ["a", "acme", "acme-pharma", "a1", "b-2-c", &"a".repeat(40)] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_and_long() {
        assert!(rejected("").contains("empty"));
        for len in [41, 63, 64, 65, 255, 1000] {
            let message = rejected(&"a".repeat(len));
            assert!(message.contains("bytes long"), "{message}");
            assert!(message.len() < 300, "message echoes too much: {message}");
        }
    }

    #[test]
    fn rejects_uppercase_without_folding() {
        assert!(rejected("Acme").contains("uppercase"));
        assert!(rejected("acmE").contains("uppercase"));
    }

    #[test]
    fn rejects_unicode_lookalikes() {
        // Cyrillic а, full-width a, zero-width space, right-to-left override, Latin ligature.
        for input in [
            "\u{0430}cme",
            "\u{FF41}cme",
            "ac\u{200B}me",
            "acme\u{202E}",
            "\u{FB01}rm",
        ] {
            let message = rejected(input);
            assert!(message.contains("non-ASCII"), "{message}");
            assert!(
                !message.contains('\u{202E}'),
                "message carries the override: {message}"
            );
        }
    }

    #[test]
    fn rejects_path_and_control_characters() {
        for input in [
            "..", "a/b", "a\\b", "a\0b", "a\rb", "a\nb", "a.b", "a b", "a_b",
        ] {
            rejected(input);
        }
    }

    #[test]
    fn rejects_glob_and_hash_tag_characters() {
        for c in ['*', '?', '[', ']', '{', '}', ':'] {
            rejected(&format!("acme{c}"));
        }
    }

    #[test]
    fn rejects_sql_quoting() {
        rejected("a\"; drop database postgres; --");
        rejected("a'; drop table x; --");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(rejected("1acme").contains("start with a letter"));
        assert!(rejected("-acme").contains("start with a letter"));
        assert!(rejected("acme-").contains("ends with"));
        assert!(rejected("ac--me").contains("--"));
        assert!(rejected("xn--80ak6aa92e").contains("--"));
    }

    #[test]
    fn rejects_reserved_names() {
        for input in [
            "public",
            "postgres",
            "template0",
            "template1",
            "default",
            "pg-catalog",
            "pg-toast",
            "acme-s3alias",
            "s3alias",
        ] {
            assert!(rejected(input).contains("reserved"), "{input}");
        }
        // `pg_catalog` and `information_schema` are refused for their underscore already.
        rejected("pg_catalog");
        rejected("information_schema");
    }

    #[test]
    fn try_from_string_validates() {
        assert!(TenantId::try_from(String::from("Acme")).is_err());
        assert_eq!(
            TenantId::try_from(String::from("acme")).unwrap().as_str(),
            "acme"
        );
    }
}
