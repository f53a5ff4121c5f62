//! [`MemoryStore`]: the embedded default backend.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

use super::{ready, BoxFuture, Scope, SessionInfo, SessionStore, StoreError};
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
/// ```
/// use tower_app_sessions::MemoryStore;
/// let store = MemoryStore::new();
/// let same_data = store.clone();
/// assert_eq!(store.len(), same_data.len());
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    sessions: ByContext,
    by_user: HashMap<Uuid, HashSet<(AppContext, SessionId)>>,
    last_sweep_ms: i64,
}

/// The records of each context. There are a handful of contexts, so finding one by equality
/// is cheaper than hashing it on every lookup.
#[derive(Default)]
struct ByContext(Vec<(AppContext, HashMap<SessionId, SessionRecord>)>);

impl ByContext {
    fn get(&self, context: &AppContext) -> Option<&HashMap<SessionId, SessionRecord>> {
        self.0.iter().find(|(c, _)| c == context).map(|(_, m)| m)
    }

    fn get_mut(&mut self, context: &AppContext) -> Option<&mut HashMap<SessionId, SessionRecord>> {
        self.0
            .iter_mut()
            .find(|(c, _)| c == context)
            .map(|(_, m)| m)
    }

    fn entry(&mut self, context: &AppContext) -> &mut HashMap<SessionId, SessionRecord> {
        let at = match self.0.iter().position(|(c, _)| c == context) {
            Some(at) => at,
            None => {
                self.0.push((context.clone(), HashMap::new()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    fn iter(&self) -> impl Iterator<Item = (&AppContext, &HashMap<SessionId, SessionRecord>)> {
        self.0.iter().map(|(c, m)| (c, m))
    }
}

impl State {
    fn remove(&mut self, context: &AppContext, id: &SessionId) -> Option<SessionRecord> {
        let record = self.sessions.get_mut(context)?.remove(id)?;
        if let Some(ids) = self.by_user.get_mut(&record.user_id) {
            ids.remove(&(context.clone(), id.clone()));
            if ids.is_empty() {
                self.by_user.remove(&record.user_id);
            }
        }
        Some(record)
    }

    fn insert(&mut self, context: &AppContext, id: &SessionId, record: SessionRecord) {
        self.by_user
            .entry(record.user_id)
            .or_default()
            .insert((context.clone(), id.clone()));
        self.sessions.entry(context).insert(id.clone(), record);
    }

    fn sweep(&mut self, now: i64) -> usize {
        let expired: Vec<(AppContext, SessionId)> = self
            .sessions
            .iter()
            .flat_map(|(ctx, map)| {
                map.iter()
                    .filter(|(_, r)| r.is_expired(now))
                    .map(move |(id, _)| (ctx.clone(), id.clone()))
            })
            .collect();
        for (ctx, id) in &expired {
            self.remove(ctx, id);
        }
        self.last_sweep_ms = now;
        expired.len()
    }

    fn live(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<&SessionRecord> {
        self.sessions
            .get(context)?
            .get(id)
            .filter(|r| !r.is_expired(now))
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.read(|s| s.sessions.iter().map(|(_, m)| m.len()).sum())
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record now; returns how many were removed.
    pub fn sweep(&self) -> usize {
        self.write(|s| s.sweep(now_ms()))
    }

    /// The live record of `id` in `context`; an expired one is removed now rather than
    /// waiting for the sweep.
    fn get(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<SessionRecord> {
        let found = self.read(|s| match s.sessions.get(context).and_then(|m| m.get(id)) {
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

    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // (each operation is a few map calls), so a poisoned lock is simply taken over.
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        ready(Ok(self.get(context, id, now)))
    }

    fn load_now(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Option<Result<Option<SessionRecord>, StoreError>> {
        Some(Ok(self.get(context, id, now)))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(|s| {
            if now - s.last_sweep_ms >= SWEEP_INTERVAL_MS {
                s.sweep(now);
            }
            // Replacing a record of another user must not leave it in that user's index.
            s.remove(context, id);
            s.insert(context, id, record.clone());
        });
        ready(Ok(()))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(Ok(self.write(|s| {
            s.remove(context, id).is_some_and(|r| !r.is_expired(now))
        })))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        _user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        // One critical section: a delete either ran before (nothing to move) or runs after
        // (and finds the record under `new` through the user's index).
        let moved = self.write(|s| {
            s.live(context, old, now)?;
            let record = s.remove(context, old)?;
            s.insert(context, new, record.clone());
            Some(record)
        });
        ready(Ok(moved))
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let extended =
            self.write(
                |s| match s.sessions.get_mut(context).and_then(|m| m.get_mut(id)) {
                    Some(r) if !r.is_expired(now) => {
                        r.expires_at = expires_at;
                        true
                    }
                    _ => false,
                },
            );
        ready(Ok(extended))
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let removed = self.write(|s| {
            let targets: Vec<(AppContext, SessionId)> = s
                .by_user
                .get(user_id)
                .map(|ids| {
                    ids.iter()
                        .filter(|(ctx, _)| in_scope(ctx, scope))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            targets
                .iter()
                .filter_map(|(ctx, id)| s.remove(ctx, id))
                .filter(|r| !r.is_expired(now))
                .count() as u64
        });
        ready(Ok(removed))
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        let list = self.read(|s| {
            let Some(ids) = s.by_user.get(user_id) else {
                return Vec::new();
            };
            ids.iter()
                .filter(|(ctx, _)| in_scope(ctx, scope))
                .filter_map(|(ctx, id)| {
                    s.live(ctx, id, now).map(|record| SessionInfo {
                        id: id.clone(),
                        context: ctx.clone(),
                        record: record.clone(),
                    })
                })
                .collect()
        });
        ready(Ok(list))
    }
}

fn in_scope(context: &AppContext, scope: Scope<'_>) -> bool {
    match scope {
        Scope::Context(wanted) => context == wanted,
        Scope::AllContexts => true,
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
