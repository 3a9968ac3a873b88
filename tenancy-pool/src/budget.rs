//! The global budget of open connections: one semaphore permit per connection that may
//! be open, the [`Lease`] each connection holds, and the counters of what the budget did.

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use deadpool::managed::Manager;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::PoolsConfig;
use crate::pools::{Entry, idle_connections};
use crate::stats::Counters;

/// The global budget: one semaphore permit per connection that may be open.
pub(crate) struct Budget {
    pub(crate) config: PoolsConfig,
    pub(crate) permits: Arc<Semaphore>,
    /// Connections owed to checkouts of pools with no connection that have waited
    /// `steal_idle_after` without finding one to take: one for each. A returned connection
    /// pays one off by closing instead of going back to its pool, so its permit goes to the
    /// waiters (the semaphore serves them in order).
    pub(crate) owed: AtomicUsize,
    pub(crate) started: Instant,
    pub(crate) counters: Counters,
    /// Closes the connection idle longest, in any pool, if it has been idle at least the
    /// given time; `false` if there is none. Type-erased so the budget (held by every
    /// pool's manager) does not name the key type.
    pub(crate) evict_idle: Box<dyn Fn(Duration) -> bool + Send + Sync>,
}

tokio::task_local! {
    pub(crate) static CREATING: Lease;
}

/// One connection's permit in the global budget, shared by everything that keeps the
/// connection's server-side resources alive. The permit returns to the budget when the
/// last clone is dropped.
///
/// The pool holds one clone for as long as the connection is pooled or in use. A manager
/// whose connections outlive their objects (a driver task still closing its socket after
/// the client is gone) takes another with [`Lease::current`] while creating a connection,
/// and keeps it until the server has let go, so that the budget counts the connection for
/// as long as the server does.
#[derive(Clone)]
pub struct Lease {
    pub(crate) _permit: Arc<OwnedSemaphorePermit>,
}

impl Lease {
    /// The lease of the connection being created, inside a manager's `create`; `None`
    /// anywhere else.
    pub fn current() -> Option<Lease> {
        CREATING.try_with(Lease::clone).ok()
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

/// [`Budget::acquire`] gave up because the caller's own pool has an idle connection.
pub(crate) struct Yielded;

impl Budget {
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.config.max_connections - self.permits.available_permits()
    }

    /// A permit for a new connection of `own`'s pool.
    ///
    /// A free permit if there is one. Otherwise, when the budget is full, it closes the
    /// connection idle longest if it has been idle at least `steal_idle_after`, gives up ([`Yielded`]) as soon as its own pool has an idle connection so the
    /// checkout takes that instead, or waits. Callers bound the wait.
    pub(crate) async fn acquire<M: Manager>(
        &self,
        own: Option<&Entry<M>>,
    ) -> Result<OwnedSemaphorePermit, Yielded> {
        let mut counted_wait = false;
        let started = Instant::now();
        let mut starving = None;
        // One wait for a permit for the whole call: the semaphore serves waiters in order,
        // and a new wait on each pass would rejoin the back of the queue every time, so
        // that a checkout kept waking up to look around never reached the front.
        let mut permit = pin!(Arc::clone(&self.permits).acquire_owned());
        loop {
            if let Some(permit) = futures_poll_once(permit.as_mut()).await {
                return Ok(permit.expect("the budget semaphore is never closed"));
            }
            // A pool that has connections waits for one of its own to come back; register
            // before looking, so a return between the look and the wait is not missed.
            let growing = own.filter(|entry| entry.pool.status().size > 0);
            let mut own_returned = pin!(async {
                match growing {
                    Some(entry) => {
                        let notified = entry.returned.notified();
                        let _waiting = Waiting::register(&entry.waiting);
                        notified.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
            // Polled once here so the notification is registered (the future only
            // completes after a return).
            if futures_poll_once(own_returned.as_mut()).await.is_some() {
                return Err(Yielded);
            }
            // Only a connection idle at least `steal_idle_after` is taken: a tenant robbed
            // of a connection it was about to use comes back needing one, and robs the
            // next. But a pool with no connection that has waited that long takes any idle
            // one, and is counted as starving so that the next returned connection anywhere
            // is closed for it: no tenant waits unboundedly behind busy ones.
            if growing.is_some() {
                // The pool has a connection now: it waits for its own, not for others'.
                starving = None;
            } else if started.elapsed() >= self.config.steal_idle_after {
                // Re-asserted on every pass: a close paid to this checkout may have given
                // its permit to one queued earlier, and debts are not told apart, so each
                // starving checkout keeps one outstanding until it is served.
                drop(starving.take());
                starving = Some(Owed::register(&self.owed));
            }
            let min_idle = if starving.is_some() {
                Duration::ZERO
            } else {
                self.config.steal_idle_after
            };
            let evicted = (self.evict_idle)(min_idle);
            if !evicted
                && growing.is_some_and(|entry| idle_connections(&entry.pool, self.now_ms()).0 > 0)
            {
                return Err(Yielded);
            }
            if !evicted && !counted_wait {
                counted_wait = true;
                Counters::bump(&self.counters.waits);
            }
            // Look again now and then: idle connections elsewhere grow old enough to take
            // without anything being returned, and the permit of a connection just closed
            // (which comes back only once the server has let go of it, see `Lease`) may go
            // to a checkout queued earlier.
            let recheck = tokio::time::sleep(
                (self.config.steal_idle_after / 4).max(Duration::from_millis(2)),
            );
            tokio::select! {
                permit = &mut permit => {
                    return Ok(permit.expect("the budget semaphore is never closed"));
                }
                () = &mut own_returned => return Err(Yielded),
                () = recheck => {}
            }
        }
    }
}

/// Polls `future` once: its output if it is ready at once, `None` if it would wait.
pub(crate) async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The idle connections of `pool` (those waiting in it, not those in use) and how long the
/// longest-idle one has waited, `now_ms` being the budget clock.
///
/// deadpool's `Status::available` is not this: it subtracts waiting checkouts, so a pool
/// with idle connections and queued checkouts reports none available.
pub(crate) struct Owed<'a>(&'a AtomicUsize);

impl<'a> Owed<'a> {
    pub(crate) fn register(owed: &'a AtomicUsize) -> Self {
        owed.fetch_add(1, Ordering::SeqCst);
        Owed(owed)
    }
}

impl Drop for Owed<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// Counts a checkout as waiting for a returned connection while it lives.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn register(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
