//! A tenant reaches its own objects and nothing else: it cannot read, list, overwrite,
//! delete or copy another tenant's objects through any call; no key it can give lands
//! outside its bucket or prefix (property tests, with and without I/O); a presigned URL
//! opens only its own object, edited or not; every S3 request names the expected bucket
//! owner; and the ambient context is the only way to a bucket without passing one.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use support::{exists_raw, on_every_backend};
use tenancy_storage::aws_sdk_s3;
use tenancy_storage::{
    BackendConfig, ErrorKind, Layout, ListRequest, PutOptions, StorageConfig, TenantStorage,
    check_key,
};
use tenancy_test::operator;
use tenancy_test::storage::{Backend, TestStorage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_every_backend!(a_tenant_reaches_only_its_own_objects);

async fn a_tenant_reaches_only_its_own_objects(backend: Backend, layout: Layout) {
    let fixture = TestStorage::new(backend, layout);
    let alpha = fixture.tenant("alpha").await;
    let beta = fixture.tenant("beta").await;
    let a = fixture.storage.bucket(&alpha).unwrap();
    let b = fixture.storage.bucket(&beta).unwrap();
    let beta_id = beta.tenant().as_str();
    let beta_bucket = fixture.bucket_of(beta.tenant());
    b.put("shared/name.txt", &b"B secret"[..], &PutOptions::new())
        .await
        .unwrap();
    b.put("beta-only/ledger.csv", &b"B ledger"[..], &PutOptions::new())
        .await
        .unwrap();

    // Read.
    for key in ["shared/name.txt", "beta-only/ledger.csv"] {
        assert_eq!(a.get(key).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(a.head(key).await.unwrap_err().kind(), ErrorKind::NotFound);
    }
    // List.
    assert!(
        a.list(&ListRequest::all())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    assert!(
        a.list(&ListRequest::prefix("beta-only/"))
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    // Overwrite.
    a.put("shared/name.txt", &b"A data"[..], &PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        a.get_bytes("shared/name.txt").await.unwrap(),
        &b"A data"[..]
    );
    assert_eq!(
        b.get_bytes("shared/name.txt").await.unwrap(),
        &b"B secret"[..]
    );
    // Delete.
    a.delete("shared/name.txt").await.unwrap();
    a.delete("beta-only/ledger.csv").await.unwrap();
    assert_eq!(
        b.get_bytes("shared/name.txt").await.unwrap(),
        &b"B secret"[..]
    );
    assert_eq!(
        b.get_bytes("beta-only/ledger.csv").await.unwrap(),
        &b"B ledger"[..]
    );
    // Copy.
    let err = a
        .copy("beta-only/ledger.csv", "stolen.csv")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Keys naming the other tenant's bucket or prefix by traversal are refused.
    for key in [
        format!("../{beta_bucket}/beta-only/ledger.csv"),
        format!("../{beta_id}/beta-only/ledger.csv"),
        format!("x/../../{beta_id}/beta-only/ledger.csv"),
        format!("%2e%2e/{beta_id}/beta-only/ledger.csv"),
        format!("..%2F{beta_id}%2Fbeta-only%2Fledger.csv"),
        format!("/{beta_bucket}/beta-only/ledger.csv"),
        format!("..\\{beta_id}\\beta-only\\ledger.csv"),
    ] {
        let err = a.get(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
        let err = a
            .put(&key, &b"A"[..], &PutOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
    }
    // A key that spells the other tenant's prefix is just a key of A's.
    let lookalike = format!("{beta_id}/beta-only/ledger.csv");
    a.put(&lookalike, &b"A's own"[..], &PutOptions::new())
        .await
        .unwrap();
    assert!(exists_raw(&fixture, alpha.tenant(), &lookalike).await);
    assert_eq!(
        b.get_bytes("beta-only/ledger.csv").await.unwrap(),
        &b"B ledger"[..]
    );

    // Each lists exactly its own.
    let keys = |page: tenancy_storage::ListPage| -> Vec<String> {
        page.objects.into_iter().map(|o| o.key).collect()
    };
    assert_eq!(
        keys(b.list(&ListRequest::all()).await.unwrap()),
        ["beta-only/ledger.csv", "shared/name.txt"]
    );
    assert_eq!(
        keys(a.list(&ListRequest::all()).await.unwrap()),
        [lookalike]
    );
}

/// The normalisations a lenient layer between the application and the store might apply
/// to a path: percent-decoding (repeatedly), backslashes as separators, Unicode dot
/// look-alikes as dots, and resolving `.` and `..` (a segment of two or more dots taken
/// as `..`, as some normalisers do).
fn normalise(path: &str) -> String {
    let mut text = path.to_owned();
    for _ in 0..6 {
        text = percent_decode(&text);
    }
    let text = text
        .replace('\\', "/")
        .replace(['\u{2024}', '\u{FE52}', '\u{FF0E}'], ".")
        .replace('\u{2025}', "..")
        .replace('\u{2026}', "...");
    let mut kept: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        let trimmed = segment.trim_end_matches(' ');
        if trimmed == "." {
            continue;
        }
        if trimmed.len() >= 2 && trimmed.bytes().all(|b| b == b'.') {
            kept.pop();
            continue;
        }
        kept.push(segment);
    }
    kept.join("/")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keys built from the pieces traversal is made of, and arbitrary text.
fn hostile_keys() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(".."),
        Just("."),
        Just("..."),
        Just(""),
        Just("%2e%2e"),
        Just("%2E."),
        Just("%252e%252e"),
        Just("..%2f"),
        Just("%2f.."),
        Just("%5c.."),
        Just("\u{FF0E}\u{FF0E}"),
        Just("\u{2025}"),
        Just(".. "),
        Just("beta"),
        Just("a b"),
        Just("%"),
        Just("x%2F..%2Fy"),
    ];
    let separator = prop_oneof![Just("/"), Just("\\"), Just("%2f"), Just("%2F"), Just("")];
    prop_oneof![
        proptest::collection::vec((piece, separator), 1..6).prop_map(|parts| {
            parts
                .into_iter()
                .map(|(piece, sep)| format!("{piece}{sep}"))
                .collect::<String>()
        }),
        "[./%2eEfF5cC\\\\a\u{ff0e} ]{1,16}",
        ".{1,64}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        max_global_rejects: 1_000_000,
        ..ProptestConfig::default()
    })]

    /// Whatever key is accepted stays under the tenant's prefix however it is normalised
    /// later. (Mutation check: with the percent-decoded check or the dot-segment check
    /// removed from `check_key`, this fails within a few hundred cases.)
    #[test]
    fn no_accepted_key_escapes_the_tenant_prefix(key in hostile_keys()) {
        prop_assume!(check_key(&key).is_ok());
        let naming = tenancy_test::naming();
        let prefix = naming.object_prefix(&"alpha".parse().unwrap());
        let full = format!("{prefix}{key}");
        prop_assert!(full.starts_with(&prefix));
        let normalised = normalise(&full);
        prop_assert!(
            normalised.starts_with(&prefix),
            "{:?} normalises to {:?}", full, normalised
        );
    }
}

/// The same property with real I/O, in the shared layout where tenants meet in one
/// bucket: every key tenant A's handle accepts is stored under A's prefix (every file of
/// the local root, every key of the shared bucket, is A's) and read back; B sees nothing.
#[test]
fn no_stored_key_lands_outside_the_tenant_prefix_local() {
    stored_keys_stay_in_the_prefix(Backend::Local);
}

#[test]
fn no_stored_key_lands_outside_the_tenant_prefix_s3() {
    stored_keys_stay_in_the_prefix(Backend::S3);
}

fn stored_keys_stay_in_the_prefix(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = TestStorage::new(backend, Layout::SharedBucket);
    let (alpha, beta) =
        runtime.block_on(async { (fixture.tenant("alpha").await, fixture.tenant("beta").await) });
    let a = fixture.storage.bucket(&alpha).unwrap();
    let b = fixture.storage.bucket(&beta).unwrap();
    let prefix = fixture.storage.naming().object_prefix(alpha.tenant());
    let mut runner = TestRunner::new(ProptestConfig::with_cases(48));
    let stored = Mutex::new(0usize);
    runner
        .run(&hostile_keys(), |key| {
            runtime.block_on(async {
                match a.put(&key, key.clone(), &PutOptions::new()).await {
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::InvalidKey);
                        prop_assert!(check_key(&key).is_err());
                        return Ok(());
                    }
                    Ok(_) => *stored.lock().unwrap() += 1,
                }
                prop_assert_eq!(a.get_bytes(&key).await.unwrap(), key.as_bytes());
                for stored_at in everything_stored(&fixture).await {
                    prop_assert!(
                        stored_at.starts_with(&prefix),
                        "{:?} stored at {:?}",
                        key,
                        stored_at
                    );
                }
                prop_assert!(
                    b.list(&ListRequest::all())
                        .await
                        .unwrap()
                        .objects
                        .is_empty()
                );
                Ok(())
            })
        })
        .unwrap();
    assert!(*stored.lock().unwrap() > 0, "no key was accepted");
}

/// Every object the fixture's storage holds, as a path relative to the shared bucket:
/// every file under the local root (no temporary file is left either), or every key of
/// the shared bucket.
async fn everything_stored(fixture: &TestStorage) -> Vec<String> {
    let shared = fixture.storage.naming().shared_bucket();
    match fixture.backend() {
        Backend::S3 => {
            let out = fixture
                .raw()
                .list_objects_v2()
                .bucket(&shared)
                .send()
                .await
                .unwrap();
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect()
        }
        Backend::Local => {
            let bucket_dir = fixture.root().unwrap().join(&shared);
            let mut files = Vec::new();
            let mut dirs = vec![fixture.root().unwrap().to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    if entry.file_type().unwrap().is_dir() {
                        dirs.push(entry.path());
                    } else {
                        // Relative to the shared bucket, with the local suffixes removed:
                        // `alpha-x=d/...` reads `alpha-x/...`.
                        let relative = entry
                            .path()
                            .strip_prefix(&bucket_dir)
                            .map(|p| p.to_string_lossy().replace("=d/", "/"))
                            .unwrap_or_else(|_| entry.path().to_string_lossy().into_owned());
                        files.push(relative);
                    }
                }
            }
            files
        }
    }
}

/// A gateway in front of moto that checks SigV4 query signatures as S3 does. moto checks
/// no signature at all (given the URL of tenant A's object edited to name tenant B's, moto
/// serves B's object), so it cannot show that S3 refuses an edited URL; this gateway,
/// written from AWS's published algorithm and independent of the SDK that signs, can.
mod sigv4 {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    use tenancy_core::hex;
    use tokio::net::{TcpListener, TcpStream};

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn uri_encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// Whether `target` (path and query) with `headers` carries a valid signature by
    /// `secret`.
    pub(super) fn verify(
        method: &str,
        target: &str,
        headers: &[(String, String)],
        secret: &str,
    ) -> bool {
        let Some((path, query)) = target.split_once('?') else {
            return false;
        };
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (super::percent_decode(k), super::percent_decode(v)))
            .collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (Some(signature), Some(credential), Some(date), Some(signed)) = (
            get("X-Amz-Signature"),
            get("X-Amz-Credential"),
            get("X-Amz-Date"),
            get("X-Amz-SignedHeaders"),
        ) else {
            return false;
        };
        let scope_parts: Vec<&str> = credential.splitn(2, '/').collect();
        let [_, scope] = scope_parts[..] else {
            return false;
        };
        let scope_fields: Vec<&str> = scope.split('/').collect();
        let [day, region, service, "aws4_request"] = scope_fields[..] else {
            return false;
        };
        params.retain(|(k, _)| k != "X-Amz-Signature");
        let mut encoded: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (uri_encode(k), uri_encode(v)))
            .collect();
        encoded.sort();
        let canonical_query = encoded
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut canonical_headers = String::new();
        for name in signed.split(';') {
            let Some((_, value)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))
            else {
                return false;
            };
            canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
        }
        let canonical_request = format!(
            "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed}\nUNSIGNED-PAYLOAD"
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), day);
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part);
        }
        hex(&hmac(&key, &string_to_sign)) == signature
    }

    /// Starts the gateway in front of `upstream` (`host:port`); returns its address.
    pub(super) async fn start(upstream: String, secret: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        #[expect(
            clippy::disallowed_methods,
            reason = "a test gateway serves no tenant and needs no scope"
        )]
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let upstream = upstream.clone();
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a test gateway serves no tenant and needs no scope"
                )]
                tokio::spawn(async move {
                    let _ = serve(socket, &upstream, secret).await;
                });
            }
        });
        address
    }

    async fn serve(mut client: TcpStream, upstream: &str, secret: &str) -> std::io::Result<()> {
        let mut received = Vec::new();
        let end = loop {
            let mut buffer = [0u8; 4096];
            let n = client.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            received.extend_from_slice(&buffer[..n]);
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8_lossy(&received[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if !verify(method, target, &headers, secret) {
            let body = "<Error><Code>SignatureDoesNotMatch</Code></Error>";
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes()).await?;
            return client.shutdown().await;
        }
        let mut server = TcpStream::connect(upstream).await?;
        server.write_all(&received).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        Ok(())
    }

    /// Sends a request for `url` through the gateway at `gateway`, as a browser holding
    /// the URL would; returns the status and body.
    pub(super) async fn send(
        gateway: SocketAddr,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (authority, target) = rest.split_at(rest.find('/').expect("a path"));
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut socket = TcpStream::connect(gateway).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        socket.write_all(body).await.unwrap();
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        (status, response[at..].to_vec())
    }
}

#[tokio::test]
async fn presigned_urls_open_only_their_own_object_bucket_per_tenant() {
    presigned_urls_open_only_their_own_object(Layout::BucketPerTenant).await;
}

#[tokio::test]
async fn presigned_urls_open_only_their_own_object_shared_bucket() {
    presigned_urls_open_only_their_own_object(Layout::SharedBucket).await;
}

async fn presigned_urls_open_only_their_own_object(layout: Layout) {
    let lifetime = Duration::from_secs(90);
    let fixture = TestStorage::with_config(Backend::S3, layout, |c| c.presign_lifetime(lifetime));
    let url = fixture.url().unwrap().to_owned();
    let gateway = sigv4::start(
        url.trim_start_matches("http://").to_owned(),
        tenancy_test::storage::TEST_SECRET_KEY,
    )
    .await;
    let alpha = fixture.tenant("alpha").await;
    let beta = fixture.tenant("beta").await;
    let a = fixture.storage.bucket(&alpha).unwrap();
    let b = fixture.storage.bucket(&beta).unwrap();
    a.put("report.pdf", &b"A secret"[..], &PutOptions::new())
        .await
        .unwrap();
    b.put("report.pdf", &b"B secret"[..], &PutOptions::new())
        .await
        .unwrap();
    let a_path = format!(
        "/{}/{}",
        fixture.bucket_of(alpha.tenant()),
        support::full_key(&fixture, alpha.tenant(), "report.pdf")
    );
    let b_path = format!(
        "/{}/{}",
        fixture.bucket_of(beta.tenant()),
        support::full_key(&fixture, beta.tenant(), "report.pdf")
    );

    // The URL names A's object, and opens it.
    let before = SystemTime::now();
    let get = a.presign_get("report.pdf").await.unwrap();
    assert_eq!(get.method(), "GET");
    assert!(get.url().contains(&format!("{a_path}?")), "{}", get.url());
    assert!(get.url().contains("X-Amz-Expires=90"), "{}", get.url());
    assert!(get.expires_at() >= before + lifetime);
    assert!(get.expires_at() <= SystemTime::now() + lifetime);
    let (status, body) = sigv4::send(gateway, "GET", get.url(), get.headers(), b"").await;
    assert_eq!((status, &body[..]), (200, &b"A secret"[..]));

    // Edited to name B's object (another bucket, another prefix, or by traversal), it
    // opens nothing.
    let traversal = format!("{a_path}/../../..{b_path}");
    for edited in [
        get.url().replace(&a_path, &b_path),
        get.url().replace(&a_path, &traversal),
    ] {
        assert_ne!(edited, get.url());
        let (status, body) = sigv4::send(gateway, "GET", &edited, get.headers(), b"").await;
        assert_eq!(status, 403, "{edited}");
        assert!(!body.windows(8).any(|w| w == b"B secret"));
    }

    // An upload URL puts into A's bucket only, with the headers it was signed with.
    let options = PutOptions::new().content_type("application/pdf");
    let put = a.presign_put("upload.pdf", &options).await.unwrap();
    assert_eq!(put.method(), "PUT");
    let (status, _) = sigv4::send(gateway, "PUT", put.url(), put.headers(), b"uploaded").await;
    assert_eq!(status, 200, "{put:?}");
    assert_eq!(a.get_bytes("upload.pdf").await.unwrap(), &b"uploaded"[..]);
    assert_eq!(
        a.head("upload.pdf").await.unwrap().content_type.as_deref(),
        Some("application/pdf")
    );
    let a_upload = a_path.replace("report.pdf", "upload.pdf");
    let b_upload = b_path.replace("report.pdf", "upload.pdf");
    let edited = put.url().replace(&a_upload, &b_upload);
    let (status, _) = sigv4::send(gateway, "PUT", &edited, put.headers(), b"planted").await;
    assert_eq!(status, 403);
    assert_eq!(
        b.head("upload.pdf").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The signed content type cannot be changed by the uploader.
    let mut other_type = put.headers().to_vec();
    for (name, value) in &mut other_type {
        if name.eq_ignore_ascii_case("content-type") {
            *value = String::from("text/html");
        }
    }
    let (status, _) = sigv4::send(gateway, "PUT", put.url(), &other_type, b"<script>").await;
    assert_eq!(status, 403);
}

/// Records whether each request the SDK sends names the expected bucket owner.
#[derive(Debug, Clone, Default)]
struct OwnerRecorder(Arc<Mutex<Vec<Recorded>>>);

/// `METHOD URL`, the expected owner, the expected source owner, whether it copies.
type Recorded = (String, Option<String>, Option<String>, bool);

impl aws_sdk_s3::config::Intercept for OwnerRecorder {
    fn name(&self) -> &'static str {
        "OwnerRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        let headers = request.headers();
        self.0.lock().unwrap().push((
            format!("{} {}", request.method(), request.uri()),
            headers
                .get("x-amz-expected-bucket-owner")
                .map(str::to_owned),
            headers
                .get("x-amz-source-expected-bucket-owner")
                .map(str::to_owned),
            headers.contains_key("x-amz-copy-source"),
        ));
        Ok(())
    }
}

/// moto ignores the expected bucket owner (a wrong one is served), so what can be shown
/// here is that every request but CreateBucket (which has no such field) carries it.
#[tokio::test]
async fn every_s3_request_names_the_expected_bucket_owner() {
    const OWNER: &str = "123456789012";
    let fixture = TestStorage::new(Backend::S3, Layout::BucketPerTenant);
    let recorder = OwnerRecorder::default();
    let mut config: StorageConfig = fixture.config().clone();
    let BackendConfig::S3(s3) = config.backend else {
        unreachable!("an S3 fixture")
    };
    let s3 = s3.expected_bucket_owner(OWNER);
    let client = {
        let base = s3.client().unwrap();
        let config = base
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .interceptor(tenancy_test::storage::MotoRootFix)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    };
    config.backend = BackendConfig::S3(s3);
    let storage = TenantStorage::with_s3_client(config, client).unwrap();
    let ctx = fixture.unprovisioned("acme");
    storage
        .platform()
        .create_bucket(&operator(), ctx.tenant())
        .await
        .unwrap();
    let bucket = storage.bucket(&ctx).unwrap();
    bucket
        .put("a", &b"x"[..], &PutOptions::new())
        .await
        .unwrap();
    bucket
        .put_stream(
            "big",
            support::body_stream(1, 9 << 20, 1 << 20),
            &PutOptions::new(),
        )
        .await
        .unwrap();
    bucket.get_bytes("a").await.unwrap();
    bucket.head("a").await.unwrap();
    let _ = bucket.head("missing").await.unwrap_err();
    bucket.list(&ListRequest::all()).await.unwrap();
    bucket.copy("a", "b").await.unwrap();
    bucket.delete("a").await.unwrap();
    let failing = support::body_stream(2, 9 << 20, 1 << 20).chain(futures::stream::once(async {
        Err(std::io::Error::other("gone"))
    }));
    let _ = bucket
        .put_stream("aborted", failing, &PutOptions::new())
        .await
        .unwrap_err();
    for presigned in [
        bucket.presign_get("b").await.unwrap(),
        bucket.presign_put("c", &PutOptions::new()).await.unwrap(),
    ] {
        let names_owner =
            presigned.url().contains(OWNER) || presigned.headers().iter().any(|(_, v)| v == OWNER);
        assert!(names_owner, "{presigned:?}");
    }
    storage
        .platform()
        .delete_bucket(
            &operator(),
            ctx.tenant(),
            tenancy_storage::Deletion::PurgeEveryVersion,
        )
        .await
        .unwrap();

    let recorded = recorder.0.lock().unwrap().clone();
    let bucket_name = fixture.bucket_of(ctx.tenant());
    let mut operations = BTreeSet::new();
    for (request, owner, source_owner, is_copy) in &recorded {
        let operation = operation_of(request, &bucket_name);
        if operation == "CreateBucket" {
            // S3 has no expected owner for a bucket that does not exist yet.
            continue;
        }
        assert_eq!(owner.as_deref(), Some(OWNER), "{operation}: {request}");
        if *is_copy {
            assert_eq!(source_owner.as_deref(), Some(OWNER), "{request}");
        }
        operations.insert(operation);
    }
    // Every kind of request the library makes was seen.
    let expected: BTreeSet<&str> = [
        "PutBucketVersioning",
        "PutBucketEncryption",
        "PutBucketLifecycleConfiguration",
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "GetObject",
        "HeadObject",
        "HeadBucket",
        "ListObjectsV2",
        "CopyObject",
        "DeleteObject",
        "ListObjectVersions",
        "DeleteObjects",
        "ListMultipartUploads",
        "DeleteBucket",
    ]
    .into();
    let seen: BTreeSet<&str> = operations.iter().map(String::as_str).collect();
    assert_eq!(seen, expected);
}

/// The S3 operation of a recorded `METHOD URL`, from its `x-id` or its shape.
fn operation_of(request: &str, bucket: &str) -> String {
    if let Some(id) = request.split("x-id=").nth(1) {
        return id.split('&').next().unwrap().to_owned();
    }
    let (method, url) = request.split_once(' ').unwrap();
    let path_and_query = url.split_once("://").unwrap().1.split_once('/').unwrap().1;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let on_bucket = path.trim_end_matches('/') == bucket;
    let name = match (method, on_bucket, query.split(['&', '=']).next().unwrap()) {
        ("PUT", true, "") => "CreateBucket",
        ("PUT", true, "versioning") => "PutBucketVersioning",
        ("PUT", true, "encryption") => "PutBucketEncryption",
        ("PUT", true, "lifecycle") => "PutBucketLifecycleConfiguration",
        ("HEAD", true, _) => "HeadBucket",
        ("HEAD", false, _) => "HeadObject",
        ("DELETE", true, _) => "DeleteBucket",
        ("GET", true, "list-type") => "ListObjectsV2",
        ("GET", true, "versions") => "ListObjectVersions",
        ("GET", true, "uploads") => "ListMultipartUploads",
        ("POST", true, "delete") => "DeleteObjects",
        ("POST", false, "uploads") => "CreateMultipartUpload",
        ("POST", false, "uploadId") => "CompleteMultipartUpload",
        _ => return format!("unknown: {request}"),
    };
    name.to_owned()
}

#[tokio::test]
async fn the_ambient_context_is_the_only_other_way_to_a_bucket() {
    let fixture = TestStorage::new(Backend::Local, Layout::BucketPerTenant);
    let err = fixture.storage.current_bucket().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentTenant);
    let ctx = fixture.tenant("acme").await;
    let storage = fixture.storage.clone();
    let tenant = ctx
        .scope(async move { storage.current_bucket().unwrap().tenant().clone() })
        .await;
    assert_eq!(&tenant, ctx.tenant());
}
