//! Fair mode: a queue per tenant, each drained by a worker of its own, so one tenant's
//! backlog never stands in front of another tenant's jobs (the noisy neighbour of every
//! shared job system).
//!
//! [`FairQueue`] pushes each job onto its tenant's queue, `{base}.{tenant}`; start a worker
//! per active tenant on [`FairQueue::backend_for`], each behind a [`RetenantLayer`] as
//! usual, with the concurrency you give one tenant. A tenant with 10,000 jobs waiting then
//! delays only itself. This suits up to a few hundred active tenants per process (each
//! worker polls its queue); beyond that, group tenants into a fixed number of queues.
//!
//! [`RetenantLayer`]: crate::RetenantLayer

use std::fmt;
use std::marker::PhantomData;

use apalis_core::backend::{BackendConfig, TaskSink};
use serde::Serialize;
use tenancy_core::{TenantContext, TenantId};

use crate::envelope::{RawJob, SigningKey};
use crate::error::{Error, ErrorKind};
use crate::queue::{QueueName, TenantQueue};

/// The queue of `tenant` under the fair queue `base`: `{base}.{tenant}`; fails if `base` is
/// longer than [`FairQueue::MAX_BASE_LEN`].
pub fn tenant_queue_name(base: &QueueName, tenant: &TenantId) -> Result<QueueName, Error> {
    QueueName::new(&format!("{base}.{tenant}"))
}

/// Fair mode: pushes each job onto its tenant's own queue, `{base}.{tenant}`.
///
/// Start a worker per active tenant on [`FairQueue::backend_for`], each behind a
/// [`RetenantLayer`](crate::RetenantLayer) as usual and with the concurrency one tenant may
/// use: a tenant with 10,000 jobs waiting then delays only itself. This suits up to a few
/// hundred active tenants per process (each worker polls its own queue).
///
/// `make` opens the backend of one queue, for example
/// `|name| tenancy_queue::redis(conn.clone(), name, Config::default())`.
pub struct FairQueue<F, T> {
    base: QueueName,
    make: F,
    key: Option<SigningKey>,
    job: PhantomData<fn(T)>,
}

impl<F, T> fmt::Debug for FairQueue<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairQueue")
            .field("base", &self.base)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, T> FairQueue<F, T>
where
    F: Fn(&QueueName) -> B,
    B: BackendConfig<Args = RawJob> + TaskSink<RawJob, <B as BackendConfig>::Kind> + Clone,
    B::Error: std::error::Error + Send + Sync + 'static,
    T: Serialize,
{
    /// The longest base name: a tenant id and a dot must still fit in a queue name.
    pub const MAX_BASE_LEN: usize = QueueName::MAX_LEN - 1 - TenantId::MAX_LEN;

    /// A fair queue named `base`, whose per-tenant backends `make` opens; fails if `base`
    /// is longer than [`FairQueue::MAX_BASE_LEN`].
    pub fn new(base: QueueName, make: F) -> Result<Self, Error> {
        if base.as_str().len() > Self::MAX_BASE_LEN {
            return Err(Error::new(
                ErrorKind::InvalidQueueName,
                format!(
                    "fair queue name {} is too long: use at most {} characters, so that a \
                     tenant id still fits after it",
                    tenancy_core::quote(base.as_str()),
                    Self::MAX_BASE_LEN
                ),
            ));
        }
        Ok(FairQueue {
            base,
            make,
            key: None,
            job: PhantomData,
        })
    }

    /// Signs every envelope with `key`.
    pub fn signed(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The backend of `tenant`'s queue, for the worker that drains it.
    pub fn backend_for(&self, tenant: &TenantId) -> B {
        let name = tenant_queue_name(&self.base, tenant)
            .expect("the base name was checked to leave room for any tenant id");
        (self.make)(&name)
    }

    /// Pushes `job` onto the queue of the tenant of `ctx`.
    pub async fn push(&self, ctx: &TenantContext, job: T) -> Result<(), Error> {
        let mut queue = TenantQueue::new(self.backend_for(ctx.tenant()));
        if let Some(key) = &self.key {
            queue = queue.signed(key.clone());
        }
        queue.push(ctx, job).await
    }
}
