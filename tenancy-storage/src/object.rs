//! What goes in and comes out of a bucket: put options, object descriptions, streamed
//! bodies, list pages and presigned requests.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::config::RetentionMode;
use crate::error::{Error, ErrorKind, quote};

/// The most bytes of user metadata (names and values together) S3 stores per object.
const MAX_METADATA_BYTES: usize = 2048;

/// How an object is stored: content type, user metadata, retention.
///
/// ```
/// use tenancy_storage::PutOptions;
///
/// let options = PutOptions::new()
///     .content_type("application/pdf")
///     .metadata("capa", "CAPA-12")
///     .metadata("uploaded-by", "u-42");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) retention: Option<Retention>,
}

/// An object version that must be kept until a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How strictly.
    pub mode: RetentionMode,
    /// Until when.
    pub until: SystemTime,
}

impl PutOptions {
    /// No content type, no metadata, the bucket's default retention.
    pub fn new() -> Self {
        PutOptions::default()
    }

    /// The object's media type (`application/pdf`): printable ASCII, at most 256 bytes.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// A user metadata entry. Names are 1 to 128 lowercase ASCII letters, digits and `-`
    /// (S3 lowercases names; this refuses what it would change); values printable ASCII;
    /// at most 2 KiB of names and values together.
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// Keeps this version until `until` (S3 with object lock only; the local backend
    /// refuses it rather than store an object it cannot protect).
    pub fn retain_until(mut self, mode: RetentionMode, until: SystemTime) -> Self {
        self.retention = Some(Retention { mode, until });
        self
    }

    /// The content type, if set.
    pub fn get_content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The metadata entries.
    pub fn get_metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The retention, if set.
    pub fn get_retention(&self) -> Option<Retention> {
        self.retention
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(content_type) = &self.content_type
            && (content_type.is_empty()
                || content_type.len() > 256
                || !content_type.bytes().all(|b| (0x20..0x7f).contains(&b)))
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "content type {} is refused: use 1 to 256 printable ASCII characters \
                     (`application/pdf`)",
                    quote(content_type)
                ),
            ));
        }
        let mut total = 0;
        for (name, value) in &self.metadata {
            let name_ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "metadata name {} is refused: use 1 to 128 lowercase ASCII letters, \
                         digits and '-'",
                        quote(name)
                    ),
                ));
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "metadata value of {} is refused: use printable ASCII (encode other \
                         text, e.g. as percent-encoded UTF-8)",
                        quote(name)
                    ),
                ));
            }
            total += name.len() + value.len();
        }
        if total > MAX_METADATA_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "metadata is {total} bytes; S3 stores at most {MAX_METADATA_BYTES} bytes \
                     of names and values per object"
                ),
            ));
        }
        if let Some(retention) = &self.retention
            && retention.until <= SystemTime::now()
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the retention date is in the past: give a date to keep the object until",
            ));
        }
        Ok(())
    }
}

/// What a put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutReceipt {
    /// The entity tag of the new object, as the backend quotes it.
    pub etag: Option<String>,
    /// The version id, on a versioned bucket.
    pub version_id: Option<String>,
}

/// The description of an object: what `head` returns and `get` returns with the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The key, relative to the tenant's bucket.
    pub key: String,
    /// The length of the body in bytes.
    pub size: u64,
    /// The media type it was stored with.
    pub content_type: Option<String>,
    /// The user metadata it was stored with.
    pub metadata: BTreeMap<String, String>,
    /// The entity tag (changes with the content), quoted as HTTP quotes it.
    pub etag: Option<String>,
    /// When it was last written.
    pub last_modified: Option<SystemTime>,
    /// The version id, on a versioned bucket.
    pub version_id: Option<String>,
    /// The server-side encryption S3 reports (`AES256`, `aws:kms`).
    pub encryption: Option<String>,
    /// The KMS key S3 reports, under SSE-KMS.
    pub kms_key_id: Option<String>,
    /// The retention this version is under, if any.
    pub retention: Option<Retention>,
}

/// One entry of a [`ListPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedObject {
    /// The key, relative to the tenant's bucket.
    pub key: String,
    /// The length of the body in bytes.
    pub size: u64,
    /// The entity tag.
    pub etag: Option<String>,
    /// When it was last written.
    pub last_modified: Option<SystemTime>,
}

/// Which keys to list, and from where.
///
/// ```
/// use tenancy_storage::ListRequest;
///
/// let first = ListRequest::prefix("capa/CAPA-12/").max_keys(100);
/// // ... then, with `page.next` of the previous page:
/// let next = first.clone().after("capa/CAPA-12/report.pdf");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub(crate) prefix: String,
    pub(crate) after: Option<String>,
    pub(crate) max_keys: usize,
}

impl Default for ListRequest {
    fn default() -> Self {
        ListRequest {
            prefix: String::new(),
            after: None,
            max_keys: ListRequest::MAX_KEYS,
        }
    }
}

impl ListRequest {
    /// The most keys a page holds (S3's limit).
    pub const MAX_KEYS: usize = 1000;

    /// Every key of the tenant, first page.
    pub fn all() -> Self {
        ListRequest::default()
    }

    /// The keys that start with `prefix` (`capa/CAPA-12/`), first page.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ListRequest {
            prefix: prefix.into(),
            ..ListRequest::default()
        }
    }

    /// Starts after `key`: pass the previous page's [`ListPage::next`].
    pub fn after(mut self, key: impl Into<String>) -> Self {
        self.after = Some(key.into());
        self
    }

    /// At most `max_keys` keys per page (1 to 1,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, ListRequest::MAX_KEYS);
        self
    }
}

/// A page of keys, in ascending order of their UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListPage {
    /// The objects on this page.
    pub objects: Vec<ListedObject>,
    /// Where the next page starts (give it to [`ListRequest::after`]), or `None` on the
    /// last page. It is the last key of this page, relative to the tenant.
    pub next: Option<String>,
}

/// An object: its description and its body, streamed.
#[derive(Debug)]
pub struct Object {
    info: ObjectInfo,
    body: ObjectBody,
}

impl Object {
    pub(crate) fn new(info: ObjectInfo, body: ObjectBody) -> Self {
        Object { info, body }
    }

    /// The object's description.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The body, as a stream of chunks: hand it to axum with `Body::from_stream`.
    pub fn into_body(self) -> ObjectBody {
        self.body
    }

    /// Description and body apart.
    pub fn into_parts(self) -> (ObjectInfo, ObjectBody) {
        (self.info, self.body)
    }

    /// Reads the whole body into memory.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.body.bytes().await
    }
}

/// The body of an object, read as it arrives: a `Stream` of `Result<Bytes, Error>` whose
/// chunks are at most a few tens of KiB each, so memory stays bounded whatever the
/// object's size.
pub struct ObjectBody {
    inner: BodyInner,
}

enum BodyInner {
    Local(tokio_util::io::ReaderStream<tokio::fs::File>),
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Body),
    Done,
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.inner {
            BodyInner::Local(_) => "local",
            #[cfg(feature = "s3")]
            BodyInner::S3(_) => "s3",
            BodyInner::Done => "done",
        };
        f.debug_struct("ObjectBody")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl ObjectBody {
    pub(crate) fn local(file: tokio::fs::File) -> Self {
        ObjectBody {
            inner: BodyInner::Local(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)),
        }
    }

    #[cfg(feature = "s3")]
    pub(crate) fn s3(body: crate::s3::S3Body) -> Self {
        ObjectBody {
            inner: BodyInner::S3(body),
        }
    }

    /// Reads the whole body into memory.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        match self.inner {
            #[cfg(feature = "s3")]
            BodyInner::S3(body) => body.collect().await,
            inner => {
                let mut body = ObjectBody { inner };
                let mut all = BytesMut::new();
                while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                    all.extend_from_slice(&chunk?);
                }
                Ok(all.freeze())
            }
        }
    }
}

impl Stream for ObjectBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            BodyInner::Local(stream) => match Pin::new(stream).poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::with_source(
                    ErrorKind::Unavailable,
                    "reading the object from disk failed part-way; the body is incomplete",
                    e,
                )))),
            },
            #[cfg(feature = "s3")]
            BodyInner::S3(body) => Pin::new(body).poll_next(cx),
            BodyInner::Done => Poll::Ready(None),
        };
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            this.inner = BodyInner::Done;
        }
        polled
    }
}

/// A request anyone holding it can send, without credentials, until it expires: hand it to
/// a browser or another service to download or upload one object directly.
///
/// `Debug` hides the signature: the URL is a bearer credential while it is valid.
#[derive(Clone)]
pub struct PresignedRequest {
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) expires_at: SystemTime,
}

impl PresignedRequest {
    /// `GET` or `PUT`.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The signed URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Headers the request must carry exactly as given (they are signed): the content
    /// type, metadata and encryption of a presigned put.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// When the URL stops working.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.url.find("X-Amz-Signature=") {
            Some(at) => format!("{}X-Amz-Signature=<redacted>", &self.url[..at]),
            None => self.url.clone(),
        };
        f.debug_struct("PresignedRequest")
            .field("method", &self.method)
            .field("url", &shown)
            .field("headers", &self.headers)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn put_options_are_checked() {
        assert!(PutOptions::new().validate().is_ok());
        let good = PutOptions::new()
            .content_type("application/pdf")
            .metadata("capa-id", "CAPA 12");
        assert!(good.validate().is_ok());
        for bad in [
            PutOptions::new().content_type(""),
            PutOptions::new().content_type("text/plain\r\nx-evil: 1"),
            PutOptions::new().metadata("Capa", "x"),
            PutOptions::new().metadata("capa_id", "x"),
            PutOptions::new().metadata("", "x"),
            PutOptions::new().metadata("a", "line\nbreak"),
            PutOptions::new().metadata("a", "naïve"),
            PutOptions::new().metadata("a", "x".repeat(3000)),
            PutOptions::new().retain_until(
                RetentionMode::Governance,
                SystemTime::now() - Duration::from_secs(1),
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn presigned_debug_hides_the_signature() {
        let request = PresignedRequest {
            method: "GET",
            url: String::from("http://h/b/k?X-Amz-Expires=60&X-Amz-Signature=abcdef0123"),
            headers: Vec::new(),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("abcdef0123"), "{shown}");
        assert!(shown.contains("X-Amz-Expires=60"));
    }

    #[test]
    fn list_requests_clamp_their_page_size() {
        assert_eq!(ListRequest::all().max_keys(0).max_keys, 1);
        assert_eq!(ListRequest::all().max_keys(5000).max_keys, 1000);
    }
}
