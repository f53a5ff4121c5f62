//! [`MemoryStore`]: the embedded default backend.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::{Capabilities, Scope, SessionInfo, SessionStore, StoreError, StoreFuture};
use crate::data::DataPatch;
use crate::record::now_ms;
use crate::{AppContext, SessionId, SessionRecord};

/// How often (at most) a write sweeps every expired record, in milliseconds.
const SWEEP_INTERVAL_MS: i64 = 30_000;

/// An in-process [`SessionStore`]: the default when no backend is configured
/// (`SESSION_ENV=mock`), and a real product feature for single-instance services.
///
/// Expiry is real: an expired record is never returned, is removed when it is looked up, and
/// every expired record is swept at most every 30 seconds on a write (or when you call
/// [`MemoryStore::sweep`]). It is safe to share between tasks and threads; clones share the
/// same data. Sessions do not survive a restart and are not shared between processes.
///
/// Memory is bounded when you say so: [`with_capacity`](Self::with_capacity) caps the number
/// of sessions (a new one then evicts those closest to expiry, that is the least recently
/// used ones, since every use slides the expiry), and the layer's
/// [`max_sessions_per_user`](crate::SessionLayer::max_sessions_per_user) caps each user's.
/// A session costs about 440 bytes of heap at most with a 100-byte user agent (ids are
/// stored once, shared by the map and the per-user index; user agents are cut to 512 bytes).
///
/// ```
/// use tower_app_sessions::MemoryStore;
/// let store = MemoryStore::with_capacity(100_000);
/// let same_data = store.clone();
/// assert_eq!(store.len(), same_data.len());
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<State>>,
}

/// A session id as the store keeps it: one allocation of its characters, shared by the
/// context's map and the user's index (a [`SessionId`] is a 129-byte inline buffer).
type Key = Arc<str>;

#[derive(Default)]
struct State {
    /// The records of each context. There are a handful of contexts, so finding one by
    /// equality is cheaper than hashing it on every lookup; a context's slot never changes.
    contexts: Vec<(AppContext, HashMap<Key, SessionRecord>)>,
    /// Each user's sessions, as (context slot, id).
    by_user: HashMap<Uuid, HashSet<(usize, Key)>>,
    len: usize,
    capacity: Option<usize>,
    last_sweep_ms: i64,
}

impl State {
    fn slot(&self, context: &AppContext) -> Option<usize> {
        self.contexts.iter().position(|(c, _)| c == context)
    }

    fn slot_or_insert(&mut self, context: &AppContext) -> usize {
        self.slot(context).unwrap_or_else(|| {
            self.contexts.push((context.clone(), HashMap::new()));
            self.contexts.len() - 1
        })
    }

    fn get(&self, context: &AppContext, id: &SessionId) -> Option<&SessionRecord> {
        let slot = self.slot(context)?;
        self.contexts[slot].1.get(id.as_str())
    }

    fn live(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<&SessionRecord> {
        self.get(context, id).filter(|r| !r.is_expired(now))
    }

    fn live_mut(
        &mut self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Option<&mut SessionRecord> {
        let slot = self.slot(context)?;
        self.contexts[slot]
            .1
            .get_mut(id.as_str())
            .filter(|r| !r.is_expired(now))
    }

    fn remove(&mut self, context: &AppContext, id: &SessionId) -> Option<SessionRecord> {
        let slot = self.slot(context)?;
        self.remove_at(slot, id.as_str())
    }

    fn remove_at(&mut self, slot: usize, id: &str) -> Option<SessionRecord> {
        let (key, record) = self.contexts[slot].1.remove_entry(id)?;
        self.len -= 1;
        if let Some(ids) = self.by_user.get_mut(&record.user_id) {
            ids.remove(&(slot, key));
            if ids.is_empty() {
                self.by_user.remove(&record.user_id);
            }
        }
        Some(record)
    }

    /// Inserts (or replaces) `record` under `id`, making room first if the store is full.
    fn insert(&mut self, context: &AppContext, id: &SessionId, record: SessionRecord, now: i64) {
        // Replacing a record of another user must not leave it in that user's index.
        self.remove(context, id);
        if self.capacity.is_some_and(|cap| self.len >= cap) {
            self.make_room(now);
        }
        let slot = self.slot_or_insert(context);
        let key: Key = Arc::from(id.as_str());
        self.by_user
            .entry(record.user_id)
            .or_default()
            .insert((slot, Arc::clone(&key)));
        self.contexts[slot].1.insert(key, record);
        self.len += 1;
    }

    /// At capacity: sweeps, and if that frees nothing, evicts the sessions closest to expiry
    /// (the least recently used), a sixty-fourth of the capacity at a time so that a full
    /// store pays the scan once per many logins, not on each.
    fn make_room(&mut self, now: i64) {
        if self.sweep(now) > 0 {
            return;
        }
        let cap = self.capacity.unwrap_or(self.len);
        let batch = (cap / 64).max(1).min(self.len);
        let mut oldest: Vec<(i64, usize, Key)> = self
            .contexts
            .iter()
            .enumerate()
            .flat_map(|(slot, (_, map))| {
                map.iter()
                    .map(move |(key, r)| (r.expires_at, slot, Arc::clone(key)))
            })
            .collect();
        if batch < oldest.len() {
            oldest.select_nth_unstable_by_key(batch, |(expires_at, _, _)| *expires_at);
            oldest.truncate(batch);
        }
        for (_, slot, key) in oldest {
            self.remove_at(slot, &key);
        }
        tracing::debug!(
            evicted = batch,
            "memory session store full: evicted the sessions closest to expiry"
        );
    }

    fn sweep(&mut self, now: i64) -> usize {
        let expired: Vec<(usize, Key)> = self
            .contexts
            .iter()
            .enumerate()
            .flat_map(|(slot, (_, map))| {
                map.iter()
                    .filter(|(_, r)| r.is_expired(now))
                    .map(move |(key, _)| (slot, Arc::clone(key)))
            })
            .collect();
        for (slot, key) in &expired {
            self.remove_at(*slot, key);
        }
        self.last_sweep_ms = now;
        expired.len()
    }

    /// The user's sessions in `scope`, as (context slot, id).
    fn of_user(&self, user_id: &Uuid, scope: Scope<'_>) -> Vec<(usize, Key)> {
        let wanted = match scope {
            Scope::Context(context) => match self.slot(context) {
                Some(slot) => Some(slot),
                None => return Vec::new(),
            },
            Scope::AllContexts => None,
        };
        self.by_user
            .get(user_id)
            .map(|ids| {
                ids.iter()
                    .filter(|(slot, _)| wanted.is_none_or(|w| w == *slot))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store without a capacity.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that holds at most `capacity` sessions: a new session in a full store
    /// evicts the expired ones, or else those closest to expiry (least recently used); an
    /// evicted session stops authenticating at once.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let store = Self::default();
        store.write(|s| s.capacity = Some(capacity.max(1)));
        store
    }

    /// Number of records held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.read(|s| s.len)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record now (by the system clock); returns how many were removed.
    pub fn sweep(&self) -> usize {
        self.write(|s| s.sweep(now_ms()))
    }

    /// The live record of `id` in `context`; an expired one is removed now rather than
    /// waiting for the sweep.
    fn get(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<SessionRecord> {
        let found = self.read(|s| match s.get(context, id) {
            Some(r) if r.is_expired(now) => Err(()),
            Some(r) => Ok(Some(r.clone())),
            None => Ok(None),
        });
        found.unwrap_or_else(|()| {
            self.write(|s| {
                if s.live(context, id, now).is_none() {
                    s.remove(context, id);
                }
            });
            None
        })
    }

    // Each operation is a few map calls: a panic inside one cannot leave the maps in a state
    // that matters, so a poisoned lock is taken over (`crate::sync`).
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&crate::sync::read(&self.inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut crate::sync::write(&self.inner))
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::ready(Ok(self.get(context, id, now)))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.write(|s| {
            if now - s.last_sweep_ms >= SWEEP_INTERVAL_MS {
                s.sweep(now);
            }
            s.insert(context, id, record.bounded().into_owned(), now);
        });
        StoreFuture::ready(Ok(()))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::ready(Ok(
            self.write(|s| s.remove(context, id).is_some_and(|r| !r.is_expired(now)))
        ))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        _user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        // One critical section: a delete either ran before (nothing to move) or runs after
        // (and finds the record under `new` through the user's index).
        let moved = self.write(|s| {
            s.live(context, old, now)?;
            let record = s.remove(context, old)?;
            s.insert(context, new, record.clone(), now);
            Some(record)
        });
        StoreFuture::ready(Ok(moved))
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        let extended = self.write(|s| {
            s.live_mut(context, id, now)
                .map(|r| r.expires_at = expires_at)
                .is_some()
        });
        StoreFuture::ready(Ok(extended))
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        // Under the lock: a concurrent patch is applied before or after this one, key by key.
        let updated = self.write(|s| {
            s.live_mut(context, id, now)
                .map(|r| r.data.apply(patch))
                .is_some()
        });
        StoreFuture::ready(Ok(updated))
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        let removed = self.write(|s| {
            s.of_user(user_id, scope)
                .into_iter()
                .filter_map(|(slot, key)| s.remove_at(slot, &key))
                .filter(|r| !r.is_expired(now))
                .count() as u64
        });
        StoreFuture::ready(Ok(removed))
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        let list = self.read(|s| {
            s.of_user(user_id, scope)
                .into_iter()
                .filter_map(|(slot, key)| {
                    let (context, map) = &s.contexts[slot];
                    let record = map.get(&key).filter(|r| !r.is_expired(now))?;
                    Some(SessionInfo {
                        id: SessionId::parse(&key)?,
                        context: context.clone(),
                        record: record.clone(),
                    })
                })
                .collect()
        });
        StoreFuture::ready(Ok(list))
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionMetadata;
    use std::time::Duration;

    const T0: i64 = 1_757_660_000_000;

    fn record(user: Uuid, ttl_ms: u64) -> SessionRecord {
        SessionRecord::new(
            user,
            SessionMetadata::new(),
            T0,
            Duration::from_millis(ttl_ms),
        )
    }

    #[tokio::test]
    async fn expired_records_are_not_returned_and_are_swept() {
        let store = MemoryStore::new();
        let user = Uuid::new_v4();
        let short = SessionId::generate().unwrap();
        let long = SessionId::generate().unwrap();
        let web = AppContext::Web;
        store
            .save(&web, &short, &record(user, 30), T0)
            .await
            .unwrap();
        store
            .save(&web, &long, &record(user, 60_000), T0)
            .await
            .unwrap();
        let later = T0 + 30;
        assert_eq!(store.len(), 2);
        let listed = store
            .list_user_sessions(&user, Scope::AllContexts, later)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, long);
        assert_eq!(store.write(|s| s.sweep(later)), 1);
        assert_eq!(store.len(), 1);
        assert!(store.load(&web, &short, later).await.unwrap().is_none());
        assert!(!store
            .extend(&web, &short, later + 10_000, later)
            .await
            .unwrap());
        // A record is live up to, not including, its expires_at.
        assert!(store
            .load(&web, &long, T0 + 59_999)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .load(&web, &long, T0 + 60_000)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn lookup_of_an_expired_record_removes_it() {
        let store = MemoryStore::new();
        let id = SessionId::generate().unwrap();
        let admin = AppContext::Admin;
        store
            .save(&admin, &id, &record(Uuid::new_v4(), 10), T0)
            .await
            .unwrap();
        assert!(store.load(&admin, &id, T0 + 10).await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_write_sweeps_at_most_every_interval() {
        let store = MemoryStore::new();
        let user = Uuid::new_v4();
        let web = AppContext::Web;
        let id = |_| SessionId::generate().unwrap();
        store
            .save(&web, &id(0), &record(user, 10), T0)
            .await
            .unwrap();
        // The first write swept (nothing): the next sweep is due SWEEP_INTERVAL_MS later.
        store
            .save(&web, &id(1), &record(user, 10), T0 + 20)
            .await
            .unwrap();
        assert_eq!(store.len(), 2, "swept before the interval");
        store
            .save(&web, &id(2), &record(user, 600_000), T0 + SWEEP_INTERVAL_MS)
            .await
            .unwrap();
        assert_eq!(store.len(), 1, "a write after the interval sweeps");
    }

    #[tokio::test]
    async fn per_user_operations_respect_scope() {
        let store = MemoryStore::new();
        let user = Uuid::new_v4();
        let other = Uuid::new_v4();
        for ctx in [AppContext::Web, AppContext::Web, AppContext::Admin] {
            store
                .save(
                    &ctx,
                    &SessionId::generate().unwrap(),
                    &record(user, 60_000),
                    T0,
                )
                .await
                .unwrap();
        }
        store
            .save(
                &AppContext::Web,
                &SessionId::generate().unwrap(),
                &record(other, 60_000),
                T0,
            )
            .await
            .unwrap();
        let web = Scope::Context(&AppContext::Web);
        let all = Scope::AllContexts;
        assert_eq!(
            store
                .list_user_sessions(&user, web, T0)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(store.delete_user_sessions(&user, web, T0).await.unwrap(), 2);
        assert_eq!(
            store
                .list_user_sessions(&user, all, T0)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.delete_user_sessions(&user, all, T0).await.unwrap(), 1);
        assert_eq!(store.len(), 1, "the other user's session is untouched");
    }

    #[tokio::test]
    async fn a_full_store_evicts_the_sessions_closest_to_expiry() {
        let store = MemoryStore::with_capacity(128);
        let web = AppContext::Web;
        let user = Uuid::new_v4();
        // 128 sessions, the i-th expiring i seconds after T0 + 1 h.
        let ids: Vec<SessionId> = (0..128).map(|_| SessionId::generate().unwrap()).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut r = record(user, 3_600_000);
            r.expires_at += i as i64 * 1000;
            store.save(&web, id, &r, T0).await.unwrap();
        }
        assert_eq!(store.len(), 128);
        // One more: the store makes room by evicting the two closest to expiry (128 / 64).
        let newest = SessionId::generate().unwrap();
        store
            .save(&web, &newest, &record(user, 7_200_000), T0)
            .await
            .unwrap();
        assert_eq!(store.len(), 127);
        for id in &ids[..2] {
            assert!(
                store.load(&web, id, T0).await.unwrap().is_none(),
                "not evicted"
            );
        }
        for id in ids[2..].iter().chain([&newest]) {
            assert!(store.load(&web, id, T0).await.unwrap().is_some(), "evicted");
        }
        let listed = store
            .list_user_sessions(&user, Scope::AllContexts, T0)
            .await
            .unwrap();
        assert_eq!(listed.len(), 127, "the index follows the evictions");
        // Expired sessions go first, before any live one is evicted.
        let store = MemoryStore::with_capacity(2);
        store
            .save(&web, &ids[0], &record(user, 10), T0)
            .await
            .unwrap();
        store
            .save(&web, &ids[1], &record(user, 60_000), T0)
            .await
            .unwrap();
        store
            .save(&web, &ids[2], &record(user, 60_000), T0 + 10)
            .await
            .unwrap();
        assert!(store.load(&web, &ids[1], T0 + 10).await.unwrap().is_some());
        assert!(store.load(&web, &ids[2], T0 + 10).await.unwrap().is_some());
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn overwriting_an_id_moves_it_between_user_indexes() {
        let store = MemoryStore::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let id = SessionId::generate().unwrap();
        let all = Scope::AllContexts;
        store
            .save(&AppContext::Web, &id, &record(a, 60_000), T0)
            .await
            .unwrap();
        store
            .save(&AppContext::Web, &id, &record(b, 60_000), T0)
            .await
            .unwrap();
        assert!(store
            .list_user_sessions(&a, all, T0)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.delete_user_sessions(&a, all, T0).await.unwrap(), 0);
        assert_eq!(
            store.list_user_sessions(&b, all, T0).await.unwrap().len(),
            1
        );
    }
}
