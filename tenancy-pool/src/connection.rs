//! [`Connection`]: a connection checked out of a [`TenantPools`](crate::TenantPools), back
//! to its pool when dropped, or closed when discarded.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::{Manager, Object};

use crate::budget::Budget;
use crate::pools::{Budgeted, Entry};
use crate::stats::Counters;

/// A connection checked out of a [`TenantPools`](crate::TenantPools). Dereferences to the manager's connection
/// type; goes back to its pool when dropped, unless [`Connection::discard`]ed.
pub struct Connection<M: Manager> {
    pub(crate) object: Option<Object<Budgeted<M>>>,
    pub(crate) entry: Arc<Entry<M>>,
    pub(crate) budget: Arc<Budget>,
}

impl<M: Manager> Connection<M> {
    fn object(&self) -> &Object<Budgeted<M>> {
        self.object
            .as_ref()
            .expect("a connection's object is only taken when it is consumed")
    }

    /// Closes the connection instead of returning it: for a connection whose state is
    /// unknown (a transaction left open, a command cancelled half-way).
    pub fn discard(mut self) {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
            Counters::bump(&self.budget.counters.discarded);
        }
    }

    /// How long ago this connection was opened.
    pub fn age(&self) -> Duration {
        Object::metrics(self.object()).age()
    }
}

impl<M: Manager> Deref for Connection<M> {
    type Target = M::Type;

    fn deref(&self) -> &M::Type {
        &self.object().object
    }
}

impl<M: Manager> DerefMut for Connection<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        &mut self
            .object
            .as_mut()
            .expect("a connection's object is only taken when it is consumed")
            .object
    }
}

impl<M: Manager> Drop for Connection<M> {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            let owed = self
                .budget
                .owed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if owed.is_ok() {
                // A tenant with no connection has waited long enough: this permit is owed
                // to it.
                drop(Object::take(object));
                Counters::bump(&self.budget.counters.evicted_connections);
                return;
            }
            let now = self.budget.now_ms();
            object.returned_ms.store(now, Ordering::Relaxed);
            drop(object);
            self.entry.last_used_ms.store(now, Ordering::Relaxed);
            // A waiter registers before it looks for idle connections, so a return it
            // could use is never missed: either it sees this connection idle, or this sees
            // it waiting.
            if self.entry.waiting.load(Ordering::SeqCst) > 0 {
                self.entry.returned.notify_waiters();
            }
        }
    }
}

impl<M: Manager> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}
