//! [`TenantStorage`], the one handle of a deployment, and where a tenant's objects live.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tenancy_core::naming::Naming;
use tenancy_core::{TenantContext, TenantId};

use crate::bucket::TenantBucket;
use crate::config::{BackendConfig, Layout, StorageConfig};
use crate::error::{Error, ErrorKind, quote};
use crate::local::LocalBackend;
use crate::platform::StoragePlatform;

/// Object storage for every tenant of a deployment: S3 or a local directory, a bucket
/// per tenant or a shared bucket with a prefix per tenant.
///
/// It hands out nothing but [`TenantBucket`]s, each bound to one tenant's context, and a
/// [`StoragePlatform`] for operators. Cloning is one reference count.
#[derive(Clone)]
pub struct TenantStorage {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) naming: Naming,
    pub(crate) layout: Layout,
    pub(crate) backend: Backend,
    #[cfg_attr(
        not(feature = "s3"),
        allow(
            dead_code,
            reason = "only the S3 backend presigns and uploads in parts"
        )
    )]
    pub(crate) presign_lifetime: Duration,
    #[cfg_attr(
        not(feature = "s3"),
        allow(
            dead_code,
            reason = "only the S3 backend presigns and uploads in parts"
        )
    )]
    pub(crate) part_size: usize,
}

pub(crate) enum Backend {
    Local(LocalBackend),
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Backend),
}

impl fmt::Debug for TenantStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.inner.backend {
            Backend::Local(_) => "local",
            #[cfg(feature = "s3")]
            Backend::S3(_) => "s3",
        };
        f.debug_struct("TenantStorage")
            .field("naming", &self.inner.naming)
            .field("layout", &self.inner.layout)
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl TenantStorage {
    /// Storage as `config` describes it. No I/O happens here; a missing bucket or an
    /// unreachable server shows at the first request.
    ///
    /// An S3 backend needs the crate feature `s3` and static credentials in the
    /// configuration; for other credentials (instance roles, SSO) build the client yourself
    /// and use [`TenantStorage::with_s3_client`].
    pub fn new(config: StorageConfig) -> Result<Self, Error> {
        let naming = config.validate()?;
        let backend = match &config.backend {
            BackendConfig::Local(local) => Backend::Local(LocalBackend::new(local.root.clone())),
            #[cfg(feature = "s3")]
            BackendConfig::S3(s3) => Backend::S3(crate::s3::S3Backend::new(s3)?),
            #[cfg(not(feature = "s3"))]
            BackendConfig::S3(_) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the configuration asks for S3, but tenancy-storage was built without its \
                     `s3` feature: enable it in Cargo.toml",
                ));
            }
        };
        Ok(TenantStorage::assemble(&config, naming, backend))
    }

    /// S3 storage through a client you built (with `aws-config`, say). The client decides
    /// the endpoint, region, credentials and timeouts; the rest of `config.backend` (the
    /// expected owner, encryption, versioning, object lock) still applies.
    #[cfg(feature = "s3")]
    pub fn with_s3_client(
        config: StorageConfig,
        client: aws_sdk_s3::Client,
    ) -> Result<Self, Error> {
        let naming = config.validate()?;
        let BackendConfig::S3(s3) = &config.backend else {
            return Err(Error::new(
                ErrorKind::Config,
                "with_s3_client needs an S3 backend configuration (`StorageConfig::s3`)",
            ));
        };
        let backend = Backend::S3(crate::s3::S3Backend::with_client(s3, client));
        Ok(TenantStorage::assemble(&config, naming, backend))
    }

    fn assemble(config: &StorageConfig, naming: Naming, backend: Backend) -> Self {
        TenantStorage {
            inner: Arc::new(Inner {
                naming,
                layout: config.layout,
                backend,
                presign_lifetime: config.presign_lifetime,
                part_size: config.part_size,
            }),
        }
    }

    /// The bucket of the context's tenant: the only way to its objects.
    ///
    /// Fails only for a tenant id that cannot name a bucket (S3 reserves names ending
    /// `-s3alias`).
    pub fn bucket(&self, ctx: &TenantContext) -> Result<TenantBucket, Error> {
        let location = self.location(ctx.tenant())?;
        Ok(TenantBucket::new(self.clone(), ctx.clone(), location))
    }

    /// The bucket of the tenant whose scope this code runs in
    /// ([`TenantContext::current`]); fails outside a scope, never falling back to a
    /// default.
    pub fn current_bucket(&self) -> Result<TenantBucket, Error> {
        let ctx = TenantContext::current().map_err(|e| {
            Error::with_source(
                ErrorKind::NoCurrentTenant,
                "no tenant context is in scope, so there is no bucket to use: pass the \
                 TenantContext, or run inside `ctx.scope(..)`",
                e,
            )
        })?;
        self.bucket(&ctx)
    }

    /// Provisioning and deletion of tenants' buckets, for operators.
    pub fn platform(&self) -> StoragePlatform<'_> {
        StoragePlatform::new(self)
    }

    /// The layout tenants are stored in.
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// The naming buckets are derived with.
    pub fn naming(&self) -> &Naming {
        &self.inner.naming
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Where `tenant`'s objects live: its bucket, and its key prefix in the shared layout.
    pub(crate) fn location(&self, tenant: &TenantId) -> Result<Location, Error> {
        let naming = &self.inner.naming;
        let (bucket, prefix) = match self.inner.layout {
            Layout::BucketPerTenant => (naming.bucket(tenant), String::new()),
            Layout::SharedBucket => (naming.shared_bucket(), naming.object_prefix(tenant)),
        };
        if bucket.ends_with("-s3alias") {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "tenant {} cannot have a bucket of its own: S3 reserves bucket names \
                     ending `-s3alias`; use the shared-bucket layout or another tenant id",
                    quote(tenant.as_str())
                ),
            ));
        }
        Ok(Location {
            tenant: tenant.clone(),
            bucket,
            prefix,
        })
    }
}

/// Where one tenant's objects live: a bucket, and a key prefix (empty when the bucket is
/// the tenant's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) tenant: TenantId,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
}

impl Location {
    /// The full key of the tenant's `key` (already checked) in the bucket.
    pub(crate) fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// The tenant's key for a full key of the bucket; `None` for a key outside the
    /// tenant's prefix, which is never handed out.
    pub(crate) fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.prefix.as_str())
    }
}
