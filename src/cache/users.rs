//! [`UserCache`]: resolved users by id and context, shared by the layers of one
//! [`Sessions`](crate::Sessions) handle. Users are far fewer than sessions: with 100,000
//! sessions of 10,000 users a session cache of 10,000 entries hits almost never, while a user
//! cache of the same size holds every user, and a cold session costs its Redis read alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use uuid::Uuid;

use super::admission::Admission;
use super::bus::{Change, InvalidationBus, LocalCache};
use super::CacheSettings;
use crate::telemetry::UserCacheMetrics;
use crate::AppContext;

/// A resolved user and when (the layer's clock) it was loaded.
struct Cached<U> {
    user: Arc<U>,
    loaded_ms: i64,
}

impl<U> Clone for Cached<U> {
    fn clone(&self) -> Self {
        Self {
            user: Arc::clone(&self.user),
            loaded_ms: self.loaded_ms,
        }
    }
}

/// A bounded cache of (context, user id) → resolved user, kept correct by the bus: a user's
/// change (role, permissions, deletion: published by this crate's writes, by other
/// processes, or notified by PostgreSQL) drops that user in every context; while the bus is
/// down nothing is served.
pub(crate) struct UserCache<U> {
    entries: moka::sync::Cache<(AppContext, Uuid), Cached<U>>,
    ttl_ms: i64,
    bus: InvalidationBus,
    /// Bumped by every invalidation: a user loaded before one is not inserted.
    epoch: AtomicU64,
    /// The contexts entries were inserted for, to drop one user from each.
    contexts: Mutex<Vec<AppContext>>,
    metrics: UserCacheMetrics,
    /// Which misses are inserted: all while there is room, then those seen twice.
    admission: Admission,
}

impl<U> std::fmt::Debug for UserCache<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("entries", &self.entries.entry_count())
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl<U: Send + Sync + 'static> UserCache<U> {
    /// At most `max_entries` users, each for at most `ttl` by the layer's clock (moka also
    /// drops them after `ttl` by its own, which bounds memory).
    pub(crate) fn new(settings: &CacheSettings) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build(),
            ttl_ms: crate::record::duration_ms(settings.ttl),
            bus: settings.bus.clone(),
            epoch: AtomicU64::new(0),
            contexts: Mutex::new(Vec::new()),
            metrics: UserCacheMetrics::new(),
            admission: Admission::new(settings.max_entries),
        });
        let weak: Weak<dyn LocalCache> = Arc::downgrade(&(cache.clone() as Arc<dyn LocalCache>));
        settings.bus.register(weak);
        cache
    }

    /// The user, if cached, fresh and the bus is up.
    pub(crate) fn get(&self, context: &AppContext, user_id: &Uuid, now: i64) -> Option<Arc<U>> {
        if !self.bus.is_healthy() {
            return None;
        }
        let user = self
            .entries
            .get(&(context.clone(), *user_id))
            .filter(|cached| now.saturating_sub(cached.loaded_ms) < self.ttl_ms)
            .map(|cached| cached.user);
        self.metrics.lookup(user.is_some());
        user
    }

    /// Read before resolving what will be inserted.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `user`, resolved when the epoch was `loaded_at` and the clock read `now`, unless
    /// an invalidation came in between (checked again after the insert).
    pub(crate) fn insert(
        &self,
        context: &AppContext,
        user_id: &Uuid,
        user: &Arc<U>,
        now: i64,
        loaded_at: u64,
    ) {
        if !self.bus.is_healthy() || self.epoch() != loaded_at {
            return;
        }
        // Past three quarters full, a user seen once is not worth an eviction.
        if !self
            .admission
            .admits(&(context, user_id), self.entries.entry_count())
        {
            return;
        }
        {
            let mut contexts = crate::sync::lock(&self.contexts);
            if !contexts.contains(context) {
                contexts.push(context.clone());
            }
        }
        let key = (context.clone(), *user_id);
        let cached = Cached {
            user: Arc::clone(user),
            loaded_ms: now,
        };
        self.entries.insert(key.clone(), cached);
        if self.epoch() != loaded_at || !self.bus.is_healthy() {
            self.entries.invalidate(&key);
        }
    }
}

impl<U: Send + Sync + 'static> LocalCache for UserCache<U> {
    fn apply(&self, change: &Change) {
        match change {
            // Sessions are not cached here; a session's change leaves its user as is.
            Change::Session(..) => {}
            Change::User(user_id) => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                let contexts = crate::sync::lock(&self.contexts).clone();
                let mut dropped = false;
                for context in contexts {
                    let key = (context, *user_id);
                    dropped |= self.entries.remove(&key).is_some();
                }
                if dropped {
                    self.metrics.invalidated();
                }
            }
            Change::Everything => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.entries.invalidate_all();
                self.metrics.invalidated();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, User};
    use std::time::Duration;

    fn cache(ttl: Duration) -> (InvalidationBus, Arc<UserCache<User>>) {
        let bus = InvalidationBus::local();
        let settings = CacheSettings {
            bus: bus.clone(),
            max_entries: 10,
            ttl,
        };
        (bus.clone(), UserCache::new(&settings))
    }

    #[tokio::test]
    async fn a_user_is_served_per_context_for_its_ttl_and_dropped_by_its_own_change() {
        let (bus, cache) = cache(Duration::from_secs(600));
        let (ada, bob) = (
            Arc::new(User::new("ada@example.com", Role::Admin)),
            Arc::new(User::new("bob@example.com", Role::User)),
        );
        let now = 1_000_000;
        for user in [&ada, &bob] {
            for context in [AppContext::Web, AppContext::Admin] {
                cache.insert(&context, &user.id, user, now, cache.epoch());
            }
        }
        assert!(cache
            .get(&AppContext::Admin, &ada.id, now + 599_999)
            .is_some());
        assert!(
            cache
                .get(&AppContext::Admin, &ada.id, now + 600_000)
                .is_none(),
            "past the TTL"
        );
        let bot = AppContext::custom("telegram-bot").unwrap();
        assert!(cache.get(&bot, &ada.id, now).is_none(), "another context");
        // Ada's role changes: she is dropped in every context, Bob stays.
        bus.user_changed(&ada.id).await;
        assert!(cache.get(&AppContext::Web, &ada.id, now).is_none());
        assert!(cache.get(&AppContext::Admin, &ada.id, now).is_none());
        assert!(cache.get(&AppContext::Web, &bob.id, now).is_some());
        // A session's change leaves users alone; "everything" does not.
        bus.session_changed(&AppContext::Web, &crate::SessionId::generate().unwrap())
            .await;
        assert!(cache.get(&AppContext::Web, &bob.id, now).is_some());
        bus.deliver_local(&Change::Everything);
        assert!(cache.get(&AppContext::Web, &bob.id, now).is_none());
    }

    #[tokio::test]
    async fn a_user_resolved_before_their_change_is_not_kept() {
        let (bus, cache) = cache(Duration::from_secs(600));
        let ada = Arc::new(User::new("ada@example.com", Role::Admin));
        let loaded_at = cache.epoch();
        // The role change lands while the request is still resolving the old row.
        bus.user_changed(&ada.id).await;
        cache.insert(&AppContext::Admin, &ada.id, &ada, 0, loaded_at);
        assert!(cache.get(&AppContext::Admin, &ada.id, 0).is_none());
    }
}
