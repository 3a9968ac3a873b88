//! Jobs per second through an apalis worker with `RetenantLayer` vs the same worker without
//! it, on the same backend, with a trivial handler (where the layer's cost shows most).
//!
//! Each round pushes the same number of jobs for each variant onto a fresh queue, then
//! times only the draining: from starting the worker until it has run every job and
//! stopped. Variants take turns in a rotating order; the report gives each variant's
//! median jobs per second and the paired ratio (the median over rounds of the layer's
//! throughput divided by the plain worker's in the same round). The side-by-side harness of
//! tenancy-test times every call of its body, pushes included, so this bench keeps its
//! own loop to leave the pushes out.
//!
//! Run with: `cargo bench -p tenancy-queue --all-features --bench throughput`
//! (needs the test Redis; SQLite runs in a temporary file).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use tenancy_core::{
    Actor, InMemoryCatalog, IsolationMode, Placement, ServerName, Tenant, TenantContext, TenantId,
};
use tenancy_queue::{QueueName, RawJob, RetenantLayer, TenantQueue};
use tenancy_test::{Service, operator, unique_tenant};

const JOBS: usize = 2_000;
const TENANTS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    n: u64,
}

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

async fn trivial(job: Job, worker: WorkerContext, count: Data<Counter>) -> Result<(), BoxDynError> {
    std::hint::black_box(job.n);
    let count: &Counter = &count;
    if count.0.fetch_add(1, Ordering::Relaxed) + 1 == JOBS {
        worker.stop()?;
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Drains the queue `backend` holds `JOBS` jobs on, through `service`; returns jobs/s.
macro_rules! drain {
    ($backend:expr, $service:expr) => {{
        let counter = Counter(Arc::new(AtomicUsize::new(0)));
        let worker = WorkerBuilder::new(format!("bench-{}", unique_tenant("w")))
            .backend($backend)
            .data(counter.clone())
            .build($service);
        let start = Instant::now();
        worker.run().await.expect("the worker runs");
        let elapsed = start.elapsed();
        assert_eq!(counter.0.load(Ordering::Relaxed), JOBS);
        JOBS as f64 / elapsed.as_secs_f64()
    }};
}

/// One backend's comparison: `$plain(queue)` and `$tenanted(queue)` make a plain and a
/// `RawJob` backend on a queue; `$cleanup(queue)` removes it.
macro_rules! compare {
    ($title:expr, $rounds:expr, $plain:expr, $tenanted:expr, $cleanup:expr) => {{
        const ROUNDS: usize = $rounds;
        let (catalog, contexts) = tenants();
        let mut plain_rates = Vec::new();
        let mut layer_rates = Vec::new();
        let mut ratios = Vec::new();
        for round in 0..ROUNDS {
            let mut this_round = [0.0f64; 2];
            for turn in 0..2 {
                let variant = (round + turn) % 2;
                let queue = QueueName::new(unique_tenant("bench").as_str()).unwrap();
                if variant == 0 {
                    let mut backend = $plain(&queue);
                    let jobs: Vec<Job> = (0..JOBS as u64).map(|n| Job { n }).collect();
                    backend.push_bulk(jobs).await.expect("push");
                    this_round[0] = drain!(backend, task_fn(trivial));
                } else {
                    let backend = $tenanted(&queue);
                    let jobs = TenantQueue::<_, Job>::new(backend.clone());
                    let sealed: Vec<RawJob> = (0..JOBS)
                        .map(|n| {
                            jobs.seal(&contexts[n % TENANTS], &Job { n: n as u64 })
                                .unwrap()
                        })
                        .collect();
                    let mut raw = backend.clone();
                    raw.push_bulk(sealed).await.expect("push");
                    this_round[1] = drain!(
                        backend,
                        RetenantLayer::<_, Job>::new(catalog.clone()).layer(task_fn(trivial))
                    );
                }
                $cleanup(&queue).await;
            }
            plain_rates.push(this_round[0]);
            layer_rates.push(this_round[1]);
            ratios.push(this_round[1] / this_round[0]);
        }
        println!(
            "\n{} ({JOBS} jobs per run, {ROUNDS} rounds, trivial handler, {TENANTS} tenants)",
            $title
        );
        println!(
            "  plain apalis worker      {:>9.0} jobs/s (median)",
            median(&mut plain_rates)
        );
        println!(
            "  with RetenantLayer       {:>9.0} jobs/s (median)",
            median(&mut layer_rates)
        );
        println!(
            "  throughput ratio         {:>9.3}x (median of paired rounds; goal >= 0.95x)",
            median(&mut ratios)
        );
    }};
}

fn tenants() -> (InMemoryCatalog, Vec<TenantContext>) {
    let catalog = InMemoryCatalog::new();
    let contexts = (0..TENANTS)
        .map(|_| {
            let id: TenantId = unique_tenant("bench");
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
        })
        .collect();
    (catalog, contexts)
}

/// The layer's own cost per job, with no backend: decoding a plain job and calling the
/// handler's service, vs decoding an envelope and calling it through `Retenant`.
fn layer_alone() {
    use tenancy_test::bench::Comparison;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (catalog, contexts) = tenants();
    let pool = runtime
        .block_on(sqlx::SqlitePool::connect("sqlite::memory:"))
        .unwrap();
    let name = QueueName::new("layer-alone").unwrap();
    let queue = TenantQueue::<_, Job>::new(tenancy_queue::sqlite(
        &pool,
        &name,
        apalis_sqlite::Config::default(),
    ));
    let plain_bytes: Vec<Vec<u8>> = (0..TENANTS as u64)
        .map(|n| serde_json::to_vec(&Job { n }).unwrap())
        .collect();
    let sealed_bytes: Vec<Vec<u8>> = (0..TENANTS)
        .map(|n| {
            serde_json::to_vec(&queue.seal(&contexts[n], &Job { n: n as u64 }).unwrap()).unwrap()
        })
        .collect();
    let handler = tower::service_fn(|task: Task<Job>| async move {
        std::hint::black_box(task.args.n);
        Ok::<(), BoxDynError>(())
    });
    let mut plain = handler;
    let mut tenanted = RetenantLayer::<_, Job>::new(catalog).layer(handler);
    let (mut i, mut j) = (0usize, 0usize);
    Comparison::new("the layer alone, per job (decode + call; no backend)")
        .rounds(15)
        .iterations(20_000)
        .baseline("plain: decode the job, call the handler", || {
            i = (i + 1) % TENANTS;
            let job: Job = serde_json::from_slice(&plain_bytes[i]).unwrap();
            let task = TaskBuilder::new(job).build();
            runtime
                .block_on(async { plain.ready().await?.call(task).await })
                .unwrap();
        })
        .variant(
            "RetenantLayer: decode the envelope, admit, scope, call",
            || {
                j = (j + 1) % TENANTS;
                let raw: RawJob = serde_json::from_slice(&sealed_bytes[j]).unwrap();
                let task = TaskBuilder::new(raw).build();
                runtime
                    .block_on(async { tenanted.ready().await?.call(task).await })
                    .unwrap();
            },
        )
        .run();
}

fn main() {
    layer_alone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(workers());
}

async fn workers() {
    // SQLite, the embedded default.
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_tenant("bench")));
    let pool = tenancy_queue::sqlite_pool(&path).await.unwrap();
    let config = apalis_sqlite::Config::default();
    compare!(
        "SQLite",
        11,
        |q: &QueueName| apalis_sqlite::SqliteStorage::<Job>::new(&pool)
            .with_config(config.clone().queue(q.as_str())),
        |q: &QueueName| tenancy_queue::sqlite(&pool, q, config.clone()),
        |_: &QueueName| async {}
    );
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    // Redis.
    let conn = apalis_redis::connect(Service::Redis.require())
        .await
        .unwrap();
    let cleanup = |q: &QueueName| {
        let mut conn = conn.clone();
        let pattern = format!("{q}:*");
        async move {
            let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, pattern)
                .await
                .unwrap();
            if !keys.is_empty() {
                let () = redis::AsyncCommands::del(&mut conn, keys).await.unwrap();
            }
        }
    };
    compare!(
        "Redis",
        31,
        |q: &QueueName| apalis_redis::RedisStorage::<Job>::new(conn.clone())
            .with_config(apalis_redis::Config::default().queue(q.as_str())),
        |q: &QueueName| tenancy_queue::redis(conn.clone(), q, apalis_redis::Config::default()),
        cleanup
    );
}
