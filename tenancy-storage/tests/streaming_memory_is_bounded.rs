//! Streaming a 100 MiB object in and out keeps memory bounded, on both backends.
//!
//! How "bounded" is shown: the body is made on the fly in 64 KiB chunks and checked on
//! the fly as it is read back, so the test itself never holds it. Before each direction
//! the process's peak resident set is reset (`5` written to `/proc/self/clear_refs`), and
//! afterwards the peak (`VmHWM` in `/proc/self/status`) is read: its growth over the
//! resident set at the start is everything the upload or the download held at once,
//! library, SDK, HTTP client and allocator included. It must stay under a fixed bound far
//! below the object's size (the S3 upload holds about one 8 MiB part); a backend that
//! buffered the object would grow by 100 MiB or more.

mod support;

use futures::StreamExt;
use support::{body_stream, bytes_of};
use tenancy_storage::{Layout, PutOptions};
use tenancy_test::storage::{Backend, TestStorage};

const TOTAL: u64 = 100 << 20;
/// The most the resident set may grow while 100 MiB pass through.
const BOUND: u64 = 40 << 20;

#[test]
fn streaming_100_mib_in_and_out_keeps_memory_bounded() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in [Backend::Local, Backend::S3] {
        let fixture = TestStorage::new(backend, Layout::BucketPerTenant);
        let ctx = runtime.block_on(fixture.tenant("stream"));
        let bucket = fixture.storage.bucket(&ctx).unwrap();

        let start = reset_peak();
        runtime
            .block_on(bucket.put_stream(
                "big.bin",
                body_stream(11, TOTAL, 64 * 1024),
                &PutOptions::new(),
            ))
            .unwrap();
        let upload = peak() - start;

        let start = reset_peak();
        let read = runtime.block_on(async {
            let mut body = bucket.get("big.bin").await.unwrap().into_body();
            let mut at = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                assert_eq!(&chunk[..], &bytes_of(11, at, chunk.len())[..], "at {at}");
                at += chunk.len() as u64;
            }
            at
        });
        let download = peak() - start;

        println!(
            "{backend:?}: 100 MiB up: resident set grew by {:.1} MiB at most; down: {:.1} MiB \
             (bound {} MiB)",
            upload as f64 / 1048576.0,
            download as f64 / 1048576.0,
            BOUND >> 20
        );
        assert_eq!(read, TOTAL);
        assert!(upload < BOUND, "{backend:?} upload held {upload} bytes");
        assert!(
            download < BOUND,
            "{backend:?} download held {download} bytes"
        );
    }
}

/// Resets the peak resident set to the current one and returns it, in bytes.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("resetting the peak resident set (/proc/self/clear_refs, Linux 4.0+)");
    status_kib("VmRSS") * 1024
}

/// The peak resident set since the last reset, in bytes.
fn peak() -> u64 {
    status_kib("VmHWM") * 1024
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}
