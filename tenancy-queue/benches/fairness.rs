//! The noisy neighbour: tenant A pushes 10,000 slow jobs, then tenant B pushes one. How long
//! does B's job wait before it starts, on one shared queue and in fair mode (a queue and a
//! worker per tenant)?
//!
//! A "slow" job sleeps 5 ms (scaled down from real work so the bench stays short; B's wait
//! on the shared queue scales with it linearly). The shared worker may run 16 jobs at
//! once; in fair mode each tenant's worker may run 8, the same capacity in total. SQLite
//! backend (the embedded default; on apalis-redis 1.0 a backlog of over about 8,000 due jobs
//! stops every worker, see BENCHMARKS.md); three runs of each mode, medians
//! reported. The backlog and B's job are pushed before the workers start.
//!
//! Run with: `cargo bench -p tenancy-queue --all-features --bench fairness`

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use tenancy_core::{
    Actor, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant, TenantContext, TenantId,
};
use tenancy_queue::{FairQueue, QueueName, RawJob, RetenantLayer, TenantQueue};
use tenancy_test::{operator, unique_tenant};

const BACKLOG: usize = 10_000;
const SLOW: Duration = Duration::from_millis(5);
const RUNS: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    urgent: bool,
}

/// When B's job started.
#[derive(Clone, Default)]
struct Started(Arc<Mutex<Option<Instant>>>);

/// The worker's capacity: how many jobs run at once, taken by the handler (the worker
/// itself fetches as fast as it can).
#[derive(Clone)]
struct Slots(Arc<tokio::sync::Semaphore>);

async fn slow(job: Job, started: Data<Started>, slots: Data<Slots>) -> Result<(), BoxDynError> {
    let slots: &Slots = &slots;
    // Tokio's semaphore is first come, first served: jobs take slots in the order the
    // worker fetched them.
    let _slot = slots.0.acquire().await?;
    if job.urgent {
        let started: &Started = &started;
        *started.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        return Ok(());
    }
    tokio::time::sleep(SLOW).await;
    Ok(())
}

fn tenant(catalog: &InMemoryCatalog) -> TenantContext {
    let id: TenantId = unique_tenant("fair");
    let placement = Placement::new(
        ServerName::new("embedded").unwrap(),
        IsolationMode::Database,
    );
    catalog
        .create(
            &operator(),
            Tenant::new(id.clone(), "Bench firm", placement),
        )
        .unwrap();
    TenantContext::new(id, Actor::service("bench").unwrap())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Waits until B's job has started; returns how long after `pushed`.
async fn wait_for_b(started: &Started, pushed: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "B's job did not start within 120 s"
        );
        if let Some(at) = *started.0.lock().unwrap_or_else(PoisonError::into_inner) {
            return at - pushed;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `$worker` (a built apalis worker) while `$body` runs; stops it after.
macro_rules! while_running {
    ($worker:expr, $body:expr) => {{
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            Ok::<(), std::io::Error>(())
        };
        let (ran, out) = tokio::join!($worker.run_until(signal), async {
            let out = $body.await;
            let _ = stop.send(());
            out
        });
        ran.unwrap();
        out
    }};
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_tenant("fair")));
    let pool = tenancy_queue::sqlite_pool(&path).await.unwrap();
    let config = apalis_sqlite::Config::default();
    let mut shared_waits = Vec::new();
    let mut fair_waits = Vec::new();
    for _ in 0..RUNS {
        // One shared queue.
        let catalog = InMemoryCatalog::new();
        let (a, b) = (tenant(&catalog), tenant(&catalog));
        let name = QueueName::new(unique_tenant("fair").as_str()).unwrap();
        let backend = tenancy_queue::sqlite(&pool, &name, config.clone());
        let queue = TenantQueue::<_, Job>::new(backend.clone());
        let started = Started::default();
        let worker = WorkerBuilder::new(format!("shared-{name}"))
            .backend(backend.clone())
            .data(started.clone())
            .data(Slots(Arc::new(tokio::sync::Semaphore::new(16))))
            .build(RetenantLayer::<_, Job>::new(catalog.clone()).layer(task_fn(slow)));
        // A's backlog, then B's one job, then the worker starts.
        let backlog: Vec<RawJob> = (0..BACKLOG)
            .map(|_| queue.seal(&a, &Job { urgent: false }).unwrap())
            .collect();
        let mut raw = backend.clone();
        raw.push_bulk(backlog).await.unwrap();
        let pushed = Instant::now();
        queue.push(&b, Job { urgent: true }).await.unwrap();
        let wait = while_running!(worker, wait_for_b(&started, pushed));
        shared_waits.push(wait);

        // Fair mode: a queue and a worker per tenant.
        let base = QueueName::new(unique_tenant("fair").as_str()).unwrap();
        let fair = FairQueue::<_, Job>::new(base.clone(), |name: &QueueName| {
            tenancy_queue::sqlite(&pool, name, config.clone())
        })
        .unwrap();
        let started = Started::default();
        let worker_of = |ctx: &TenantContext| {
            WorkerBuilder::new(format!("fair-{}", unique_tenant("w")))
                .backend(fair.backend_for(ctx.tenant()))
                .data(started.clone())
                .data(Slots(Arc::new(tokio::sync::Semaphore::new(8))))
                .build(RetenantLayer::<_, Job>::new(catalog.clone()).layer(task_fn(slow)))
        };
        let (worker_a, worker_b) = (worker_of(&a), worker_of(&b));
        let a_queue = TenantQueue::<_, Job>::new(fair.backend_for(a.tenant()));
        let backlog: Vec<RawJob> = (0..BACKLOG)
            .map(|_| a_queue.seal(&a, &Job { urgent: false }).unwrap())
            .collect();
        let mut raw = fair.backend_for(a.tenant());
        raw.push_bulk(backlog).await.unwrap();
        let pushed = Instant::now();
        fair.push(&b, Job { urgent: true }).await.unwrap();
        let wait = while_running!(worker_a, async {
            while_running!(worker_b, wait_for_b(&started, pushed))
        });
        fair_waits.push(wait);
    }
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let shared = median(&mut shared_waits);
    let fair = median(&mut fair_waits);
    println!(
        "\nB's one job behind A's {BACKLOG} jobs of {SLOW:?} each (SQLite, {RUNS} runs, median wait until B's job starts)"
    );
    println!(
        "  one shared queue, a worker running 16 at once     {shared:>10.1?}   (runs: {shared_waits:.1?})"
    );
    println!(
        "  fair mode: a queue and a worker (8 at once) each  {fair:>10.1?}   (runs: {fair_waits:.1?})"
    );
    println!(
        "  B waits {:.0}x less in fair mode",
        shared.as_secs_f64() / fair.as_secs_f64().max(1e-6)
    );
}
