//! A [`TenantStorage`] per test, on the test S3 server or in a temporary directory, with
//! every bucket it made removed, every version and delete marker in it first, when the
//! test ends (even by panicking); and an S3 server of a test's own, for tests that stop it.
//!
//! Each fixture has its own naming prefix, `tt` + five base-36 digits of the minute it was
//! made + four of its own, so its buckets are found by name at the end whatever made them
//! (the library, or the test by hand), and leftovers of a crashed run are swept by the
//! first S3 fixture of a later run once they are three hours old. Objects under governance
//! retention are removed (bypassing it); a test must not use compliance mode, which nothing
//! can remove before it ends.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenancy_core::{Actor, TenantContext, TenantId};
use tenancy_storage::aws_sdk_s3;
use tenancy_storage::{
    BackendConfig, Layout, S3Config, S3Credentials, StorageConfig, TenantStorage,
};

use crate::services::Service;
use crate::tenants::{operator, unique_tenant};

/// The access key of the test S3 server (moto accepts any).
pub const TEST_ACCESS_KEY: &str = "tenancy-test";
/// Its secret.
pub const TEST_SECRET_KEY: &str = "tenancy-test-secret";

/// Where a fixture keeps its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The test S3 server (`TENANCY_TEST_S3_URL`, moto by default).
    S3,
    /// A temporary directory.
    Local,
}

/// The S3 configuration of tests against the server at `url`.
pub fn s3_config(url: &str) -> S3Config {
    S3Config::new("us-east-1")
        .endpoint_url(url)
        .credentials(S3Credentials::new(TEST_ACCESS_KEY, TEST_SECRET_KEY))
}

/// A raw aws-sdk-s3 client for the server at `url`, for checks from outside the library.
pub fn raw_client(url: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            TEST_ACCESS_KEY,
            TEST_SECRET_KEY,
            None,
            None,
            "tenancy-test",
        ))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Minutes since 2026-01-01, the epoch of fixture prefixes.
fn minute_now() -> u64 {
    const EPOCH_2026: u64 = 1_767_225_600;
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        .saturating_sub(EPOCH_2026)
        / 60
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// A naming prefix no other fixture, in this run or another, uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
    let process = u64::from(std::process::id());
    format!(
        "tt{}{}",
        base36(minute_now(), 5),
        base36((process * 1_000 + n) % 36u64.pow(4), 4)
    )
}

/// A [`TenantStorage`] for one test. Dropping it removes every bucket whose name starts
/// with its prefix, and its directory.
pub struct TestStorage {
    /// The storage under test.
    pub storage: TenantStorage,
    config: StorageConfig,
    backend: Backend,
    prefix: String,
    url: Option<String>,
    root: Option<PathBuf>,
}

impl std::fmt::Debug for TestStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStorage")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TestStorage {
    /// A fixture on `backend` with `layout`.
    pub fn new(backend: Backend, layout: Layout) -> TestStorage {
        TestStorage::with_config(backend, layout, |config| config)
    }

    /// Like [`TestStorage::new`], with `adjust` applied to the configuration first.
    pub fn with_config(
        backend: Backend,
        layout: Layout,
        adjust: impl FnOnce(StorageConfig) -> StorageConfig,
    ) -> TestStorage {
        let url = match backend {
            Backend::S3 => Some(Service::S3.require()),
            Backend::Local => None,
        };
        TestStorage::build(backend, url, layout, adjust)
    }

    /// A fixture on the S3 server at `url` (a [`MotoServer`] of the test's own).
    pub fn on_server(
        url: &str,
        layout: Layout,
        adjust: impl FnOnce(StorageConfig) -> StorageConfig,
    ) -> TestStorage {
        TestStorage::build(Backend::S3, Some(url.to_owned()), layout, adjust)
    }

    fn build(
        backend: Backend,
        url: Option<String>,
        layout: Layout,
        adjust: impl FnOnce(StorageConfig) -> StorageConfig,
    ) -> TestStorage {
        let prefix = unique_prefix();
        let (config, root) = match &url {
            Some(url) => {
                keep_moto_dashboard_working(url);
                sweep_stale_once(url);
                (StorageConfig::s3(s3_config(url)), None)
            }
            None => {
                let root = std::env::temp_dir().join(format!("tenancy-test-{prefix}"));
                (StorageConfig::local(&root), Some(root))
            }
        };
        let config = adjust(config.naming_prefix(&prefix).layout(layout));
        let storage = storage_for(&config);
        TestStorage {
            storage,
            config,
            backend,
            prefix,
            url,
            root,
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The naming prefix of every bucket this fixture makes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configuration the storage was made with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The directory of a local fixture.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The S3 server's URL, for an S3 fixture.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// A raw client for the fixture's S3 server.
    ///
    /// # Panics
    ///
    /// For a local fixture.
    pub fn raw(&self) -> aws_sdk_s3::Client {
        raw_client(
            self.url
                .as_deref()
                .expect("a local fixture has no S3 server"),
        )
    }

    /// Another storage on the same server and names, with `adjust` applied: another node,
    /// or one configured differently.
    pub fn reopen(&self, adjust: impl FnOnce(StorageConfig) -> StorageConfig) -> TenantStorage {
        storage_for(&adjust(self.config.clone()))
    }

    /// A provisioned tenant (`{label}-{unique}`), and a context for a user of it.
    pub async fn tenant(&self, label: &str) -> TenantContext {
        let ctx = self.unprovisioned(label);
        self.storage
            .platform()
            .create_bucket(&operator(), ctx.tenant())
            .await
            .unwrap_or_else(|e| panic!("provisioning {} failed: {e:?}", ctx.tenant()));
        ctx
    }

    /// A tenant that has not been provisioned.
    pub fn unprovisioned(&self, label: &str) -> TenantContext {
        let id = unique_tenant(label);
        let actor = Actor::user(&format!("user-of-{label}"), &format!("User of {label}"))
            .expect("a valid actor");
        TenantContext::new(id, actor)
    }

    /// The bucket name of `tenant` in this fixture's deployment.
    pub fn bucket_of(&self, tenant: &TenantId) -> String {
        match self.config.layout {
            Layout::SharedBucket => self.storage.naming().shared_bucket(),
            _ => self.storage.naming().bucket(tenant),
        }
    }
}

impl Drop for TestStorage {
    fn drop(&mut self) {
        if let Some(url) = self.url.clone() {
            let prefix = format!("{}-", self.prefix);
            // Its own thread and runtime: this drop may happen inside the test's runtime,
            // or while a panic unwinds.
            let cleanup = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for cleanup")
                    .block_on(remove_buckets(&url, |name| name.starts_with(&prefix)));
            });
            let _ = cleanup.join();
        }
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// The storage `config` describes; on S3, with the client `TenantStorage::new` would
/// build plus [`MotoRootFix`].
pub fn storage_for(config: &StorageConfig) -> TenantStorage {
    match &config.backend {
        BackendConfig::S3(s3) => {
            let client = s3.client().expect("a valid test configuration");
            let client = aws_sdk_s3::Client::from_conf(
                client
                    .config()
                    .to_builder()
                    .interceptor(MotoRootFix)
                    .build(),
            );
            TenantStorage::with_s3_client(config.clone(), client)
                .expect("a valid test configuration")
        }
        _ => TenantStorage::new(config.clone()).expect("a valid test configuration"),
    }
}

/// Puts right one answer of moto 5.2.0 and 5.2.1 that the SDK refuses: the result of
/// CompleteMultipartUpload has the root element `CompleteMultipartUploadResponse` where S3
/// (and moto from 5.2.5 at the latest) says `CompleteMultipartUploadResult`
/// (getmoto/moto#10055, fixed by #10056), so every multipart upload "fails" after it
/// succeeded. Small XML answers are read whole and that one name is replaced; nothing
/// else is touched. Remove once every test machine runs a fixed moto.
#[derive(Debug, Clone, Copy)]
pub struct MotoRootFix;

impl aws_sdk_s3::config::Intercept for MotoRootFix {
    fn name(&self) -> &'static str {
        "MotoRootFix"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let response = context.response_mut();
        let headers = response.headers();
        let small_xml = headers.get("content-type") == Some("application/xml")
            && headers
                .get("content-length")
                .and_then(|len| len.parse::<usize>().ok())
                .is_some_and(|len| len < 64 * 1024);
        if small_xml {
            let body = std::mem::replace(
                response.body_mut(),
                aws_sdk_s3::primitives::SdkBody::taken(),
            );
            *response.body_mut() = aws_sdk_s3::primitives::SdkBody::from_body_1_x(RootFixBody {
                inner: body,
                read: Vec::new(),
                done: false,
            });
        }
        Ok(())
    }
}

/// A body read whole, then given out once with the root element renamed.
struct RootFixBody {
    inner: aws_sdk_s3::primitives::SdkBody,
    read: Vec<u8>,
    done: bool,
}

impl http_body::Body for RootFixBody {
    type Data = bytes::Bytes;
    type Error = aws_sdk_s3::error::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.read.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let text = String::from_utf8_lossy(&this.read);
                    let fixed = if text.contains("<CompleteMultipartUploadResponse") {
                        text.replace(
                            "CompleteMultipartUploadResponse",
                            "CompleteMultipartUploadResult",
                        )
                        .into_bytes()
                    } else {
                        std::mem::take(&mut this.read)
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
                        fixed,
                    )))));
                }
            }
        }
    }
}

/// Removes every bucket on the server at `url` whose name `doomed` accepts, with every
/// version, delete marker and unfinished upload in it (bypassing governance retention).
/// Buckets it cannot remove are left; nothing is reported.
pub async fn remove_buckets(url: &str, doomed: impl Fn(&str) -> bool) {
    let client = raw_client(url);
    let Ok(listed) = client.list_buckets().send().await else {
        return;
    };
    for bucket in listed.buckets() {
        let Some(name) = bucket.name() else { continue };
        if doomed(name) {
            remove_bucket(&client, name).await;
        }
    }
}

async fn remove_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    // Each pass deletes the first page of versions; versions S3 keeps (compliance
    // retention) would come back forever, so the passes are bounded.
    for _ in 0..100 {
        let Ok(out) = client.list_object_versions().bucket(bucket).send().await else {
            break;
        };
        let ids: Vec<ObjectIdentifier> = out
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                out.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .set_key(key.map(str::to_owned))
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if ids.is_empty() {
            break;
        }
        for batch in ids.chunks(1000) {
            let Ok(delete) = Delete::builder()
                .set_objects(Some(batch.to_vec()))
                .quiet(true)
                .build()
            else {
                return;
            };
            let _ = client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .bypass_governance_retention(true)
                .send()
                .await;
        }
    }
    if let Ok(uploads) = client.list_multipart_uploads().bucket(bucket).send().await {
        for upload in uploads.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                let _ = client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            }
        }
    }
    let _ = client.delete_bucket().bucket(bucket).send().await;
}

/// Keeps moto's dashboard answering once buckets that held objects are deleted.
///
/// `/moto-api/data.json` (the health check of `.ci/run` and of this crate's service test)
/// reads every object moto ever tracked, deleted ones included; reading an object's
/// simulated Glacier-restore status the first time looks up its bucket, and for a deleted
/// bucket that raises, so the whole dump fails with a 500 (moto 5.2.1 and 5.2.5 alike).
/// Setting that status's transition to "manual" (moto's own state-manager API) means it
/// never advances, so no bucket is looked up: the dump works, for objects deleted before
/// and after. Nothing else changes; the setting lasts until the server restarts, so it is
/// sent once per process and server.
fn keep_moto_dashboard_working(url: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.iter().any(|seen| seen == url) {
        return;
    }
    let Some(authority) = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
    else {
        return;
    };
    let body = r#"{"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 1000000000}}"#;
    let request = format!(
        "POST /moto-api/state-manager/set-transition HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = TcpStream::connect(authority).and_then(|mut stream| {
        use std::io::{Read, Write};
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        let mut reply = [0u8; 32];
        let n = stream.read(&mut reply)?;
        Ok(reply[..n].starts_with(b"HTTP/1.1 20"))
    });
    if sent.unwrap_or(false) {
        done.push(url.to_owned());
    }
}

/// Sweeps fixture buckets more than three hours old, once per process.
fn sweep_stale_once(url: &str) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let url = url.to_owned();
    let stale_before = base36(minute_now().saturating_sub(180), 5);
    let sweep = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the sweep")
            .block_on(remove_buckets(&url, |name| {
                // `tt` + five digits of the minute + four + `-`.
                name.len() > 12
                    && name.starts_with("tt")
                    && name.as_bytes()[11] == b'-'
                    && name[2..11].bytes().all(|b| b.is_ascii_alphanumeric())
                    && &name[2..7] < stale_before.as_str()
            }));
    });
    let _ = sweep.join();
}

/// An S3 server of the test's own (moto) on a free loopback port, for tests that stop it
/// mid-test. Killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    url: String,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts `moto_server` on a free port and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When `moto_server` is not installed (the message says how to install it) or does not
    /// start within 20 seconds.
    pub fn start() -> MotoServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting moto_server failed ({e}): install it with `python3 -m pip \
                     install 'moto[server]>=5.1,<6'`, or run `.ci/run`"
                )
            });
        let server = MotoServer {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port} within 20 seconds"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        keep_moto_dashboard_working(&server.url);
        server
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
