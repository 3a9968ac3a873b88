//! [`Shares`]: a cap on what one tenant may hold of a pool many tenants share.
//!
//! A pool per tenant bounds each tenant by itself. Where tenants share a pool (one database
//! for every row-level tenant), one tenant's slow requests could otherwise take every
//! connection and leave the others waiting out their timeout. A [`Share`] is taken before a
//! connection and held as long as it; each tenant may hold at most `limit` at once, so at
//! least `pool cap - limit` connections stay for the others.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, ErrorKind};

/// Per-tenant caps within one shared pool. Cheap to share behind an `Arc`; entries exist
/// only while a tenant holds a share, so idle tenants cost nothing.
pub struct Shares<K> {
    limit: usize,
    held: Arc<Mutex<HashMap<K, Arc<Semaphore>>>>,
}

impl<K> fmt::Debug for Shares<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenants = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Shares")
            .field("limit", &self.limit)
            .field("tenants_holding", &tenants)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + fmt::Display> Shares<K> {
    /// Caps every key at `limit` (at least 1) held at once.
    pub fn new(limit: usize) -> Self {
        Shares {
            limit: limit.max(1),
            held: Arc::default(),
        }
    }

    /// The cap of each key.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A share for `key`, waiting at most `timeout` while `key` holds all of its own.
    pub async fn acquire(&self, key: &K, timeout: Duration) -> Result<Share<K>, Error> {
        let semaphore = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                held.entry(key.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.limit))),
            )
        };
        // Taken now, or the entry's count below would not see this waiter.
        let mut share = Share {
            key: key.clone(),
            held: Arc::clone(&self.held),
            semaphore: Some(semaphore),
            permit: None,
        };
        let semaphore = Arc::clone(share.semaphore.as_ref().expect("just set"));
        match tokio::time::timeout(timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                share.permit = Some(permit);
                Ok(share)
            }
            _ => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "`{key}` already holds its share of {} connections of a shared pool and \
                     none came back within {timeout:?}: its own requests are slow or too many \
                     at once; other tenants keep the rest of the pool",
                    self.limit
                ),
            )),
        }
    }
}

/// One held share; released when dropped.
pub struct Share<K: Hash + Eq> {
    key: K,
    held: Arc<Mutex<HashMap<K, Arc<Semaphore>>>>,
    semaphore: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<K: Hash + Eq> fmt::Debug for Share<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq> Drop for Share<K> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let Some(semaphore) = self.semaphore.take() else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        // Nobody else holds or waits for this key: the map's reference and this one are
        // the last two. Checked under the lock every acquirer takes first.
        if Arc::strong_count(&semaphore) == 2 {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_holds_at_most_its_limit_and_others_are_unaffected() {
        let shares = Shares::new(2);
        let a1 = shares
            .acquire(&"a", Duration::from_millis(10))
            .await
            .unwrap();
        let _a2 = shares
            .acquire(&"a", Duration::from_millis(10))
            .await
            .unwrap();
        let refused = shares
            .acquire(&"a", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Timeout);
        assert!(
            refused
                .to_string()
                .contains("`a` already holds its share of 2")
        );
        let _b = shares
            .acquire(&"b", Duration::from_millis(10))
            .await
            .unwrap();
        drop(a1);
        let _a3 = shares
            .acquire(&"a", Duration::from_millis(10))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn idle_keys_leave_no_entry() {
        let shares = Shares::new(1);
        for n in 0..100 {
            let share = shares.acquire(&n, Duration::from_millis(10)).await.unwrap();
            drop(share);
        }
        let _zero = shares.acquire(&0, Duration::from_millis(10)).await.unwrap();
        assert_eq!(shares.held.lock().unwrap().len(), 1);
        // A waiter that gave up leaves nothing either.
        let held = shares.acquire(&7, Duration::from_millis(10)).await.unwrap();
        assert!(shares.acquire(&7, Duration::from_millis(5)).await.is_err());
        drop(held);
        assert_eq!(shares.held.lock().unwrap().len(), 1);
    }
}
