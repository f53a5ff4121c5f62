//! [`SessionCache`]: one layer's bounded map of session → record and admitted user.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::admission::Admission;
use super::bus::{Change, InvalidationBus, LocalCache};
use crate::telemetry::{CacheResult, Invalidations};
use crate::{AppContext, SessionId, SessionRecord};

/// One cached authentication: the record and the resolved, admitted user.
pub(crate) struct Entry<U> {
    /// Shared with the requests it serves: a hit copies none of its strings.
    pub(crate) record: Arc<SessionRecord>,
    pub(crate) user: Arc<U>,
    /// The layer's clock reading when the entry was loaded: its TTL counts from here.
    pub(crate) loaded_ms: i64,
}

impl<U> Clone for Entry<U> {
    fn clone(&self) -> Self {
        Self {
            record: Arc::clone(&self.record),
            user: Arc::clone(&self.user),
            loaded_ms: self.loaded_ms,
        }
    }
}

/// How a cache is bounded and kept correct: the session cache of every layer of a
/// [`Sessions`](crate::Sessions) handle, or a user cache.
#[derive(Clone, Debug)]
pub(crate) struct CacheSettings {
    pub(crate) bus: InvalidationBus,
    pub(crate) max_entries: u64,
    pub(crate) ttl: Duration,
}

impl CacheSettings {
    /// A cache of its own for one layer.
    pub(crate) fn build<U: Send + Sync + 'static>(
        &self,
        context: &AppContext,
    ) -> Arc<SessionCache<U>> {
        SessionCache::new(&self.bus, self.max_entries, self.ttl, context)
    }
}

/// A bounded cache of session → user for one layer (so for one context: entries are keyed
/// by id alone, and a hit builds no key).
pub(crate) struct SessionCache<U> {
    entries: moka::sync::Cache<SessionId, Entry<U>>,
    context: AppContext,
    /// The TTL as the layer's [`Clock`](crate::clock::Clock) counts it. moka also drops
    /// entries after the same TTL by its own clock, which bounds memory.
    ttl_ms: i64,
    bus: InvalidationBus,
    /// Bumped by every invalidation: an entry loaded before an invalidation it may have
    /// missed is not inserted (a logout racing a request that is filling the cache).
    epoch: AtomicU64,
    /// Counts the invalidations that dropped something, under the layer's context.
    invalidated: Invalidations,
    /// Which misses are inserted: all while there is room, then those seen twice.
    admission: Admission,
}

impl<U> std::fmt::Debug for SessionCache<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("entries", &self.entries.entry_count())
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl<U: Send + Sync + 'static> SessionCache<U> {
    /// At most `max_entries` sessions of `context`'s layer, each for at most `ttl`, kept
    /// correct by `bus`.
    pub(crate) fn new(
        bus: &InvalidationBus,
        max_entries: u64,
        ttl: Duration,
        context: &AppContext,
    ) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            ttl_ms: crate::record::duration_ms(ttl),
            context: context.clone(),
            bus: bus.clone(),
            epoch: AtomicU64::new(0),
            invalidated: Invalidations::new(context),
            admission: Admission::new(max_entries),
        });
        let weak: Weak<dyn LocalCache> = Arc::downgrade(&(cache.clone() as Arc<dyn LocalCache>));
        bus.register(weak);
        cache
    }

    #[cfg(test)]
    pub(crate) fn get(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<Entry<U>> {
        assert_eq!(*context, self.context);
        self.lookup(id, now).ok()
    }

    /// The entry of `id`, or why there is none to serve (a miss, or the cache is closed
    /// while its invalidation channel is down).
    pub(crate) fn lookup(&self, id: &SessionId, now: i64) -> Result<Entry<U>, CacheResult> {
        if !self.bus.is_healthy() {
            return Err(CacheResult::Closed);
        }
        let entry = self.entries.get(id).ok_or(CacheResult::Miss)?;
        let fresh = now.saturating_sub(entry.loaded_ms) < self.ttl_ms;
        if fresh && !entry.record.is_expired(now) {
            Ok(entry)
        } else {
            Err(CacheResult::Miss)
        }
    }

    pub(crate) fn bus(&self) -> &InvalidationBus {
        &self.bus
    }

    /// Read before loading what will be inserted.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether a miss of `id` is worth an entry (see [`Admission`]): asked before the entry
    /// is built, so that a miss that is not kept costs neither the insert nor the record's
    /// shared copy. Records the sighting: ask once per miss.
    pub(crate) fn admits(&self, id: &SessionId) -> bool {
        self.admission.admits(id, self.entries.entry_count())
    }

    /// Inserts an entry loaded when the epoch was `loaded_at`, unless an invalidation came in
    /// between (checked again after the insert, so an invalidation racing the insert wins).
    pub(crate) fn insert(
        &self,
        context: &AppContext,
        id: &SessionId,
        entry: Entry<U>,
        loaded_at: u64,
    ) {
        if !self.bus.is_healthy() || self.epoch() != loaded_at || *context != self.context {
            return;
        }
        self.entries.insert(id.clone(), entry);
        if self.epoch() != loaded_at || !self.bus.is_healthy() {
            self.entries.invalidate(id);
        }
    }
}

impl<U: Send + Sync + 'static> LocalCache for SessionCache<U> {
    fn apply(&self, change: &Change) {
        // Epoch first: an insert that checks after this sees the change.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Session(context, id) => {
                if *context == self.context && self.entries.contains_key(id) {
                    self.entries.invalidate(id);
                    self.invalidated.count();
                }
            }
            // No per-user index: a user's change drops everything (rare).
            Change::User(_) | Change::Everything => {
                self.entries.invalidate_all();
                self.invalidated.count();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::now_ms;
    use crate::User;
    use uuid::Uuid;

    fn entry() -> Entry<User> {
        let user = User::new("a@example.com", crate::Role::User);
        let record = SessionRecord::new(
            user.id,
            crate::SessionMetadata::new(),
            now_ms(),
            Duration::from_secs(3600),
        );
        Entry {
            record: Arc::new(record),
            user: Arc::new(user),
            loaded_ms: now_ms(),
        }
    }

    #[tokio::test]
    async fn an_entry_loaded_before_an_invalidation_is_not_cached() {
        let bus = InvalidationBus::local();
        let cache = SessionCache::<User>::new(&bus, 10, Duration::from_secs(60), &AppContext::Web);
        let id = SessionId::generate().unwrap();
        let loaded_at = cache.epoch();
        // A logout of this very session lands while the request is still loading it.
        bus.session_changed(&AppContext::Web, &id).await;
        cache.insert(&AppContext::Web, &id, entry(), loaded_at);
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_none());
        // Without a race it is cached.
        cache.insert(&AppContext::Web, &id, entry(), cache.epoch());
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_some());
        // And any invalidation drops it.
        bus.user_changed(&Uuid::new_v4()).await;
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_none());
    }

    #[test]
    fn an_entry_is_served_for_its_ttl_by_the_layers_clock_and_not_after() {
        let bus = InvalidationBus::local();
        // moka's own 600 s TTL never comes into play in this test.
        let cache = SessionCache::<User>::new(&bus, 10, Duration::from_secs(600), &AppContext::Web);
        let id = SessionId::generate().unwrap();
        let entry = entry();
        let loaded = entry.loaded_ms;
        cache.insert(&AppContext::Web, &id, entry, cache.epoch());
        assert!(cache.get(&AppContext::Web, &id, loaded + 599_999).is_some());
        assert!(cache.get(&AppContext::Web, &id, loaded + 600_000).is_none());
    }
}
