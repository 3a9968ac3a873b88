//! The inspection export and the offline verifier: two tenants seeded with canaries never
//! see each other's in their bundles; the same scope exported twice gives the same entry
//! files; every kind of tampering with a bundle is reported at its first bad entry.

use std::path::{Path, PathBuf};

use serde_json::json;
use tenancy_audit::{
    AuditTrail, ENTRIES_CSV, ENTRIES_JSONL, Event, IsolationEvidence, MANIFEST, SUMS, Scope,
    TIMELINE_HTML, verify_bundle,
};
use tenancy_core::{IsolationMode, TenantContext};
use tenancy_db::{Migration, Migrations, TenantDb, rls};
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

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tenancy-audit-{label}-{}",
            tenancy_test::db::unique_prefix()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `count` audited changes of CAPAs whose text carries `canary`.
async fn seed(db: &TenantDb, ctx: &TenantContext, canary: &str, count: i64) {
    let trail = AuditTrail::new().regulated("capa");
    for id in 1..=count {
        let mut tx = db.transaction(ctx).await.unwrap();
        tx.execute(
            "INSERT INTO capas (id, status) VALUES ($1, $2)",
            &[id.into(), canary.into()],
        )
        .await
        .unwrap();
        trail
            .record(
                &mut tx,
                ctx,
                Event::create("capa", &id.to_string()).new_value(
                    json!({"status": canary, "note": "a \"quoted\", <b>bold</b>\nline"}),
                ),
            )
            .await
            .unwrap();
        if id % 2 == 0 {
            trail
                .record(
                    &mut tx,
                    ctx,
                    Event::update("capa", &id.to_string())
                        .old_value(json!({"status": canary}))
                        .new_value(json!({"status": format!("{canary}-closed")}))
                        .reason(&format!("closed by {canary}")),
                )
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

async fn export(
    db: &TenantDb,
    ctx: &TenantContext,
    scope: &Scope,
    dir: &Path,
) -> tenancy_audit::Manifest {
    let evidence = IsolationEvidence::collect(db, &tenancy_test::operator(), ctx.tenant())
        .await
        .unwrap();
    let mut tx = db.transaction(ctx).await.unwrap();
    let manifest = AuditTrail::new()
        .export(&mut tx, ctx, scope, Some(evidence), dir)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    manifest
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_entries_never_appear_in_an_export() {
    for (backend, isolation) in [
        (Backend::Postgres, IsolationMode::Row),
        (Backend::Postgres, IsolationMode::Database),
        (Backend::Postgres, IsolationMode::Schema),
        (Backend::Sqlite, IsolationMode::Database),
    ] {
        let what = format!("{backend:?} {isolation}");
        let fixture = TestDb::new(backend, migrations()).await;
        let a = fixture.tenant("alpha", isolation).await;
        let b = fixture.tenant("beta", isolation).await;
        let (canary_a, canary_b) = (
            tenancy_test::log::canary("alpha"),
            tenancy_test::log::canary("beta"),
        );
        seed(&fixture.db, &a, &canary_a, 4).await;
        seed(&fixture.db, &b, &canary_b, 3).await;
        for (ctx, own, foreign, entries) in
            [(&a, &canary_a, &canary_b, 6), (&b, &canary_b, &canary_a, 4)]
        {
            let dir = TempDir::new("canary");
            let manifest = export(&fixture.db, ctx, &Scope::All, &dir.0).await;
            assert_eq!(manifest.entries, entries, "{what}");
            assert_eq!(manifest.tenant, ctx.tenant().as_str());
            let evidence = manifest.isolation.as_ref().unwrap();
            assert_eq!(evidence.strategy, isolation.as_str(), "{what}");
            let expected_check = if backend == Backend::Postgres {
                "passed"
            } else {
                "not applicable"
            };
            assert_eq!(evidence.check, expected_check, "{what}: {evidence:?}");
            for name in [MANIFEST, ENTRIES_JSONL, ENTRIES_CSV, TIMELINE_HTML, SUMS] {
                let text = String::from_utf8(read(&dir.0, name)).unwrap();
                assert!(
                    !text.contains(foreign.as_str()),
                    "{what}: {name} holds the other tenant's canary"
                );
                let other = if ctx.tenant() == a.tenant() {
                    b.tenant()
                } else {
                    a.tenant()
                };
                assert!(
                    !text.contains(other.as_str()),
                    "{what}: {name} names the other tenant"
                );
                if name == ENTRIES_JSONL {
                    assert!(text.contains(own.as_str()), "{what}: own canary exported");
                }
            }
            let report = verify_bundle(&dir.0).unwrap();
            assert!(report.is_ok(), "{what}: {report}");
        }
        // The exports are in the trail.
        let mut tx = fixture.db.transaction(&a).await.unwrap();
        let exports = AuditTrail::new()
            .history(&mut tx, "audit_trail", a.tenant().as_str())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(exports.len(), 1, "{what}");
        assert_eq!(exports[0].action, "export");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_export_twice_gives_the_same_entry_files() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let fixture = TestDb::new(backend, migrations()).await;
        let ctx = fixture.tenant("acme", IsolationMode::Database).await;
        seed(&fixture.db, &ctx, "repeat", 5).await;
        let scope = Scope::Sequence { first: 1, last: 7 };
        let (one, two) = (TempDir::new("one"), TempDir::new("two"));
        let first = export(&fixture.db, &ctx, &scope, &one.0).await;
        let second = export(&fixture.db, &ctx, &scope, &two.0).await;
        for name in [ENTRIES_JSONL, ENTRIES_CSV, TIMELINE_HTML] {
            assert_eq!(
                read(&one.0, name),
                read(&two.0, name),
                "{backend:?}: {name} differs"
            );
        }
        assert_eq!(first.export_entry_seq + 1, second.export_entry_seq);
        assert!(verify_bundle(&two.0).unwrap().is_ok());
        // A record's history and a record type export, and a time range.
        let record = TempDir::new("record");
        let manifest = export(
            &fixture.db,
            &ctx,
            &Scope::Record {
                record_type: "capa".into(),
                record_id: "2".into(),
            },
            &record.0,
        )
        .await;
        assert_eq!(manifest.entries, 2);
        assert!(!manifest.contiguous);
        assert!(verify_bundle(&record.0).unwrap().is_ok());
        let html = String::from_utf8(read(&record.0, TIMELINE_HTML)).unwrap();
        assert!(
            html.contains("&lt;b&gt;bold&lt;/b&gt;"),
            "values are escaped in the page"
        );
        assert!(html.contains("closed by repeat"));
        let time = TempDir::new("time");
        let manifest = export(
            &fixture.db,
            &ctx,
            &Scope::Time {
                from: "2000-01-01T00:00:00Z".into(),
                to: "2999-01-01T00:00:00Z".into(),
            },
            &time.0,
        )
        .await;
        assert_eq!(manifest.entries, 10, "7 changes and 3 exports");
        assert!(verify_bundle(&time.0).unwrap().is_ok());
    }
}

/// A bundle of tenant `alpha` and one of `beta`, to tamper with.
async fn two_bundles(fixture: &TestDb) -> (TempDir, TempDir) {
    let a = fixture.tenant("alpha", IsolationMode::Database).await;
    let b = fixture.tenant("beta", IsolationMode::Database).await;
    seed(&fixture.db, &a, "alpha-data", 4).await;
    seed(&fixture.db, &b, "beta-data", 4).await;
    let (da, db) = (TempDir::new("alpha"), TempDir::new("beta"));
    export(&fixture.db, &a, &Scope::All, &da.0).await;
    export(&fixture.db, &b, &Scope::All, &db.0).await;
    (da, db)
}

fn lines(dir: &Path) -> Vec<Vec<u8>> {
    read(dir, ENTRIES_JSONL)
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_lines(dir: &Path, lines: &[Vec<u8>]) {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    std::fs::write(dir.join(ENTRIES_JSONL), out).unwrap();
}

fn first_bad(dir: &Path) -> Option<u64> {
    let report = verify_bundle(dir).unwrap();
    assert!(!report.is_ok(), "tampering went unnoticed");
    report.first_bad_seq()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_is_reported_at_its_first_bad_entry() {
    let fixture = TestDb::new(Backend::Sqlite, migrations()).await;
    let (alpha, beta) = two_bundles(&fixture).await;
    let dir = &alpha.0;
    let original = lines(dir);
    assert_eq!(original.len(), 6);
    assert!(verify_bundle(dir).unwrap().is_ok());

    // Any byte of any entry, changed: reported at that entry.
    let bytes = read(dir, ENTRIES_JSONL);
    let mut line_of = Vec::with_capacity(bytes.len());
    let mut line = 1;
    for &b in &bytes {
        line_of.push(line);
        if b == b'\n' {
            line += 1;
        }
    }
    for (at, &seq) in line_of.iter().enumerate() {
        let mut changed = bytes.clone();
        changed[at] ^= 0x01;
        std::fs::write(dir.join(ENTRIES_JSONL), &changed).unwrap();
        assert_eq!(first_bad(dir), Some(seq), "byte {at} of entry {seq}");
    }
    // Deleted, reordered, truncated.
    for gone in 0..original.len() {
        let mut changed = original.clone();
        changed.remove(gone);
        write_lines(dir, &changed);
        assert_eq!(
            first_bad(dir),
            Some(gone as u64 + 1),
            "entry {} deleted",
            gone + 1
        );
    }
    for swap in 0..original.len() - 1 {
        let mut changed = original.clone();
        changed.swap(swap, swap + 1);
        write_lines(dir, &changed);
        assert_eq!(
            first_bad(dir),
            Some(swap as u64 + 1),
            "entries {} and {} swapped",
            swap + 1,
            swap + 2
        );
    }
    write_lines(dir, &original[..4]);
    assert_eq!(first_bad(dir), Some(5), "truncated after entry 4");
    // Another tenant's entry, inserted or put in place of one.
    let foreign = lines(&beta.0);
    assert_eq!(foreign.len(), original.len());
    for (at, theirs) in foreign.iter().enumerate() {
        let mut changed = original.clone();
        changed.insert(at, theirs.clone());
        write_lines(dir, &changed);
        assert_eq!(
            first_bad(dir),
            Some(at as u64 + 1),
            "beta's entry {} inserted",
            at + 1
        );
        changed.remove(at + 1);
        write_lines(dir, &changed);
        assert_eq!(
            first_bad(dir),
            Some(at as u64 + 1),
            "beta's entry {} replaced ours",
            at + 1
        );
    }
    // Whole files: the sums catch a changed page or CSV.
    write_lines(dir, &original);
    assert!(verify_bundle(dir).unwrap().is_ok(), "restored");
    for name in [ENTRIES_CSV, TIMELINE_HTML] {
        let saved = read(dir, name);
        let mut changed = saved.clone();
        changed[saved.len() / 2] ^= 0x01;
        std::fs::write(dir.join(name), &changed).unwrap();
        let report = verify_bundle(dir).unwrap();
        assert!(
            report.problem.as_ref().unwrap().what.contains(name),
            "{report}"
        );
        std::fs::write(dir.join(name), saved).unwrap();
    }
    assert!(verify_bundle(dir).unwrap().is_ok());
    // The binary says the same, offline.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy-audit-verify"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    write_lines(dir, &original[1..]);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy-audit-verify"))
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("entry 1:"));
}
