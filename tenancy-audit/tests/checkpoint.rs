//! Signed checkpoints in the tenant's bucket (the local directory backend and the test S3
//! server) detect a rewrite of the whole chain that verifies on its own.

use serde_json::json;
use sha2::Digest;
use tenancy_audit::{
    AuditTrail, CHECKPOINT_PREFIX, CheckpointSigner, Entry, Event, GENESIS_HASH, Scope,
    latest_checkpoint, verify_bundle, verify_bundle_signed, verify_trail,
    verify_trail_with_checkpoint,
};
use tenancy_core::IsolationMode;
use tenancy_db::{Migration, Migrations};
use tenancy_storage::{Layout, ListRequest};
use tenancy_test::db::{Backend, TestDb};
use tenancy_test::storage::{Backend as StorageBackend, TestStorage};

fn migrations() -> Migrations {
    Migrations::new(vec![
        Migration::new(1, "capas")
            .postgres("CREATE TABLE capas (id bigint PRIMARY KEY, status text NOT NULL)"),
        tenancy_audit::migration(2),
    ])
    .expect("valid migrations")
}

const COLUMNS: &str = "seq, recorded_at, tenant, actor_id, actor_name, action, record_type, \
    record_id, old_value, new_value, reason, signature_meaning, request_id, prev_hash, hash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_chain_is_caught_by_the_signed_checkpoint() {
    for storage_backend in [StorageBackend::Local, StorageBackend::S3] {
        let what = format!("{storage_backend:?}");
        let fixture = TestDb::new(Backend::Postgres, migrations()).await;
        let storage = TestStorage::new(storage_backend, Layout::BucketPerTenant);
        let ctx = fixture.tenant("acme", IsolationMode::Database).await;
        let other = fixture.tenant("other", IsolationMode::Database).await;
        for tenant in [&ctx, &other] {
            storage
                .storage
                .platform()
                .create_bucket(&tenancy_test::operator(), tenant.tenant())
                .await
                .unwrap();
        }
        let bucket = storage.storage.bucket(&ctx).unwrap();
        let signer = CheckpointSigner::from_seed(&[7; 32], "platform-2026");
        let trail = AuditTrail::new();
        for id in 1..=4 {
            let mut tx = fixture.db.transaction(&ctx).await.unwrap();
            trail
                .record(
                    &mut tx,
                    &ctx,
                    Event::create("capa", &id.to_string()).new_value(json!({"status": "open"})),
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let checkpoint = trail
            .checkpoint(&mut tx, &ctx, &signer, &bucket)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(checkpoint.seq, 4, "{what}");
        assert!(checkpoint.verify_signature(&signer.verifying_key()));
        assert_eq!(
            latest_checkpoint(&bucket).await.unwrap(),
            Some(checkpoint.clone())
        );
        // The other tenant's bucket holds no checkpoint of this tenant.
        let their_bucket = storage.storage.bucket(&other).unwrap();
        assert_eq!(
            latest_checkpoint(&their_bucket).await.unwrap(),
            None,
            "{what}"
        );

        let key = signer.verifying_key();
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let report = verify_trail_with_checkpoint(&mut tx, &bucket, &key)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(report.is_ok(), "{what}: {report}");
        assert_eq!(
            report.entries, 5,
            "four changes and the checkpoint's own entry"
        );

        // A signed export: the manifest carries the checkpoint, the offline check passes.
        let bundle =
            std::env::temp_dir().join(format!("tenancy-audit-signed-{}", fixture.prefix()));
        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let manifest = trail
            .export_signed(&mut tx, &ctx, &Scope::All, None, &bundle, &signer, &bucket)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let signed = manifest.checkpoint.clone().unwrap();
        assert_eq!(
            signed.seq, 5,
            "{what}: the head before the export's checkpoint entry"
        );
        assert!(verify_bundle_signed(&bundle, &key).unwrap().is_ok());
        let stranger_key = CheckpointSigner::from_seed(&[9; 32], "stranger").verifying_key();
        assert!(
            !verify_bundle_signed(&bundle, &stranger_key)
                .unwrap()
                .is_ok()
        );
        let key_hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy-audit-verify"))
            .arg(&bundle)
            .args(["--key", &key_hex])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
        let _ = std::fs::remove_dir_all(&bundle);

        // Someone with the database's superuser rewrites entry 2 and every hash after it.
        let su = fixture
            .superuser(&fixture.db.naming().sql_name(ctx.tenant()))
            .await;
        let rows = su
            .query(
                &format!("SELECT {COLUMNS} FROM tenancy_audit ORDER BY seq"),
                &[],
            )
            .await
            .unwrap();
        let mut prev = GENESIS_HASH.to_owned();
        let mut rewrite = String::from("ALTER TABLE tenancy_audit DISABLE TRIGGER USER;");
        for row in rows {
            let mut entry = Entry {
                seq: u64::try_from(row.get::<_, i64>(0)).unwrap(),
                recorded_at: row.get(1),
                tenant: row.get(2),
                actor_id: row.get(3),
                actor_name: row.get(4),
                action: row.get(5),
                record_type: row.get(6),
                record_id: row.get(7),
                old_value: row.get(8),
                new_value: row.get(9),
                reason: row.get(10),
                signature_meaning: row.get(11),
                request_id: row.get(12),
                prev_hash: row.get(13),
                hash: row.get(14),
            };
            if entry.seq == 2 {
                entry.new_value = Some("{\"status\":\"never opened\"}".into());
            }
            entry.prev_hash = prev.clone();
            entry.hash = entry.compute_hash();
            prev = entry.hash.clone();
            rewrite.push_str(&format!(
                "UPDATE tenancy_audit SET new_value = '{}', prev_hash = '{}', hash = '{}' \
                 WHERE seq = {};",
                entry.new_value.as_deref().unwrap_or("null"),
                entry.prev_hash,
                entry.hash,
                entry.seq
            ));
        }
        rewrite.push_str(&format!(
            "ALTER TABLE tenancy_audit ENABLE TRIGGER USER; \
             ALTER TABLE tenancy_audit_head DISABLE TRIGGER USER; \
             UPDATE tenancy_audit_head SET hash = '{prev}'; \
             ALTER TABLE tenancy_audit_head ENABLE TRIGGER USER;"
        ));
        su.batch_execute(&rewrite).await.unwrap();

        let mut tx = fixture.db.transaction(&ctx).await.unwrap();
        let alone = verify_trail(&mut tx).await.unwrap();
        assert!(
            alone.is_ok(),
            "{what}: the rewrite is consistent on its own: {alone}"
        );
        let report = verify_trail_with_checkpoint(&mut tx, &bucket, &key)
            .await
            .unwrap();
        assert_eq!(report.first_bad_seq(), Some(signed.seq), "{what}: {report}");
        // A bundle exported after the rewrite verifies alone, not against the checkpoint.
        let rewritten =
            std::env::temp_dir().join(format!("tenancy-audit-rewritten-{}", fixture.prefix()));
        let mut manifest = trail
            .export(&mut tx, &ctx, &Scope::All, None, &rewritten)
            .await
            .unwrap();
        assert!(verify_bundle(&rewritten).unwrap().is_ok(), "{what}");
        manifest.checkpoint = Some(signed.clone());
        std::fs::write(
            rewritten.join(tenancy_audit::MANIFEST),
            serde_json::to_string_pretty(&manifest).unwrap() + "\n",
        )
        .unwrap();
        // The rewriter also fixes the manifest's sum: only the checkpoint tells.
        let sums = std::fs::read_to_string(rewritten.join(tenancy_audit::SUMS)).unwrap();
        let manifest_sum: String =
            sha2::Sha256::digest(std::fs::read(rewritten.join(tenancy_audit::MANIFEST)).unwrap())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        let sums: String = sums
            .lines()
            .map(|line| match line.split_once("  ") {
                Some((_, name)) if name == tenancy_audit::MANIFEST => {
                    format!("{manifest_sum}  {name}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        std::fs::write(rewritten.join(tenancy_audit::SUMS), sums).unwrap();
        assert!(verify_bundle(&rewritten).unwrap().is_ok(), "{what}");
        let report = verify_bundle_signed(&rewritten, &key).unwrap();
        assert_eq!(report.first_bad_seq(), Some(signed.seq), "{what}: {report}");
        let _ = std::fs::remove_dir_all(&rewritten);
        // A checkpoint checked with another key is refused.
        let stranger = CheckpointSigner::from_seed(&[9; 32], "stranger").verifying_key();
        assert!(!checkpoint.verify_signature(&stranger));
        tx.commit().await.unwrap();
        // Clean the buckets up for the fixture's drop.
        for tenant in [&ctx, &other] {
            let bucket = storage.storage.bucket(tenant).unwrap();
            let page = bucket
                .list(&ListRequest::prefix(CHECKPOINT_PREFIX))
                .await
                .unwrap();
            for object in page.objects {
                bucket.delete(&object.key).await.unwrap();
            }
        }
    }
}
