//! The reference app: an eQMS service on axum whose CAPA records (corrective and
//! preventive actions) are kept per tenant, on the embedded default (a SQLite file per
//! tenant, no servers).
//!
//! - The tenant routes (the JSON API under `/api/...`, the web pages of [`ui`]) sit behind
//!   [`TenantLayer`], which resolves the tenant from the subdomain (`acme.localhost:3000`);
//!   [`accounts::authenticate`], which names the user from the session cookie or HTTP
//!   Basic credentials; and [`RequireMemberLayer`], which refuses users who are not members
//!   of that tenant (403). Handlers take the [`TenantContext`] as an extractor and open a
//!   tenant transaction with it. Errors answer through the status mapping every `tenancy`
//!   crate shares (a record that is not there is 404, a duplicate reference 409).
//! - `/health`, `/signup` and `/operator/...` serve no tenant: they are routes of the outer
//!   router, outside the tenant layers.

pub mod accounts;
pub mod attachments;
pub mod audit;
pub mod signatures;
pub mod ui;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tenancy_core::http::resolve::Subdomain;
use tenancy_core::http::{
    ErrorClass, HttpError, Membership, Refusal, RequireMemberLayer, TenantLayer, error_response,
};
use tenancy_core::{Actor, Placement, PlatformContext, TenantContext, TenantId};
use tenancy_db::{DbConfig, Migration, Migrations, TenantDb, rls};
use tenancy_storage::TenantStorage;
use tracing::instrument::WithSubscriber as _;

pub mod activity;
pub mod config;
pub mod jobs;
pub mod logs;

pub use config::Config;

/// The demo tenants seeded at start: (id, firm, user id, user name, first CAPA).
pub const DEMO_TENANTS: [(&str, &str, &str, &str, &str); 2] = [
    (
        "acme",
        "Acme Pharma",
        "jane",
        "Jane Doe",
        "Tablet press 3 out of calibration",
    ),
    (
        "beta",
        "Beta Biotech",
        "omar",
        "Omar Haddad",
        "Cold-chain excursion, lot 24-117",
    ),
];

/// The QA lead of each demo tenant (tenant, user id, user name): the inspector's view is
/// theirs.
pub const DEMO_QA_LEADS: [(&str, &str, &str); 2] = [
    ("acme", "quinn", "Quinn Quality"),
    ("beta", "rita", "Rita Reyes"),
];

/// The operator the `/operator` routes admit.
pub const OPERATOR: (&str, &str) = ("olga", "Olga Operator");

/// A demo user's password: `{user}-demo-password` (printed at start, never for real use).
pub fn demo_password(user: &str) -> String {
    format!("{user}-demo-password")
}

/// The most a JSON or form body may hold; larger is refused with 413 before any handler.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The schema of every tenant's database.
pub fn migrations() -> Migrations {
    Migrations::new(vec![
        Migration::new(1, "capas")
            .sqlite(
                "CREATE TABLE capas (
                    id text PRIMARY KEY,
                    reference text NOT NULL UNIQUE,
                    title text NOT NULL,
                    status text NOT NULL CHECK (status IN ('open', 'investigating', 'closed')),
                    created_by text NOT NULL
                )",
            )
            .postgres(
                "CREATE TABLE capas (
                    id text PRIMARY KEY,
                    reference text NOT NULL UNIQUE,
                    title text NOT NULL,
                    status text NOT NULL CHECK (status IN ('open', 'investigating', 'closed')),
                    created_by text NOT NULL
                )",
            )
            .row_level(&fenced(
                "CREATE TABLE capas (
                    tenant_id text NOT NULL,
                    id text NOT NULL,
                    reference text NOT NULL,
                    title text NOT NULL,
                    status text NOT NULL CHECK (status IN ('open', 'investigating', 'closed')),
                    created_by text NOT NULL,
                    PRIMARY KEY (tenant_id, id),
                    UNIQUE (tenant_id, reference)
                )",
                &["capas"],
            )),
        tenancy_audit::migration(2),
        Migration::new(3, "capa approval status")
            .sqlite(
                "CREATE TABLE capas_v2 (
                    id text PRIMARY KEY,
                    reference text NOT NULL UNIQUE,
                    title text NOT NULL,
                    status text NOT NULL
                        CHECK (status IN ('open', 'investigating', 'approval', 'closed')),
                    created_by text NOT NULL
                );
                INSERT INTO capas_v2 SELECT id, reference, title, status, created_by FROM capas;
                DROP TABLE capas;
                ALTER TABLE capas_v2 RENAME TO capas;",
            )
            .postgres(APPROVAL_STATUS)
            .row_level(APPROVAL_STATUS),
        Migration::new(4, "activity and notifications")
            .sqlite(
                "CREATE TABLE activity (
                    seq integer PRIMARY KEY AUTOINCREMENT,
                    user_id text NOT NULL,
                    capa_id text NOT NULL,
                    reference text NOT NULL,
                    title text NOT NULL,
                    action text NOT NULL
                );
                CREATE INDEX activity_by_user ON activity (user_id, seq);
                CREATE TABLE notifications (
                    seq integer PRIMARY KEY AUTOINCREMENT,
                    recipient text NOT NULL,
                    capa_id text NOT NULL,
                    message text NOT NULL,
                    requested_by text NOT NULL
                );",
            )
            .postgres(&activity_and_notifications(""))
            .row_level(&fenced(
                &activity_and_notifications("tenant_id text NOT NULL,"),
                &["activity", "notifications"],
            )),
        Migration::new(5, "capa description")
            .sqlite(CAPA_DESCRIPTION)
            .postgres(CAPA_DESCRIPTION)
            .row_level(CAPA_DESCRIPTION),
        signatures::migration(6),
    ])
    .expect("the migrations are well formed")
}

/// Migration 5, in every dialect and placement.
const CAPA_DESCRIPTION: &str = "ALTER TABLE capas ADD COLUMN description text NOT NULL DEFAULT ''";

/// Migration 3 on PostgreSQL, whatever the placement.
const APPROVAL_STATUS: &str = "ALTER TABLE capas DROP CONSTRAINT capas_status_check;
    ALTER TABLE capas ADD CONSTRAINT capas_status_check
        CHECK (status IN ('open', 'investigating', 'approval', 'closed'));";

/// Migration 4 on PostgreSQL; `tenant_column` is the row-level tenants' `tenant_id`.
fn activity_and_notifications(tenant_column: &str) -> String {
    format!(
        "CREATE TABLE activity (
            {tenant_column}
            seq bigserial PRIMARY KEY,
            user_id text NOT NULL,
            capa_id text NOT NULL,
            reference text NOT NULL,
            title text NOT NULL,
            action text NOT NULL
        );
        CREATE INDEX activity_by_user ON activity (user_id, seq);
        CREATE TABLE notifications (
            {tenant_column}
            seq bigserial PRIMARY KEY,
            recipient text NOT NULL,
            capa_id text NOT NULL,
            message text NOT NULL,
            requested_by text NOT NULL
        );"
    )
}

/// `ddl` for row-level tenants, followed by the policy that fences each of `tables`.
pub(crate) fn fenced(ddl: &str, tables: &[&str]) -> String {
    let mut sql = format!("{ddl};\n");
    for table in tables {
        sql.push_str(&rls::row_level_policy(table).expect("a plain table name"));
    }
    sql
}

/// A CAPA record, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capa {
    /// A random id (UUID v4): unguessable, and never the same in two tenants.
    pub id: String,
    /// The firm's own reference (`CAPA-2026-001`), unique within the tenant.
    pub reference: String,
    /// What went wrong.
    pub title: String,
    /// What happened, in more words (regulated, like the title).
    pub description: String,
    /// `open`, `investigating`, `approval` or `closed`.
    pub status: CapaStatus,
    /// The user who opened it.
    pub created_by: String,
}

/// Where a CAPA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapaStatus {
    /// Opened, not yet worked on.
    Open,
    /// Root cause being investigated.
    Investigating,
    /// Waiting for the approver (who is notified by a job).
    Approval,
    /// Done; a closed CAPA cannot be reopened.
    Closed,
}

impl CapaStatus {
    /// Every status, in workflow order.
    pub const ALL: [CapaStatus; 4] = [
        CapaStatus::Open,
        CapaStatus::Investigating,
        CapaStatus::Approval,
        CapaStatus::Closed,
    ];

    /// The stored name: `open`, `investigating`, `approval`, `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CapaStatus::Open => "open",
            CapaStatus::Investigating => "investigating",
            CapaStatus::Approval => "approval",
            CapaStatus::Closed => "closed",
        }
    }
}

/// What `POST /api/capas` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCapa {
    /// The firm's reference, unique within the tenant.
    pub reference: String,
    /// What went wrong.
    pub title: String,
    /// What happened, in more words (optional).
    #[serde(default)]
    pub description: String,
}

/// What `PUT /api/capas/{id}/status` takes. Closing is not a status change of its own: a
/// CAPA in `approval` is closed by signing it ([`signatures`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    /// The new status.
    pub status: CapaStatus,
    /// Why (required: a CAPA is a regulated record, and the reason goes in the trail).
    #[serde(default)]
    pub reason: String,
}

/// What `POST /signup` takes: a new firm and its first user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignUp {
    /// The tenant id the firm wants (its subdomain).
    pub tenant: String,
    /// The firm's name.
    pub name: String,
    /// The first user's id.
    pub user: String,
    /// The first user's name.
    pub user_name: String,
    /// The first user's password.
    pub password: String,
}

/// Who the users are and which tenants they belong to. Kept in memory for the demo; an
/// application keeps it in its identity provider or platform database.
#[derive(Clone, Default)]
pub struct Directory {
    inner: Arc<RwLock<DirectoryInner>>,
}

#[derive(Default)]
struct DirectoryInner {
    users: HashMap<String, String>,
    /// Argon2id hashes (PHC strings), by user id.
    passwords: HashMap<String, String>,
    members: HashSet<(String, TenantId)>,
    qa_leads: HashSet<(String, TenantId)>,
    operators: HashSet<String>,
}

impl Directory {
    /// Adds `user` (named `name`) as a member of `tenant`.
    pub fn add_member(&self, user: &str, name: &str, tenant: &TenantId) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.users.insert(user.to_owned(), name.to_owned());
        inner.members.insert((user.to_owned(), tenant.clone()));
    }

    /// Makes `user` (a member already) the QA lead of `tenant`: the inspector's view is
    /// theirs.
    pub fn add_qa_lead(&self, user: &str, tenant: &TenantId) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.qa_leads.insert((user.to_owned(), tenant.clone()));
    }

    /// Adds `user` as a platform operator, member of no tenant.
    pub fn add_operator(&self, user: &str, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.users.insert(user.to_owned(), name.to_owned());
        inner.operators.insert(user.to_owned());
    }

    /// Sets `user`'s password (kept as an Argon2id hash only).
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), StartError> {
        let hash = accounts::hash_password(password)?;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.passwords.insert(user.to_owned(), hash);
        Ok(())
    }

    /// The actor for `user`, if the user exists and `password` is theirs.
    pub fn check_password(&self, user: &str, password: &str) -> Option<Actor> {
        let hash = {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            inner.passwords.get(user).cloned()
        };
        let Some(hash) = hash else {
            // As long as for a known user: the answer's time does not tell who exists.
            accounts::verify_password(password, accounts::unknown_user_hash());
            return None;
        };
        if accounts::verify_password(password, &hash) {
            self.actor(user)
        } else {
            None
        }
    }

    /// The actor for a user id, if the user exists.
    fn actor(&self, user: &str) -> Option<Actor> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let name = inner.users.get(user)?;
        Actor::user(user, name).ok()
    }

    fn is_operator(&self, user: &str) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.operators.contains(user)
    }

    fn is_member_of(&self, user: &str, tenant: &TenantId) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.members.contains(&(user.to_owned(), tenant.clone()))
    }

    /// Whether `user` is the QA lead of `tenant`.
    pub fn is_qa_lead(&self, user: &str, tenant: &TenantId) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.qa_leads.contains(&(user.to_owned(), tenant.clone()))
    }
}

impl Membership for Directory {
    async fn is_member(
        &self,
        actor: &Actor,
        tenant: &TenantId,
    ) -> Result<bool, tenancy_core::Error> {
        Ok(self.is_member_of(actor.id(), tenant))
    }
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

/// The app's state: the tenant databases, the directory, the operator identity platform
/// work (sign-up) runs under.
#[derive(Clone, Debug)]
pub struct Eqms {
    db: TenantDb,
    /// Where new tenants go: the catalog's server, with the configured isolation.
    placement: Placement,
    directory: Directory,
    operator: PlatformContext,
    storage: TenantStorage,
    exports: PathBuf,
    logs: logs::Logs,
    cache: tenancy_cache::Cache,
    jobs: jobs::Jobs,
    sessions: accounts::Sessions,
}

/// Why the app could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

impl Eqms {
    /// Opens (or creates) the tenant databases under `data_dir` and seeds the demo tenants
    /// that are not there yet, each with its user and one CAPA. Attachments go to a
    /// directory per tenant under `data_dir` ([`attachments::local_storage`]).
    pub async fn open(data_dir: &Path) -> Result<Eqms, StartError> {
        Eqms::open_with(data_dir, Config::default()).await
    }

    /// As [`Eqms::open`], with the logs, cache, queue and storage `config` describes.
    pub async fn open_with(data_dir: &Path, mut config: Config) -> Result<Eqms, StartError> {
        let logs = logs::Logs::new(&mut config, data_dir)?;
        // Start-up logs through the pipeline too: a callsite first reached with no
        // subscriber in scope would otherwise stay silent (tracing caches its interest).
        let dispatch = logs.dispatch().clone();
        Eqms::start(data_dir, config, logs)
            .with_subscriber(dispatch)
            .await
    }

    async fn start(data_dir: &Path, config: Config, logs: logs::Logs) -> Result<Eqms, StartError> {
        let storage = config
            .storage
            .clone()
            .unwrap_or_else(|| attachments::local_storage(data_dir));
        let storage = TenantStorage::new(storage)?;
        let exports = data_dir.join("exports");
        std::fs::create_dir_all(&exports)?;
        let db_config = config
            .db
            .clone()
            .unwrap_or_else(|| DbConfig::embedded(data_dir));
        let placement = Placement::new(db_config.catalog_server.clone(), config.isolation);
        let db = TenantDb::new(db_config, migrations())?;
        let cache = activity::open_cache(&config)?;
        let jobs = jobs::Jobs::open(&config, data_dir, db.clone(), logs.dispatch().clone()).await?;
        let operator = PlatformContext::new(Actor::service("eqms-setup")?)?;
        db.platform().prepare(&operator).await?;
        let directory = Directory::default();
        directory.add_operator(OPERATOR.0, OPERATOR.1);
        directory.set_password(OPERATOR.0, &demo_password(OPERATOR.0))?;
        let existing: HashSet<TenantId> = db
            .platform()
            .tenants(&operator)
            .await?
            .into_iter()
            .map(|tenant| tenant.id)
            .collect();
        let eqms = Eqms {
            db,
            placement,
            directory,
            operator,
            storage,
            exports,
            logs,
            cache,
            jobs,
            sessions: accounts::Sessions::default(),
        };
        for (tenant, user, user_name) in DEMO_QA_LEADS {
            let id: TenantId = tenant.parse()?;
            eqms.directory.add_member(user, user_name, &id);
            eqms.directory.add_qa_lead(user, &id);
            eqms.directory.set_password(user, &demo_password(user))?;
        }
        for (n, (tenant, firm, user, user_name, first_capa)) in DEMO_TENANTS.iter().enumerate() {
            let id: TenantId = tenant.parse()?;
            eqms.directory.add_member(user, user_name, &id);
            eqms.directory.set_password(user, &demo_password(user))?;
            if existing.contains(&id) {
                // Re-run: finishes a bucket an interrupted start did not make.
                eqms.storage
                    .platform()
                    .create_bucket(&eqms.operator, &id)
                    .await?;
                continue;
            }
            eqms.create_tenant(id.clone(), firm).await?;
            let ctx = TenantContext::new(id, eqms.directory.actor(user).ok_or("seeded user")?);
            let capa = NewCapa {
                reference: format!("CAPA-2026-{:03}", n + 1),
                title: (*first_capa).to_owned(),
                description: String::new(),
            };
            // In the tenant's scope, so its log line carries the tenant.
            ctx.scope(insert_capa(&eqms.db, &ctx, &capa)).await?;
        }
        Ok(eqms)
    }

    /// The directory of users and memberships.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The tenant databases (for tests that look behind the API).
    pub fn db(&self) -> &TenantDb {
        &self.db
    }

    /// The tenants' buckets (for tests that look behind the API).
    pub fn storage(&self) -> &TenantStorage {
        &self.storage
    }

    /// The logging pipeline (the binary installs it globally).
    pub fn logs(&self) -> &logs::Logs {
        &self.logs
    }

    /// The response cache of `GET /api/activity`.
    pub fn cache(&self) -> &tenancy_cache::Cache {
        &self.cache
    }

    /// The job queue; its worker runs next to the server.
    pub fn jobs(&self) -> &jobs::Jobs {
        &self.jobs
    }

    /// The identity platform work runs under.
    pub fn operator(&self) -> &PlatformContext {
        &self.operator
    }

    async fn create_tenant(&self, id: TenantId, firm: &str) -> Result<(), ApiError> {
        self.db
            .platform()
            .create_tenant(&self.operator, id.clone(), firm, self.placement.clone())
            .await?;
        self.storage
            .platform()
            .create_bucket(&self.operator, &id)
            .await?;
        Ok(())
    }

    /// The service: tenant routes under `/api` behind the tenant layers, and the routes
    /// that serve no tenant beside them. `port` is the port tenants' hosts may carry
    /// (`acme.localhost:3000`); hosts without a port are accepted too.
    pub fn router(&self, port: u16) -> Router {
        let resolver = Subdomain::of("localhost")
            .expect("a valid base domain")
            .accept_port(port);
        let members = Router::new()
            .nest("/api", self.tenant_routes())
            .merge(ui::member_routes(&self.cache))
            .layer(RequireMemberLayer::new(self.directory.clone()).refuse_with(refusal_page));
        // Inner to outer: membership (not for the login page), then authentication, then
        // the tenant.
        let tenant = members
            .merge(ui::sign_in_routes())
            .layer(middleware::from_fn_with_state(
                self.clone(),
                accounts::authenticate,
            ))
            .layer(TenantLayer::new(resolver, self.db.catalog()).refuse_with(refusal_page));
        Router::new()
            .merge(tenant)
            .route("/health", get(health))
            .route("/signup", post(sign_up))
            .route("/operator/tenants", get(operator_tenants))
            .with_state(self.clone())
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(middleware::from_fn_with_state(
                self.logs.dispatch().clone(),
                logs::with_logs,
            ))
    }

    /// The single-tenant build the end-to-end benchmark compares with: the same `/api`
    /// handlers with every tenancy layer removed (no resolution, admission, authentication,
    /// membership or log pipeline), each request given `ctx` as a one-tenant app would
    /// have it. Never serve this: it admits anyone as `ctx`.
    pub fn single_tenant_router(&self, ctx: TenantContext) -> Router {
        let api = self.tenant_routes().layer(middleware::from_fn(
            move |mut request: Request, next: Next| {
                request.extensions_mut().insert(ctx.clone());
                next.run(request)
            },
        ));
        Router::new().nest("/api", api).with_state(self.clone())
    }

    /// The routes that serve a tenant, before any layer.
    fn tenant_routes(&self) -> Router<Eqms> {
        Router::new()
            .route("/capas", get(list_capas).post(create_capa))
            .route("/capas/{id}", get(read_capa))
            .route("/capas/{id}/status", put(change_status))
            .route("/capas/{id}/history", get(audit::history))
            .route("/audit/export", get(audit::export))
            .route("/capas/{id}/attachments", get(attachments::list))
            .route(
                "/capas/{id}/attachments/{name}",
                get(attachments::get).put(attachments::put),
            )
            .route(
                "/activity",
                get(activity::recent_activity).layer(activity::cache_layer(&self.cache)),
            )
            .route("/notifications", get(jobs::list_notifications))
            .route(
                "/capas/{id}/signatures",
                get(signatures::list).post(signatures::sign_json),
            )
    }
}

/// Refusals as JSON for API clients, as a page for browsers.
fn refusal_page(refusal: &Refusal<'_>) -> axum::http::Response<String> {
    if !refusal.accepts("text/html") {
        return refusal.json();
    }
    let message = tenancy_core::escape_html(&refusal.message());
    let status = refusal.status();
    // Not signed in (or signed in at another tenant's host): the way in.
    let sign_in = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        "<p><a href=\"/login\">Sign in</a></p>"
    } else {
        ""
    };
    let mut response = axum::http::Response::new(format!(
        "<!doctype html>\n<html><head><title>{status}</title></head>\
         <body><h1>{status}</h1><p>{message}</p>{sign_in}</body></html>\n"
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The app's own error: a database error, or a rule of the app. It answers through the
/// same mapping as the `tenancy` crates' errors by implementing [`HttpError`].
#[derive(Debug)]
pub enum ApiError {
    /// The database refused or failed.
    Db(tenancy_db::Error),
    /// A closed CAPA cannot change status.
    Closed,
    /// The tenant has a CAPA with this reference already.
    DuplicateReference(String),
    /// The audit trail refused or failed; the change was not made.
    Audit(tenancy_audit::Error),
    /// The tenant's bucket refused or failed.
    Storage(tenancy_storage::Error),
    /// An attachment name that is not one path segment.
    InvalidName(String),
    /// The export bundle could not be packed.
    Export(std::io::Error),
    /// The status changed, but the job that follows it could not be queued.
    Queue(tenancy_queue::Error),
    /// A regulated change came without a reason.
    ReasonRequired,
    /// Closing a CAPA takes an electronic signature, not a status change.
    SignatureRequired,
    /// Only a CAPA awaiting approval can be signed.
    NotAwaitingApproval(CapaStatus),
    /// The first signature of a session names the signer's user id as well.
    SignerIdRequired,
    /// The user id or password given with a signature is not the signer's.
    SignatureRefused,
    /// An upload form that could not be read.
    InvalidUpload(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Db(error) => fmt::Display::fmt(error, f),
            ApiError::Closed => f.write_str("the CAPA is closed; a closed CAPA cannot be reopened"),
            ApiError::DuplicateReference(reference) => write!(
                f,
                "a CAPA with reference {} exists already; choose another reference",
                tenancy_core::quote(reference)
            ),
            ApiError::Audit(error) => fmt::Display::fmt(error, f),
            ApiError::Storage(error) => fmt::Display::fmt(error, f),
            ApiError::InvalidName(name) => write!(
                f,
                "the attachment name {} is not one path segment; name it without `/`",
                tenancy_core::quote(name)
            ),
            ApiError::Export(_) => {
                f.write_str("the audit bundle could not be packed; check the data directory's disk")
            }
            ApiError::Queue(error) => write!(
                f,
                "the status changed, but notifying the approver could not be queued: {error}"
            ),
            ApiError::ReasonRequired => f.write_str(
                "a change to a CAPA needs a reason (it is recorded in the audit trail); give one",
            ),
            ApiError::SignatureRequired => f.write_str(
                "a CAPA is closed by signing it while it awaits approval \
                 (POST /api/capas/{id}/signatures), not by a status change",
            ),
            ApiError::NotAwaitingApproval(status) => write!(
                f,
                "the CAPA is `{}`; only a CAPA awaiting approval can be signed",
                status.as_str()
            ),
            ApiError::SignerIdRequired => f.write_str(
                "the first signature of a session needs your user id as well as your password; \
                 nothing was signed",
            ),
            ApiError::InvalidUpload(why) => write!(
                f,
                "the upload could not be read ({}); send it again",
                tenancy_core::quote(why)
            ),
            ApiError::SignatureRefused => f.write_str(
                "the signature was refused: the user id or password is not yours; \
                 nothing was signed",
            ),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Db(error) => error.source(),
            ApiError::Audit(error) => error.source(),
            ApiError::Storage(error) => error.source(),
            ApiError::Export(error) => Some(error),
            ApiError::Queue(error) => error.source(),
            ApiError::Closed
            | ApiError::DuplicateReference(_)
            | ApiError::InvalidName(_)
            | ApiError::ReasonRequired
            | ApiError::SignatureRequired
            | ApiError::NotAwaitingApproval(_)
            | ApiError::SignerIdRequired
            | ApiError::SignatureRefused
            | ApiError::InvalidUpload(_) => None,
        }
    }
}

impl HttpError for ApiError {
    fn class(&self) -> ErrorClass {
        match self {
            ApiError::Db(error) => error.class(),
            ApiError::Closed
            | ApiError::DuplicateReference(_)
            | ApiError::SignatureRequired
            | ApiError::NotAwaitingApproval(_) => ErrorClass::Conflict,
            ApiError::ReasonRequired | ApiError::SignerIdRequired | ApiError::InvalidUpload(_) => {
                ErrorClass::BadRequest
            }
            ApiError::SignatureRefused => ErrorClass::Unauthenticated,
            ApiError::Audit(error) => match error.kind() {
                tenancy_audit::ErrorKind::InvalidEvent => ErrorClass::BadRequest,
                _ => ErrorClass::Internal,
            },
            ApiError::Storage(error) => error.class(),
            ApiError::InvalidName(_) => ErrorClass::BadRequest,
            ApiError::Export(_) => ErrorClass::Internal,
            ApiError::Queue(_) => ErrorClass::Unavailable,
        }
    }
}

impl From<tenancy_db::Error> for ApiError {
    fn from(error: tenancy_db::Error) -> Self {
        ApiError::Db(error)
    }
}

impl From<tenancy_audit::Error> for ApiError {
    fn from(error: tenancy_audit::Error) -> Self {
        ApiError::Audit(error)
    }
}

impl From<tenancy_storage::Error> for ApiError {
    fn from(error: tenancy_storage::Error) -> Self {
        ApiError::Storage(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self).map(Into::into)
    }
}

pub(crate) const CAPA_COLUMNS: &str = "id, reference, title, description, status, created_by";

async fn insert_capa(db: &TenantDb, ctx: &TenantContext, capa: &NewCapa) -> Result<Capa, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = db.transaction(ctx).await?;
    // The entry first, in the change's transaction: a change that then fails (a duplicate
    // reference) takes its entry with it when the transaction rolls back.
    let record = Capa {
        id: id.clone(),
        reference: capa.reference.clone(),
        title: capa.title.clone(),
        description: capa.description.clone(),
        status: CapaStatus::Open,
        created_by: ctx.actor().id().to_owned(),
    };
    audit::record_create(&mut tx, ctx, &record).await?;
    let created: Capa = tx
        .query_one_as(
            &format!(
                "INSERT INTO capas ({CAPA_COLUMNS}) VALUES ($1, $2, $3, $4, 'open', $5) \
                 RETURNING {CAPA_COLUMNS}"
            ),
            &[
                id.into(),
                capa.reference.as_str().into(),
                capa.title.as_str().into(),
                capa.description.as_str().into(),
                ctx.actor().id().into(),
            ],
        )
        .await
        .map_err(|error| match error.kind() {
            tenancy_db::ErrorKind::UniqueViolation => {
                ApiError::DuplicateReference(capa.reference.clone())
            }
            _ => ApiError::Db(error),
        })?;
    activity::record(&mut tx, ctx, &created, "created").await?;
    tx.commit().await?;
    tracing::info!(
        capa.id = %created.id,
        capa.reference = %created.reference,
        capa.title = %created.title,
        capa.description = %created.description,
        "CAPA created"
    );
    Ok(created)
}

/// The tenant's CAPAs, by reference.
pub(crate) async fn capas(app: &Eqms, ctx: &TenantContext) -> Result<Vec<Capa>, tenancy_db::Error> {
    let mut tx = app.db.transaction(ctx).await?;
    let capas = tx
        .query_as(
            &format!("SELECT {CAPA_COLUMNS} FROM capas ORDER BY reference"),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(capas)
}

/// One CAPA of the tenant; `RowNotFound` (404) for an id the tenant does not have.
pub(crate) async fn capa(
    app: &Eqms,
    ctx: &TenantContext,
    id: &str,
) -> Result<Capa, tenancy_db::Error> {
    let mut tx = app.db.transaction(ctx).await?;
    let capa = tx
        .query_one_as(
            &format!("SELECT {CAPA_COLUMNS} FROM capas WHERE id = $1"),
            &[id.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(capa)
}

async fn list_capas(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Json<Vec<Capa>>, tenancy_db::Error> {
    Ok(Json(capas(&app, &ctx).await?))
}

/// Opens a CAPA and invalidates the tenant's cached responses.
pub(crate) async fn open_capa(
    app: &Eqms,
    ctx: &TenantContext,
    capa: &NewCapa,
) -> Result<Capa, ApiError> {
    let created = insert_capa(&app.db, ctx, capa).await?;
    activity::invalidate(app, ctx).await;
    Ok(created)
}

async fn create_capa(
    State(app): State<Eqms>,
    ctx: TenantContext,
    Json(capa): Json<NewCapa>,
) -> Result<(StatusCode, Json<Capa>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(open_capa(&app, &ctx, &capa).await?),
    ))
}

/// `GET /api/capas/{id}`: the read endpoint of the benchmark.
pub async fn read_capa(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Capa>, tenancy_db::Error> {
    Ok(Json(capa(&app, &ctx, &id).await?))
}

async fn change_status(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
    Json(change): Json<StatusChange>,
) -> Result<Json<Capa>, ApiError> {
    Ok(Json(move_capa(&app, &ctx, &id, &change).await?))
}

/// Moves a CAPA to another status (not `closed`: that is a signature), with the change's
/// reason in the trail; queues the approver's notification on the way into `approval`.
pub(crate) async fn move_capa(
    app: &Eqms,
    ctx: &TenantContext,
    id: &str,
    change: &StatusChange,
) -> Result<Capa, ApiError> {
    let reason = change.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::ReasonRequired);
    }
    let mut tx = app.db.transaction(ctx).await?;
    let before: Capa = tx
        .query_one_as(
            &format!("SELECT {CAPA_COLUMNS} FROM capas WHERE id = $1"),
            &[id.into()],
        )
        .await?;
    if before.status == CapaStatus::Closed {
        return Err(ApiError::Closed);
    }
    if change.status == CapaStatus::Closed {
        return Err(ApiError::SignatureRequired);
    }
    let capa = Capa {
        status: change.status,
        ..before.clone()
    };
    audit::record_status_change(&mut tx, ctx, &before, &capa, reason).await?;
    tx.execute(
        "UPDATE capas SET status = $1 WHERE id = $2",
        &[change.status.as_str().into(), id.into()],
    )
    .await?;
    let previous = before.status;
    activity::record(&mut tx, ctx, &capa, change.status.as_str()).await?;
    tx.commit().await?;
    tracing::info!(
        capa.id = %capa.id,
        capa.title = %capa.title,
        from = previous.as_str(),
        to = capa.status.as_str(),
        "CAPA status changed"
    );
    activity::invalidate(app, ctx).await;
    if capa.status == CapaStatus::Approval && previous != CapaStatus::Approval {
        jobs::on_status_change(app, ctx, &capa)
            .await
            .map_err(ApiError::Queue)?;
    }
    Ok(capa)
}

async fn health() -> &'static str {
    "ok\n"
}

/// The central sign-up: creates a tenant and makes the signing user its first member.
/// Serves no tenant, so it is outside the tenant layers.
async fn sign_up(
    State(app): State<Eqms>,
    Json(form): Json<SignUp>,
) -> Result<(StatusCode, String), Response> {
    let id: TenantId = form.tenant.parse().map_err(IntoResponse::into_response)?;
    if Actor::user(&form.user, &form.user_name).is_err() {
        let error = tenancy_core::Error::new(
            tenancy_core::ErrorKind::InvalidActor,
            "the user id or name is empty, too long or has control characters",
        );
        return Err(error.into_response());
    }
    if form.password.chars().count() < accounts::MIN_PASSWORD_CHARS {
        let error = tenancy_core::Error::new(
            tenancy_core::ErrorKind::InvalidActor,
            "the password is too short: give at least 12 characters",
        );
        return Err(error.into_response());
    }
    app.create_tenant(id.clone(), &form.name)
        .await
        .map_err(IntoResponse::into_response)?;
    app.directory.add_member(&form.user, &form.user_name, &id);
    app.directory
        .set_password(&form.user, &form.password)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
    Ok((StatusCode::CREATED, format!("tenant `{id}` created\n")))
}

/// Every tenant's id and status: the operator's view, for operators only.
async fn operator_tenants(
    State(app): State<Eqms>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Vec<serde_json::Value>>, Response> {
    let is_operator = accounts::basic_credentials(&headers)
        .and_then(|(user, password)| app.directory.check_password(&user, &password))
        .is_some_and(|actor| app.directory.is_operator(actor.id()));
    if !is_operator {
        let error = tenancy_core::Error::new(
            tenancy_core::ErrorKind::NotAMember,
            "the operator routes are for platform operators",
        );
        return Err(error.into_response());
    }
    let tenants = app
        .db
        .platform()
        .tenants(&app.operator)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Json(
        tenants
            .into_iter()
            .map(|tenant| {
                serde_json::json!({
                    "id": tenant.id.as_str(),
                    "name": tenant.display_name,
                    "status": tenant.status.as_str(),
                })
            })
            .collect(),
    ))
}
