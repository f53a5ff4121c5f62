//! [`MemoryStore`]: the embedded default backend.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, ListedSession, Scope, SessionStore, StoreError, StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::record::now_ms;
use crate::telemetry::{StoreMetrics, StoreOp};
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
/// A session costs about 470 bytes of heap at most with a 100-byte user agent and no data
/// (ids are stored once, shared by the map and the per-user index; user agents are cut to
/// 512 bytes); its data adds what it holds, which the layer's limits bound (16 KiB of JSON
/// and 256 keys by default), enforced here under the lock.
///
/// ```
/// use tower_app_sessions::MemoryStore;
/// let store = MemoryStore::with_capacity(100_000);
/// let same_data = store.clone();
/// assert_eq!(store.len(), same_data.len());
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<RwLock<State>>,
    metrics: StoreMetrics,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            metrics: StoreMetrics::new("memory"),
        }
    }
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
        self.metrics
            .ready(StoreOp::Load, || Ok(self.get(context, id, now)))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.metrics.ready(StoreOp::Save, || {
            self.write(|s| {
                if now - s.last_sweep_ms >= SWEEP_INTERVAL_MS {
                    s.sweep(now);
                }
                s.insert(context, id, record.bounded().into_owned(), now);
            });
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics.ready(StoreOp::Delete, || {
            Ok(self.write(|s| s.remove(context, id).is_some_and(|r| !r.is_expired(now))))
        })
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
        self.metrics.ready(StoreOp::Rotate, || {
            Ok(self.write(|s| {
                s.live(context, old, now)?;
                let record = s.remove(context, old)?;
                s.insert(context, new, record.clone(), now);
                Some(record)
            }))
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics.ready(StoreOp::Extend, || {
            Ok(self.write(|s| {
                s.live_mut(context, id, now)
                    .map(|r| r.expires_at = expires_at)
                    .is_some()
            }))
        })
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        // Under the lock: a concurrent patch is applied before or after this one, key by key,
        // and each is measured against the data the other left. The data keeps its size, so
        // measuring costs the patch's keys only.
        self.metrics.ready(StoreOp::UpdateData, || {
            Ok(self.write(|s| {
                let Some(record) = s.live_mut(context, id, now) else {
                    return DataUpdate::NotLive;
                };
                if !limits.admits(record.data.size(), record.data.size_with(patch)) {
                    return DataUpdate::OverLimit;
                }
                record.data.apply(patch);
                DataUpdate::Applied
            }))
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.metrics.ready(StoreOp::DeleteUserSessions, || {
            Ok(self.write(|s| {
                s.of_user(user_id, scope)
                    .into_iter()
                    .filter_map(|(slot, key)| s.remove_at(slot, &key))
                    .filter(|r| !r.is_expired(now))
                    .count() as u64
            }))
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.metrics.ready(StoreOp::ListUserSessions, || {
            Ok(self.list(user_id, scope, now))
        })
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().stats(self)
    }
}

/// Live sessions per context, counted under the read lock: one pass over the records,
/// asked for by an operator (never on the request path), so writers wait for that pass only.
impl crate::stats::StoreStats for MemoryStore {
    fn stats(&self, now: i64) -> StoreFuture<'_, Result<crate::stats::SessionStats, StoreError>> {
        let mut stats = crate::stats::SessionStats::default();
        self.read(|s| {
            for (context, map) in &s.contexts {
                let live = map.values().filter(|r| !r.is_expired(now)).count();
                // A context whose sessions all ended keeps its slot: report only those with
                // something in them, as Redis's SCAN does.
                if live > 0 {
                    stats.context(context.as_str()).memory_sessions = Some(live as u64);
                }
            }
        });
        StoreFuture::ready(Ok(stats))
    }
}

impl MemoryStore {
    fn list(&self, user_id: &Uuid, scope: Scope<'_>, now: i64) -> Vec<ListedSession> {
        self.read(|s| {
            s.of_user(user_id, scope)
                .into_iter()
                .filter_map(|(slot, key)| {
                    let (context, map) = &s.contexts[slot];
                    let record = map.get(&key).filter(|r| !r.is_expired(now))?;
                    Some(ListedSession {
                        id: SessionId::parse(&key)?,
                        context: context.clone(),
                        record: record.clone(),
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests;
