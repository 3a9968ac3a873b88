//! The worker side, against real SQLite, Redis and PostgreSQL backends: jobs run under the
//! tenant they were pushed for and no other; bad envelopes and refused tenants are killed
//! and kept in the dead set with their reason; retries, panics and timeouts keep or drop
//! the tenant cleanly.

mod common;

use std::time::Duration;

use apalis::prelude::*;
use common::{Job, Recorder, Seen, Store};
use futures::FutureExt as _;
use tenancy_core::{TenantContext, TenantStatus};
use tenancy_queue::{RejectionKind, RetenantLayer, SigningKey, TenantQueue};

/// Records what the handler saw, fails or panics or sleeps as the job says.
async fn handler(
    job: Job,
    ctx: Data<TenantContext>,
    recorder: Data<Recorder>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let seen = |job: &Job| Seen {
        canary: job.canary.clone(),
        pushed_for: job.pushed_for.clone(),
        current: TenantContext::current()
            .ok()
            .map(|c| c.tenant().to_string()),
        data: ctx.tenant().to_string(),
        attempt: attempt.current(),
    };
    recorder.push(seen(&job));
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
        // After the await, maybe on another thread, the tenant is still this job's.
        recorder.push(seen(&job));
    }
    if job.panic {
        panic!("the job panics, as asked");
    }
    if attempt.current() <= job.fail_attempts {
        return Err(format!("attempt {} fails, as asked", attempt.current()).into());
    }
    Ok(())
}

// Heartbeats every second, so a killed worker's jobs come back within seconds; a worker is
// taken for dead after three missed ones. Never after one: apalis-redis' heartbeat stamps
// the worker (in whole seconds), then re-enqueues the jobs of every worker stamped at
// least `heartbeat_interval × missed_heartbeats` before, itself included; when a second
// boundary falls between the two calls, a one-second allowance declares the worker itself
// dead, takes its jobs back, and its next fetch fails with "worker not registered" (the
// flaky Redis tests of issue 12).
fn sqlite_config() -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .heartbeat_interval(Duration::from_secs(1))
        .missed_heartbeats(3)
}

fn redis_config() -> apalis_redis::Config {
    apalis_redis::Config::default()
        .heartbeat_interval(Duration::from_secs(1))
        .missed_heartbeats(3)
}

fn postgres_config() -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .heartbeat_interval(Duration::from_secs(1))
        .missed_heartbeats(3)
}

/// Each scenario runs once per backend, with `$store` (the fixture), `$queue` (its name)
/// and `$backend` (a `RawJob` backend on it) in scope; the store is removed afterwards.
macro_rules! on_every_backend {
    ($(async fn $name:ident($store:ident, $queue:ident, $backend:ident) $body:block)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $store = Store::sqlite().await;
                let $queue = common::queue_name();
                let $backend = tenancy_queue::sqlite($store.sqlite_pool(), &$queue, sqlite_config());
                // Clean up even when the scenario fails, then fail.
                let outcome = std::panic::AssertUnwindSafe(async { $body }).catch_unwind().await;
                $store.cleanup(&$queue).await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let $store = Store::redis().await;
                let $queue = common::queue_name();
                let $backend = tenancy_queue::redis($store.redis_conn(), &$queue, redis_config());
                // Clean up even when the scenario fails, then fail.
                let outcome = std::panic::AssertUnwindSafe(async { $body }).catch_unwind().await;
                $store.cleanup(&$queue).await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $store = Store::postgres().await;
                let $queue = common::queue_name();
                let $backend = tenancy_queue::postgres($store.pg_pool(), &$queue, postgres_config());
                // Clean up even when the scenario fails, then fail.
                let outcome = std::panic::AssertUnwindSafe(async { $body }).catch_unwind().await;
                $store.cleanup(&$queue).await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    )*};
}

/// How long a test worker may take to stop once told to.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A worker on `$backend` whose handler is `handler` behind `$layer`, run (polled in the
/// test's own task) while `$body` runs; stopped with `stop_gracefully` when `$body` ends,
/// and failing the test if it does not stop within [`STOP_GRACE`]. At most `limit` jobs (by
/// default the backends' batch size, 10, as `stop_gracefully` requires) run at once.
macro_rules! with_worker {
    ($backend:expr, $layer:expr, $recorder:expr, $body:expr) => {
        with_worker!(limit 10, $backend, $layer, $recorder, $body)
    };
    (limit $limit:expr, $backend:expr, $layer:expr, $recorder:expr, $body:expr) => {{
        let worker = WorkerBuilder::new(common::worker_name("w"))
            .backend($backend.clone())
            .data($recorder.clone())
            .concurrency($limit)
            .catch_panic()
            .timeout(Duration::from_secs(2))
            .build($layer.clone().layer(task_fn(handler)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            Ok::<(), std::io::Error>(())
        };
        let (ran, out) = tokio::join!(
            worker.run_with_ctx(tenancy_queue::stop_gracefully(signal, STOP_GRACE)),
            async {
                let out = $body.await;
                let _ = stop.send(());
                out
            }
        );
        ran.expect("the worker finished its jobs and stopped within STOP_GRACE of being told to");
        out
    }};
}

/// Pushes 42 short jobs (more than four fetch batches: the backends fetch 10 at a time) for
/// three tenants, stops a worker running at most `$limit` at once as soon as its first job
/// has started, then lets a second worker run what is left: every job that started on the
/// first worker finished there, and every job ran to the end exactly once, under its own
/// tenant; none is lost.
macro_rules! stop_mid_queue {
    ($store:ident, $queue:ident, $backend:ident, $limit:expr) => {{
        let (catalog, tenants) = common::catalog(3);
        let jobs = TenantQueue::<_, Job>::new($backend.clone());
        let mut canaries = std::collections::HashMap::new();
        for i in 0..42 {
            let tenant = &tenants[i % tenants.len()];
            let canary = tenancy_test::log::canary("stop");
            let mut job = Job::new(tenant, &canary);
            job.sleep_ms = 200;
            jobs.push(&common::ctx(tenant), job).await.unwrap();
            canaries.insert(canary, tenant.to_string());
        }
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        // Stop as soon as the first job is in flight.
        with_worker!(limit $limit, $backend, layer, recorder, async {
            recorder.wait_for(1, Duration::from_secs(30)).await;
        });
        // Every job that started on the first worker finished there (recorded again after
        // its sleep), under its tenant.
        let first = recorder.all();
        assert_all_under_their_tenant(&first);
        let started: std::collections::HashSet<&str> = first.iter().map(|s| s.canary.as_str()).collect();
        for canary in &started {
            assert_eq!(
                first.iter().filter(|s| s.canary == *canary).count(),
                2,
                "job {canary} was cut short by the stop: {first:?}"
            );
        }
        assert_eq!(
            $store.done(&$queue).await,
            started.len(),
            "the first worker did not record the completion of every job it started"
        );
        // The jobs it fetched but did not start, and those it never fetched, are not lost:
        // a second worker runs them.
        with_worker!($backend, layer, recorder, async {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while $store.done(&$queue).await < canaries.len() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "only {} of {} jobs done after the first worker stopped having started {}",
                    $store.done(&$queue).await,
                    canaries.len(),
                    started.len()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let seen = recorder.all();
        assert_all_under_their_tenant(&seen);
        for (canary, tenant) in &canaries {
            let runs: Vec<&Seen> = seen.iter().filter(|s| &s.canary == canary).collect();
            assert_eq!(runs.len(), 2, "job {canary} did not run exactly once to its end: {runs:?}");
            assert!(runs.iter().all(|s| &s.pushed_for == tenant), "{runs:?}");
        }
        assert_eq!($store.done(&$queue).await, canaries.len());
        assert_no_tenant_left();
    }};
}

fn assert_all_under_their_tenant(seen: &[Seen]) {
    for s in seen {
        assert_eq!(s.current.as_deref(), Some(s.pushed_for.as_str()), "{s:?}");
        assert_eq!(s.data, s.pushed_for, "{s:?}");
    }
}

fn assert_no_tenant_left() {
    assert!(
        TenantContext::current().is_err(),
        "a tenant is still current on the worker's thread after the worker stopped"
    );
}

on_every_backend! {
    async fn jobs_run_under_the_tenant_they_were_pushed_for(store, queue, backend) {
        let (catalog, tenants) = common::catalog(3);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let mut canaries = Vec::new();
        for round in 0..4 {
            for tenant in &tenants {
                let canary = tenancy_test::log::canary("run");
                let mut job = Job::new(tenant, &canary);
                job.sleep_ms = if round % 2 == 0 { 30 } else { 0 };
                jobs.push(&common::ctx(tenant), job).await.expect("push");
                canaries.push(canary);
            }
        }
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        with_worker!(backend, layer, recorder, async {
            // Sleeping jobs record twice.
            recorder.wait_for(canaries.len() + canaries.len() / 2, Duration::from_secs(30)).await;
        });
        let seen = recorder.all();
        assert_all_under_their_tenant(&seen);
        for canary in &canaries {
            assert!(seen.iter().any(|s| &s.canary == canary), "{canary} never ran");
        }
        assert_no_tenant_left();
        let _ = &store;
    }

    async fn rejected_jobs_are_killed_kept_dead_with_their_reason_and_logged_without_payload(store, queue, backend) {
        let (catalog, tenants) = common::catalog(4);
        let (active, suspended, archived, stripped) = (&tenants[0], &tenants[1], &tenants[2], &tenants[3]);
        let unknown = tenancy_test::unique_tenant("nobody");
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let payload_canary = tenancy_test::log::canary("payload");

        // Pushed correctly, refused by the catalog at run time.
        jobs.push(&common::ctx(&unknown), Job::new(&unknown, &payload_canary)).await.unwrap();
        jobs.push(&common::ctx(suspended), Job::new(suspended, &payload_canary)).await.unwrap();
        jobs.push(&common::ctx(archived), Job::new(archived, &payload_canary)).await.unwrap();
        common::set_status(&catalog, suspended, TenantStatus::Suspended);
        common::set_status(&catalog, archived, TenantStatus::Archived);

        // Pushed correctly, then the tenant removed in the backend.
        jobs.push(&common::ctx(stripped), Job::new(stripped, &payload_canary)).await.unwrap();
        let removed = store.edit_payloads(&queue, &format!("{{\"tenant\":\"{stripped}\","), "{").await;
        assert_eq!(removed, 1);

        // Pushed by a producer that does not use TenantQueue: a bare job, and broken envelopes.
        let good = serde_json::to_value(Job::new(active, &payload_canary)).unwrap();
        store.push_raw(&queue, good.clone()).await;
        store.push_raw(&queue, serde_json::json!({"tenant": "NOT A TENANT", "actor": {"kind": "anonymous", "id": "anonymous", "display_name": "anonymous"}, "correlation_id": "c1", "body": {"job": good.to_string()}})).await;
        store.push_raw(&queue, serde_json::json!({"tenant": active.as_str(), "body": {"job": good.to_string()}, "extra": payload_canary})).await;
        store.push_raw(&queue, serde_json::json!([active.as_str(), payload_canary])).await;

        // The tenant named twice: pushed correctly, then doubled in the backend.
        let dup_canary = tenancy_test::log::canary("dup");
        jobs.push(&common::ctx(active), Job::new(active, &dup_canary)).await.unwrap();
        let doubled = store
            .edit_payloads(
                &queue,
                &format!("{{\"tenant\":\"{active}\""),
                &format!("{{\"tenant\":\"{active}\",\"tenant\":\"{active}\""),
            )
            .await;
        assert_eq!(doubled, 1, "only the one TenantQueue job of the active tenant starts that way");

        let capture = tenancy_test::log::LogCapture::new();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        let expected = 9;
        with_worker!(backend, layer, recorder, async {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while store.dead(&queue).await.len() < expected {
                assert!(std::time::Instant::now() < deadline, "dead: {:?}", store.dead(&queue).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Give a wrongly retried job the time to come back.
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        assert!(recorder.all().is_empty(), "a rejected job ran: {:?}", recorder.all());
        let dead = store.dead(&queue).await;
        assert_eq!(dead.len(), expected, "{dead:?}");
        for job in &dead {
            assert_eq!(job.status, "Killed", "{job:?}");
            assert_eq!(job.attempts, 1, "a rejected job was retried: {job:?}");
            assert!(!job.result.contains("CANARY"), "the dead set's reason quotes the payload: {job:?}");
        }
        let reasons: Vec<&str> = dead.iter().map(|d| d.result.as_str()).collect();
        for needle in [
            format!("unknown tenant `{unknown}`"),
            format!("tenant `{suspended}` is suspended"),
            format!("tenant `{archived}` is archived"),
            "the job names no tenant".to_owned(),
            "the job's tenant is not a valid tenant id".to_owned(),
            "missing, unknown or ill-typed fields".to_owned(),
            "not a JSON object".to_owned(),
            "names its tenant more than once".to_owned(),
        ] {
            assert!(reasons.iter().any(|r| r.contains(&needle)), "no dead job says {needle:?}: {reasons:#?}");
        }
        // The bare job and the one whose tenant was removed.
        assert_eq!(reasons.iter().filter(|r| r.contains("names no tenant")).count(), 2, "{reasons:#?}");

        let logs = capture.text();
        assert!(!logs.contains("CANARY"), "the log quotes a payload:\n{logs}");
        for kind in [
            RejectionKind::UnknownTenant,
            RejectionKind::TenantSuspended,
            RejectionKind::TenantArchived,
            RejectionKind::MissingTenant,
            RejectionKind::MalformedTenant,
            RejectionKind::MalformedEnvelope,
            RejectionKind::DuplicateTenant,
        ] {
            assert!(logs.contains(&format!("reason={kind}")), "no log line for {kind}:\n{logs}");
        }
        assert!(logs.contains(&format!("tenant={suspended}")), "{logs}");
        assert!(logs.lines().all(|l| l.contains("task_id=") && !l.contains("task_id=-")), "{logs}");
        assert_no_tenant_left();
    }

    async fn a_job_whose_tenant_was_edited_in_the_backend_is_rejected_when_signed(store, queue, backend) {
        let (catalog, tenants) = common::catalog(2);
        let (victim, attacker) = (&tenants[0], &tenants[1]);
        let key = SigningKey::new(b"a test key of thirty-two bytes!!").unwrap();
        let jobs = TenantQueue::<_, Job>::new(backend.clone()).signed(key.clone());
        let canary = tenancy_test::log::canary("moved");
        jobs.push(&common::ctx(attacker), Job::new(attacker, &canary)).await.unwrap();
        let moved = store
            .edit_payloads(&queue, &format!("\"tenant\":\"{attacker}\""), &format!("\"tenant\":\"{victim}\""))
            .await;
        assert_eq!(moved, 1);

        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog).signed(key);
        with_worker!(backend, layer, recorder, async {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while store.dead(&queue).await.is_empty() {
                assert!(std::time::Instant::now() < deadline, "the tampered job was not killed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(recorder.all().is_empty(), "the tampered job ran: {:?}", recorder.all());
        let dead = store.dead(&queue).await;
        assert!(dead[0].result.contains("does not match"), "{dead:?}");
        assert!(dead[0].result.contains(victim.as_str()), "{dead:?}");
    }

    async fn retries_run_under_the_same_tenant_every_time(store, queue, backend) {
        let (catalog, tenants) = common::catalog(4);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let flaky = tenancy_test::log::canary("flaky");
        let mut job = Job::new(&tenants[0], &flaky);
        job.fail_attempts = 2;
        jobs.push(&common::ctx(&tenants[0]), job).await.unwrap();
        // Other tenants' jobs interleave with the retries.
        for round in 0..3 {
            for tenant in &tenants[1..] {
                let canary = tenancy_test::log::canary(&format!("other{round}"));
                jobs.push(&common::ctx(tenant), Job::new(tenant, &canary)).await.unwrap();
            }
        }
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        with_worker!(backend, layer, recorder, async {
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            while recorder.all().iter().filter(|s| s.canary == flaky).count() < 3 {
                assert!(std::time::Instant::now() < deadline, "{:?}", recorder.all());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recorder.wait_for(3 + 9, Duration::from_secs(30)).await;
        });
        let seen = recorder.all();
        assert_all_under_their_tenant(&seen);
        let attempts: Vec<&Seen> = seen.iter().filter(|s| s.canary == flaky).collect();
        assert_eq!(attempts.len(), 3, "{attempts:?}");
        for s in &attempts {
            assert_eq!(s.current.as_deref(), Some(tenants[0].as_str()), "{s:?}");
        }
        assert_no_tenant_left();
        let _ = &store;
    }

    async fn panics_and_timeouts_leave_no_tenant_behind(store, queue, backend) {
        let (catalog, tenants) = common::catalog(3);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let mut panics = Job::new(&tenants[0], &tenancy_test::log::canary("panic"));
        panics.panic = true;
        let mut slow = Job::new(&tenants[1], &tenancy_test::log::canary("slow"));
        slow.sleep_ms = 10_000; // beyond the worker's 2 s timeout
        jobs.push(&common::ctx(&tenants[0]), panics).await.unwrap();
        jobs.push(&common::ctx(&tenants[1]), slow).await.unwrap();
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        with_worker!(backend, layer, recorder, async {
            recorder.wait_for(2, Duration::from_secs(30)).await;
            // Let the timeout fire, then push a job for a third tenant.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            let after = Job::new(&tenants[2], &tenancy_test::log::canary("after"));
            jobs.push(&common::ctx(&tenants[2]), after).await.unwrap();
            recorder.wait_for(3, Duration::from_secs(30)).await;
            assert!(TenantContext::current().is_err(), "a tenant is current in the test task");
        });
        let seen = recorder.all();
        assert_all_under_their_tenant(&seen);
        assert!(seen.iter().any(|s| s.pushed_for == tenants[2].as_str()), "{seen:?}");
        assert_no_tenant_left();
        let _ = &store;
    }
}

on_every_backend! {
    async fn a_worker_killed_mid_job_leaves_it_to_be_retried_under_the_same_tenant(store, queue, backend) {
        let (catalog, tenants) = common::catalog(2);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let canary = tenancy_test::log::canary("killed");
        let mut job = Job::new(&tenants[0], &canary);
        job.sleep_ms = 1_500;
        jobs.push(&common::ctx(&tenants[0]), job).await.unwrap();
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);

        // The first worker takes the job and is killed (its future dropped: no ack, no
        // heartbeat, as when the process dies) while the handler sleeps.
        let first = WorkerBuilder::new(common::worker_name("doomed"))
            .backend(backend.clone())
            .data(recorder.clone())
            .build(layer.clone().layer(task_fn(handler)));
        tokio::select! {
            ended = first.run() => panic!("the first worker ended on its own: {ended:?}"),
            () = recorder.wait_for(1, Duration::from_secs(30)) => {}
        }
        assert_no_tenant_left();
        assert_eq!(store.done(&queue).await, 0);

        // A second worker finds the orphaned job once the first one's heartbeat is stale.
        with_worker!(backend, layer, recorder, async {
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            while store.done(&queue).await < 1 {
                assert!(std::time::Instant::now() < deadline, "the orphaned job never completed: {:?}", recorder.all());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let seen = recorder.all();
        assert!(seen.len() >= 3, "the job did not run again to the end: {seen:?}");
        assert!(seen.iter().all(|s| s.canary == canary), "{seen:?}");
        assert_all_under_their_tenant(&seen);
        assert_no_tenant_left();
    }

    async fn a_stopped_worker_finishes_its_in_flight_jobs_under_their_tenants_and_loses_none(store, queue, backend) {
        // As many at once as the backend fetches: all of a batch in flight at the stop.
        stop_mid_queue!(store, queue, backend, 10);
    }

    async fn a_stopped_worker_hands_back_the_jobs_it_fetched_but_did_not_start(store, queue, backend) {
        // Two at a time: most of each fetched batch waits in the worker when it stops.
        stop_mid_queue!(store, queue, backend, 2);
    }

    async fn two_workers_on_many_tenants_never_run_a_job_under_another_jobs_tenant(store, queue, backend) {
        let (catalog, tenants) = common::catalog(20);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        let mut canaries = std::collections::HashMap::new();
        for round in 0..10u64 {
            for (i, tenant) in tenants.iter().enumerate() {
                let canary = tenancy_test::log::canary("mix");
                let mut job = Job::new(tenant, &canary);
                // Interleave jobs that await (and may resume on another thread) with ones
                // that do not.
                job.sleep_ms = (round * 7 + i as u64 * 3) % 25;
                jobs.push(&common::ctx(tenant), job).await.unwrap();
                canaries.insert(canary, tenant.clone());
            }
        }
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        // The second worker runs each job on a task of its own, so jobs move between the
        // runtime's threads; the first polls all its jobs in one task.
        #[expect(clippy::disallowed_methods, reason = "the spawned future is the worker's own service future: RetenantLayer scopes it inside")]
        let parallel = WorkerBuilder::new(common::worker_name("parallel"))
            .backend(backend.clone())
            .data(recorder.clone())
            .parallelize(tokio::spawn)
            .build(layer.clone().layer(task_fn(handler)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            Ok::<(), std::io::Error>(())
        };
        let (second, ()) = tokio::join!(parallel.run_with_ctx(tenancy_queue::stop_gracefully(signal, STOP_GRACE)), async {
            with_worker!(backend, layer, recorder, async {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while store.done(&queue).await < canaries.len() {
                    assert!(std::time::Instant::now() < deadline, "{} of {} done", store.done(&queue).await, canaries.len());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let _ = stop.send(());
        });
        second.expect("the parallel worker stopped cleanly");
        let seen = recorder.all();
        assert_all_under_their_tenant(&seen);
        for s in &seen {
            assert_eq!(canaries[&s.canary].as_str(), s.pushed_for, "{s:?}");
        }
        let ran: std::collections::HashSet<&str> = seen.iter().map(|s| s.canary.as_str()).collect();
        assert_eq!(ran.len(), canaries.len());
        assert_no_tenant_left();
    }
}

type PushFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tenancy_queue::Error>> + Send>>;

/// Pushes a follow-up job for the tenant in scope, as a handler would with
/// `TenantQueue::push_current`.
#[derive(Clone)]
struct FollowUp(std::sync::Arc<dyn Fn(Job) -> PushFuture + Send + Sync>);

/// Records, then pushes `fail_attempts` follow-up jobs (reused as a count here) without
/// naming a tenant.
async fn parent(
    job: Job,
    ctx: Data<TenantContext>,
    recorder: Data<Recorder>,
    follow_up: Data<FollowUp>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    recorder.push(Seen {
        canary: job.canary.clone(),
        pushed_for: job.pushed_for.clone(),
        current: TenantContext::current()
            .ok()
            .map(|c| c.tenant().to_string()),
        data: ctx.tenant().to_string(),
        attempt: attempt.current(),
    });
    tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
    for i in 0..job.fail_attempts {
        let mut child = job.clone();
        child.canary = format!("{}-child{i}", job.canary);
        child.fail_attempts = 0;
        let push: &FollowUp = &follow_up;
        (push.0)(child).await?;
    }
    Ok(())
}

on_every_backend! {
    async fn follow_up_jobs_run_under_the_tenant_of_the_job_that_pushed_them(store, queue, backend) {
        let (catalog, tenants) = common::catalog(6);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        // Outside any scope there is no tenant to pass on: nothing is pushed.
        let refused = jobs.push_current(Job::new(&tenants[0], "orphan")).await.unwrap_err();
        assert_eq!(refused.kind(), tenancy_queue::ErrorKind::NoCurrentTenant);
        for (i, tenant) in tenants.iter().enumerate() {
            let mut job = Job::new(tenant, &tenancy_test::log::canary("parent"));
            job.fail_attempts = 3; // three follow-ups each
            job.sleep_ms = (i as u64 * 5) % 15;
            jobs.push(&common::ctx(tenant), job).await.unwrap();
        }
        let follow_up = {
            let jobs = jobs.clone();
            FollowUp(std::sync::Arc::new(move |job| {
                let jobs = jobs.clone();
                Box::pin(async move { jobs.push_current(job).await })
            }))
        };
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        let worker = WorkerBuilder::new(common::worker_name("fanout"))
            .backend(backend.clone())
            .data(recorder.clone())
            .data(follow_up)
            .build(layer.layer(task_fn(parent)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            Ok::<(), std::io::Error>(())
        };
        let (ran, ()) = tokio::join!(worker.run_with_ctx(tenancy_queue::stop_gracefully(signal, STOP_GRACE)), async {
            recorder.wait_for(6 * 4, Duration::from_secs(60)).await;
            let _ = stop.send(());
        });
        ran.unwrap();
        let seen = recorder.all();
        assert_eq!(seen.iter().filter(|s| s.canary.contains("-child")).count(), 18, "{seen:?}");
        assert_all_under_their_tenant(&seen);
        assert_no_tenant_left();
        let _ = &store;
    }

    async fn an_apalis_cron_tick_pushes_one_job_per_active_tenant_in_its_envelope(store, queue, backend) {
        let (catalog, tenants) = common::catalog(5);
        common::set_status(&catalog, &tenants[1], TenantStatus::Suspended);
        common::set_status(&catalog, &tenants[3], TenantStatus::Archived);
        let jobs = TenantQueue::<_, Job>::new(backend.clone());
        // An apalis-cron worker ticking every second. Its handler serves no tenant: it fans
        // out over every tenant the catalog lists, then stops its worker, so one tick runs.
        let pushed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let fan_out = {
            let (jobs, catalog, pushed) = (jobs.clone(), catalog.clone(), pushed.clone());
            move |_tick: apalis_cron::Tick, worker: WorkerContext| {
                let (jobs, catalog, pushed) = (jobs.clone(), catalog.clone(), pushed.clone());
                async move {
                    let scheduler = tenancy_core::Actor::service("nightly-report")?;
                    let listed = catalog.list().into_iter().map(|t| t.id);
                    let ids = jobs
                        .push_each_active(&catalog, listed, &scheduler, |ctx| Job::new(ctx.tenant(), "nightly"))
                        .await?;
                    pushed.lock().unwrap().extend(ids);
                    worker.stop()?;
                    Ok::<(), BoxDynError>(())
                }
            }
        };
        let every_second: cron::Schedule = "* * * * * *".parse().unwrap();
        let cron_worker = WorkerBuilder::new(common::worker_name("cron"))
            .backend(apalis_cron::CronScheduler::new(every_second))
            .build(fan_out);
        tokio::time::timeout(Duration::from_secs(30), cron_worker.run())
            .await
            .expect("the cron worker ticks within 30 s")
            .expect("the cron worker runs and stops");
        let pushed = pushed.lock().unwrap().clone();
        let mut expected = vec![tenants[0].clone(), tenants[2].clone(), tenants[4].clone()];
        expected.sort();
        assert_eq!(pushed, expected);
        let recorder = Recorder::default();
        let layer = RetenantLayer::<_, Job>::new(catalog);
        with_worker!(backend, layer, recorder, async {
            recorder.wait_for(3, Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let seen = recorder.all();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_all_under_their_tenant(&seen);
        let mut ran: Vec<String> = seen.iter().map(|s| s.pushed_for.clone()).collect();
        ran.sort();
        assert_eq!(ran, expected.iter().map(ToString::to_string).collect::<Vec<_>>());
        let _ = &store;
    }
}
