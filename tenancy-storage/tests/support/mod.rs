//! What the test binaries share: running one test on every backend and layout, bodies
//! made on the fly, and raw looks at where objects landed.

// Each test binary uses a different part of this module.
#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)]

use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;
use tenancy_core::TenantId;
use tenancy_storage::Layout;
use tenancy_test::storage::{Backend, TestStorage};

/// Runs each named `async fn(Backend, Layout)` on the local directory and on S3, with a
/// bucket per tenant and with a shared bucket: four tests per function.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod local_bucket_per_tenant {
            $(#[tokio::test] async fn $test() {
                super::$test(tenancy_test::storage::Backend::Local, tenancy_storage::Layout::BucketPerTenant).await
            })*
        }
        mod local_shared_bucket {
            $(#[tokio::test] async fn $test() {
                super::$test(tenancy_test::storage::Backend::Local, tenancy_storage::Layout::SharedBucket).await
            })*
        }
        mod s3_bucket_per_tenant {
            $(#[tokio::test] async fn $test() {
                super::$test(tenancy_test::storage::Backend::S3, tenancy_storage::Layout::BucketPerTenant).await
            })*
        }
        mod s3_shared_bucket {
            $(#[tokio::test] async fn $test() {
                super::$test(tenancy_test::storage::Backend::S3, tenancy_storage::Layout::SharedBucket).await
            })*
        }
    };
}
pub(crate) use on_every_backend;

/// A deterministic pseudo-random byte at `position` of body number `seed`, so a body can
/// be made and checked in pieces without holding it.
pub fn byte_at(seed: u64, position: u64) -> u8 {
    let mut x = (position / 8) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> (8 * (position % 8))) as u8
}

/// `len` bytes of body `seed`, from `start`.
pub fn bytes_of(seed: u64, start: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| byte_at(seed, start + i)).collect()
}

/// Body `seed` of `total` bytes as a stream of chunks of `chunk` bytes, made as it is
/// polled.
pub fn body_stream(
    seed: u64,
    total: u64,
    chunk: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let len = chunk.min((total - sent) as usize);
        Some((
            Ok(Bytes::from(bytes_of(seed, sent, len))),
            sent + len as u64,
        ))
    })
}

/// Where a fixture's tenant's object `key` sits, seen from outside the library: the S3
/// bucket and full key, or the file.
pub enum Placement {
    S3 { bucket: String, key: String },
    File(PathBuf),
}

/// The full key of `tenant`'s `key` in its bucket.
pub fn full_key(fixture: &TestStorage, tenant: &TenantId, key: &str) -> String {
    match fixture.config().layout {
        Layout::SharedBucket => format!("{}{key}", fixture.storage.naming().object_prefix(tenant)),
        _ => key.to_owned(),
    }
}

/// Whether `tenant`'s object `key` exists, looked up with a raw S3 client or on disk (the
/// local layout of `capa/12` is `capa=d/12=o`; keys in these checks need no escaping).
pub async fn exists_raw(fixture: &TestStorage, tenant: &TenantId, key: &str) -> bool {
    let bucket = fixture.bucket_of(tenant);
    let full = full_key(fixture, tenant, key);
    match fixture.backend() {
        Backend::S3 => fixture
            .raw()
            .head_object()
            .bucket(&bucket)
            .key(&full)
            .send()
            .await
            .is_ok(),
        Backend::Local => {
            let mut path = fixture.root().expect("a local fixture").join(&bucket);
            let segments: Vec<&str> = full.split('/').collect();
            for (i, segment) in segments.iter().enumerate() {
                let suffix = if i + 1 == segments.len() { "=o" } else { "=d" };
                path.push(format!("{segment}{suffix}"));
            }
            path.is_file()
        }
    }
}

/// Whether `tenant`'s bucket (its own, or the shared one) exists, seen from outside.
pub async fn bucket_exists_raw(fixture: &TestStorage, tenant: &TenantId) -> bool {
    let bucket = fixture.bucket_of(tenant);
    match fixture.backend() {
        Backend::S3 => fixture
            .raw()
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .is_ok(),
        Backend::Local => fixture
            .root()
            .expect("a local fixture")
            .join(&bucket)
            .exists(),
    }
}

/// The files left in a local fixture's temporary directories (none, after any put).
pub fn leftover_temp_files(fixture: &TestStorage) -> Vec<PathBuf> {
    let Some(root) = fixture.root() else {
        return Vec::new();
    };
    let Ok(buckets) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    buckets
        .flatten()
        .filter_map(|bucket| std::fs::read_dir(bucket.path().join(".tmp")).ok())
        .flat_map(|tmp| tmp.flatten().map(|entry| entry.path()))
        .collect()
}

/// The unfinished multipart uploads in `tenant`'s bucket (S3 fixtures).
pub async fn unfinished_uploads(fixture: &TestStorage, tenant: &TenantId) -> usize {
    if fixture.backend() != Backend::S3 {
        return 0;
    }
    fixture
        .raw()
        .list_multipart_uploads()
        .bucket(fixture.bucket_of(tenant))
        .prefix(full_key(fixture, tenant, ""))
        .send()
        .await
        .map(|out| out.uploads().len())
        .unwrap_or(0)
}
