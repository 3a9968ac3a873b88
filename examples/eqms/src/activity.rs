//! `GET /api/activity`: the signed-in user's recent activity (the CAPAs they created or
//! changed last), the brief's dashboard widget, cached through `tenancy-cache`'s response
//! cache per tenant and per user. Two firms whose users share an id get their own
//! responses: the key is built from the tenant context, never from the user id alone.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenancy_cache::http::ResponseCacheLayer;
use tenancy_cache::{Cache, CacheConfig};
use tenancy_core::TenantContext;
use tenancy_db::Transaction;

use crate::config::Config;
use crate::{Capa, Eqms, StartError};

/// How long a cached activity response lives (changes invalidate it sooner).
pub const ACTIVITY_TTL: Duration = Duration::from_secs(300);

/// How many entries `GET /api/activity` returns.
pub const ACTIVITY_LIMIT: i64 = 20;

/// One thing a user did to a CAPA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    /// The order of the entries within the tenant.
    pub seq: i64,
    /// The CAPA's id.
    pub capa_id: String,
    /// The CAPA's reference.
    pub reference: String,
    /// The CAPA's title when it happened.
    pub title: String,
    /// `created`, or the status it was moved to.
    pub action: String,
}

/// The cache: in process by default, Redis when `EQMS_REDIS_URL` is set.
pub(crate) fn open_cache(config: &Config) -> Result<Cache, StartError> {
    let backend = match &config.redis_url {
        Some(url) => CacheConfig::redis(url.as_str()),
        None => CacheConfig::in_process(),
    };
    Ok(Cache::new(
        backend.namespace(config.cache_namespace.as_str()),
    )?)
}

/// The response cache in front of `GET /api/activity`: per tenant (always), per user.
pub(crate) fn cache_layer(cache: &Cache) -> ResponseCacheLayer {
    ResponseCacheLayer::new(cache.clone(), ACTIVITY_TTL).per_user(true)
}

/// Records that the actor of `ctx` did `action` to `capa`, in the same transaction.
pub(crate) async fn record(
    tx: &mut Transaction,
    ctx: &TenantContext,
    capa: &Capa,
    action: &str,
) -> Result<(), tenancy_db::Error> {
    tx.execute(
        "INSERT INTO activity (user_id, capa_id, reference, title, action) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            ctx.actor().id().into(),
            capa.id.as_str().into(),
            capa.reference.as_str().into(),
            capa.title.as_str().into(),
            action.into(),
        ],
    )
    .await?;
    Ok(())
}

/// After a change: every cached response of the tenant is stale (one `INCR` of the
/// tenant's generation, whatever the number of keys). A failure is logged, not returned:
/// the change is committed, and a stale widget is the tenant's own data.
pub(crate) async fn invalidate(app: &Eqms, ctx: &TenantContext) {
    if let Err(error) = app.cache.tenant(ctx).invalidate().await {
        tracing::warn!(error = %error, "the tenant's response cache could not be invalidated");
    }
}

/// The signed-in user's last entries, newest first.
pub(crate) async fn entries(
    app: &Eqms,
    ctx: &TenantContext,
) -> Result<Vec<ActivityEntry>, tenancy_db::Error> {
    let mut tx = app.db.transaction(ctx).await?;
    let entries = tx
        .query_as(
            "SELECT seq, capa_id, reference, title, action FROM activity \
             WHERE user_id = $1 ORDER BY seq DESC LIMIT $2",
            &[ctx.actor().id().into(), ACTIVITY_LIMIT.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(entries)
}

/// `GET /api/activity`: the signed-in user's last entries, newest first.
pub(crate) async fn recent_activity(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Json<Vec<ActivityEntry>>, tenancy_db::Error> {
    Ok(Json(entries(&app, &ctx).await?))
}
