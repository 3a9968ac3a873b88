//! [`StoragePlatform`]: creating and deleting tenants' buckets, for operators only.

use std::fmt;

use tenancy_core::{PlatformContext, TenantId};

use crate::config::Layout;
use crate::error::{Error, ErrorKind};
use crate::storage::{Backend, TenantStorage};

/// What to do with a bucket that still holds objects when it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deletion {
    /// Refuse ([`ErrorKind::NotEmpty`]) if any object, version or delete marker is left.
    RefuseIfNotEmpty,
    /// Delete every object, every earlier version and every delete marker first, and
    /// abort unfinished uploads. Versions under retention stop it
    /// ([`ErrorKind::Retained`]), with what could be deleted gone.
    PurgeEveryVersion,
}

/// Provisioning and deletion of tenants' storage, under a [`PlatformContext`]: a tenant's
/// context cannot reach these calls, and these calls take no tenant context.
pub struct StoragePlatform<'a> {
    storage: &'a TenantStorage,
}

impl fmt::Debug for StoragePlatform<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoragePlatform")
            .field("storage", self.storage)
            .finish()
    }
}

impl<'a> StoragePlatform<'a> {
    pub(crate) fn new(storage: &'a TenantStorage) -> Self {
        StoragePlatform { storage }
    }

    fn backend(&self) -> &Backend {
        &self.storage.inner().backend
    }

    /// Creates `tenant`'s bucket, with versioning, default encryption, object lock and a
    /// rule that clears abandoned uploads, as configured (each where the server supports
    /// it: see the crate docs). In the shared layout, creates the shared bucket if it is
    /// missing: a tenant needs nothing of its own there.
    ///
    /// Running it again on an existing bucket of this account re-applies the settings, so
    /// a provisioning interrupted half-way can be retried. A bucket name another account
    /// holds fails with [`ErrorKind::AlreadyExists`].
    pub async fn create_bucket(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        // The operator is the caller's proof of platform rights; the platform log that
        // will record it belongs to tenancy-audit.
        let _ = operator;
        let location = self.storage.location(tenant)?;
        let owner = match self.storage.layout() {
            Layout::BucketPerTenant => Some(tenant),
            Layout::SharedBucket => None,
        };
        self.create(&location.bucket, owner).await
    }

    /// Deletes `tenant`'s bucket. Without [`Deletion::PurgeEveryVersion`], a bucket that
    /// holds anything (on a versioned bucket, even only old versions or delete markers)
    /// is left alone and [`ErrorKind::NotEmpty`] returned. In the shared layout, deletes
    /// the tenant's objects under its prefix (refusing the same way) and leaves the shared
    /// bucket.
    ///
    /// A bucket that does not exist gives [`ErrorKind::NotProvisioned`].
    pub async fn delete_bucket(
        &self,
        operator: &PlatformContext,
        tenant: &TenantId,
        deletion: Deletion,
    ) -> Result<(), Error> {
        let _ = operator;
        let location = self.storage.location(tenant)?;
        match self.storage.layout() {
            Layout::BucketPerTenant => self.delete_whole(&location.bucket, deletion).await,
            Layout::SharedBucket => match self.backend() {
                Backend::Local(local) => local.delete_prefix(&location, deletion).await,
                #[cfg(feature = "s3")]
                Backend::S3(s3) => s3.delete_prefix(&location, deletion).await,
            },
        }
    }

    /// Creates the shared bucket of the shared layout (what [`create_bucket`] does there
    /// for any tenant).
    ///
    /// [`create_bucket`]: StoragePlatform::create_bucket
    pub async fn create_shared_bucket(&self, operator: &PlatformContext) -> Result<(), Error> {
        let _ = operator;
        let bucket = self.shared_bucket()?;
        self.create(&bucket, None).await
    }

    /// Deletes the shared bucket of the shared layout, with every tenant's objects if
    /// asked to purge.
    pub async fn delete_shared_bucket(
        &self,
        operator: &PlatformContext,
        deletion: Deletion,
    ) -> Result<(), Error> {
        let _ = operator;
        let bucket = self.shared_bucket()?;
        self.delete_whole(&bucket, deletion).await
    }

    fn shared_bucket(&self) -> Result<String, Error> {
        if self.storage.layout() != Layout::SharedBucket {
            return Err(Error::new(
                ErrorKind::Config,
                "there is no shared bucket: this storage keeps a bucket per tenant",
            ));
        }
        Ok(self.storage.naming().shared_bucket())
    }

    /// Creates `bucket`, whose only tenant is `owner` (`None` for the shared bucket).
    async fn create(&self, bucket: &str, owner: Option<&TenantId>) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(local) => {
                let _ = owner;
                local.create_bucket(bucket).await
            }
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.create_bucket(bucket, owner).await,
        }
    }

    async fn delete_whole(&self, bucket: &str, deletion: Deletion) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(local) => local.delete_bucket(bucket, deletion).await,
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.delete_bucket(bucket, deletion).await,
        }
    }
}
