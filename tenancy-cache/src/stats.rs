//! Counters a user can read: [`CacheStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`Cache`](crate::Cache)'s counters, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a value of the reader's own key.
    pub hits: u64,
    /// Reads that found nothing (or something that was not the reader's: see below).
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Calls of a `get_or_compute` compute function.
    pub computes: u64,
    /// **Alarms**: values that came back tagged with another key than the one read (another
    /// tenant's, or another key of the same tenant's). Each was treated as a miss. Any
    /// non-zero count means a connection or a backend returned a reply that was not the
    /// reader's; investigate.
    pub tag_mismatches: u64,
    /// Values that were not written by this crate (no envelope); treated as misses.
    pub malformed: u64,
    /// `get_or_compute` calls that computed without the cache because it was unavailable
    /// and the caller chose to fall through.
    pub fall_throughs: u64,
    /// Redis connections closed instead of reused because a command on them was cancelled
    /// or failed.
    pub discarded_connections: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) computes: AtomicU64,
    pub(crate) tag_mismatches: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) fall_throughs: AtomicU64,
    pub(crate) discarded_connections: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.hits),
            misses: read(&self.misses),
            sets: read(&self.sets),
            computes: read(&self.computes),
            tag_mismatches: read(&self.tag_mismatches),
            malformed: read(&self.malformed),
            fall_throughs: read(&self.fall_throughs),
            discarded_connections: read(&self.discarded_connections),
        }
    }
}
