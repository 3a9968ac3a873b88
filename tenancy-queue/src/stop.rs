//! [`stop_gracefully`]: a bounded, graceful stop for apalis workers on the persisted
//! backends (SQLite, Redis, PostgreSQL), in place of `Worker::run_until`.
//!
//! Why not `run_until`: apalis-core 1.0 moves a worker that is told to stop straight to
//! its shutting-down phase, where `CallAll::poll_next` (apalis-core
//! `src/worker/call_all.rs`, lines 160-166) only polls the in-flight jobs and no longer calls
//! the backend's `poll_ready`, which (with `poll_close`, reached only once no job is in
//! flight) is the only place that drains the channel of lock and completion events
//! (`Persisted::try_drain_events`, `src/backend/persistence/mod.rs`; `poll_ready` does not
//! drain either while a fetch is pending or a fetched batch is being started, lines 262-304).
//! That channel holds `batch_size * 4` events (40 by default, `persistence/mod.rs` line
//! 198); each job sends two (`Lock` when it starts and `Complete` when it ends,
//! `persistence/service.rs` lines 131-154), and a send that overfills it waits for a drain.
//! With 42 jobs in flight when the stop came, a job's `Complete` waited for a drain that
//! never came, the job never left the in-flight set, and the worker never stopped. A worker
//! limited to `batch_size` jobs at once (`.concurrency(n)`) does not fill the channel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use apalis_core::error::WorkerError;
use apalis_core::worker::context::WorkerContext;

/// The future [`stop_gracefully`]'s closure returns, as `Worker::run_with_ctx` wants it.
pub type StopFuture = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

/// How often the stop checks whether the worker's jobs are done, and nudges it.
const POLL: Duration = Duration::from_millis(20);

/// How many nudges with no job in flight before the worker is stopped.
const SETTLE_NUDGES: u32 = 5;

/// Stops a worker gracefully once `signal` completes, within `grace`: pass the result to
/// `Worker::run_with_ctx` in place of `worker.run_until(signal)`. Build the worker with
/// `.concurrency(n)`, `n` at most the backend's `batch_size` (see the crate's README,
/// "shutdown"): with more jobs in flight, apalis-core 1.0 can leave a job waiting forever
/// to record its completion, and this stop then ends by its timeout.
///
/// When `signal` completes, the worker:
/// 1. pauses: it fetches and starts no more jobs, but keeps recording the ones it runs;
/// 2. finishes the jobs it has started, each under its own tenant (the scope of
///    [`RetenantLayer`](crate::RetenantLayer));
/// 3. stops: the backend hands the jobs it fetched but did not start back to the queue,
///    unchanged (their envelopes still name their tenants), for the next worker.
///
/// If the started jobs are not all done after `grace`, the worker is dropped as if its
/// process had died, and `run_with_ctx` returns an error of kind `TimedOut`: the unfinished
/// jobs stay locked to it until its heartbeat is stale, then the backend's orphan handling
/// gives them to another worker, which runs them under their tenants again. No job is
/// lost either way, but jobs must tolerate running twice.
///
/// If `signal` fails, its error is returned and the worker is dropped at once.
///
/// ```no_run
/// # use std::time::Duration;
/// # use tenancy_core::InMemoryCatalog;
/// use tenancy_queue::apalis::prelude::*;
/// use tenancy_queue::{QueueName, RetenantLayer};
/// # #[derive(serde::Deserialize)] struct Report;
/// # async fn report(_: Report) {}
/// # async fn run(catalog: InMemoryCatalog, pool: tenancy_queue::apalis_sqlite::SqlitePool) -> Result<(), WorkerError> {
/// let name = QueueName::new("reports").expect("a valid queue name");
/// let config = tenancy_queue::apalis_sqlite::Config::default();
/// let worker = WorkerBuilder::new("reports-1")
///     .backend(tenancy_queue::sqlite(&pool, &name, config))
///     .concurrency(10) // the default batch size
///     .build(RetenantLayer::<_, Report>::new(catalog).layer(task_fn(report)));
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let signal = async move {
///     let _ = stopped.await; // the server's shutdown sends on `stop`
///     Ok::<(), std::io::Error>(())
/// };
/// # drop(stop);
/// worker
///     .run_with_ctx(tenancy_queue::stop_gracefully(signal, Duration::from_secs(30)))
///     .await
/// # }
/// ```
pub fn stop_gracefully<S, E>(
    signal: S,
    grace: Duration,
) -> impl FnMut(WorkerContext) -> StopFuture + Send + 'static
where
    S: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<WorkerError> + 'static,
{
    let mut signal = Some(signal);
    move |worker| Box::pin(stop_after(worker, signal.take(), grace))
}

async fn stop_after<S, E>(
    worker: WorkerContext,
    signal: Option<S>,
    grace: Duration,
) -> Result<(), WorkerError>
where
    S: Future<Output = Result<(), E>> + Send,
    E: Into<WorkerError>,
{
    if let Some(signal) = signal {
        signal.await.map_err(Into::into)?;
    }
    let deadline = tokio::time::Instant::now() + grace;
    let timed_out = || {
        WorkerError::IoError(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "worker {} did not finish its jobs within {grace:?} of being told to stop: \
                 it was dropped, and its unfinished jobs go back to the queue once its heartbeat \
                 is stale; give jobs more time to stop or make them shorter",
                tenancy_core::quote(worker.name())
            ),
        ))
    };
    // A stop signalled before the worker started waits for it to start.
    while worker.is_pending() {
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(POLL).await;
    }
    // Paused, the worker starts nothing new but still drains the backend's event channel
    // when it is polled (unless it was paused with a fetch pending: hence the concurrency
    // limit, under which no job ever waits for a drain), so its started jobs can record
    // their completion. A job's
    // completion is recorded after it leaves `task_count`, and its send can wait for a
    // drain, so the worker is nudged until nothing has been in flight for a while.
    if worker.pause().is_ok() {
        let mut idle = 0;
        while idle < SETTLE_NUDGES {
            if tokio::time::Instant::now() >= deadline {
                return Err(timed_out());
            }
            if worker.task_count() == 0 {
                idle += 1;
            } else {
                idle = 0;
            }
            if !nudge(&worker) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    // Nothing in flight but the last completion events: the worker closes the backend,
    // which flushes them and re-enqueues the jobs it fetched but did not start.
    if !worker.is_stopped() {
        worker.stop()?;
    }
    while !worker.is_terminated() {
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Wakes a paused worker without letting it fetch: `resume` wakes its task and `pause`
/// follows with no await between, and `run_with_ctx` polls this future and the worker in
/// one task, so the worker is next polled paused. That poll drains the backend's event
/// channel, releasing the jobs whose completion waits for room in it. `false` if the worker
/// is no longer paused.
fn nudge(worker: &WorkerContext) -> bool {
    worker.resume().is_ok() && worker.pause().is_ok()
}
