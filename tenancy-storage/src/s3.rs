//! The S3 backend, through aws-sdk-s3.
//!
//! Every request names the tenant's bucket (from [`Location`], never from the caller) and,
//! when configured, the expected bucket owner. S3 answers a missing bucket with
//! `NoSuchBucket` and never creates one on a put, so an unprovisioned tenant gets
//! [`ErrorKind::NotProvisioned`] and nothing is written anywhere.

use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError, DateTime};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    DefaultRetention, Delete, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    ObjectIdentifier, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockMode,
    ObjectLockRetentionMode, ObjectLockRule, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tenancy_core::TenantId;

use crate::bucket::BoxError;
use crate::config::{Encryption, ObjectLock, RetentionMode, S3Config};
use crate::error::{Error, ErrorKind, quote};
use crate::object::{
    ListPage, ListRequest, ListedObject, Object, ObjectBody, ObjectInfo, PresignedRequest,
    PutOptions, PutReceipt, Retention,
};
use crate::platform::Deletion;
use crate::storage::Location;

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: i32 = 10_000;
/// S3's limit on the keys of one DeleteObjects request.
const DELETE_BATCH: usize = 1000;

pub(crate) struct S3Backend {
    client: Client,
    region: Option<String>,
    owner: Option<String>,
    encryption: Encryption,
    versioning: bool,
    object_lock: Option<ObjectLock>,
}

impl S3Backend {
    pub(crate) fn new(config: &S3Config) -> Result<Self, Error> {
        Ok(S3Backend::with_client(config, build_client(config)?))
    }

    pub(crate) fn with_client(config: &S3Config, client: Client) -> Self {
        let region = client.config().region().map(|r| r.as_ref().to_owned());
        S3Backend {
            client,
            region,
            owner: config.expected_bucket_owner.clone(),
            encryption: config.encryption.clone(),
            versioning: config.versioning,
            object_lock: config.object_lock,
        }
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        match self.encryption {
            Encryption::S3Managed => Some(ServerSideEncryption::Aes256),
            Encryption::Kms { .. } => Some(ServerSideEncryption::AwsKms),
            Encryption::ServerDefault => None,
        }
    }

    fn kms_key(&self, location: &Location) -> Option<String> {
        self.encryption.kms_key_for(location.tenant.as_str())
    }

    pub(crate) async fn put(
        &self,
        location: &Location,
        key: &str,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutReceipt, Error> {
        let retention = options.retention;
        let out = self
            .client
            .put_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .body(ByteStream::from(body))
            .set_content_type(options.content_type.clone())
            .set_metadata(metadata(options))
            .set_expected_bucket_owner(self.owner.clone())
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key(location))
            .set_object_lock_mode(retention.map(|r| lock_mode(r.mode)))
            .set_object_lock_retain_until_date(retention.map(|r| DateTime::from(r.until)))
            .send()
            .await
            .map_err(|e| s3_error(&format!("storing {}", quote(key)), e))?;
        Ok(PutReceipt {
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    pub(crate) async fn put_stream<S>(
        &self,
        location: &Location,
        key: &str,
        body: S,
        options: &PutOptions,
        part_size: usize,
    ) -> Result<PutReceipt, Error>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send,
    {
        let body = pin!(body);
        let mut parts = Parts::new(body, part_size, key);
        let first = parts.next().await?;
        if parts.finished {
            return self.put(location, key, first, options).await;
        }
        let full = location.key(key);
        let retention = options.retention;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&location.bucket)
            .key(&full)
            .set_content_type(options.content_type.clone())
            .set_metadata(metadata(options))
            .set_expected_bucket_owner(self.owner.clone())
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key(location))
            .set_object_lock_mode(retention.map(|r| lock_mode(r.mode)))
            .set_object_lock_retain_until_date(retention.map(|r| DateTime::from(r.until)))
            .send()
            .await
            .map_err(|e| s3_error(&format!("starting the upload of {}", quote(key)), e))?;
        let Some(upload_id) = created.upload_id() else {
            return Err(Error::new(
                ErrorKind::Request,
                "S3 started a multipart upload without an upload id",
            ));
        };
        let uploaded = self
            .upload_parts(&location.bucket, &full, upload_id, first, &mut parts)
            .await;
        if uploaded.is_err() {
            // Best effort: the lifecycle rule set at provisioning clears what this misses.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&location.bucket)
                .key(&full)
                .upload_id(upload_id)
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await;
        }
        uploaded
    }

    async fn upload_parts<S>(
        &self,
        bucket: &str,
        full: &str,
        upload_id: &str,
        first: Bytes,
        parts: &mut Parts<'_, S>,
    ) -> Result<PutReceipt, Error>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send,
    {
        let mut completed = Vec::new();
        let mut part = first;
        let mut number = 1;
        loop {
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part))
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| {
                    s3_error(
                        &format!("uploading part {number} of {}", quote(parts.key)),
                        e,
                    )
                })?;
            completed.push(
                CompletedPart::builder()
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                    .part_number(number)
                    .build(),
            );
            if parts.finished {
                break;
            }
            part = parts.next().await?;
            if part.is_empty() {
                break;
            }
            number += 1;
            if number > MAX_PARTS {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is longer than {MAX_PARTS} parts of {} bytes: raise \
                         StorageConfig::part_size",
                        quote(parts.key),
                        parts.size
                    ),
                ));
            }
        }
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error(&format!("completing the upload of {}", quote(parts.key)), e))?;
        Ok(PutReceipt {
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    pub(crate) async fn get(&self, location: &Location, key: &str) -> Result<Object, Error> {
        let out = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error(&format!("reading {}", quote(key)), e))?;
        let info = ObjectInfo {
            key: key.to_owned(),
            size: out.content_length().map_or(0, |n| n.max(0) as u64),
            content_type: out.content_type().map(str::to_owned),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out.last_modified().and_then(system_time),
            version_id: out.version_id().map(str::to_owned),
            encryption: out.server_side_encryption().map(|s| s.as_str().to_owned()),
            kms_key_id: out.ssekms_key_id().map(str::to_owned),
            retention: retention(out.object_lock_mode(), out.object_lock_retain_until_date()),
        };
        Ok(Object::new(info, ObjectBody::s3(S3Body::new(out.body))))
    }

    pub(crate) async fn head(&self, location: &Location, key: &str) -> Result<ObjectInfo, Error> {
        let result = self
            .client
            .head_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let error = s3_error(&format!("reading {}", quote(key)), e);
                // HEAD answers a missing bucket and a missing key alike (a bare 404).
                if error.kind() == ErrorKind::NotFound {
                    self.check_bucket(&location.bucket).await?;
                }
                return Err(error);
            }
        };
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: out.content_length().map_or(0, |n| n.max(0) as u64),
            content_type: out.content_type().map(str::to_owned),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out.last_modified().and_then(system_time),
            version_id: out.version_id().map(str::to_owned),
            encryption: out.server_side_encryption().map(|s| s.as_str().to_owned()),
            kms_key_id: out.ssekms_key_id().map(str::to_owned),
            retention: retention(out.object_lock_mode(), out.object_lock_retain_until_date()),
        })
    }

    /// `Ok` when the bucket exists; [`ErrorKind::NotProvisioned`] when it does not.
    async fn check_bucket(&self, bucket: &str) -> Result<(), Error> {
        match self
            .client
            .head_bucket()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = s3_error("finding the tenant's bucket", e);
                Err(if error.kind() == ErrorKind::NotFound {
                    not_provisioned()
                } else {
                    error
                })
            }
        }
    }

    pub(crate) async fn list(
        &self,
        location: &Location,
        request: &ListRequest,
    ) -> Result<ListPage, Error> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&location.bucket)
            .prefix(location.key(&request.prefix))
            .set_start_after(request.after.as_ref().map(|after| location.key(after)))
            .max_keys(i32::try_from(request.max_keys).unwrap_or(1000))
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error("listing the tenant's objects", e))?;
        let objects: Vec<ListedObject> = out
            .contents()
            .iter()
            .filter_map(|object| {
                // The request's prefix is the tenant's: nothing else can come back, and
                // anything that did would not be handed out.
                let key = location.relative(object.key()?)?;
                Some(ListedObject {
                    key: key.to_owned(),
                    size: object.size().map_or(0, |n| n.max(0) as u64),
                    etag: object.e_tag().map(str::to_owned),
                    last_modified: object.last_modified().and_then(system_time),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            objects.last().map(|last| last.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    pub(crate) async fn delete(&self, location: &Location, key: &str) -> Result<(), Error> {
        self.client
            .delete_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error(&format!("deleting {}", quote(key)), e))?;
        Ok(())
    }

    pub(crate) async fn copy(
        &self,
        location: &Location,
        from: &str,
        to: &str,
    ) -> Result<PutReceipt, Error> {
        let out = self
            .client
            .copy_object()
            .bucket(&location.bucket)
            .key(location.key(to))
            .copy_source(copy_source(&location.bucket, &location.key(from)))
            .set_expected_bucket_owner(self.owner.clone())
            .set_expected_source_bucket_owner(self.owner.clone())
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key(location))
            .send()
            .await
            .map_err(|e| s3_error(&format!("copying {} to {}", quote(from), quote(to)), e))?;
        Ok(PutReceipt {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    pub(crate) async fn presign_get(
        &self,
        location: &Location,
        key: &str,
        lifetime: Duration,
    ) -> Result<PresignedRequest, Error> {
        let (config, expires_at) = presigning(lifetime)?;
        let request = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .set_expected_bucket_owner(self.owner.clone())
            .presigned(config)
            .await
            .map_err(|e| s3_error(&format!("presigning a download of {}", quote(key)), e))?;
        Ok(presigned("GET", &request, expires_at))
    }

    pub(crate) async fn presign_put(
        &self,
        location: &Location,
        key: &str,
        options: &PutOptions,
        lifetime: Duration,
    ) -> Result<PresignedRequest, Error> {
        let (config, expires_at) = presigning(lifetime)?;
        let retention = options.retention;
        let request = self
            .client
            .put_object()
            .bucket(&location.bucket)
            .key(location.key(key))
            .set_content_type(options.content_type.clone())
            .set_metadata(metadata(options))
            .set_expected_bucket_owner(self.owner.clone())
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key(location))
            .set_object_lock_mode(retention.map(|r| lock_mode(r.mode)))
            .set_object_lock_retain_until_date(retention.map(|r| DateTime::from(r.until)))
            .presigned(config)
            .await
            .map_err(|e| s3_error(&format!("presigning an upload of {}", quote(key)), e))?;
        Ok(presigned("PUT", &request, expires_at))
    }

    /// Creates `bucket` for `owner` (`None`: the shared bucket) and applies the settings.
    pub(crate) async fn create_bucket(
        &self,
        bucket: &str,
        owner: Option<&TenantId>,
    ) -> Result<(), Error> {
        let constraint = self
            .region
            .as_deref()
            .filter(|region| *region != "us-east-1")
            .map(|region| {
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build()
            });
        let created = self
            .client
            .create_bucket()
            .bucket(bucket)
            .set_create_bucket_configuration(constraint)
            .set_object_lock_enabled_for_bucket(self.object_lock.map(|_| true))
            .send()
            .await;
        if let Err(e) = created
            && e.code() != Some("BucketAlreadyOwnedByYou")
        {
            return Err(s3_error("creating the bucket", e));
        }
        if self.versioning || self.object_lock.is_some() {
            self.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| s3_error("turning on the bucket's versioning", e))?;
        }
        if let Some(default) = self.default_encryption(owner) {
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .build();
            let config = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| {
                    Error::with_source(ErrorKind::Request, "building the encryption rule failed", e)
                })?;
            self.client
                .put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(config)
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| s3_error("setting the bucket's default encryption", e))?;
        }
        if let Some(lock) = self.object_lock {
            let days = i32::try_from(lock.default_retention_days).unwrap_or(i32::MAX);
            self.client
                .put_object_lock_configuration()
                .bucket(bucket)
                .object_lock_configuration(
                    ObjectLockConfiguration::builder()
                        .object_lock_enabled(ObjectLockEnabled::Enabled)
                        .rule(
                            ObjectLockRule::builder()
                                .default_retention(
                                    DefaultRetention::builder()
                                        .mode(retention_mode(lock.mode))
                                        .days(days)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| s3_error("setting the bucket's object lock", e))?;
        }
        let abandoned_uploads = LifecycleRule::builder()
            .id("tenancy-abort-abandoned-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .map_err(|e| {
                Error::with_source(ErrorKind::Request, "building the lifecycle rule failed", e)
            })?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(abandoned_uploads)
                    .build()
                    .map_err(|e| {
                        Error::with_source(
                            ErrorKind::Request,
                            "building the lifecycle rule failed",
                            e,
                        )
                    })?,
            )
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error("setting the rule that clears abandoned uploads", e))?;
        Ok(())
    }

    /// The bucket's default encryption: the configured one, with the tenant's own KMS key
    /// for a tenant bucket. The shared bucket cannot default to a per-tenant key; it gets
    /// SSE-S3 and every request names its tenant's key.
    fn default_encryption(
        &self,
        owner: Option<&TenantId>,
    ) -> Option<ServerSideEncryptionByDefault> {
        let (algorithm, key) = match (&self.encryption, owner) {
            (Encryption::ServerDefault, _) => return None,
            (Encryption::S3Managed, _) => (ServerSideEncryption::Aes256, None),
            (Encryption::Kms { key_id }, None) if key_id.contains("{tenant}") => {
                (ServerSideEncryption::Aes256, None)
            }
            (kms @ Encryption::Kms { .. }, owner) => (
                ServerSideEncryption::AwsKms,
                kms.kms_key_for(owner.map_or("", TenantId::as_str)),
            ),
        };
        ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(key)
            .build()
            .ok()
    }

    pub(crate) async fn delete_bucket(
        &self,
        bucket: &str,
        deletion: Deletion,
    ) -> Result<(), Error> {
        if deletion == Deletion::PurgeEveryVersion {
            self.purge(bucket, "").await?;
        }
        self.client
            .delete_bucket()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error("deleting the bucket", e))?;
        Ok(())
    }

    pub(crate) async fn delete_prefix(
        &self,
        location: &Location,
        deletion: Deletion,
    ) -> Result<(), Error> {
        match deletion {
            Deletion::PurgeEveryVersion => self.purge(&location.bucket, &location.prefix).await,
            Deletion::RefuseIfNotEmpty => {
                let out = self
                    .client
                    .list_object_versions()
                    .bucket(&location.bucket)
                    .prefix(&location.prefix)
                    .max_keys(1)
                    .set_expected_bucket_owner(self.owner.clone())
                    .send()
                    .await
                    .map_err(|e| s3_error("listing the tenant's objects", e))?;
                if out.versions().is_empty() && out.delete_markers().is_empty() {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::NotEmpty,
                        "the tenant still has objects (or versions) in the shared bucket and \
                         they were not deleted: delete them first, or purge \
                         (Deletion::PurgeEveryVersion)",
                    ))
                }
            }
        }
    }

    /// Deletes every version and delete marker under `prefix`, and aborts unfinished
    /// uploads there.
    async fn purge(&self, bucket: &str, prefix: &str) -> Result<(), Error> {
        let mut key_marker = None;
        let mut version_marker = None;
        let mut retained = 0usize;
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| s3_error("listing the versions to purge", e))?;
            let mut ids = Vec::new();
            let versions = out.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = out
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            for (key, version) in versions.chain(markers) {
                let Some(key) = key else { continue };
                let id = ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .map_err(|e| {
                        Error::with_source(
                            ErrorKind::Request,
                            "building a delete request failed",
                            e,
                        )
                    })?;
                ids.push(id);
            }
            for batch in ids.chunks(DELETE_BATCH) {
                retained += self.delete_versions(bucket, batch.to_vec()).await?;
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
        self.abort_uploads(bucket, prefix).await?;
        if retained > 0 {
            return Err(Error::new(
                ErrorKind::Retained,
                format!(
                    "{retained} object versions are under retention or a legal hold and were \
                     not deleted; everything else was. Retry after their retention ends"
                ),
            ));
        }
        Ok(())
    }

    /// Deletes one batch of versions; returns how many S3 kept because of object lock.
    async fn delete_versions(
        &self,
        bucket: &str,
        ids: Vec<ObjectIdentifier>,
    ) -> Result<usize, Error> {
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| {
                Error::with_source(ErrorKind::Request, "building a delete request failed", e)
            })?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map_err(|e| s3_error("deleting object versions", e))?;
        let mut retained = 0;
        for error in out.errors() {
            if error.code() == Some("AccessDenied") {
                retained += 1;
            } else {
                return Err(Error::new(
                    ErrorKind::Request,
                    format!(
                        "S3 refused to delete an object version ({}): the bucket was not \
                         purged",
                        quote(error.code().unwrap_or("no code"))
                    ),
                ));
            }
        }
        Ok(retained)
    }

    async fn abort_uploads(&self, bucket: &str, prefix: &str) -> Result<(), Error> {
        let mut key_marker = None;
        let mut upload_marker = None;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .set_expected_bucket_owner(self.owner.clone())
                .send()
                .await
                .map_err(|e| s3_error("listing unfinished uploads", e))?;
            for upload in out.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    self.client
                        .abort_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(id)
                        .set_expected_bucket_owner(self.owner.clone())
                        .send()
                        .await
                        .map_err(|e| s3_error("aborting an unfinished upload", e))?;
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            upload_marker = out.next_upload_id_marker().map(str::to_owned);
        }
    }
}

/// The client [`S3Config::client`] describes.
pub(crate) fn build_client(config: &S3Config) -> Result<Client, Error> {
    let Some(credentials) = &config.credentials else {
        return Err(Error::new(
            ErrorKind::Config,
            "the S3 configuration has no credentials: set `S3Config::credentials`, or \
                 build the client yourself and use TenantStorage::with_s3_client",
        ));
    };
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            None,
            None,
            "tenancy-storage",
        ))
        .region(Region::new(config.region.clone()))
        .force_path_style(config.force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
                .build(),
        );
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

/// Reads a body stream in parts of `size` bytes.
struct Parts<'a, S> {
    body: Pin<&'a mut S>,
    size: usize,
    key: &'a str,
    carry: Option<Bytes>,
    read: u64,
    finished: bool,
}

impl<'a, S> Parts<'a, S>
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send,
{
    fn new(body: Pin<&'a mut S>, size: usize, key: &'a str) -> Self {
        Parts {
            body,
            size,
            key,
            carry: None,
            read: 0,
            finished: false,
        }
    }

    /// The next part: `size` bytes, or fewer at the end (then `finished` is set).
    async fn next(&mut self) -> Result<Bytes, Error> {
        let mut part = BytesMut::new();
        loop {
            let mut chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.body.next().await {
                    None => {
                        self.finished = true;
                        break;
                    }
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        return Err(Error::with_source(
                            ErrorKind::Body,
                            format!(
                                "the body of {} failed after {} bytes; nothing was stored",
                                quote(self.key),
                                self.read
                            ),
                            e,
                        ));
                    }
                },
            };
            let room = self.size - part.len();
            if part.is_empty() && chunk.len() == self.size {
                self.read += chunk.len() as u64;
                return Ok(chunk);
            }
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            self.read += chunk.len() as u64;
            part.extend_from_slice(&chunk);
            if part.len() == self.size {
                break;
            }
        }
        Ok(part.freeze())
    }
}

/// The body of an S3 object, polled chunk by chunk.
pub(crate) struct S3Body {
    state: BodyState,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, ByteStreamError>> + Send>>;

enum BodyState {
    Fresh(ByteStream),
    Streaming(ChunkStream),
    Taken,
}

impl S3Body {
    fn new(body: ByteStream) -> Self {
        S3Body {
            state: BodyState::Fresh(body),
        }
    }

    pub(crate) async fn collect(self) -> Result<Bytes, Error> {
        match self.state {
            BodyState::Fresh(body) => body
                .collect()
                .await
                .map(|all| all.into_bytes())
                .map_err(body_error),
            BodyState::Streaming(mut stream) => {
                let mut all = BytesMut::new();
                while let Some(chunk) = stream.next().await {
                    all.extend_from_slice(&chunk.map_err(body_error)?);
                }
                Ok(all.freeze())
            }
            BodyState::Taken => Ok(Bytes::new()),
        }
    }
}

impl Stream for S3Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let BodyState::Fresh(_) = this.state {
            let BodyState::Fresh(body) = std::mem::replace(&mut this.state, BodyState::Taken)
            else {
                unreachable!()
            };
            this.state = BodyState::Streaming(Box::pin(futures::stream::unfold(
                body,
                |mut body| async move { body.next().await.map(|chunk| (chunk, body)) },
            )));
        }
        match &mut this.state {
            BodyState::Streaming(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|chunk| chunk.map_err(body_error))),
            _ => Poll::Ready(None),
        }
    }
}

fn body_error(e: ByteStreamError) -> Error {
    Error::with_source(
        ErrorKind::Unavailable,
        "reading the object from S3 failed part-way; the body is incomplete",
        e,
    )
}

fn not_provisioned() -> Error {
    Error::new(
        ErrorKind::NotProvisioned,
        "the tenant's bucket does not exist: the tenant has not been provisioned \
         (StoragePlatform::create_bucket), or was deleted",
    )
}

/// Maps an SDK error to this crate's, keeping it as the source.
fn s3_error<E>(what: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, advice) = match &error {
        SdkError::ServiceError(service) => {
            classify(service.err().code(), service.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Unavailable,
            "S3 did not answer in time: check that the server is up and reachable",
        ),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Unavailable,
            "S3 could not be reached: check that the server is up and the endpoint is right",
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            "S3's answer could not be read: the connection broke, or the server is failing",
        ),
        _ => (ErrorKind::Request, "the request could not be made"),
    };
    if kind == ErrorKind::NotProvisioned {
        return Error::with_source(kind, not_provisioned().to_string(), error);
    }
    Error::with_source(kind, format!("{what} failed: {advice}"), error)
}

fn classify(code: Option<&str>, status: u16) -> (ErrorKind, &'static str) {
    match code.unwrap_or("") {
        "NoSuchBucket" => (ErrorKind::NotProvisioned, ""),
        "NoSuchKey" | "NotFound" => (ErrorKind::NotFound, "there is no such object"),
        "BucketNotEmpty" => (
            ErrorKind::NotEmpty,
            "the bucket still holds objects or versions: delete them first, or purge \
             (Deletion::PurgeEveryVersion)",
        ),
        "BucketAlreadyExists" => (
            ErrorKind::AlreadyExists,
            "another account owns a bucket of this name: choose another naming prefix",
        ),
        "AccessDenied"
        | "AllAccessDisabled"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken" => (
            ErrorKind::Denied,
            "S3 refused: check the credentials, and that the bucket belongs to the expected \
             owner",
        ),
        "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout" => (
            ErrorKind::Unavailable,
            "S3 is overloaded or failing: retry later",
        ),
        _ if status >= 500 => (
            ErrorKind::Unavailable,
            "S3 is failing on its side: retry later",
        ),
        _ if status == 403 => (
            ErrorKind::Denied,
            "S3 refused: check the credentials, and that the bucket belongs to the expected \
             owner",
        ),
        _ if status == 404 => (ErrorKind::NotFound, "there is no such object"),
        _ => (
            ErrorKind::Request,
            "S3 refused the request (the source says why)",
        ),
    }
}

fn presigning(lifetime: Duration) -> Result<(PresigningConfig, SystemTime), Error> {
    let start = SystemTime::now();
    let config = PresigningConfig::builder()
        .start_time(start)
        .expires_in(lifetime)
        .build()
        .map_err(|e| Error::with_source(ErrorKind::Config, "the presign lifetime is refused", e))?;
    Ok((config, start + lifetime))
}

fn presigned(
    method: &'static str,
    request: &aws_sdk_s3::presigning::PresignedRequest,
    expires_at: SystemTime,
) -> PresignedRequest {
    PresignedRequest {
        method,
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        expires_at,
    }
}

fn metadata(options: &PutOptions) -> Option<std::collections::HashMap<String, String>> {
    (!options.metadata.is_empty()).then(|| {
        options
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn lock_mode(mode: RetentionMode) -> ObjectLockMode {
    match mode {
        RetentionMode::Governance => ObjectLockMode::Governance,
        RetentionMode::Compliance => ObjectLockMode::Compliance,
    }
}

fn retention_mode(mode: RetentionMode) -> ObjectLockRetentionMode {
    match mode {
        RetentionMode::Governance => ObjectLockRetentionMode::Governance,
        RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
    }
}

fn retention(mode: Option<&ObjectLockMode>, until: Option<&DateTime>) -> Option<Retention> {
    let mode = match mode? {
        ObjectLockMode::Governance => RetentionMode::Governance,
        ObjectLockMode::Compliance => RetentionMode::Compliance,
        _ => return None,
    };
    Some(Retention {
        mode,
        until: system_time(until?)?,
    })
}

fn system_time(time: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*time).ok()
}

/// `bucket/key` for `x-amz-copy-source`, the key percent-encoded (the SDK sends this
/// header as given).
fn copy_source(bucket: &str, key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bucket.len() + 1 + key.len() * 3);
    out.push_str(bucket);
    out.push('/');
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

impl fmt::Debug for S3Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Body").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_encoded() {
        assert_eq!(copy_source("b", "a/b c+%.pdf"), "b/a/b%20c%2B%25.pdf");
        assert_eq!(copy_source("b", "日"), "b/%E6%97%A5");
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(
            classify(Some("NoSuchBucket"), 404).0,
            ErrorKind::NotProvisioned
        );
        assert_eq!(classify(Some("NoSuchKey"), 404).0, ErrorKind::NotFound);
        assert_eq!(classify(Some("BucketNotEmpty"), 409).0, ErrorKind::NotEmpty);
        assert_eq!(classify(Some("AccessDenied"), 403).0, ErrorKind::Denied);
        assert_eq!(classify(None, 503).0, ErrorKind::Unavailable);
        assert_eq!(classify(Some("Weird"), 400).0, ErrorKind::Request);
    }
}
