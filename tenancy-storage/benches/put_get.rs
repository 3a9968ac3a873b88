//! Run with: cargo bench -p tenancy-storage --features s3 --bench put_get
//!
//! Put and get of a small (4 KiB) and a large (16 MiB) object through a `TenantBucket`,
//! and the same through raw aws-sdk-s3 calls on the same server, interleaved round by round
//! in one run. The raw side is a client built the plain way (`aws_sdk_s3::Config::builder()`
//! with static credentials and the endpoint) sending `PutObject` / `GetObject` to the
//! tenant's bucket as a user writes them; a second raw variant sends exactly what the
//! handle sends (the `x-amz-server-side-encryption: AES256` header of the default SSE-S3
//! configuration), so the report splits the difference into the server's cost of that
//! header and this crate's own code.
//!
//! The server is a moto of the benchmark's own on a free port (moto must be installed;
//! `.ci/run` installs it), so other tests' traffic on the shared one stays out of the
//! figures; the bucket is unversioned so overwrites do not pile up versions in moto's
//! memory. moto is Python: it takes milliseconds per request, so the wall-clock ratio is
//! mostly the server's. The benchmark therefore also measures the client's own CPU time
//! per operation (all threads of this process, from `/proc/self/task/*/schedstat`), where
//! this crate's cost is not drowned by the server's.
//!
//! The benchmark pins itself and moto to CPU 0 (set `TENANCY_BENCH_PIN=0` not to).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use tenancy_storage::aws_sdk_s3::Client;
use tenancy_storage::aws_sdk_s3::primitives::ByteStream;
use tenancy_storage::aws_sdk_s3::types::ServerSideEncryption;
use tenancy_storage::{Layout, PutOptions, StorageConfig, TenantBucket, TenantStorage};
use tenancy_test::bench::{Comparison, pin_to_cpu};
use tenancy_test::storage::{MotoServer, raw_client, remove_buckets, s3_config, unique_prefix};

const SMALL: usize = 4 * 1024;
const LARGE: usize = 16 * 1024 * 1024;

struct Sides<'a> {
    runtime: &'a tokio::runtime::Runtime,
    raw: Client,
    bucket: TenantBucket,
    name: String,
}

impl Sides<'_> {
    fn raw_put(&self, key: &str, body: &Bytes, sse: bool) {
        let request = self
            .raw
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(body.clone()));
        let request = if sse {
            request.server_side_encryption(ServerSideEncryption::Aes256)
        } else {
            request
        };
        self.runtime.block_on(request.send()).unwrap();
    }

    fn tenancy_put(&self, key: &str, body: &Bytes) {
        self.runtime
            .block_on(self.bucket.put(key, body.clone(), &PutOptions::new()))
            .unwrap();
    }

    fn raw_get(&self, key: &str) -> Bytes {
        self.runtime.block_on(async {
            let out = self
                .raw
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes()
        })
    }

    fn tenancy_get(&self, key: &str) -> Bytes {
        self.runtime.block_on(self.bucket.get_bytes(key)).unwrap()
    }
}

/// CPU time used so far by every live thread of this process, in nanoseconds.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Median client CPU per call of each side, measured in interleaved rounds.
fn cpu_per_call(rounds: usize, calls: usize, sides: &mut [(&str, &mut dyn FnMut())]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); sides.len()];
    for round in 0..rounds {
        for turn in 0..sides.len() {
            let index = (round + turn) % sides.len();
            let body = &mut sides[index].1;
            let start = process_cpu_ns();
            for _ in 0..calls {
                body();
            }
            samples[index].push((process_cpu_ns() - start) as f64 / calls as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    let server = MotoServer::start();
    let pin = std::env::var("TENANCY_BENCH_PIN").map_or(true, |v| v != "0");
    if pin {
        let pinned = pin_to_cpu(std::process::id(), 0) && pin_to_cpu(server.pid(), 0);
        println!("pinned to CPU 0: {pinned}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = unique_prefix();
    let config = StorageConfig::s3(s3_config(server.url()).versioning(false))
        .naming_prefix(&prefix)
        .layout(Layout::BucketPerTenant);
    let storage = TenantStorage::new(config).unwrap();
    let ctx = tenancy_core::TenantContext::new(
        tenancy_test::unique_tenant("bench"),
        tenancy_core::Actor::service("bench").unwrap(),
    );
    runtime
        .block_on(
            storage
                .platform()
                .create_bucket(&tenancy_test::operator(), ctx.tenant()),
        )
        .unwrap();
    let sides = Sides {
        runtime: &runtime,
        raw: raw_client(server.url()),
        bucket: storage.bucket(&ctx).unwrap(),
        name: storage.naming().bucket(ctx.tenant()),
    };

    for (label, size, rounds, iterations) in [("4 KiB", SMALL, 40, 20), ("16 MiB", LARGE, 30, 2)] {
        let body = Bytes::from(vec![0x5a; size]);
        let put = Comparison::new(&format!("put {label}"))
            .rounds(rounds)
            .iterations(iterations)
            .baseline("raw aws-sdk-s3", || sides.raw_put("raw", &body, false))
            .variant("raw, same headers", || {
                sides.raw_put("raw-sse", &body, true)
            })
            .variant("TenantBucket::put", || sides.tenancy_put("tenancy", &body))
            .run();
        report_goal(&put, "TenantBucket::put", "raw, same headers");

        sides.raw_put("object", &body, true);
        let get = Comparison::new(&format!("get {label}"))
            .rounds(rounds)
            .iterations(iterations)
            .baseline("raw aws-sdk-s3", || {
                black_box(sides.raw_get("object"));
            })
            .variant("TenantBucket::get_bytes", || {
                black_box(sides.tenancy_get("object"));
            })
            .run();
        report_goal(&get, "TenantBucket::get_bytes", "");

        // The client's own CPU per call, where the server's time does not count.
        let (cpu_rounds, calls) = if size == SMALL { (30, 20) } else { (20, 2) };
        let mut raw_put = || sides.raw_put("raw", &body, false);
        let mut raw_put_sse = || sides.raw_put("raw-sse", &body, true);
        let mut tenancy_put = || sides.tenancy_put("tenancy", &body);
        let mut raw_get = || {
            black_box(sides.raw_get("object"));
        };
        let mut tenancy_get = || {
            black_box(sides.tenancy_get("object"));
        };
        let cpu = cpu_per_call(
            cpu_rounds,
            calls,
            &mut [
                ("raw put", &mut raw_put),
                ("raw put, same headers", &mut raw_put_sse),
                ("tenancy put", &mut tenancy_put),
                ("raw get", &mut raw_get),
                ("tenancy get", &mut tenancy_get),
            ],
        );
        let wall_put = put.median_ns("TenantBucket::put");
        let wall_get = get.median_ns("TenantBucket::get_bytes");
        println!(
            "client CPU per call, {label} ({cpu_rounds} rounds x {calls}; median):\n  \
             put: raw {} · raw same headers {} · TenantBucket {} ({:.3}x raw, {:.3}x same \
             headers); the client's CPU is {:.0}% of the put's wall time\n  \
             get: raw {} · TenantBucket {} ({:.3}x); {:.0}% of the get's wall time\n",
            micros(cpu[0]),
            micros(cpu[1]),
            micros(cpu[2]),
            cpu[2] / cpu[0],
            cpu[2] / cpu[1],
            100.0 * cpu[2] / wall_put,
            micros(cpu[3]),
            micros(cpu[4]),
            cpu[4] / cpu[3],
            100.0 * cpu[4] / wall_get,
        );
    }

    let started = Instant::now();
    runtime.block_on(remove_buckets(server.url(), |name| {
        name.starts_with(&format!("{prefix}-"))
    }));
    println!("cleaned up in {:.1} s", started.elapsed().as_secs_f64());
}

fn report_goal(report: &tenancy_test::bench::Report, ours: &str, same: &str) {
    let paired = report.paired_ratio(ours);
    let verdict = if paired <= 1.05 { "met" } else { "NOT MET" };
    if same.is_empty() {
        println!("  paired ratio {paired:.3} (goal <= 1.05): {verdict}\n");
    } else {
        println!(
            "  paired ratio {paired:.3} (goal <= 1.05): {verdict}; {:.3}x raw with the same \
             headers\n",
            paired / report.paired_ratio(same)
        );
    }
}

fn micros(ns: f64) -> String {
    format!("{:.0} µs", ns / 1000.0)
}
