//! Every backend and layout behaves alike: objects round-trip with their content type and
//! metadata, streamed or whole; lists page through every key in order; copies stay in the
//! tenant; an unprovisioned tenant is refused by every call and nothing is created for it;
//! deleting a bucket refuses or purges every version; a failed or dropped upload leaves
//! nothing under its key; bad keys are refused before any I/O. Then what only S3 has:
//! versioning, encryption and object lock as the test server honours them, and S3 going
//! down mid-test.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use support::{
    body_stream, bucket_exists_raw, bytes_of, exists_raw, leftover_temp_files, on_every_backend,
    unfinished_uploads,
};
use tenancy_storage::{
    Deletion, Encryption, ErrorKind, Layout, ListRequest, ObjectLock, PutOptions, RetentionMode,
    StorageConfig,
};
use tenancy_test::operator;
use tenancy_test::storage::{Backend, MotoServer, TestStorage};

on_every_backend!(
    objects_round_trip_with_their_type_and_metadata,
    streamed_puts_store_exactly_what_was_sent,
    lists_page_through_every_key_in_order,
    copies_stay_in_the_tenant,
    an_unprovisioned_tenant_is_refused_and_nothing_is_created,
    deleting_a_bucket_refuses_or_purges_every_version,
    a_failed_body_stores_nothing,
    a_dropped_upload_stores_nothing,
    bad_keys_are_refused_before_any_io,
);

async fn objects_round_trip_with_their_type_and_metadata(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let options = PutOptions::new()
        .content_type("application/pdf")
        .metadata("capa", "CAPA-12")
        .metadata("uploaded-by", "u-42");

    let receipt = bucket
        .put("capa/CAPA-12/report v1.pdf", &b"%PDF first"[..], &options)
        .await
        .unwrap();
    assert!(receipt.etag.is_some());

    let info = bucket.head("capa/CAPA-12/report v1.pdf").await.unwrap();
    assert_eq!(info.key, "capa/CAPA-12/report v1.pdf");
    assert_eq!(info.size, 10);
    assert_eq!(info.content_type.as_deref(), Some("application/pdf"));
    let expected: BTreeMap<String, String> = [("capa", "CAPA-12"), ("uploaded-by", "u-42")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(info.metadata, expected);
    assert!(info.last_modified.is_some());

    let object = bucket.get("capa/CAPA-12/report v1.pdf").await.unwrap();
    assert_eq!(object.info().metadata, expected);
    let (_, mut body) = object.into_parts();
    let mut streamed = Vec::new();
    while let Some(chunk) = body.next().await {
        streamed.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(streamed, b"%PDF first");

    bucket
        .put(
            "capa/CAPA-12/report v1.pdf",
            &b"%PDF second"[..],
            &PutOptions::new(),
        )
        .await
        .unwrap();
    let replaced = bucket.head("capa/CAPA-12/report v1.pdf").await.unwrap();
    assert_eq!(
        bucket
            .get_bytes("capa/CAPA-12/report v1.pdf")
            .await
            .unwrap(),
        &b"%PDF second"[..]
    );
    assert_ne!(replaced.etag, info.etag);
    assert!(replaced.metadata.is_empty());

    // A key and a longer key through it coexist, as on S3.
    bucket
        .put("a", &b"1"[..], &PutOptions::new())
        .await
        .unwrap();
    bucket
        .put("a/b", &b"2"[..], &PutOptions::new())
        .await
        .unwrap();
    assert_eq!(bucket.get_bytes("a").await.unwrap(), &b"1"[..]);
    assert_eq!(bucket.get_bytes("a/b").await.unwrap(), &b"2"[..]);

    bucket.delete("capa/CAPA-12/report v1.pdf").await.unwrap();
    let gone = bucket.get("capa/CAPA-12/report v1.pdf").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone:?}");
    let gone = bucket.head("capa/CAPA-12/report v1.pdf").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone:?}");
    // Deleting what is not there succeeds, as on S3.
    bucket.delete("capa/CAPA-12/report v1.pdf").await.unwrap();
    bucket.delete("never/was").await.unwrap();
    assert_eq!(bucket.get_bytes("a/b").await.unwrap(), &b"2"[..]);
}

async fn streamed_puts_store_exactly_what_was_sent(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let part = fixture.config().part_size as u64;
    // Shorter than a part (one request), exactly a part, and over two parts (multipart
    // on S3), in chunk sizes that do not divide the part size.
    for (seed, total, chunk) in [
        (1, 1_000, 333),
        (2, part, 64 * 1024),
        (3, 2 * part + 12_345, 100_003),
        (4, 0, 1),
    ] {
        let key = format!("streams/{seed}");
        bucket
            .put_stream(
                &key,
                body_stream(seed, total, chunk),
                &PutOptions::new().content_type("application/octet-stream"),
            )
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let info = bucket.head(&key).await.unwrap();
        assert_eq!(info.size, total, "{key}");
        assert_eq!(
            info.content_type.as_deref(),
            Some("application/octet-stream")
        );
        let mut body = bucket.get(&key).await.unwrap().into_body();
        let mut at = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            assert_eq!(
                &chunk[..],
                &bytes_of(seed, at, chunk.len())[..],
                "{key} at {at}"
            );
            at += chunk.len() as u64;
        }
        assert_eq!(at, total, "{key}");
    }
    assert_eq!(unfinished_uploads(&fixture, ctx.tenant()).await, 0);
    assert!(leftover_temp_files(&fixture).is_empty());
}

async fn lists_page_through_every_key_in_order(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let mut keys: Vec<String> = (0..23)
        .map(|i| format!("capa/{}/file-{i:02}.txt", i % 3))
        .collect();
    keys.extend(["capa-x", "capa", "z/last", "Ärger/ü", "a b/c+d"].map(String::from));
    for key in &keys {
        bucket
            .put(key, key.clone(), &PutOptions::new())
            .await
            .unwrap();
    }
    // S3 orders keys by their UTF-8 bytes, as Rust's `str` does.
    keys.sort();

    let mut listed = Vec::new();
    let mut request = ListRequest::all().max_keys(10);
    let mut pages = 0;
    loop {
        let page = bucket.list(&request).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 10);
        for object in &page.objects {
            assert_eq!(object.size, object.key.len() as u64, "{}", object.key);
        }
        listed.extend(page.objects.into_iter().map(|o| o.key));
        match page.next {
            Some(next) => request = request.after(next),
            None => break,
        }
    }
    assert_eq!(listed, keys);
    assert_eq!(pages, 3);

    let page = bucket.list(&ListRequest::prefix("capa/1/")).await.unwrap();
    let expected: Vec<&String> = keys.iter().filter(|k| k.starts_with("capa/1/")).collect();
    let got: Vec<&String> = page.objects.iter().map(|o| &o.key).collect();
    assert_eq!(got, expected);
    assert_eq!(page.next, None);

    // A prefix may end inside a segment.
    let page = bucket.list(&ListRequest::prefix("capa")).await.unwrap();
    assert_eq!(page.objects.len(), 25);
    let page = bucket.list(&ListRequest::prefix("capa-")).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    let page = bucket.list(&ListRequest::prefix("nothing/")).await.unwrap();
    assert!(page.objects.is_empty());
}

async fn copies_stay_in_the_tenant(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let options = PutOptions::new()
        .content_type("text/plain")
        .metadata("capa", "CAPA-7");
    bucket
        .put("drafts/v1 100%.txt", &b"draft"[..], &options)
        .await
        .unwrap();
    bucket
        .copy("drafts/v1 100%.txt", "final/v1.txt")
        .await
        .unwrap();
    let copied = bucket.head("final/v1.txt").await.unwrap();
    assert_eq!(copied.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        copied.metadata.get("capa").map(String::as_str),
        Some("CAPA-7")
    );
    assert_eq!(
        bucket.get_bytes("final/v1.txt").await.unwrap(),
        &b"draft"[..]
    );
    assert!(exists_raw(&fixture, ctx.tenant(), "final/v1.txt").await);

    let missing = bucket.copy("drafts/none", "final/none").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing:?}");
    let refused = bucket.copy("../x", "final/x").await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidKey);
}

async fn an_unprovisioned_tenant_is_refused_and_nothing_is_created(
    backend: Backend,
    layout: Layout,
) {
    let fixture = TestStorage::new(backend, layout);
    // In the shared layout nothing is provisioned until some tenant is: the shared bucket
    // is missing, and every tenant is refused.
    let ctx = fixture.unprovisioned("ghost");
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let options = PutOptions::new();
    let outcomes = [
        ("put", bucket.put("a", &b"x"[..], &options).await.map(drop)),
        (
            "put_stream",
            bucket
                .put_stream("big", body_stream(9, 20 << 20, 1 << 20), &options)
                .await
                .map(drop),
        ),
        ("get", bucket.get("a").await.map(drop)),
        ("head", bucket.head("a").await.map(drop)),
        ("list", bucket.list(&ListRequest::all()).await.map(drop)),
        ("delete", bucket.delete("a").await),
        ("copy", bucket.copy("a", "b").await.map(drop)),
    ];
    for (call, outcome) in outcomes {
        let err = outcome.expect_err(call);
        assert_eq!(err.kind(), ErrorKind::NotProvisioned, "{call}: {err:?}");
        assert!(
            err.to_string().contains("not been provisioned"),
            "{call}: {err}"
        );
    }
    assert!(!bucket_exists_raw(&fixture, ctx.tenant()).await);
    assert!(leftover_temp_files(&fixture).is_empty());
    let refused = fixture
        .storage
        .platform()
        .delete_bucket(&operator(), ctx.tenant(), Deletion::PurgeEveryVersion)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotProvisioned, "{refused:?}");
}

async fn deleting_a_bucket_refuses_or_purges_every_version(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let platform = fixture.storage.platform();
    let acme = fixture.tenant("acme").await;
    let other = fixture.tenant("other").await;
    let bucket = fixture.storage.bucket(&acme).unwrap();
    let others = fixture.storage.bucket(&other).unwrap();
    for round in 0..3 {
        bucket
            .put("records/1", format!("v{round}"), &PutOptions::new())
            .await
            .unwrap();
    }
    bucket
        .put("records/2", &b"x"[..], &PutOptions::new())
        .await
        .unwrap();
    bucket
        .put_stream(
            "records/3",
            body_stream(3, 9 << 20, 1 << 20),
            &PutOptions::new(),
        )
        .await
        .unwrap();
    // Deleted, but on S3 its versions and a delete marker remain.
    bucket.delete("records/2").await.unwrap();
    others
        .put("records/1", &b"other"[..], &PutOptions::new())
        .await
        .unwrap();

    let refused = platform
        .delete_bucket(&operator(), acme.tenant(), Deletion::RefuseIfNotEmpty)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotEmpty, "{refused:?}");
    assert_eq!(bucket.get_bytes("records/1").await.unwrap(), &b"v2"[..]);

    platform
        .delete_bucket(&operator(), acme.tenant(), Deletion::PurgeEveryVersion)
        .await
        .unwrap();
    let after = bucket.get("records/1").await.unwrap_err();
    let expected = match layout {
        Layout::SharedBucket => ErrorKind::NotFound,
        _ => ErrorKind::NotProvisioned,
    };
    assert_eq!(after.kind(), expected, "{after:?}");
    if backend == Backend::S3 {
        // Not one version or delete marker of the tenant is left.
        let versions = fixture
            .raw()
            .list_object_versions()
            .bucket(fixture.bucket_of(acme.tenant()))
            .prefix(support::full_key(&fixture, acme.tenant(), ""))
            .send()
            .await;
        if let Ok(versions) = versions {
            assert!(versions.versions().is_empty());
            assert!(versions.delete_markers().is_empty());
        }
    }
    // The other tenant lost nothing.
    assert_eq!(others.get_bytes("records/1").await.unwrap(), &b"other"[..]);

    // An empty bucket goes without purging.
    let empty = fixture.tenant("empty").await;
    platform
        .delete_bucket(&operator(), empty.tenant(), Deletion::RefuseIfNotEmpty)
        .await
        .unwrap();
    if layout == Layout::BucketPerTenant {
        assert!(!bucket_exists_raw(&fixture, empty.tenant()).await);
    }
}

async fn a_failed_body_stores_nothing(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    bucket
        .put("report", &b"the good version"[..], &PutOptions::new())
        .await
        .unwrap();
    // 9 MiB arrive (more than a part on S3: the multipart upload has begun), then the
    // client goes away.
    for (key, good) in [
        ("report", 9u64 << 20),
        ("new-report", 9 << 20),
        ("small", 10),
    ] {
        let failing = body_stream(5, good, 1 << 20).chain(futures::stream::once(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away",
            ))
        }));
        let err = bucket
            .put_stream(key, failing, &PutOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
        assert!(err.to_string().contains("nothing was stored"), "{err}");
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "client went away"
        );
    }
    assert_eq!(
        bucket.get_bytes("report").await.unwrap(),
        &b"the good version"[..]
    );
    for key in ["new-report", "small"] {
        assert_eq!(
            bucket.head(key).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    assert!(leftover_temp_files(&fixture).is_empty());
    assert_eq!(unfinished_uploads(&fixture, ctx.tenant()).await, 0);
}

async fn a_dropped_upload_stores_nothing(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    // Half the body arrives, then nothing more: the request is cancelled (the future
    // dropped) while it waits.
    let stalled = body_stream(6, 3 << 20, 1 << 20).chain(futures::stream::pending());
    let options = PutOptions::new();
    let upload = bucket.put_stream("stalled", stalled, &options);
    let outcome = tokio::time::timeout(Duration::from_millis(500), upload).await;
    assert!(outcome.is_err(), "the upload cannot finish");
    assert_eq!(
        bucket.head("stalled").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(leftover_temp_files(&fixture).is_empty());
}

async fn bad_keys_are_refused_before_any_io(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    // Not provisioned: a call that reached the storage would say so instead.
    let ctx = fixture.unprovisioned("acme");
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let long = "k".repeat(tenancy_storage::MAX_KEY_LEN + 1);
    for key in [
        "",
        "/etc/passwd",
        "../other/x",
        "a/../../b",
        "a/./b",
        "a\\b",
        "a\0b",
        "a\u{1b}[31m",
        "%2e%2e/x",
        "%252e%252e%252fx",
        "a//b",
        "dir/",
        long.as_str(),
    ] {
        let outcomes = [
            bucket
                .put(key, &b"x"[..], &PutOptions::new())
                .await
                .map(drop),
            bucket.get(key).await.map(drop),
            bucket.head(key).await.map(drop),
            bucket.delete(key).await,
            bucket.copy(key, "ok").await.map(drop),
            bucket.copy("ok", key).await.map(drop),
            bucket.presign_get(key).await.map(drop),
        ];
        for outcome in outcomes {
            let err = outcome.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key:?}: {err:?}");
        }
    }
    let err = bucket.list(&ListRequest::prefix("../")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    let err = bucket
        .put(
            "ok",
            &b"x"[..],
            &PutOptions::new().metadata("Bad Name", "x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// What the local backend cannot do, it refuses rather than pretend.
#[tokio::test]
async fn the_local_backend_refuses_what_it_cannot_protect() {
    let fixture = TestStorage::new(Backend::Local, Layout::BucketPerTenant);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let retained = PutOptions::new().retain_until(
        RetentionMode::Governance,
        SystemTime::now() + Duration::from_secs(3600),
    );
    let err = bucket
        .put("record", &b"x"[..], &retained)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
    assert_eq!(
        bucket.head("record").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    bucket
        .put("record", &b"x"[..], &PutOptions::new())
        .await
        .unwrap();
    for err in [
        bucket.presign_get("record").await.unwrap_err(),
        bucket
            .presign_put("record", &PutOptions::new())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
    }
}

/// Versioning (an overwritten version is kept), SSE-S3 as the default, a KMS key per
/// tenant, and the rule that clears abandoned uploads, as moto stores and reports them
/// (moto records encryption settings but encrypts nothing).
#[tokio::test]
async fn s3_buckets_get_versioning_and_encryption_as_configured() {
    let fixture = TestStorage::new(Backend::S3, Layout::BucketPerTenant);
    let ctx = fixture.tenant("acme").await;
    let raw = fixture.raw();
    let name = fixture.bucket_of(ctx.tenant());
    // (moto 5.2 answers GetBucketVersioning with a root element the SDK refuses; the
    // versions kept below show versioning instead.)
    let encryption = raw
        .get_bucket_encryption()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let lifecycle = raw
        .get_bucket_lifecycle_configuration()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert!(
        lifecycle
            .rules()
            .iter()
            .any(|r| r.abort_incomplete_multipart_upload().is_some())
    );

    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let first = bucket
        .put("doc", &b"v1"[..], &PutOptions::new())
        .await
        .unwrap();
    let second = bucket
        .put("doc", &b"v2"[..], &PutOptions::new())
        .await
        .unwrap();
    assert!(first.version_id.is_some());
    assert_ne!(first.version_id, second.version_id);
    let info = bucket.head("doc").await.unwrap();
    assert_eq!(info.encryption.as_deref(), Some("AES256"));
    assert_eq!(info.version_id, second.version_id);
    // The first version is still there.
    let old = raw
        .get_object()
        .bucket(&name)
        .key("doc")
        .version_id(first.version_id.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(&old.body.collect().await.unwrap().into_bytes()[..], b"v1");

    // A KMS key per tenant: each tenant's objects name its own key.
    let kms = TestStorage::with_config(Backend::S3, Layout::SharedBucket, |config| {
        with_s3(config, |s3| {
            s3.encryption(Encryption::Kms {
                key_id: String::from("alias/tenancy-{tenant}"),
            })
        })
    });
    for label in ["acme", "beta"] {
        let ctx = kms.tenant(label).await;
        let bucket = kms.storage.bucket(&ctx).unwrap();
        bucket
            .put("doc", &b"x"[..], &PutOptions::new())
            .await
            .unwrap();
        bucket.copy("doc", "copy").await.unwrap();
        for key in ["doc", "copy"] {
            let info = bucket.head(key).await.unwrap();
            assert_eq!(info.encryption.as_deref(), Some("aws:kms"));
            assert_eq!(
                info.kms_key_id,
                Some(format!("alias/tenancy-{}", ctx.tenant()))
            );
        }
    }
}

/// Object lock, which moto honours: a version under retention cannot be deleted, and a
/// purge stops at it with `Retained` (the fixture removes it by bypassing governance).
#[tokio::test]
async fn s3_object_lock_keeps_retained_versions() {
    let fixture = TestStorage::with_config(Backend::S3, Layout::BucketPerTenant, |config| {
        with_s3(config, |s3| {
            s3.object_lock(ObjectLock::new(RetentionMode::Governance, 1))
        })
    });
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    let until = SystemTime::now() + Duration::from_secs(3 * 24 * 3600);
    let kept = bucket
        .put(
            "batch-record",
            &b"signed"[..],
            &PutOptions::new().retain_until(RetentionMode::Governance, until),
        )
        .await
        .unwrap();
    let defaulted = bucket
        .put("sop", &b"v1"[..], &PutOptions::new())
        .await
        .unwrap();
    let info = bucket.head("batch-record").await.unwrap();
    let retention = info.retention.expect("a retention");
    assert_eq!(retention.mode, RetentionMode::Governance);
    assert!(retention.until > SystemTime::now() + Duration::from_secs(2 * 24 * 3600));
    assert!(bucket.head("sop").await.unwrap().retention.is_some());

    let raw = fixture.raw();
    let name = fixture.bucket_of(ctx.tenant());
    for (key, version) in [
        ("batch-record", kept.version_id.unwrap()),
        ("sop", defaulted.version_id.unwrap()),
    ] {
        let refused = raw
            .delete_object()
            .bucket(&name)
            .key(key)
            .version_id(version)
            .send()
            .await;
        assert!(refused.is_err(), "a retained version was deleted");
    }
    // Deleting the object hides it behind a marker; the version stays.
    bucket.delete("batch-record").await.unwrap();
    let err = fixture
        .storage
        .platform()
        .delete_bucket(&operator(), ctx.tenant(), Deletion::PurgeEveryVersion)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retained, "{err:?}");
    assert!(err.to_string().contains("2 object versions"), "{err}");
}

/// S3 down mid-test (a moto of the test's own, killed half-way through an upload): the
/// upload and every later call fail with `Unavailable` and a message that says so.
#[tokio::test]
async fn s3_down_fails_clearly() {
    let mut server = MotoServer::start();
    let fixture = TestStorage::on_server(server.url(), Layout::BucketPerTenant, |config| config);
    let ctx = fixture.tenant("acme").await;
    let bucket = fixture.storage.bucket(&ctx).unwrap();
    bucket
        .put("before", &b"x"[..], &PutOptions::new())
        .await
        .unwrap();

    // The server dies after the first part of a streamed upload has gone.
    let sent_first_part = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = sent_first_part.clone();
    let part = fixture.config().part_size as u64;
    let body = body_stream(7, part + (1 << 20), 1 << 20)
        .enumerate()
        .then(move |(i, chunk)| {
            let notify = notify.clone();
            async move {
                if i as u64 == part >> 20 {
                    // The first part is complete: wait until the server is gone.
                    notify.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                chunk
            }
        });
    let options = PutOptions::new();
    let upload = bucket.put_stream("during", body, &options);
    let kill = async {
        sent_first_part.notified().await;
        server.stop();
    };
    let (outcome, ()) = tokio::join!(upload, kill);
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");

    let started = std::time::Instant::now();
    let outcomes = [
        bucket
            .put("after", &b"x"[..], &PutOptions::new())
            .await
            .map(drop),
        bucket.get("before").await.map(drop),
        bucket.list(&ListRequest::all()).await.map(drop),
    ];
    for outcome in outcomes {
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
        assert!(
            err.to_string().contains("could not be reached")
                || err.to_string().contains("did not answer"),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
    // Not a timing assertion: a guard against a hang (retries end in seconds).
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Applies `adjust` to the S3 part of a configuration.
fn with_s3(
    config: StorageConfig,
    adjust: impl FnOnce(tenancy_storage::S3Config) -> tenancy_storage::S3Config,
) -> StorageConfig {
    let mut config = config;
    if let tenancy_storage::BackendConfig::S3(s3) = config.backend {
        config.backend = tenancy_storage::BackendConfig::S3(adjust(s3));
    }
    config
}
