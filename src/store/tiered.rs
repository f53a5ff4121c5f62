//! [`TieredStore`] (a fast store in front of a durable one, the seed's `production-only`
//! strategy) and [`WriteThroughStore`] (the seed's `mock-with-write-through`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use super::{BoxFuture, Scope, SessionInfo, SessionStore, StoreError};
use crate::record::duration_ms;
use crate::{AppContext, SessionId, SessionRecord};

/// Past this many remembered validations, entries older than the interval are dropped.
const VALIDATED_SOFT_LIMIT: usize = 100_000;

/// Redis (or any fast store) as the fast path, PostgreSQL (or any durable store) as the record
/// of truth.
///
/// - **writes** go to the durable store first, then the fast one (a failed fast write is
///   logged: the next read refills it);
/// - **reads** try the fast store; a miss reads the durable store and refills the fast one,
///   so a Redis restart loses no session — unless the fast store knows the session was
///   deleted on purpose ([`SessionStore::knows_deleted`]: the TypeScript apps log out by
///   deleting the Redis key only), in which case the logout holds and reaches the durable
///   store too;
/// - the durable store is the **authority**: a fast copy is trusted for at most the
///   revalidation interval (`SESSION_REVALIDATE_SECS`, default 5 s) per session, then the
///   durable record is checked again, so a session revoked there by any app (say,
///   `UPDATE sessions SET revoked = true` from the TypeScript admin panel) stops
///   authenticating within that bound even while a stale fast copy exists. That costs about
///   one durable query per active session per interval, not one per request;
/// - **revocation** reaches both stores; listing reads the durable store;
/// - a fast copy the durable store has **no record of at all** was written by an app that
///   writes only to Redis (the TypeScript apps' `createSession` does): it is served, and
///   Redis stays its authority; a durable record that exists but is revoked or expired wins;
/// - contexts the durable store cannot hold ([`SessionStore::supports`]: custom contexts on
///   PostgreSQL) live in the fast store alone;
/// - when the fast store fails, reads fall back to the durable store (logged); when the
///   durable store fails, operations fail ([`StoreError`], so `503`), never serving from a
///   copy it cannot check.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_app_sessions::{store::tiered::TieredStore, MemoryStore};
///
/// // In production: a RedisStore in front of a PgSessionStore.
/// let store = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()))
///     .revalidate_after(Duration::from_secs(5));
/// # let _ = store;
/// ```
pub struct TieredStore {
    fast: Arc<dyn SessionStore>,
    durable: Arc<dyn SessionStore>,
    revalidate_ms: i64,
    validated: Mutex<HashMap<(AppContext, SessionId), i64>>,
}

impl TieredStore {
    /// `fast` in front of `durable`, revalidating every 5 s.
    pub fn new(fast: Arc<dyn SessionStore>, durable: Arc<dyn SessionStore>) -> Self {
        Self {
            fast,
            durable,
            revalidate_ms: 5_000,
            validated: Mutex::new(HashMap::new()),
        }
    }

    /// How long a fast copy is trusted before the durable record is checked again
    /// (`Duration::ZERO`: every request).
    #[must_use]
    pub fn revalidate_after(mut self, interval: Duration) -> Self {
        self.revalidate_ms = duration_ms(interval);
        self
    }

    fn validated(&self) -> std::sync::MutexGuard<'_, HashMap<(AppContext, SessionId), i64>> {
        self.validated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_fresh(&self, context: &AppContext, id: &SessionId, now: i64) -> bool {
        self.revalidate_ms > 0
            && self
                .validated()
                .get(&(context.clone(), id.clone()))
                .is_some_and(|at| now - at < self.revalidate_ms)
    }

    fn mark(&self, context: &AppContext, id: &SessionId, now: i64) {
        if self.revalidate_ms == 0 {
            return;
        }
        let mut validated = self.validated();
        if validated.len() >= VALIDATED_SOFT_LIMIT {
            let horizon = now - self.revalidate_ms;
            validated.retain(|_, at| *at > horizon);
        }
        validated.insert((context.clone(), id.clone()), now);
    }

    fn forget(&self, context: &AppContext, id: &SessionId) {
        self.validated().remove(&(context.clone(), id.clone()));
    }

    /// The store that holds `context`'s sessions durably: contexts the durable store cannot
    /// hold (custom contexts on PostgreSQL) live in the fast store alone.
    fn durable_for(&self, context: &AppContext) -> Option<&dyn SessionStore> {
        self.durable
            .supports(context)
            .then_some(self.durable.as_ref())
    }

    async fn read(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if self.durable_for(context).is_none() {
            return self.fast.load(context, id, now).await;
        }
        let cached = match self.fast.load(context, id, now).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(context = %context, %error, "fast session store failed; reading the durable store");
                // Sessions the durable store does not hold (written by Redis-only apps) cannot
                // be checked now: the fast store's failure is the answer (503), not "none".
                return match self.durable.load(context, id, now).await? {
                    Some(record) => Ok(Some(record)),
                    None => Err(error),
                };
            }
        };
        if cached.is_some() && self.is_fresh(context, id, now) {
            return Ok(cached);
        }
        match self.durable.load(context, id, now).await? {
            Some(record) => {
                if cached.is_none() {
                    // Deleted from the fast store on purpose (a logout by an app that only
                    // deletes the Redis key): the logout holds, and reaches the durable store.
                    if self
                        .fast
                        .knows_deleted(context, id, &record.user_id, now)
                        .await?
                    {
                        self.forget(context, id);
                        self.durable.delete(context, id, now).await?;
                        return Ok(None);
                    }
                    // Lost with the fast store's data (a restart): refill it.
                    if let Err(error) = self.fast.save(context, id, &record, now).await {
                        tracing::warn!(context = %context, %error, "could not refill the fast session store");
                    }
                }
                self.mark(context, id, now);
                Ok(Some(record))
            }
            None => {
                let Some(cached) = cached else {
                    self.forget(context, id);
                    return Ok(None);
                };
                // A live fast copy with no durable record at all was written by an app that
                // writes only to Redis (the TypeScript apps' `createSession`): that store
                // is its authority. A durable record that exists but is not live was revoked
                // or expired there: drop the stale copy.
                if !self.durable.contains(context, id, now).await? {
                    self.mark(context, id, now);
                    return Ok(Some(cached));
                }
                self.forget(context, id);
                self.fast_best_effort(self.fast.delete(context, id, now).await.map(drop));
                Ok(None)
            }
        }
    }

    fn fast_best_effort(&self, result: Result<(), StoreError>) {
        if let Err(error) = result {
            tracing::warn!(%error, "fast session store write failed; the durable store is authoritative");
        }
    }

    async fn write(
        &self,
        context: &AppContext,
        id: &SessionId,
        record: &SessionRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(durable) = self.durable_for(context) else {
            return self.fast.save(context, id, record, now).await;
        };
        durable.save(context, id, record, now).await?;
        self.fast_best_effort(self.fast.save(context, id, record, now).await);
        self.mark(context, id, now);
        Ok(())
    }

    async fn remove(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let Some(durable) = self.durable_for(context) else {
            return self.fast.delete(context, id, now).await;
        };
        self.forget(context, id);
        let existed = durable.delete(context, id, now).await?;
        match self.fast.delete(context, id, now).await {
            Ok(deleted) => Ok(existed || deleted),
            // The fast copy of a session the durable store held dies at its next revalidation;
            // one it never held (a Redis-only app's) can only be ended here: report failure.
            Err(error) if !existed => Err(error),
            Err(error) => {
                self.fast_best_effort(Err(error));
                Ok(existed)
            }
        }
    }

    async fn move_session(
        &self,
        context: &AppContext,
        old: &SessionId,
        new: &SessionId,
        user_id: &Uuid,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(durable) = self.durable_for(context) else {
            return self.fast.rotate(context, old, new, user_id, now).await;
        };
        self.forget(context, old);
        // The durable store decides, atomically; the fast copy follows.
        if let Some(record) = durable.rotate(context, old, new, user_id, now).await? {
            let moved = self.fast.rotate(context, old, new, user_id, now).await;
            match moved {
                Ok(Some(_)) => {}
                // No fast copy to move (lost, or failed): write the new one; the old one
                // (if any) is revoked in the durable store and dies at its revalidation.
                Ok(None) | Err(_) => {
                    self.fast_best_effort(moved.map(drop));
                    self.fast_best_effort(self.fast.save(context, new, &record, now).await);
                }
            }
            self.mark(context, new, now);
            return Ok(Some(record));
        }
        if durable.contains(context, old, now).await? {
            // Revoked or expired in the durable store: ended, whatever the fast copy says.
            self.fast_best_effort(self.fast.delete(context, old, now).await.map(drop));
            return Ok(None);
        }
        // A Redis-only app's session: the fast store is its authority.
        self.fast.rotate(context, old, new, user_id, now).await
    }

    async fn slide(
        &self,
        context: &AppContext,
        id: &SessionId,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let Some(durable) = self.durable_for(context) else {
            return self.fast.extend(context, id, expires_at, now).await;
        };
        if !durable.extend(context, id, expires_at, now).await? {
            if !durable.contains(context, id, now).await? {
                // A Redis-only app's session: the fast store is its authority.
                return self.fast.extend(context, id, expires_at, now).await;
            }
            self.forget(context, id);
            self.fast_best_effort(self.fast.delete(context, id, now).await.map(drop));
            return Ok(false);
        }
        self.fast_best_effort(
            self.fast
                .extend(context, id, expires_at, now)
                .await
                .map(drop),
        );
        Ok(true)
    }

    async fn revoke_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        if let Scope::Context(context) = scope {
            if self.durable_for(context).is_none() {
                return self.fast.delete_user_sessions(user_id, scope, now).await;
            }
        }
        let live = self.durable.list_user_sessions(user_id, scope, now).await?;
        let revoked = self
            .durable
            .delete_user_sessions(user_id, scope, now)
            .await?;
        for session in &live {
            self.forget(&session.context, &session.id);
            self.fast_best_effort(
                self.fast
                    .delete(&session.context, &session.id, now)
                    .await
                    .map(drop),
            );
        }
        // Copies the durable store does not list go too; this is the only place they can be
        // ended, so a failure here is reported.
        let fast_only = self.fast.delete_user_sessions(user_id, scope, now).await?;
        Ok(revoked.max(fast_only))
    }

    async fn read_legacy(
        &self,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self.fast.load_legacy(id, now).await {
            Ok(Some(record)) => return Ok(Some(record)),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "fast store failed on a legacy lookup"),
        }
        self.durable.load_legacy(id, now).await
    }

    async fn remove_legacy(&self, id: &SessionId) -> Result<bool, StoreError> {
        let durable = self.durable.delete_legacy(id).await?;
        let fast = match self.fast.delete_legacy(id).await {
            Ok(deleted) => deleted,
            Err(error) => {
                self.fast_best_effort(Err(error));
                false
            }
        };
        Ok(durable || fast)
    }
}

impl SessionStore for TieredStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.read(context, id, now))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(context, id, record, now))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.remove(context, id, now))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.move_session(context, old, new, user_id, now))
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.slide(context, id, expires_at, now))
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.revoke_user(user_id, scope, now))
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        match scope {
            Scope::Context(context) if self.durable_for(context).is_none() => {
                self.fast.list_user_sessions(user_id, scope, now)
            }
            _ => self.durable.list_user_sessions(user_id, scope, now),
        }
    }

    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        match self.durable_for(context) {
            Some(durable) => durable.contains(context, id, now),
            None => self.fast.contains(context, id, now),
        }
    }

    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.read_legacy(id, now))
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.remove_legacy(id))
    }
}

/// Serves every read from `primary` (memory) and writes through to `warm` (the real
/// backends), logging but not failing on their errors: the seed's `mock-with-write-through`,
/// for warming Redis and PostgreSQL before switching to them.
pub struct WriteThroughStore {
    primary: Arc<dyn SessionStore>,
    warm: Arc<dyn SessionStore>,
}

impl WriteThroughStore {
    /// Reads from `primary`; every write also goes to `warm`.
    pub fn new(primary: Arc<dyn SessionStore>, warm: Arc<dyn SessionStore>) -> Self {
        Self { primary, warm }
    }

    fn warm_result<T>(result: Result<T, StoreError>) {
        if let Err(error) = result {
            tracing::warn!(%error, "write-through to the real session backends failed");
        }
    }
}

impl SessionStore for WriteThroughStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.primary.load(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.primary.save(context, id, record, now).await?;
            Self::warm_result(self.warm.save(context, id, record, now).await);
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let existed = self.primary.delete(context, id, now).await?;
            Self::warm_result(self.warm.delete(context, id, now).await);
            Ok(existed)
        })
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(async move {
            let moved = self.primary.rotate(context, old, new, user_id, now).await?;
            if let Some(record) = &moved {
                match self.warm.rotate(context, old, new, user_id, now).await {
                    Ok(Some(_)) => {}
                    Ok(None) => Self::warm_result(self.warm.save(context, new, record, now).await),
                    Err(error) => Self::warm_result::<()>(Err(error)),
                }
            } else {
                Self::warm_result(self.warm.delete(context, old, now).await);
            }
            Ok(moved)
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let extended = self.primary.extend(context, id, expires_at, now).await?;
            Self::warm_result(self.warm.extend(context, id, expires_at, now).await);
            Ok(extended)
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let removed = self
                .primary
                .delete_user_sessions(user_id, scope, now)
                .await?;
            Self::warm_result(self.warm.delete_user_sessions(user_id, scope, now).await);
            Ok(removed)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        self.primary.list_user_sessions(user_id, scope, now)
    }

    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.primary.load_legacy(id, now)
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self.primary.delete_legacy(id).await?;
            Self::warm_result(self.warm.delete_legacy(id).await);
            Ok(deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, SessionMetadata};

    const NOW: i64 = 1_757_660_000_000;

    fn record() -> SessionRecord {
        SessionRecord::new(
            Uuid::new_v4(),
            SessionMetadata::new(),
            NOW,
            Duration::from_secs(60),
        )
    }

    // Revocation at the source needs a durable store that keeps revoked records
    // (PostgreSQL): tests/pg_tiered.rs covers it against a real one.

    #[tokio::test]
    async fn a_miss_refills_the_fast_store() {
        let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
        let tiered = TieredStore::new(Arc::new(fast.clone()), Arc::new(durable.clone()))
            .revalidate_after(Duration::ZERO);
        let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
        durable.save(&ctx, &id, &rec, NOW).await.unwrap();
        assert_eq!(
            tiered.load(&ctx, &id, NOW).await.unwrap(),
            Some(rec.clone())
        );
        assert_eq!(
            fast.load(&ctx, &id, NOW).await.unwrap(),
            Some(rec),
            "refilled"
        );
    }

    #[tokio::test]
    async fn a_fast_copy_the_durable_store_never_held_is_served() {
        // What a Redis-only writer (the TypeScript apps) leaves: no durable record at all.
        let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
        let tiered = TieredStore::new(Arc::new(fast.clone()), Arc::new(durable.clone()))
            .revalidate_after(Duration::ZERO);
        let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
        fast.save(&ctx, &id, &rec, NOW).await.unwrap();
        assert_eq!(tiered.load(&ctx, &id, NOW).await.unwrap(), Some(rec));
        assert!(durable.is_empty(), "not copied into the durable store");
    }

    #[tokio::test]
    async fn contexts_the_durable_store_cannot_hold_stay_in_the_fast_store() {
        struct WebAndAdminOnly(MemoryStore);
        impl SessionStore for WebAndAdminOnly {
            fn load<'a>(
                &'a self,
                c: &'a AppContext,
                id: &'a SessionId,
                now: i64,
            ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
                self.0.load(c, id, now)
            }
            fn save<'a>(
                &'a self,
                c: &'a AppContext,
                id: &'a SessionId,
                r: &'a SessionRecord,
                now: i64,
            ) -> BoxFuture<'a, Result<(), StoreError>> {
                self.0.save(c, id, r, now)
            }
            fn delete<'a>(
                &'a self,
                c: &'a AppContext,
                id: &'a SessionId,
                now: i64,
            ) -> BoxFuture<'a, Result<bool, StoreError>> {
                self.0.delete(c, id, now)
            }
            fn extend<'a>(
                &'a self,
                c: &'a AppContext,
                id: &'a SessionId,
                at: i64,
                now: i64,
            ) -> BoxFuture<'a, Result<bool, StoreError>> {
                self.0.extend(c, id, at, now)
            }
            fn rotate<'a>(
                &'a self,
                c: &'a AppContext,
                old: &'a SessionId,
                new: &'a SessionId,
                u: &'a Uuid,
                now: i64,
            ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
                self.0.rotate(c, old, new, u, now)
            }
            fn delete_user_sessions<'a>(
                &'a self,
                u: &'a Uuid,
                s: Scope<'a>,
                now: i64,
            ) -> BoxFuture<'a, Result<u64, StoreError>> {
                self.0.delete_user_sessions(u, s, now)
            }
            fn list_user_sessions<'a>(
                &'a self,
                u: &'a Uuid,
                s: Scope<'a>,
                now: i64,
            ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
                self.0.list_user_sessions(u, s, now)
            }
            fn supports(&self, context: &AppContext) -> bool {
                !matches!(context, AppContext::Custom(_))
            }
        }
        let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
        let tiered = TieredStore::new(
            Arc::new(fast.clone()),
            Arc::new(WebAndAdminOnly(durable.clone())),
        );
        let bot = AppContext::custom("telegram-bot").unwrap();
        let (id, rec) = (SessionId::generate().unwrap(), record());
        tiered.save(&bot, &id, &rec, NOW).await.unwrap();
        assert!(durable.is_empty());
        assert_eq!(
            tiered.load(&bot, &id, NOW).await.unwrap(),
            Some(rec.clone())
        );
        assert!(tiered.delete(&bot, &id, NOW).await.unwrap());
        assert!(fast.is_empty());
    }

    #[tokio::test]
    async fn write_through_serves_the_primary_and_warms_the_rest() {
        let (primary, warm) = (MemoryStore::new(), MemoryStore::new());
        let store = WriteThroughStore::new(Arc::new(primary.clone()), Arc::new(warm.clone()));
        let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
        store.save(&ctx, &id, &rec, NOW).await.unwrap();
        assert!(warm.load(&ctx, &id, NOW).await.unwrap().is_some());
        warm.delete(&ctx, &id, NOW).await.unwrap();
        assert!(
            store.load(&ctx, &id, NOW).await.unwrap().is_some(),
            "served from the primary"
        );
        store.delete(&ctx, &id, NOW).await.unwrap();
        assert!(primary.is_empty());
    }
}
