//! [`RetenantLayer`] and [`Retenant`]: the worker side. Before the handler runs, the job's
//! envelope is opened and checked, its tenant admitted by the catalog, and the handler run
//! inside the tenant's scope; a job that fails any check is killed, not retried.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::Task;
use apalis_core::task::status::Status;
use serde::de::DeserializeOwned;
use tenancy_core::{Catalog, ErrorKind as CoreErrorKind};
use tower_layer::Layer;
use tower_service::Service;

use crate::envelope::{RawJob, SigningKey, claimed_tenant, open};
use crate::error::{Rejection, RejectionKind};

/// A tower layer for apalis workers: turns a service over `Task<T>` (the handler, usually
/// `apalis::prelude::task_fn(handler)`) into a service over [`RawJob`] that re-establishes
/// each job's tenant or refuses the job.
///
/// For each job, before the handler runs:
/// - the envelope is decoded strictly: a missing, malformed or duplicated tenant field, an
///   unknown envelope field, a bad signature (with [`RetenantLayer::signed`]) or a job that
///   is not a `T` is a [`Rejection`];
/// - the tenant is admitted by the catalog: unknown, suspended and archived tenants are
///   rejections; a catalog that cannot answer is an ordinary error, so the backend retries
///   the job later;
/// - the handler is called and polled inside the tenant's scope
///   ([`TenantContext::current`](tenancy_core::TenantContext::current) returns it), and the context is in the task's data
///   (extract it with `Data<TenantContext>`).
///
/// A rejected job is killed (status `Killed`, an `AbortError`): the backend keeps it in
/// its dead set with the rejection as its result and never runs it again. The rejection is
/// logged at `warn` with the job id, the kind and the claimed tenant, never the payload.
///
/// The scope ends when the handler's future completes, fails, panics or is dropped (a
/// timeout, a worker stopped mid-job): nothing of the tenant stays on the worker.
pub struct RetenantLayer<C, T> {
    catalog: C,
    key: Option<SigningKey>,
    job: PhantomData<fn() -> T>,
}

impl<C, T> RetenantLayer<C, T> {
    /// Checks tenants against `catalog`; envelopes need not be signed.
    pub fn new(catalog: C) -> Self {
        RetenantLayer {
            catalog,
            key: None,
            job: PhantomData,
        }
    }

    /// Requires every job to be signed with `key`: a job whose tenant, actor, correlation id
    /// or body was changed after it was pushed is rejected.
    pub fn signed(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }
}

impl<C: Clone, T> Clone for RetenantLayer<C, T> {
    fn clone(&self) -> Self {
        RetenantLayer {
            catalog: self.catalog.clone(),
            key: self.key.clone(),
            job: PhantomData,
        }
    }
}

impl<C: fmt::Debug, T> fmt::Debug for RetenantLayer<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetenantLayer")
            .field("catalog", &self.catalog)
            .field("signed", &self.key.is_some())
            .finish()
    }
}

impl<S, C: Clone, T> Layer<S> for RetenantLayer<C, T> {
    type Service = Retenant<S, C, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Retenant {
            inner,
            catalog: self.catalog.clone(),
            key: self.key.clone(),
            job: PhantomData,
        }
    }
}

/// The service [`RetenantLayer`] makes: see there.
pub struct Retenant<S, C, T> {
    inner: S,
    catalog: C,
    key: Option<SigningKey>,
    job: PhantomData<fn() -> T>,
}

impl<S: Clone, C: Clone, T> Clone for Retenant<S, C, T> {
    fn clone(&self) -> Self {
        Retenant {
            inner: self.inner.clone(),
            catalog: self.catalog.clone(),
            key: self.key.clone(),
            job: PhantomData,
        }
    }
}

impl<S, C: fmt::Debug, T> fmt::Debug for Retenant<S, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retenant")
            .field("catalog", &self.catalog)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, C, T> Service<Task<RawJob>> for Retenant<S, C, T>
where
    S: Service<Task<T>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: Send + 'static,
    C: Catalog + Clone + 'static,
    T: DeserializeOwned + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<RawJob>) -> Self::Future {
        // Take the service that was polled ready; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let catalog = self.catalog.clone();
        let opened = open::<T>(&task.args, self.key.as_ref());
        ResponseFuture(Box::pin(async move {
            let (ctx, job) = match opened {
                Ok(opened) => opened,
                Err(rejection) => return Err(reject(&task, rejection)),
            };
            if let Err(refused) = catalog.admit(ctx.tenant()).await {
                let kind = match refused.kind() {
                    CoreErrorKind::UnknownTenant => RejectionKind::UnknownTenant,
                    CoreErrorKind::TenantSuspended => RejectionKind::TenantSuspended,
                    CoreErrorKind::TenantArchived => RejectionKind::TenantArchived,
                    // The catalog could not tell: not the job's fault. The backend retries it.
                    _ => {
                        tracing::warn!(
                            target: "tenancy_queue",
                            task_id = %TaskIdDisplay(&task),
                            tenant = %ctx.tenant(),
                            "job deferred: the catalog could not admit its tenant"
                        );
                        return Err(refused.into());
                    }
                };
                let message = refused.to_string();
                return Err(reject(&task, Rejection::new(kind, message)));
            }
            let mut task = task.map_args(|_| job);
            task.inject_data(ctx.clone());
            ctx.scope(async move { inner.call(task).await.map_err(Into::into) })
                .await
        }))
    }
}

/// Kills the task (so the backend keeps it dead instead of retrying it) and logs why.
fn reject(task: &Task<RawJob>, rejection: Rejection) -> BoxDynError {
    task.ctx().raw_status().store(Status::Killed);
    match claimed_tenant(&task.args) {
        Some(tenant) => tracing::warn!(
            target: "tenancy_queue",
            task_id = %TaskIdDisplay(task),
            tenant = %tenant,
            reason = %rejection.kind(),
            "job rejected: {rejection}"
        ),
        None => tracing::warn!(
            target: "tenancy_queue",
            task_id = %TaskIdDisplay(task),
            reason = %rejection.kind(),
            "job rejected: {rejection}"
        ),
    }
    Box::new(AbortError::new(rejection))
}

struct TaskIdDisplay<'a, A>(&'a Task<A>);

impl<A> fmt::Display for TaskIdDisplay<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ctx().task_id() {
            Some(id) => fmt::Display::fmt(id, f),
            None => f.write_str("-"),
        }
    }
}

/// The future of [`Retenant`]: the checks, then the handler inside the tenant's scope.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<R>(Pin<Box<dyn Future<Output = Result<R, BoxDynError>> + Send>>);

impl<R> Future for ResponseFuture<R> {
    type Output = Result<R, BoxDynError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<R> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
