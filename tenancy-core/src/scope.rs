//! The ambient context: [`TenantContext::scope`] and [`TenantContext::current`].
//!
//! Code that cannot be handed a context (a tracing layer, a job worker's inner service)
//! finds it here. The context lives in a thread-local slot only while a scoped future is
//! being polled, the way `tracing::Instrumented` enters its span on each poll: it follows
//! the future across `.await` and across threads, and is visible nowhere else. A guard puts
//! the previous value back even when the poll panics.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context::TenantContext;
use crate::error::{Error, ErrorKind};

thread_local! {
    static CURRENT: RefCell<Option<TenantContext>> = const { RefCell::new(None) };
}

/// Runs `f` with the context in `slot` as the current one, then moves it back into `slot`.
///
/// Swapping (rather than cloning) keeps a poll free of reference-count traffic.
pub(crate) fn enter<R>(slot: &mut Option<TenantContext>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Option<TenantContext>,
        previous: Option<TenantContext>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let ours = CURRENT.with(|current| current.replace(self.previous.take()));
            *self.slot = ours;
        }
    }
    let previous = CURRENT.with(|current| current.replace(slot.take()));
    let _restore = Restore { slot, previous };
    f()
}

impl TenantContext {
    /// The context of the scope this code runs in.
    ///
    /// Fails with [`ErrorKind::NoCurrentTenant`] outside a scope: there is no default
    /// tenant.
    pub fn current() -> Result<TenantContext, Error> {
        CURRENT
            .with(|current| current.borrow().clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NoCurrentTenant,
                    "no tenant context is in scope: run this code inside `ctx.scope(future)` \
                     or `ctx.in_scope(|| ..)`, or pass the `TenantContext` explicitly",
                )
            })
    }

    /// Wraps `future` so that [`TenantContext::current`] returns this context whenever the
    /// future (or anything it awaits) is polled, and when it is dropped.
    ///
    /// ```
    /// use tenancy_core::{Actor, TenantContext};
    ///
    /// # async fn run() -> Result<(), tenancy_core::Error> {
    /// let ctx = TenantContext::new("acme".parse()?, Actor::anonymous());
    /// let tenant = ctx
    ///     .scope(async { TenantContext::current().map(|c| c.tenant().clone()) })
    ///     .await?;
    /// assert_eq!(tenant.as_str(), "acme");
    /// assert!(TenantContext::current().is_err());
    /// # Ok(()) }
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            context: Some(self.clone()),
            future: Some(Box::pin(future)),
        }
    }

    /// Runs `f` with this context as the current one.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        enter(&mut Some(self.clone()), f)
    }

    /// Spawns `future` on the current tokio runtime, inside this context's scope.
    ///
    /// Use this instead of `tokio::spawn`, which the workspace's clippy configuration
    /// forbids: a raw spawn runs outside any scope, so the task would have no tenant.
    #[cfg(feature = "tokio")]
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        #[expect(
            clippy::disallowed_methods,
            reason = "the one sanctioned spawn: the task is wrapped in the context's scope"
        )]
        tokio::spawn(self.scope(future))
    }
}

/// A future that runs inside a [`TenantContext`]'s scope; made by [`TenantContext::scope`].
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    context: Option<TenantContext>,
    // Boxed so that `Scoped` can be pinned without unsafe code or a pin-projection
    // dependency; `None` only while being dropped.
    future: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let future = this
            .future
            .as_mut()
            .expect("a Scoped future is only emptied by its Drop");
        enter(&mut this.context, || future.as_mut().poll(cx))
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        // Run the inner future's destructors in scope too: a guard that returns a
        // connection on drop may need to know whose it is.
        if let Some(future) = self.future.take() {
            enter(&mut self.context, move || drop(future));
        }
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
