//! Credentials of tenant and platform roles, derived rather than stored.
//!
//! Each role's password is HMAC-SHA-256 of the role name under the deployment's secret:
//! nothing to store, nothing to leak from a table, the same on every application node, and
//! rotated by changing the secret (and re-running `Platform::prepare`, which resets every
//! role's password). Passwords reach PostgreSQL as SCRAM verifiers computed here, so the
//! plain text never appears in a statement or a server log.

use std::fmt;
use tenancy_core::hex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

    /// The login password of `role`, one of the roles this crate makes (an application
    /// role, the owner, a database-per-tenant role): derived from the secret, never stored.
    /// For an operator who needs to log in as one of them, to look at what it can see.
    pub fn password_for(&self, role: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"tenancy-db role password v1\0");
        mac.update(role.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    #[cfg(feature = "postgres")]
    /// The value of the tenant setting (`app.tenant_id`) that binds a row-level transaction
    /// to `tenant` on the connection served by server process `pid`, with the proof a
    /// sealed policy checks: for an operator who must act as a row-level tenant by hand
    /// (`SET LOCAL app.tenant_id = '..'` in psql, after `SELECT pg_backend_pid()`).
    pub fn row_binding(&self, pid: i32, tenant: &tenancy_core::TenantId) -> String {
        self.binding_key().bound_value(pid, tenant)
    }

    #[cfg(feature = "postgres")]
    /// The key that seals row-level bindings (see [`BindingKey`]).
    pub(crate) fn binding_key(&self) -> BindingKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"tenancy-db row binding key v1\0");
        BindingKey(mac.finalize().into_bytes().into())
    }

    #[cfg(feature = "postgres")]
    /// The SCRAM-SHA-256 verifier of `role`'s password, for `CREATE ROLE ... PASSWORD`.
    pub(crate) fn scram_verifier_for(&self, role: &str) -> String {
        postgres_protocol::password::scram_sha_256(self.password_for(role).as_bytes())
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

#[cfg(feature = "postgres")]
/// The key of the sealed row-level binding, derived from the deployment secret.
///
/// A row-level transaction binds its tenant as `tenant:proof`, where the proof is
/// HMAC-SHA-256 under this key of `pid:tenant`, `pid` being the server process of the
/// connection. The platform keeps the key in a table only the owner role can read, and the
/// policy's function (owned by the owner, `SECURITY DEFINER`) recomputes the proof: the
/// application role can neither read the key nor compute a proof, and a proof seen on one
/// connection is refused on every other.
#[derive(Clone)]
pub(crate) struct BindingKey([u8; 32]);

#[cfg(feature = "postgres")]
impl BindingKey {
    /// The value of the tenant setting for `tenant` on the connection served by `pid`.
    pub(crate) fn bound_value(&self, pid: i32, tenant: &tenancy_core::TenantId) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(format!("{pid}:{tenant}").as_bytes());
        format!("{tenant}:{}", hex(&mac.finalize().into_bytes()))
    }

    /// The key XORed with HMAC's inner and outer pads, as the server's function uses them:
    /// `sha256(opad_key || sha256(ipad_key || message))` is HMAC-SHA-256.
    pub(crate) fn pads(&self) -> ([u8; 64], [u8; 64]) {
        let mut inner = [0x36u8; 64];
        let mut outer = [0x5cu8; 64];
        for (index, byte) in self.0.iter().enumerate() {
            inner[index] ^= byte;
            outer[index] ^= byte;
        }
        (inner, outer)
    }
}

#[cfg(feature = "postgres")]
impl fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(Secret::new("short").unwrap_err().kind(), ErrorKind::Config);
    }

    /// The server recomputes the proof from the pads with two SHA-256 calls: that must be
    /// the HMAC the client sends.
    #[cfg(feature = "postgres")]
    #[test]
    fn binding_pads_compute_the_same_hmac() {
        use sha2::Digest;
        let key = Secret::new("k".repeat(32)).unwrap().binding_key();
        let tenant: tenancy_core::TenantId = "acme".parse().unwrap();
        let bound = key.bound_value(4242, &tenant);
        let (inner, outer) = key.pads();
        let inner_hash = Sha256::new()
            .chain_update(inner)
            .chain_update(b"4242:acme")
            .finalize();
        let outer_hash = Sha256::new()
            .chain_update(outer)
            .chain_update(inner_hash)
            .finalize();
        assert_eq!(bound, format!("acme:{}", hex(&outer_hash)));
        assert_ne!(bound, key.bound_value(4243, &tenant));
        assert!(!format!("{key:?}").contains('k'));
    }

    #[test]
    fn passwords_differ_per_role_and_secret_and_never_print() {
        let a = Secret::new("a".repeat(32)).unwrap();
        let b = Secret::new("b".repeat(32)).unwrap();
        assert_ne!(a.password_for("tt_acme"), a.password_for("tt_beta"));
        assert_ne!(a.password_for("tt_acme"), b.password_for("tt_acme"));
        assert_eq!(a.password_for("tt_acme").len(), 64);
        assert!(!format!("{a:?}").contains("aaaa"));
        assert!(
            a.scram_verifier_for("tt_acme")
                .starts_with("SCRAM-SHA-256$4096:")
        );
    }
}
