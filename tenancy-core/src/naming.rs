//! The one place where per-tenant names are derived.
//!
//! Databases, roles, schemas, buckets and cache-key prefixes are all named from a
//! [`TenantId`] and a deployment prefix by [`Naming`]. Because a tenant id is short and
//! drawn from a small alphabet, every derived name is valid where it is used and no two
//! tenants ever share one (PostgreSQL truncates identifiers at 63 bytes without a word;
//! derived names stay well under it, so truncation cannot merge two tenants).

use crate::error::{Error, ErrorKind, quote};
use crate::id::TenantId;

/// The longest deployment prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 16;

/// Derives per-tenant names from a deployment prefix.
///
/// ```
/// use tenancy_core::{TenantId, naming::Naming};
///
/// let naming = Naming::new("tenancy")?;
/// let id: TenantId = "acme-pharma".parse()?;
/// assert_eq!(naming.sql_name(&id), "tenancy_acme_pharma");
/// assert_eq!(naming.bucket(&id), "tenancy-acme-pharma");
/// assert_eq!(naming.key_prefix(&id), "tenancy:acme-pharma:");
/// assert_eq!(naming.log_file(&id), "tenancy-acme-pharma.jsonl");
/// assert_eq!(naming.hash_tagged_key_prefix(&id), "tenancy:{acme-pharma}:");
/// assert_eq!(naming.shared_bucket(), "tenancy--shared");
/// assert_eq!(naming.object_prefix(&id), "acme-pharma/");
/// # Ok::<(), tenancy_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: Box<str>,
}

/// Prefixes a store would misread: S3 reserves bucket names starting `sthree-` and
/// `amzn-s3-demo-`.
const RESERVED_PREFIXES: &[&str] = &["sthree", "amzn"];

impl Naming {
    /// A naming scheme with this deployment prefix: 1 to 16 lowercase ASCII letters and
    /// digits, starting with a letter. Different prefixes let several deployments share
    /// one PostgreSQL server, Redis or S3 account without meeting.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let shape_ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !shape_ok {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "naming prefix {} is invalid: use 1 to {MAX_PREFIX_LEN} lowercase ASCII \
                     letters and digits, starting with a letter",
                    quote(prefix)
                ),
            ));
        }
        if RESERVED_PREFIXES.contains(&prefix) {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("naming prefix {} is reserved by S3", quote(prefix)),
            ));
        }
        Ok(Naming {
            prefix: prefix.into(),
        })
    }

    /// The deployment prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The SQL name of a tenant's database, schema and role: `{prefix}_{id}` with each `-`
    /// of the id written `_`. At most 57 bytes, so PostgreSQL never truncates it; only
    /// `[a-z0-9_]`, so it never needs quoting.
    pub fn sql_name(&self, id: &TenantId) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 1 + id.as_str().len());
        name.push_str(&self.prefix);
        name.push('_');
        name.extend(id.as_str().chars().map(|c| if c == '-' { '_' } else { c }));
        name
    }

    /// The SQL name of a platform object (a role, a database) that belongs to no tenant:
    /// `{prefix}__{purpose}`. A tenant's names cannot contain `__` (an id has no `_` and no
    /// doubled `-`), so no tenant id can ever name a platform object.
    ///
    /// # Panics
    ///
    /// If `purpose` is not 1 to 20 lowercase ASCII letters and digits starting with a
    /// letter: purposes are constants in code, or a constant and a number.
    pub fn platform_sql_name(&self, purpose: &str) -> String {
        assert!(
            (1..=20).contains(&purpose.len())
                && purpose.starts_with(|c: char| c.is_ascii_lowercase())
                && purpose
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "platform purpose {purpose:?} must be 1 to 20 lowercase ASCII letters and digits, \
             starting with a letter"
        );
        format!("{}__{purpose}", self.prefix)
    }

    /// The S3 bucket of a tenant: `{prefix}-{id}`, a valid bucket name of 3 to 57
    /// characters.
    pub fn bucket(&self, id: &TenantId) -> String {
        format!("{}-{}", self.prefix, id)
    }

    /// The S3 bucket that holds every tenant of the deployment when tenants share one
    /// bucket (past the per-account bucket limit): `{prefix}--shared`. No tenant's bucket
    /// can have this name, since a tenant id never contains `--`.
    pub fn shared_bucket(&self) -> String {
        format!("{}--shared", self.prefix)
    }

    /// The prefix of every object key of a tenant inside the shared bucket: `{id}/`. An id
    /// cannot contain `/`, so one tenant's prefix is never a prefix of another's.
    pub fn object_prefix(&self, id: &TenantId) -> String {
        format!("{id}/")
    }

    /// The prefix of every cache key of a tenant: `{prefix}:{id}:`. Neither part can
    /// contain `:`, so one tenant's prefix is never a prefix of another's.
    pub fn key_prefix(&self, id: &TenantId) -> String {
        format!("{}:{}:", self.prefix, id)
    }

    /// The file a tenant's log records are appended to, inside a directory of such files:
    /// `{prefix}-{id}.jsonl`. A single path component (no `/`, no leading `.`, no `..`),
    /// distinct for every tenant, and never the name of another tenant's file.
    pub fn log_file(&self, id: &TenantId) -> String {
        format!("{}-{}.jsonl", self.prefix, id)
    }

    /// The prefix of every cache key of a tenant on a Redis Cluster where each tenant's
    /// keys share one hash slot: `{prefix}:{{id}}:` (for example `tenancy:{acme}:`).
    ///
    /// Redis Cluster hashes only what lies between a key's first `{` and the first `}`
    /// after it, so every key that starts with this prefix lands in the slot of the tenant
    /// id, whatever follows: nothing the caller appends can move it. Neither part can
    /// contain `:`, `{` or `}`, so one tenant's prefix is never a prefix of another's, nor
    /// of a [`Naming::key_prefix`].
    pub fn hash_tagged_key_prefix(&self, id: &TenantId) -> String {
        format!("{}:{{{}}}:", self.prefix, id)
    }

    /// The Redis ACL user of a tenant, for deployments that give each tenant its own:
    /// the same as its [`Naming::sql_name`] (`{prefix}_{id}`, `-` written `_`).
    pub fn acl_user(&self, id: &TenantId) -> String {
        self.sql_name(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_prefixes() {
        for bad in [
            "",
            "Tenancy",
            "1t",
            "t-x",
            "t_x",
            "t:x",
            "abcdefghijklmnopq",
            "sthree",
            "amzn",
        ] {
            let err = Naming::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad}");
        }
    }

    #[test]
    fn longest_names_fit_their_stores() {
        let naming = Naming::new(&"p".repeat(MAX_PREFIX_LEN)).unwrap();
        let id = TenantId::new(&"a".repeat(TenantId::MAX_LEN)).unwrap();
        assert!(naming.sql_name(&id).len() <= 57);
        let bucket = naming.bucket(&id);
        assert!((3..=63).contains(&bucket.len()), "{bucket}");
        let shortest = naming_bucket_len("p", "a");
        assert!(shortest >= 3);
    }

    #[test]
    fn platform_names_never_meet_tenant_names() {
        let naming = Naming::new("tenancy").unwrap();
        assert_eq!(naming.platform_sql_name("app"), "tenancy__app");
        // The tenant `app` is `tenancy_app`, not the platform role.
        let app = TenantId::new("app").unwrap();
        assert_ne!(naming.sql_name(&app), naming.platform_sql_name("app"));
        assert!(
            !naming
                .sql_name(&TenantId::new("a-b-c").unwrap())
                .contains("__")
        );
    }

    #[test]
    fn log_files_are_single_distinct_path_components() {
        let naming = Naming::new("tenancy").unwrap();
        let a = naming.log_file(&TenantId::new("a").unwrap());
        let ab = naming.log_file(&TenantId::new("a-b").unwrap());
        assert_eq!(a, "tenancy-a.jsonl");
        assert_ne!(a, ab);
        for name in [&a, &ab] {
            assert!(!name.contains('/') && !name.contains('\\') && !name.starts_with('.'));
            assert!(!name.contains(".."));
        }
        // Another deployment's files never meet these ones.
        let other = Naming::new("tenancya").unwrap();
        assert_ne!(other.log_file(&TenantId::new("b").unwrap()), ab);
    }

    #[test]
    fn cache_prefixes_never_meet() {
        let naming = Naming::new("tenancy").unwrap();
        let acme = TenantId::new("acme").unwrap();
        let acme_corp = TenantId::new("acme-corp").unwrap();
        assert_eq!(naming.hash_tagged_key_prefix(&acme), "tenancy:{acme}:");
        assert_eq!(naming.acl_user(&acme_corp), "tenancy_acme_corp");
        let prefixes = [
            naming.key_prefix(&acme),
            naming.key_prefix(&acme_corp),
            naming.hash_tagged_key_prefix(&acme),
            naming.hash_tagged_key_prefix(&acme_corp),
        ];
        for (i, a) in prefixes.iter().enumerate() {
            for (j, b) in prefixes.iter().enumerate() {
                assert!(
                    i == j || !b.starts_with(a.as_str()),
                    "{a} is a prefix of {b}"
                );
            }
        }
        // The hash tag is the tenant id alone: what follows the prefix cannot change it.
        let tagged = naming.hash_tagged_key_prefix(&acme);
        let open = tagged.find('{').unwrap();
        let close = open + tagged[open..].find('}').unwrap();
        assert_eq!(&tagged[open + 1..close], "acme");
    }

    #[test]
    fn shared_bucket_and_object_prefixes_never_meet_tenants() {
        let naming = Naming::new(&"p".repeat(MAX_PREFIX_LEN)).unwrap();
        let shared = naming.shared_bucket();
        assert!((3..=63).contains(&shared.len()), "{shared}");
        let id = TenantId::new(&"a".repeat(TenantId::MAX_LEN)).unwrap();
        assert_ne!(naming.bucket(&id), shared);
        assert_eq!(
            naming.object_prefix(&id).len(),
            TenantId::MAX_LEN + 1,
            "tenancy-storage's key limit assumes this length"
        );
        let acme = Naming::new("t")
            .unwrap()
            .object_prefix(&"acme".parse().unwrap());
        let longer = Naming::new("t")
            .unwrap()
            .object_prefix(&"acme-x".parse().unwrap());
        assert_eq!(acme, "acme/");
        assert!(!longer.starts_with(&acme));
    }

    fn naming_bucket_len(prefix: &str, id: &str) -> usize {
        Naming::new(prefix)
            .unwrap()
            .bucket(&TenantId::new(id).unwrap())
            .len()
    }
}
