//! Who calls: passwords (Argon2id hashes), sessions, and the authentication middleware of
//! the tenant routes.
//!
//! A browser signs in at `POST /login` on its tenant's host and gets a session cookie
//! (`eqms_session`: 256 random bits, `HttpOnly`, `SameSite=Strict`). The session is bound to
//! the tenant it was opened at: the same cookie presented at another tenant's host names
//! nobody, so the request is refused as unauthenticated. API clients may instead send HTTP
//! Basic credentials (user id and password) with each request. Either way
//! [`authenticate`] only names the caller, by putting their [`Actor`](tenancy_core::Actor) in the request's
//! extensions; whether they belong to the tenant is `RequireMemberLayer`'s decision, as
//! before.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use tenancy_core::{TenantContext, TenantId};

use crate::{Eqms, StartError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "eqms_session";

/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// The shortest password sign-up accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// An Argon2id hash of `password` with a random salt, as a PHC string.
pub(crate) fn hash_password(password: &str) -> Result<String, StartError> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| format!("the password could not be hashed: {error}"))?;
    Ok(hash.to_string())
}

/// A hash no password matches in practice, checked against for users that do not exist.
pub(crate) fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        hash_password(&tenancy_core::hex(&secret)).unwrap_or_default()
    })
}

/// Whether `password` matches the PHC string `hash`.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// The session a request came with (put in its extensions by [`authenticate`]): a
/// signature's first-of-the-session rule is kept per session.
#[derive(Clone)]
pub struct SessionToken(String);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([secret])")
    }
}

struct Session {
    user: String,
    tenant: TenantId,
    expires: Instant,
    /// Whether the user has signed once in this session (both components given).
    has_signed: bool,
}

/// The open sessions, in memory (a restart signs everyone out).
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session of `user` at `tenant`; returns its token.
    pub(crate) fn open(&self, user: &str, tenant: &TenantId) -> SessionToken {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = tenancy_core::hex(&bytes);
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                tenant: tenant.clone(),
                expires: now + SESSION_LIFETIME,
                has_signed: false,
            },
        );
        SessionToken(token)
    }

    /// The user of a live session opened at `tenant`; `None` for an unknown or expired
    /// token, and for a session of another tenant.
    fn user(&self, token: &str, tenant: &TenantId) -> Option<String> {
        let sessions = self.lock();
        let session = sessions.get(token)?;
        (session.expires > Instant::now() && &session.tenant == tenant)
            .then(|| session.user.clone())
    }

    /// Ends a session.
    pub(crate) fn close(&self, token: &SessionToken) {
        self.lock().remove(&token.0);
    }

    /// Whether the session's user has signed once already in it.
    pub(crate) fn has_signed(&self, token: &SessionToken) -> bool {
        self.lock().get(&token.0).is_some_and(|s| s.has_signed)
    }

    /// Notes a signature made with both components.
    pub(crate) fn signed(&self, token: &SessionToken) {
        if let Some(session) = self.lock().get_mut(&token.0) {
            session.has_signed = true;
        }
    }
}

/// The `Set-Cookie` value that hands `token` to the browser.
pub(crate) fn session_cookie(token: &SessionToken) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        token.0,
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn expired_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// The user id and password of an `Authorization: Basic` header.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `Authorization` header value for `user` and `password` (for API clients and tests).
pub fn basic_authorization(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Names the caller: the user of the request's session cookie when the session was opened
/// at this tenant, or the user whose Basic credentials the request carries. A request that
/// names nobody goes on anonymous, and `RequireMemberLayer` refuses it (401).
pub async fn authenticate(State(app): State<Eqms>, mut request: Request, next: Next) -> Response {
    let tenant = request
        .extensions()
        .get::<TenantContext>()
        .map(|ctx| ctx.tenant().clone());
    if let Some(tenant) = tenant {
        let headers = request.headers();
        if let Some(token) = cookie_token(headers) {
            let session = app
                .sessions
                .user(token, &tenant)
                .and_then(|user| app.directory.actor(&user))
                .map(|actor| (actor, SessionToken(token.to_owned())));
            if let Some((actor, token)) = session {
                request.extensions_mut().insert(actor);
                request.extensions_mut().insert(token);
            }
        } else if let Some((user, password)) = basic_credentials(headers)
            && let Some(actor) = app.directory.check_password(&user, &password)
        {
            request.extensions_mut().insert(actor);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("jane-demo-password").unwrap();
        assert!(verify_password("jane-demo-password", &hash));
        assert!(!verify_password("jane-demo-passwore", &hash));
        assert!(!hash.contains("jane-demo-password"));
    }

    #[test]
    fn a_session_names_its_user_at_its_own_tenant_only() {
        let sessions = Sessions::default();
        let acme: TenantId = "acme".parse().unwrap();
        let beta: TenantId = "beta".parse().unwrap();
        let token = sessions.open("jane", &acme);
        assert_eq!(sessions.user(&token.0, &acme).as_deref(), Some("jane"));
        assert_eq!(sessions.user(&token.0, &beta), None);
        sessions.close(&token);
        assert_eq!(sessions.user(&token.0, &acme), None);
    }
}
