//! [`TenantBucket`]: one tenant's objects, and nothing else.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use tenancy_core::{TenantContext, TenantId};

use crate::error::Error;
use crate::key::{check_after, check_key, check_prefix};
use crate::object::{
    ListPage, ListRequest, Object, ObjectInfo, PresignedRequest, PutOptions, PutReceipt,
};
use crate::storage::{Backend, Location, TenantStorage};

/// The error type a body stream may fail with.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The bucket of one tenant, made by [`TenantStorage::bucket`] from a [`TenantContext`].
///
/// Every call takes keys relative to the tenant's bucket and checks them
/// ([`check_key`](crate::check_key)) before any I/O; no call takes a bucket. In the
/// shared-bucket layout the tenant's prefix is added here and removed from what comes
/// back, so the same code runs in either layout. Cloning is cheap.
#[derive(Clone)]
pub struct TenantBucket {
    storage: TenantStorage,
    ctx: TenantContext,
    location: Location,
}

impl fmt::Debug for TenantBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantBucket")
            .field("tenant", &self.location.tenant.as_str())
            .field("bucket", &self.location.bucket)
            .field("prefix", &self.location.prefix)
            .finish()
    }
}

impl TenantBucket {
    pub(crate) fn new(storage: TenantStorage, ctx: TenantContext, location: Location) -> Self {
        TenantBucket {
            storage,
            ctx,
            location,
        }
    }

    /// The tenant whose bucket this is.
    pub fn tenant(&self) -> &TenantId {
        &self.location.tenant
    }

    /// The context this handle was made for.
    pub fn context(&self) -> &TenantContext {
        &self.ctx
    }

    fn backend(&self) -> &Backend {
        &self.storage.inner().backend
    }

    /// Stores `body` under `key`, replacing any object there (on a versioned bucket the
    /// earlier version is kept).
    pub async fn put(
        &self,
        key: &str,
        body: impl Into<Bytes>,
        options: &PutOptions,
    ) -> Result<PutReceipt, Error> {
        check_key(key)?;
        options.validate()?;
        let body = body.into();
        match self.backend() {
            Backend::Local(local) => {
                local
                    .put_stream(
                        &self.location,
                        key,
                        futures::stream::iter([Ok::<_, BoxError>(body)]),
                        options,
                    )
                    .await
            }
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.put(&self.location, key, body, options).await,
        }
    }

    /// Stores a body that arrives as a stream (an axum request body's
    /// `into_data_stream()`, a file read in chunks), holding at most about one part
    /// (`StorageConfig::part_size`, 8 MiB by default) in memory whatever its length.
    ///
    /// The object appears whole or not at all: if the stream fails, or the future is
    /// dropped before the stream has ended, nothing is stored under `key` (the local
    /// backend removes its temporary file; S3 aborts the multipart upload, and the
    /// bucket's lifecycle rule removes the parts of an upload that was dropped rather than
    /// aborted). Dropped after the stream has ended, the object may still appear, whole.
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        body: S,
        options: &PutOptions,
    ) -> Result<PutReceipt, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        check_key(key)?;
        options.validate()?;
        let body = body.map_err(Into::into);
        match self.backend() {
            Backend::Local(local) => local.put_stream(&self.location, key, body, options).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => {
                s3.put_stream(
                    &self.location,
                    key,
                    body,
                    options,
                    self.storage.inner().part_size,
                )
                .await
            }
        }
    }

    /// The object under `key`, its body streamed as it is read.
    pub async fn get(&self, key: &str) -> Result<Object, Error> {
        check_key(key)?;
        match self.backend() {
            Backend::Local(local) => local.get(&self.location, key).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.get(&self.location, key).await,
        }
    }

    /// The whole body of the object under `key`, in memory.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, Error> {
        self.get(key).await?.bytes().await
    }

    /// The description of the object under `key`, without its body.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, Error> {
        check_key(key)?;
        match self.backend() {
            Backend::Local(local) => local.head(&self.location, key).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.head(&self.location, key).await,
        }
    }

    /// A page of the tenant's keys.
    pub async fn list(&self, request: &ListRequest) -> Result<ListPage, Error> {
        check_prefix(&request.prefix)?;
        if let Some(after) = &request.after {
            check_after(after)?;
        }
        match self.backend() {
            Backend::Local(local) => local.list(&self.location, request).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.list(&self.location, request).await,
        }
    }

    /// Deletes the object under `key`; deleting a missing object succeeds, as on S3. On a
    /// versioned bucket this hides the object behind a delete marker and keeps its
    /// versions (they go when the bucket is purged).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        check_key(key)?;
        match self.backend() {
            Backend::Local(local) => local.delete(&self.location, key).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.delete(&self.location, key).await,
        }
    }

    /// Copies the object under `from` to `to`, both in this tenant's bucket, with its
    /// content type and metadata, on the server side (S3 copies up to 5 GB this way).
    pub async fn copy(&self, from: &str, to: &str) -> Result<PutReceipt, Error> {
        check_key(from)?;
        check_key(to)?;
        match self.backend() {
            Backend::Local(local) => local.copy(&self.location, from, to).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.copy(&self.location, from, to).await,
        }
    }

    /// A URL that downloads the object under `key` without credentials until it expires
    /// (`StorageConfig::presign_lifetime`, 5 minutes by default). The URL's signature
    /// covers the bucket and the key: edited to name another object, S3 refuses it. The
    /// local backend has no URLs to give ([`ErrorKind::Unsupported`](crate::ErrorKind)):
    /// stream through the application instead.
    pub async fn presign_get(&self, key: &str) -> Result<PresignedRequest, Error> {
        check_key(key)?;
        match self.backend() {
            Backend::Local(local) => local.presign(),
            #[cfg(feature = "s3")]
            Backend::S3(s3) => {
                s3.presign_get(&self.location, key, self.storage.inner().presign_lifetime)
                    .await
            }
        }
    }

    /// A URL that uploads one object under `key` without credentials until it expires;
    /// the uploader must send [`PresignedRequest::headers`] with it (content type,
    /// metadata and encryption are signed, so it cannot change them).
    pub async fn presign_put(
        &self,
        key: &str,
        options: &PutOptions,
    ) -> Result<PresignedRequest, Error> {
        check_key(key)?;
        options.validate()?;
        match self.backend() {
            Backend::Local(local) => local.presign(),
            #[cfg(feature = "s3")]
            Backend::S3(s3) => {
                s3.presign_put(
                    &self.location,
                    key,
                    options,
                    self.storage.inner().presign_lifetime,
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: T) {}

    /// Every call's future is `Send`, so it can run in a spawned task or an axum handler;
    /// and so are a bucket and a streamed body. Checked by compiling.
    #[test]
    fn futures_and_bodies_are_send() {
        let storage = TenantStorage::new(crate::StorageConfig::local("/nonexistent")).unwrap();
        let ctx = TenantContext::new(
            "acme".parse().unwrap(),
            tenancy_core::Actor::service("test").unwrap(),
        );
        let bucket = storage.bucket(&ctx).unwrap();
        let options = PutOptions::new();
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
        send(bucket.put("k", Bytes::new(), &options));
        send(bucket.put_stream("k", body, &options));
        send(bucket.get("k"));
        send(bucket.get_bytes("k"));
        send(bucket.head("k"));
        send(bucket.list(&ListRequest::all()));
        send(bucket.delete("k"));
        send(bucket.copy("k", "l"));
        send(bucket.presign_get("k"));
        send(bucket.presign_put("k", &options));
        send(
            storage.platform().create_bucket(
                &tenancy_core::PlatformContext::new(tenancy_core::Actor::service("ops").unwrap())
                    .unwrap(),
                ctx.tenant(),
            ),
        );
        fn body_is_send(body: crate::ObjectBody) {
            send(body);
        }
        let _ = body_is_send;
        send(bucket);
    }
}
