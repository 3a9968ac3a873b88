//! The deployment secret tenants' Redis ACL passwords are derived from.
//!
//! KEEP IN STEP WITH `tenancy-db/src/credentials.rs`: this is a small copy of its `Secret`
//! (the layer crates do not depend on each other). The derivation is the same HMAC-SHA-256
//! of the user name under the secret, with its own label, so a tenant's cache password is
//! never its database password. Nothing is stored: the same secret gives the same
//! passwords on every node. The password reaches Redis only as its SHA-256 (`ACL SETUSER
//! .. #<hash>`), so it appears in no command log.

use std::fmt;
use tenancy_core::hex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};

/// The deployment's credential secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String"))]
pub struct Secret(String);

impl Secret {
    /// The shortest accepted secret, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A secret of at least [`Secret::MIN_LEN`] bytes.
    pub fn new(secret: impl Into<String>) -> Result<Self, Error> {
        let secret = secret.into();
        if secret.len() < Self::MIN_LEN {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the credential secret is {} bytes; use at least {} random bytes (for \
                     example `openssl rand -hex 32`)",
                    secret.len(),
                    Self::MIN_LEN
                ),
            ));
        }
        Ok(Secret(secret))
    }

    /// The password of the Redis ACL user `user` (a tenant's, named by
    /// [`Naming::acl_user`](tenancy_core::naming::Naming::acl_user)): derived, never
    /// stored. For an operator who must log in as a tenant to see what it can see.
    pub fn password_for(&self, user: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"tenancy-cache acl password v1\0");
        mac.update(user.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The SHA-256 of `user`'s password, the form `ACL SETUSER` takes with `#`.
    pub(crate) fn password_hash_for(&self, user: &str) -> String {
        hex(&Sha256::digest(self.password_for(user).as_bytes()))
    }
}

impl TryFrom<String> for Secret {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Error> {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_differ_per_user_and_secret_and_never_print() {
        let a = Secret::new("a".repeat(32)).unwrap();
        let b = Secret::new("b".repeat(32)).unwrap();
        assert_ne!(a.password_for("tt_acme"), a.password_for("tt_beta"));
        assert_ne!(a.password_for("tt_acme"), b.password_for("tt_acme"));
        assert_eq!(a.password_for("tt_acme").len(), 64);
        assert_eq!(a.password_hash_for("tt_acme").len(), 64);
        assert!(!format!("{a:?}").contains("aaaa"));
        assert_eq!(Secret::new("short").unwrap_err().kind(), ErrorKind::Config);
    }
}
