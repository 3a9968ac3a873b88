//! [`TenantQueue`]: the producer side. Every push takes a [`TenantContext`] (or runs inside
//! one) and wraps the job in its envelope; there is no way to push an unscoped job.

use std::fmt;
use std::marker::PhantomData;

use apalis_core::backend::{BackendConfig, TaskSink};
use serde::Serialize;
use tenancy_core::{Actor, Catalog, ErrorKind as CoreErrorKind, TenantContext, TenantId};

use crate::envelope::{RawJob, SigningKey, seal};
use crate::error::{Error, ErrorKind};

/// A validated queue name: 1 to 128 characters of `[a-z0-9_.:-]`, starting with a letter.
///
/// apalis names a queue after the Rust type of its jobs unless told otherwise, so renaming
/// the type would silently move the queue; every constructor here takes the name
/// explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    /// The longest queue name, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a queue name.
    pub fn new(name: &str) -> Result<Self, Error> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'.' | b':' | b'-')
            });
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidQueueName,
                format!(
                    "queue name {} is invalid: use 1 to 128 characters of [a-z0-9_.:-], \
                     starting with a letter",
                    tenancy_core::quote(name)
                ),
            ));
        }
        Ok(QueueName(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for QueueName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        QueueName::new(s)
    }
}

/// Pushes jobs of type `T` onto a tenant-aware queue, each in the envelope of the tenant
/// context it is pushed under.
///
/// `B` is an apalis backend whose jobs are [`RawJob`]s: make one with
/// [`sqlite`](crate::sqlite), [`redis`](crate::redis) or [`postgres`](crate::postgres).
/// Cloning is cheap (the backend's connection is shared).
pub struct TenantQueue<B, T> {
    backend: B,
    key: Option<SigningKey>,
    job: PhantomData<fn(T)>,
}

impl<B: Clone, T> Clone for TenantQueue<B, T> {
    fn clone(&self) -> Self {
        TenantQueue {
            backend: self.backend.clone(),
            key: self.key.clone(),
            job: PhantomData,
        }
    }
}

impl<B, T> fmt::Debug for TenantQueue<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantQueue")
            .field("job", &std::any::type_name::<T>())
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<B, T> TenantQueue<B, T>
where
    B: BackendConfig<Args = RawJob> + TaskSink<RawJob, <B as BackendConfig>::Kind> + Clone,
    B::Error: std::error::Error + Send + Sync + 'static,
    T: Serialize,
{
    /// A queue that pushes onto `backend`, unsigned.
    pub fn new(backend: B) -> Self {
        TenantQueue {
            backend,
            key: None,
            job: PhantomData,
        }
    }

    /// Signs every envelope with `key`; give the worker's
    /// [`RetenantLayer::signed`](crate::RetenantLayer::signed) the same key.
    pub fn signed(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The backend, for building the worker that consumes this queue.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// `job` in the envelope of `ctx` (signed if this queue signs), for pushing many at
    /// once with the backend's `push_bulk`.
    pub fn seal(&self, ctx: &TenantContext, job: &T) -> Result<RawJob, Error> {
        seal(ctx, job, self.key.as_ref())
    }

    /// Pushes `job` for the tenant of `ctx`, with its actor and correlation id.
    pub async fn push(&self, ctx: &TenantContext, job: T) -> Result<(), Error> {
        let raw = self.seal(ctx, &job)?;
        let mut backend = self.backend.clone();
        backend.push(raw).await.map_err(|e| {
            Error::with_source(
                ErrorKind::Push,
                format!("pushing a job for tenant `{}` failed", ctx.tenant()),
                e,
            )
        })
    }

    /// Pushes one job for each tenant of `tenants` that the catalog admits, each in that
    /// tenant's envelope with `actor` (a service: the scheduler) and a new correlation id;
    /// unknown, suspended and archived tenants are skipped. What a scheduled job (an
    /// apalis-cron tick) calls to fan out per tenant.
    ///
    /// Returns the tenants pushed for, in order. A catalog that cannot answer or a failed
    /// push stops the fan-out with that error; the jobs already pushed stay pushed.
    pub async fn push_each_active<C, I, F>(
        &self,
        catalog: &C,
        tenants: I,
        actor: &Actor,
        mut job: F,
    ) -> Result<Vec<TenantId>, Error>
    where
        C: Catalog,
        I: IntoIterator<Item = TenantId>,
        F: FnMut(&TenantContext) -> T,
    {
        let mut pushed = Vec::new();
        for tenant in tenants {
            match catalog.admit(&tenant).await {
                Ok(_) => {}
                Err(e) if e.kind() == CoreErrorKind::CatalogUnavailable => {
                    return Err(Error::with_source(
                        ErrorKind::Push,
                        format!("the catalog could not admit tenant `{tenant}`"),
                        e,
                    ));
                }
                Err(_) => continue,
            }
            let ctx = TenantContext::new(tenant.clone(), actor.clone());
            self.push(&ctx, job(&ctx)).await?;
            pushed.push(tenant);
        }
        Ok(pushed)
    }

    /// Pushes `job` for the tenant in scope: what a job handler uses to push further jobs,
    /// which then run under the same tenant, actor and correlation id.
    ///
    /// Fails with [`ErrorKind::NoCurrentTenant`] outside a tenant scope, pushing nothing.
    pub async fn push_current(&self, job: T) -> Result<(), Error> {
        let ctx = TenantContext::current().map_err(|e| {
            Error::with_source(
                ErrorKind::NoCurrentTenant,
                "no tenant is in scope, so the job was not pushed: push with an explicit \
                 context, or from inside `ctx.scope(..)` or a job handler",
                e,
            )
        })?;
        self.push(&ctx, job).await
    }
}
