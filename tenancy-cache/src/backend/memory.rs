//! The in-process backend: a moka cache of sealed values, bounded in bytes, with a TTL per
//! entry, and a map of tenant generations that is never evicted.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use tenancy_core::TenantId;

use crate::config::InProcessConfig;
use crate::value::{Opened, open, seal};

#[derive(Clone)]
struct Entry {
    value: Bytes,
    /// The TTL set by this write; `None` keeps the entry's current expiry (a counter
    /// increment, like Redis's `INCRBY`).
    ttl: Option<Duration>,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        entry.ttl.or(remaining)
    }
}

pub(crate) struct Memory {
    entries: Moka<String, Entry>,
    generations: Mutex<HashMap<TenantId, u64>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// A generation that no earlier run of this process handed out: the clock in microseconds.
fn fresh_generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

impl Memory {
    pub(crate) fn new(config: &InProcessConfig) -> Self {
        let entries = Moka::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .build();
        Memory {
            entries,
            generations: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn generation(&self, tenant: &TenantId) -> u64 {
        *self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.clone())
            .or_insert_with(fresh_generation)
    }

    pub(crate) fn bump_generation(&self, tenant: &TenantId) -> u64 {
        let mut generations = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = generations
            .entry(tenant.clone())
            .or_insert_with(fresh_generation);
        *generation += 1;
        *generation
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).await.map(|entry| entry.value)
    }

    pub(crate) async fn set(&self, key: String, value: Bytes, ttl: Duration) {
        self.entries
            .insert(
                key,
                Entry {
                    value,
                    ttl: Some(ttl),
                },
            )
            .await;
    }

    pub(crate) async fn delete(&self, key: &str) -> bool {
        self.entries.remove(key).await.is_some()
    }

    /// Adds `by` to the counter at `key`, created at 0 with `ttl` if missing. Atomic per
    /// key. A stored value that is not this key's counter is replaced (and reported).
    pub(crate) async fn incr(&self, key: &str, by: i64, ttl: Duration) -> (i64, bool) {
        let tag = key.to_owned();
        let mut foreign = false;
        let result = self
            .entries
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let (current, keep_ttl) =
                    match existing.as_ref().map(|e| open(&tag, &e.value().value)) {
                        Some(Opened::Ours(payload)) => (
                            std::str::from_utf8(payload)
                                .ok()
                                .and_then(|s| s.parse::<i64>().ok()),
                            true,
                        ),
                        Some(_) => {
                            foreign = true;
                            (None, false)
                        }
                        None => (None, false),
                    };
                let next = current.unwrap_or(0).saturating_add(by);
                let value = Bytes::from(seal(&tag, next.to_string().as_bytes()));
                let ttl = if keep_ttl { None } else { Some(ttl) };
                std::future::ready(Op::Put(Entry { value, ttl }))
            })
            .await;
        let stored = match result {
            CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) => entry.into_value(),
            _ => unreachable!("the compute function always puts"),
        };
        let value = match open(key, &stored.value) {
            Opened::Ours(payload) => std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        (value, foreign)
    }

    /// Removes every entry whose key starts with `prefix`; returns how many were found.
    pub(crate) fn purge(&self, tenant: &TenantId, prefix: &str) -> u64 {
        let prefix = prefix.to_owned();
        let count = self
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .count();
        self.entries
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
            .expect("invalidation closures are enabled");
        // Later keys use a new generation, as after a purge on Redis.
        self.bump_generation(tenant);
        count as u64
    }
}
