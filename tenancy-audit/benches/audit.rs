//! Run with: cargo bench -p tenancy-audit --bench audit
//!
//! 1. An audited update (the update and its audit entry, one transaction) against the same
//!    update without audit, through `TenantDb`, side by side in one run, on a PostgreSQL
//!    database-per-tenant tenant and a row-level tenant (the test server), and on SQLite.
//!    Also a recorded read against the same read unrecorded.
//! 2. 1,000,000 entries: written straight into a SQLite tenant's trail (a valid chain),
//!    exported (time, and the peak resident memory above the process's before the export),
//!    then the bundle verified offline with `verify_bundle` (goal: at most 10 s).
//!
//! `TENANCY_BENCH_ENTRIES` changes the 1,000,000.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tenancy_audit::{AuditTrail, Entry, Event, GENESIS_HASH, Scope, verify_bundle};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migration, Migrations, TenantDb, rls};
use tenancy_test::bench::Comparison;
use tenancy_test::db::{Backend, TestDb};

fn migrations() -> Migrations {
    let row_level = format!(
        "CREATE TABLE capas (tenant_id text NOT NULL, id bigint NOT NULL, status text NOT NULL, \
         PRIMARY KEY (tenant_id, id));\n{}",
        rls::row_level_policy("capas").expect("a plain table name")
    );
    Migrations::new(vec![
        Migration::new(1, "capas")
            .postgres("CREATE TABLE capas (id bigint PRIMARY KEY, status text NOT NULL)")
            .row_level(&row_level)
            .sqlite("CREATE TABLE capas (id integer PRIMARY KEY, status text NOT NULL)"),
        tenancy_audit::migration(2),
    ])
    .expect("valid migrations")
}

async fn update(db: &TenantDb, ctx: &TenantContext, trail: Option<&AuditTrail>, n: u64) {
    let status = format!("status {n}");
    let mut tx = db.transaction(ctx).await.unwrap();
    tx.execute(
        "UPDATE capas SET status = $1 WHERE id = 1",
        &[status.as_str().into()],
    )
    .await
    .unwrap();
    if let Some(trail) = trail {
        trail
            .record(
                &mut tx,
                ctx,
                Event::update("capa", "1")
                    .old_value(serde_json::json!({ "status": "before" }))
                    .new_value(serde_json::json!({ "status": status }))
                    .reason("benchmark"),
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn read(db: &TenantDb, ctx: &TenantContext, trail: Option<&AuditTrail>) {
    let mut tx = db.transaction(ctx).await.unwrap();
    black_box(
        tx.query_one("SELECT status FROM capas WHERE id = 1", &[])
            .await
            .unwrap(),
    );
    if let Some(trail) = trail {
        trail.read(&mut tx, ctx, "capa", "1").await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn audited_update(runtime: &tokio::runtime::Runtime) {
    let trail = AuditTrail::new().regulated("capa").record_reads("capa");
    for (backend, isolation) in [
        (Backend::Postgres, IsolationMode::Database),
        (Backend::Postgres, IsolationMode::Row),
        (Backend::Sqlite, IsolationMode::Database),
    ] {
        let fixture = runtime.block_on(TestDb::new(backend, migrations()));
        let ctx = runtime.block_on(fixture.tenant("bench", isolation));
        runtime.block_on(async {
            let mut tx = fixture.db.transaction(&ctx).await.unwrap();
            tx.execute("INSERT INTO capas (id, status) VALUES (1, 'new')", &[])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        });
        let n = AtomicU64::new(0);
        let (db, ctx, trail) = (&fixture.db, &ctx, &trail);
        let next = || n.fetch_add(1, Ordering::Relaxed);
        Comparison::new(&format!(
            "update of one row, {backend:?} {isolation}: audited vs not"
        ))
        .rounds(40)
        .iterations(25)
        .baseline("update", || runtime.block_on(update(db, ctx, None, next())))
        .variant("update + audit entry", || {
            runtime.block_on(update(db, ctx, Some(trail), next()))
        })
        .variant("read", || runtime.block_on(read(db, ctx, None)))
        .variant("read + recorded read", || {
            runtime.block_on(read(db, ctx, Some(trail)))
        })
        .run();
    }
}

/// The resident set of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn million(runtime: &tokio::runtime::Runtime) {
    let count: u64 = std::env::var("TENANCY_BENCH_ENTRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let fixture = runtime.block_on(TestDb::new(Backend::Sqlite, migrations()));
    let ctx = runtime.block_on(fixture.tenant("million", IsolationMode::Database));
    let tenant = ctx.tenant().as_str().to_owned();
    let started = Instant::now();
    runtime.block_on(async {
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        tx.sqlite(move |connection| {
            let mut prev = GENESIS_HASH.to_owned();
            {
                let mut insert = connection.prepare(
                    "INSERT INTO tenancy_audit (seq, recorded_at, tenant, actor_id, actor_name, \
                     action, record_type, record_id, old_value, new_value, reason, \
                     signature_meaning, request_id, prev_hash, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?;
                let mut head =
                    connection.prepare("UPDATE tenancy_audit_head SET seq = ?1, hash = ?2")?;
                for seq in 1..=count {
                    let mut entry = Entry {
                        seq,
                        recorded_at: format!(
                            "2026-12-01T{:02}:{:02}:{:02}.{:03}Z",
                            (seq / 3_600_000) % 24,
                            (seq / 60_000) % 60,
                            (seq / 1_000) % 60,
                            seq % 1_000
                        ),
                        tenant: tenant.clone(),
                        actor_id: format!("u-{}", seq % 50),
                        actor_name: format!("User {}", seq % 50),
                        action: if seq % 3 == 0 { "create" } else { "update" }.to_owned(),
                        record_type: "capa".to_owned(),
                        record_id: format!("CAPA-{}", seq % 10_000),
                        old_value: Some(format!(
                            "{{\"owner\":\"User {}\",\"status\":\"open\",\"title\":\"Deviation in line {}\"}}",
                            seq % 50,
                            seq % 97
                        )),
                        new_value: Some(format!(
                            "{{\"owner\":\"User {}\",\"status\":\"in review\",\"title\":\"Deviation in line {}\"}}",
                            seq % 50,
                            seq % 97
                        )),
                        reason: (seq % 3 != 0).then(|| "root cause confirmed".to_owned()),
                        signature_meaning: None,
                        request_id: Some(format!("req-{seq}")),
                        prev_hash: prev.clone(),
                        hash: String::new(),
                    };
                    entry.hash = entry.compute_hash();
                    insert.execute(rusqlite_params(&entry))?;
                    // The head moves one step at a time: its trigger refuses a jump.
                    head.execute((seq as i64, entry.hash.as_str()))?;
                    prev = entry.hash;
                }
            }
            Ok(())
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    });
    println!(
        "{count} entries written (a valid chain) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let dir = std::env::temp_dir().join(format!("tenancy-audit-bench-{}", fixture.prefix()));
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let manifest = runtime.block_on(async {
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let manifest = AuditTrail::new()
            .export(&mut tx, &ctx, &Scope::All, None, &dir)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        manifest
    });
    let export_time = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|file| file.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "export of {} entries: {:.1} s, bundle {} MB, resident memory {} MiB before, peak {} MiB \
         during (+{} MiB)",
        manifest.entries,
        export_time.as_secs_f64(),
        size / 1_000_000,
        before / 1024,
        peak.load(Ordering::Relaxed) / 1024,
        peak.load(Ordering::Relaxed).saturating_sub(before) / 1024,
    );
    let started = Instant::now();
    let report = verify_bundle(&dir).unwrap();
    println!(
        "verify_bundle of {} entries: {:.2} s (goal <= 10 s): {report}",
        report.entries,
        started.elapsed().as_secs_f64()
    );
    assert!(report.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

fn rusqlite_params(entry: &Entry) -> impl tenancy_db::rusqlite::Params + '_ {
    (
        entry.seq as i64,
        entry.recorded_at.as_str(),
        entry.tenant.as_str(),
        entry.actor_id.as_str(),
        entry.actor_name.as_str(),
        entry.action.as_str(),
        entry.record_type.as_str(),
        entry.record_id.as_str(),
        entry.old_value.as_deref(),
        entry.new_value.as_deref(),
        entry.reason.as_deref(),
        entry.signature_meaning.as_deref(),
        entry.request_id.as_deref(),
        entry.prev_hash.as_str(),
        entry.hash.as_str(),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Fixtures are dropped inside the runtime: their pools close connections on it.
    let _runtime = runtime.enter();
    if std::env::var("TENANCY_BENCH_ONLY").as_deref() != Ok("million") {
        audited_update(&runtime);
    }
    million(&runtime);
}
