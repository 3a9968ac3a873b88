//! [`StorageConfig`]: where tenants' objects live and how they are reached.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tenancy_core::naming::Naming;

use crate::error::{Error, ErrorKind};

/// The smallest part of a multipart upload S3 accepts (the last part excepted).
pub(crate) const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts.
pub(crate) const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// The longest lifetime of a SigV4 presigned URL.
pub(crate) const MAX_PRESIGN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The configuration of a [`TenantStorage`](crate::TenantStorage).
///
/// ```
/// use std::time::Duration;
/// use tenancy_storage::{Layout, S3Config, S3Credentials, StorageConfig};
///
/// // The embedded default: a directory per tenant under ./data/objects.
/// let local = StorageConfig::local("./data/objects");
///
/// // S3 (or any S3-compatible server), tenants sharing one bucket under their own prefix.
/// let s3 = StorageConfig::s3(
///     S3Config::new("eu-west-1")
///         .endpoint_url("http://127.0.0.1:9000")
///         .credentials(S3Credentials::new("AKIA...", "secret")),
/// )
/// .layout(Layout::SharedBucket)
/// .presign_lifetime(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct StorageConfig {
    /// The prefix of every bucket (and local directory) name: `{prefix}-{tenant}`, or
    /// `{prefix}--shared` in the shared layout. 1 to 16 lowercase ASCII letters and digits,
    /// starting with a letter. Default `tenancy`.
    #[cfg_attr(feature = "serde", serde(default = "default_prefix"))]
    pub naming_prefix: String,
    /// A bucket per tenant (the default) or one shared bucket with a prefix per tenant.
    #[cfg_attr(feature = "serde", serde(default))]
    pub layout: Layout,
    /// S3 or a local directory.
    pub backend: BackendConfig,
    /// How long a presigned URL stays valid: 1 second to 7 days, 5 minutes by default.
    /// (In configuration files: `presign_lifetime_secs`.)
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "presign_lifetime_secs",
            default = "default_presign_lifetime",
            deserialize_with = "secs::deserialize"
        )
    )]
    pub presign_lifetime: Duration,
    /// How much of a streamed upload is held in memory at once: the part size of S3
    /// multipart uploads, 5 MiB to 5 GiB, 8 MiB by default. A streamed upload shorter than
    /// this is sent as one request; a longer one in parts, so memory stays at about one
    /// part whatever the object's size (and the largest object is 10,000 parts).
    #[cfg_attr(feature = "serde", serde(default = "default_part_size"))]
    pub part_size: usize,
}

/// How tenants are laid out over buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Layout {
    /// A bucket per tenant, named by [`Naming::bucket`]: the tenant's objects are alone in
    /// their bucket, and its bucket policy, encryption key, versioning and retention are
    /// its own. S3 allows 10,000 buckets per account by default (more on request).
    #[default]
    BucketPerTenant,
    /// One bucket for every tenant ([`Naming::shared_bucket`]), each tenant's keys under
    /// its own prefix ([`Naming::object_prefix`]): for deployments past the bucket limit.
    /// A tenant needs no provisioning of its own here, only the shared bucket does, so a
    /// tenant that was never provisioned is not refused: admit tenants through the catalog
    /// (tenancy-core's `TenantLayer` does) before they reach the storage.
    SharedBucket,
}

/// Which backend holds the objects.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum BackendConfig {
    /// A directory per tenant under a root directory: the embedded default, no server.
    Local(LocalConfig),
    /// S3 or an S3-compatible server, through aws-sdk-s3 (feature `s3`).
    S3(S3Config),
}

/// The local directory backend.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct LocalConfig {
    /// The directory that holds a directory per tenant (created if missing when a tenant
    /// is provisioned). Must be on a case-sensitive file system.
    pub root: PathBuf,
}

/// The S3 backend.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct S3Config {
    /// The server's URL, for S3-compatible servers (`http://127.0.0.1:9000`); `None` for
    /// AWS, where the region decides.
    pub endpoint_url: Option<String>,
    /// The region buckets are made in and requests are signed for. Default `us-east-1`.
    pub region: String,
    /// Static credentials. Without them, build the client yourself (with `aws-config`,
    /// say) and use [`TenantStorage::with_s3_client`](crate::TenantStorage::with_s3_client).
    pub credentials: Option<S3Credentials>,
    /// Address buckets in the path (`http://host/bucket/key`) rather than the host name;
    /// most S3-compatible servers need it. Off by default; [`S3Config::endpoint_url`]
    /// turns it on.
    pub force_path_style: bool,
    /// The AWS account id every bucket must belong to. When set, every request carries it
    /// (`x-amz-expected-bucket-owner`, and the source owner on copies), so a request to a
    /// bucket that someone else owns (a deleted tenant's name taken over by another
    /// account) fails with [`ErrorKind::Denied`] instead of reading or writing there.
    pub expected_bucket_owner: Option<String>,
    /// Server-side encryption of every object put or copied; also set as each tenant
    /// bucket's default when it is created. SSE-S3 by default.
    pub encryption: Encryption,
    /// Whether tenant buckets are created with versioning, so an overwritten or deleted
    /// object keeps its earlier versions. Default on.
    pub versioning: bool,
    /// Object lock for buckets created from now on (S3 allows it only at creation): every
    /// object gets this default retention. `None` by default.
    pub object_lock: Option<ObjectLock>,
    /// How many times a request is tried before its error is returned (1: no retries).
    /// Default 3, with the SDK's exponential backoff: a server that refuses connections
    /// fails a call in about 2 to 4 seconds.
    pub max_attempts: u32,
    /// The longest wait for a connection to the server. Default 3 seconds.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "connect_timeout_secs",
            deserialize_with = "secs::deserialize"
        )
    )]
    pub connect_timeout: Duration,
    /// The longest wait for the first byte of a response. Default 30 seconds.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "read_timeout_secs", deserialize_with = "secs::deserialize")
    )]
    pub read_timeout: Duration,
}

/// An access key for S3.
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl S3Credentials {
    /// An access key id and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// The access key id (not secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Server-side encryption of objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Encryption {
    /// SSE-S3: keys managed by S3 (`AES256`). The default.
    #[default]
    S3Managed,
    /// SSE-KMS under a KMS key per tenant: `key_id` is a key id, ARN or alias in which
    /// `{tenant}` stands for the tenant id (`alias/tenancy-{tenant}`), so each tenant's
    /// objects are encrypted under its own key and one tenant's key can be revoked or
    /// audited alone. Without `{tenant}`, every tenant shares the key.
    Kms {
        /// The key id, ARN or alias, with `{tenant}` for the tenant id.
        key_id: String,
    },
    /// Send no encryption header: whatever the bucket's default is.
    ServerDefault,
}

impl Encryption {
    /// The KMS key of `tenant`, for [`Encryption::Kms`].
    #[cfg_attr(
        not(feature = "s3"),
        allow(dead_code, reason = "only the S3 backend encrypts")
    )]
    pub(crate) fn kms_key_for(&self, tenant: &str) -> Option<String> {
        match self {
            Encryption::Kms { key_id } => Some(key_id.replace("{tenant}", tenant)),
            _ => None,
        }
    }
}

/// Object lock: S3's write-once-read-many retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct ObjectLock {
    /// Governance (users with a special permission can shorten it) or compliance (nobody
    /// can, not even the account's root user).
    pub mode: RetentionMode,
    /// How many days each new object version is retained.
    pub default_retention_days: u32,
}

impl ObjectLock {
    /// Retains every new object version for `days` days in `mode`.
    pub fn new(mode: RetentionMode, days: u32) -> Self {
        ObjectLock {
            mode,
            default_retention_days: days,
        }
    }
}

/// How strictly an object version is retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum RetentionMode {
    /// Can be lifted early by a user with `s3:BypassGovernanceRetention`.
    Governance,
    /// Cannot be lifted early by anyone.
    Compliance,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint_url: None,
            region: String::from("us-east-1"),
            credentials: None,
            force_path_style: false,
            expected_bucket_owner: None,
            encryption: Encryption::default(),
            versioning: true,
            object_lock: None,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl S3Config {
    /// AWS S3 in `region`, with the defaults above.
    pub fn new(region: impl Into<String>) -> Self {
        S3Config {
            region: region.into(),
            ..S3Config::default()
        }
    }

    /// Talks to the S3-compatible server at `url`, addressing buckets in the path.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self.force_path_style = true;
        self
    }

    /// Signs requests with this static access key.
    pub fn credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Requires every bucket to belong to this AWS account id.
    pub fn expected_bucket_owner(mut self, account_id: impl Into<String>) -> Self {
        self.expected_bucket_owner = Some(account_id.into());
        self
    }

    /// Encrypts objects this way.
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// Creates buckets with or without versioning.
    pub fn versioning(mut self, on: bool) -> Self {
        self.versioning = on;
        self
    }

    /// Creates buckets with object lock and this default retention.
    pub fn object_lock(mut self, lock: ObjectLock) -> Self {
        self.object_lock = Some(lock);
        self
    }

    /// The aws-sdk-s3 client [`TenantStorage::new`](crate::TenantStorage::new) builds from
    /// this configuration (endpoint, region, static credentials, timeouts): to add
    /// interceptors (tracing, metrics) with `client.config().to_builder()` and hand the
    /// result to [`TenantStorage::with_s3_client`](crate::TenantStorage::with_s3_client).
    #[cfg(feature = "s3")]
    pub fn client(&self) -> Result<aws_sdk_s3::Client, Error> {
        self.validate()?;
        crate::s3::build_client(self)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.region.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "the S3 region is empty: set `S3Config::region` (us-east-1 for most \
                 S3-compatible servers)",
            ));
        }
        if let Some(owner) = &self.expected_bucket_owner
            && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::new(
                ErrorKind::Config,
                "expected_bucket_owner must be a 12-digit AWS account id",
            ));
        }
        if let Encryption::Kms { key_id } = &self.encryption
            && key_id.trim().is_empty()
        {
            return Err(Error::new(
                ErrorKind::Config,
                "the KMS key id is empty: give a key id, ARN or alias, with `{tenant}` for a \
                 key per tenant",
            ));
        }
        if let Some(lock) = &self.object_lock
            && lock.default_retention_days == 0
        {
            return Err(Error::new(
                ErrorKind::Config,
                "object lock needs a default retention of at least one day",
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "max_attempts must be at least 1 (1 means no retries)",
            ));
        }
        if self.connect_timeout.is_zero() || self.read_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "S3 connect and read timeouts must be above zero",
            ));
        }
        Ok(())
    }
}

impl StorageConfig {
    /// A directory per tenant under `root`: the embedded default.
    pub fn local(root: impl Into<PathBuf>) -> Self {
        StorageConfig::with_backend(BackendConfig::Local(LocalConfig { root: root.into() }))
    }

    /// S3, or an S3-compatible server.
    pub fn s3(config: S3Config) -> Self {
        StorageConfig::with_backend(BackendConfig::S3(config))
    }

    fn with_backend(backend: BackendConfig) -> Self {
        StorageConfig {
            naming_prefix: default_prefix(),
            layout: Layout::default(),
            backend,
            presign_lifetime: default_presign_lifetime(),
            part_size: default_part_size(),
        }
    }

    /// Names buckets with `prefix`.
    pub fn naming_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.naming_prefix);
        self
    }

    /// Lays tenants out this way.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Presigned URLs stay valid this long.
    pub fn presign_lifetime(mut self, lifetime: Duration) -> Self {
        self.presign_lifetime = lifetime;
        self
    }

    /// Streamed uploads are held and sent in parts of this size.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Checks every field; returns the naming the configuration derives names with.
    pub(crate) fn validate(&self) -> Result<Naming, Error> {
        let naming = Naming::new(&self.naming_prefix).map_err(|e| {
            Error::with_source(ErrorKind::Config, "the storage naming prefix is invalid", e)
        })?;
        if self.presign_lifetime < Duration::from_secs(1)
            || self.presign_lifetime > MAX_PRESIGN_LIFETIME
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "presign_lifetime is {:?}; it must be 1 second to 7 days (keep it short: \
                     a presigned URL is a bearer credential until it expires)",
                    self.presign_lifetime
                ),
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "part_size is {} bytes; S3 accepts parts of 5 MiB to 5 GiB",
                    self.part_size
                ),
            ));
        }
        match &self.backend {
            BackendConfig::Local(local) if local.root.as_os_str().is_empty() => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the local storage root is empty: give the directory that holds the \
                     tenants' directories",
                ));
            }
            BackendConfig::Local(_) => {}
            BackendConfig::S3(s3) => s3.validate()?,
        }
        Ok(naming)
    }
}

fn default_prefix() -> String {
    String::from("tenancy")
}

fn default_presign_lifetime() -> Duration {
    Duration::from_secs(300)
}

fn default_part_size() -> usize {
    8 * 1024 * 1024
}

#[cfg(feature = "serde")]
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// A duration written as whole seconds.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(StorageConfig::local("/tmp/x").validate().is_ok());
        let s3 = StorageConfig::s3(S3Config::new("us-east-1").endpoint_url("http://h:1"));
        assert!(s3.validate().is_ok());
        let BackendConfig::S3(inner) = &s3.backend else {
            unreachable!()
        };
        assert!(inner.force_path_style);
        assert!(inner.versioning);
        assert_eq!(inner.encryption, Encryption::S3Managed);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let cases = [
            StorageConfig::local("/x").naming_prefix("Bad"),
            StorageConfig::local("/x").presign_lifetime(Duration::ZERO),
            StorageConfig::local("/x").presign_lifetime(Duration::from_secs(8 * 24 * 3600)),
            StorageConfig::local("/x").part_size(1024),
            StorageConfig::local(""),
            StorageConfig::s3(S3Config::new("")),
            StorageConfig::s3(S3Config::new("r").expected_bucket_owner("12")),
            StorageConfig::s3(S3Config::new("r").encryption(Encryption::Kms {
                key_id: String::new(),
            })),
            StorageConfig::s3(
                S3Config::new("r").object_lock(ObjectLock::new(RetentionMode::Governance, 0)),
            ),
        ];
        for config in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{config:?}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds = S3Credentials::new("AKIAEXAMPLE", "very-secret");
        let printed = format!(
            "{:?}",
            StorageConfig::s3(S3Config::new("r").credentials(creds))
        );
        assert!(printed.contains("AKIAEXAMPLE"));
        assert!(!printed.contains("very-secret"), "{printed}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn configuration_files_deserialize() {
        let config: StorageConfig = serde_json::from_str(
            r#"{
                "naming_prefix": "eqms",
                "layout": "shared_bucket",
                "presign_lifetime_secs": 60,
                "backend": { "s3": {
                    "endpoint_url": "http://127.0.0.1:9000",
                    "force_path_style": true,
                    "credentials": { "access_key_id": "AK", "secret_access_key": "SK" },
                    "encryption": { "kms": { "key_id": "alias/eqms-{tenant}" } },
                    "object_lock": { "mode": "governance", "default_retention_days": 30 },
                    "read_timeout_secs": 10
                } }
            }"#,
        )
        .unwrap();
        assert!(config.validate().is_ok());
        assert_eq!(config.layout, Layout::SharedBucket);
        assert_eq!(config.presign_lifetime, Duration::from_secs(60));
        assert_eq!(config.part_size, default_part_size());
        let BackendConfig::S3(s3) = &config.backend else {
            panic!("{config:?}")
        };
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.versioning);
        assert_eq!(s3.read_timeout, Duration::from_secs(10));
        assert_eq!(s3.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            s3.object_lock,
            Some(ObjectLock::new(RetentionMode::Governance, 30))
        );
        let local: StorageConfig =
            serde_json::from_str(r#"{ "backend": { "local": { "root": "/srv/objects" } } }"#)
                .unwrap();
        assert_eq!(local.naming_prefix, "tenancy");
        assert!(serde_json::from_str::<StorageConfig>(r#"{ "backend": { "ftp": {} } }"#).is_err());
    }

    #[test]
    fn kms_keys_are_per_tenant() {
        let kms = Encryption::Kms {
            key_id: String::from("alias/tenancy-{tenant}"),
        };
        assert_eq!(
            kms.kms_key_for("acme").as_deref(),
            Some("alias/tenancy-acme")
        );
        assert_eq!(Encryption::S3Managed.kms_key_for("acme"), None);
    }
}
