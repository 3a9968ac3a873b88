//! Jobs through `tenancy-queue`: moving a CAPA to `approval` pushes a job (notify the
//! approver) with the request's tenant context; a worker started next to the server runs
//! it behind `RetenantLayer`, under the record's tenant, and records the notification in
//! that tenant's database (`GET /api/notifications`). The queue is a SQLite file in the
//! data directory by default, Redis or PostgreSQL when `EQMS_QUEUE_URL` says so.

use std::path::Path;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenancy_core::SharedCatalog;
use tenancy_core::TenantContext;
use tenancy_db::TenantDb;
use tenancy_queue::apalis::prelude::Layer as _;
use tenancy_queue::apalis::prelude::{
    BoxDynError, Data, WorkerBuilder, WorkerBuilderExt as _, task_fn,
};
use tenancy_queue::apalis_postgres::{self, PgPool, PostgresStorage};
use tenancy_queue::apalis_redis::{self, RedisStorage};
use tenancy_queue::apalis_sqlite::{self, SqliteStorage};
use tenancy_queue::{QueueName, RawJob, RetenantLayer, TenantQueue};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Dispatch;
use tracing::instrument::WithSubscriber as _;

use crate::config::Config;
use crate::{CAPA_COLUMNS, Capa, Eqms, StartError};

/// The job: which CAPA awaits approval. The tenant is in the envelope, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyApprover {
    /// The CAPA's id, in the tenant of the envelope.
    pub capa_id: String,
}

/// A notification, as stored in the tenant's database and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The order of the notifications within the tenant.
    pub seq: i64,
    /// Who it is for.
    pub recipient: String,
    /// The CAPA it is about.
    pub capa_id: String,
    /// What it says.
    pub message: String,
    /// The user whose change asked for it.
    pub requested_by: String,
}

/// How often the worker polls and beats (apalis' 30 s default would delay a notification
/// by as much).
const POLL: Duration = Duration::from_secs(1);

/// Who an approval notification is for.
pub const APPROVER: &str = "approvers";

/// The queue's backend.
#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStorage<RawJob>),
    Redis(RedisStorage<RawJob>),
    Postgres(PostgresStorage<RawJob>),
}

/// The notify-the-approver queue of one app.
#[derive(Clone)]
pub struct Jobs {
    backend: Backend,
    name: QueueName,
    db: TenantDb,
    catalog: SharedCatalog,
    dispatch: Dispatch,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Redis(_) => "redis",
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("Jobs")
            .field("backend", &backend)
            .field("queue", &self.name.as_str())
            .finish_non_exhaustive()
    }
}

impl Jobs {
    pub(crate) async fn open(
        config: &Config,
        data_dir: &Path,
        db: TenantDb,
        dispatch: Dispatch,
    ) -> Result<Jobs, StartError> {
        let name = QueueName::new(&config.queue_name)?;
        let backend = match config.queue_url.as_deref() {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let conn = apalis_redis::connect(url).await?;
                Backend::Redis(tenancy_queue::redis(
                    conn,
                    &name,
                    apalis_redis::Config::default().heartbeat_interval(POLL),
                ))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let pool = PgPool::connect(url).await?;
                PostgresStorage::setup(&pool).await?;
                Backend::Postgres(tenancy_queue::postgres(
                    &pool,
                    &name,
                    apalis_postgres::Config::default().heartbeat_interval(POLL),
                ))
            }
            Some(_) => {
                return Err(
                    "EQMS_QUEUE_URL is not a redis:// or postgres:// URL; unset it for \
                            the SQLite file in the data directory"
                        .into(),
                );
            }
            None => {
                std::fs::create_dir_all(data_dir)?;
                let pool = tenancy_queue::sqlite_pool(&data_dir.join("queue.sqlite")).await?;
                Backend::Sqlite(tenancy_queue::sqlite(
                    &pool,
                    &name,
                    apalis_sqlite::Config::default().heartbeat_interval(POLL),
                ))
            }
        };
        Ok(Jobs {
            backend,
            name,
            catalog: db.catalog(),
            db,
            dispatch,
        })
    }

    /// Pushes `job` for the tenant of `ctx` (its actor and correlation id with it).
    pub(crate) async fn push(
        &self,
        ctx: &TenantContext,
        job: NotifyApprover,
    ) -> Result<(), tenancy_queue::Error> {
        match &self.backend {
            Backend::Sqlite(b) => TenantQueue::new(b.clone()).push(ctx, job).await,
            Backend::Redis(b) => TenantQueue::new(b.clone()).push(ctx, job).await,
            Backend::Postgres(b) => TenantQueue::new(b.clone()).push(ctx, job).await,
        }
    }

    /// Starts the worker (a task on the runtime); stop it with [`Worker::stop`].
    pub fn start_worker(&self) -> Worker {
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            Ok::<(), std::io::Error>(())
        };
        let name = format!("{}-{}", self.name.as_str(), uuid::Uuid::new_v4().simple());
        let layer = RetenantLayer::new(self.catalog.clone());
        let db = self.db.clone();
        macro_rules! run {
            ($backend:expr) => {{
                let worker = WorkerBuilder::new(name)
                    .backend($backend.clone())
                    .data(db)
                    // At most the backends' fetch batch (10) at once: what lets a stopping
                    // worker finish its jobs (tenancy-queue's README, "shutdown").
                    .concurrency(10)
                    .build(layer.layer(task_fn(notify_approver)));
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the worker serves every tenant: RetenantLayer enters each job's \
                              tenant around its handler, and no tenant is in scope here"
                )]
                tokio::spawn(
                    async move {
                        worker
                            .run_with_ctx(tenancy_queue::stop_gracefully(signal, STOP_GRACE))
                            .await
                            .map_err(StartError::from)
                    }
                    .with_subscriber(self.dispatch.clone()),
                )
            }};
        }
        let task = match &self.backend {
            Backend::Sqlite(b) => run!(b),
            Backend::Redis(b) => run!(b),
            Backend::Postgres(b) => run!(b),
        };
        Worker { stop, task }
    }
}

/// How long a stopping worker may take to finish the jobs it started; past it, they are
/// left to the backend to run again.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A running worker: stop it with the server.
#[derive(Debug)]
pub struct Worker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

impl Worker {
    /// Asks the worker to stop; it finishes the jobs it started, under their tenants.
    pub async fn stop(self) -> Result<(), StartError> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// The handler: runs inside the job's tenant scope, which `RetenantLayer` re-established
/// from the envelope; it reaches the tenant's database through that context only.
async fn notify_approver(job: NotifyApprover, db: Data<TenantDb>) -> Result<(), BoxDynError> {
    let ctx = TenantContext::current()?;
    let mut tx = db.transaction(&ctx).await?;
    let capa: Capa = tx
        .query_one_as(
            &format!("SELECT {CAPA_COLUMNS} FROM capas WHERE id = $1"),
            &[job.capa_id.as_str().into()],
        )
        .await?;
    let message = format!(
        "CAPA {} awaits your approval: {}",
        capa.reference, capa.title
    );
    tx.execute(
        "INSERT INTO notifications (recipient, capa_id, message, requested_by) \
         VALUES ($1, $2, $3, $4)",
        &[
            APPROVER.into(),
            capa.id.as_str().into(),
            message.as_str().into(),
            ctx.actor().id().into(),
        ],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        capa.id = %capa.id,
        capa.reference = %capa.reference,
        capa.title = %capa.title,
        "approver notified"
    );
    Ok(())
}

/// After a status change: a CAPA moved to approval gets its approver notified.
pub(crate) async fn on_status_change(
    app: &Eqms,
    ctx: &TenantContext,
    capa: &Capa,
) -> Result<(), tenancy_queue::Error> {
    app.jobs
        .push(
            ctx,
            NotifyApprover {
                capa_id: capa.id.clone(),
            },
        )
        .await
}

/// `GET /api/notifications`: the tenant's notifications, newest first.
pub(crate) async fn list_notifications(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Json<Vec<Notification>>, tenancy_db::Error> {
    let mut tx = app.db.transaction(&ctx).await?;
    let notifications = tx
        .query_as(
            "SELECT seq, recipient, capa_id, message, requested_by FROM notifications \
             ORDER BY seq DESC",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(notifications))
}
