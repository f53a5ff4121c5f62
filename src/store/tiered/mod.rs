//! [`TieredStore`]: a fast store in front of a durable one (the TypeScript apps' migration
//! strategy `production-only`).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, DurableRecords, LegacySessions, ListedSession, Loaded, Scope,
    SessionStore, StoreError, StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::feed::{ChangeFeed, FeedListener};
use crate::record::duration_ms;
use crate::{AppContext, SessionId, SessionRecord};

mod capabilities;
mod live;
mod validations;

use live::LiveChange;
use validations::Validations;

/// Validations remembered by default (see [`TieredStore::max_validations`]).
const DEFAULT_MAX_VALIDATIONS: usize = 200_000;

/// Redis (or any fast store) as the fast path, PostgreSQL (or any durable store) as the record
/// of truth.
///
/// - **writes** go to the durable store first, then the fast one (a failed fast write is
///   logged: the next read refills it);
/// - **reads** try the fast store; a miss reads the durable store and refills the fast one,
///   so a Redis restart loses no session — unless the fast store knows the session was
///   deleted on purpose ([`KnownDeletions`](super::KnownDeletions): the TypeScript apps log
///   out by deleting the Redis key only), in which case the logout holds and reaches the
///   durable store too;
/// - the durable store is the **authority**: a fast copy is trusted for at most the
///   revalidation interval (`SESSION_REVALIDATE_SECS`, default 5 s) per session, then the
///   durable record is checked again, so a session revoked there by any app (say,
///   `UPDATE sessions SET revoked = true` from the TypeScript admin panel) stops
///   authenticating within that bound even while a stale fast copy exists. That costs one
///   durable query per session per interval: per request for sessions seen less often than
///   that (with 100,000 active sessions, most of them). Paired with PostgreSQL's
///   notifications ([`notifications`](Self::notifications)) a copy is trusted for a long
///   bound instead, and a revocation by any process ends it at once;
/// - **revocation** reaches both stores; listing reads the durable store;
/// - a fast copy the durable store has **no record of at all** was written by an app that
///   writes only to Redis (the TypeScript apps' `createSession` does): it is served, and
///   Redis stays its authority; a durable record that exists but is revoked or expired wins;
/// - contexts the durable store cannot hold ([`DurableRecords::supports`]: custom contexts on
///   PostgreSQL) live in the fast store alone;
/// - when the fast store fails, reads fall back to the durable store (logged); when the
///   durable store fails, operations fail ([`StoreError`], so `503`), never serving from a
///   copy it cannot check.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_app_sessions::store::{MemoryStore, TieredStore};
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
    validations: Arc<Validations>,
    /// The change feed followed, and the bound while it is heard.
    notified: Option<(Arc<dyn ChangeFeed>, i64)>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("revalidate_ms", &self.revalidate_ms)
            .field("bound_ms", &self.bound_ms())
            .finish_non_exhaustive()
    }
}

/// Hears the change feed: a revocation by any process drops the copy's validation.
impl FeedListener for Validations {
    fn changed(&self, change: &crate::feed::Change) {
        self.apply(change);
    }

    fn health(&self, _healthy: bool) {
        // Lost: checks trusted for the long bound must not outlive it. Back: messages may
        // have been missed meanwhile.
        self.forget_all();
    }
}

impl TieredStore {
    /// `fast` in front of `durable`, revalidating every 5 s.
    pub fn new(fast: Arc<dyn SessionStore>, durable: Arc<dyn SessionStore>) -> Self {
        Self {
            fast,
            durable,
            revalidate_ms: 5_000,
            validations: Arc::new(Validations::new(DEFAULT_MAX_VALIDATIONS)),
            notified: None,
        }
    }

    /// How long a fast copy is trusted before the durable record is checked again
    /// (`Duration::ZERO`: every request). With [`notifications`](Self::notifications), this
    /// is the bound while they are not heard.
    #[must_use]
    pub fn revalidate_after(mut self, interval: Duration) -> Self {
        self.revalidate_ms = duration_ms(interval);
        self
    }

    /// Follows a change feed ([`ChangeFeed`]: PostgreSQL's [`Notifications`], or any other):
    /// while it is heard, a fast copy checked once is trusted for `trust_for` (a safety net,
    /// say 5 minutes), since a revocation, deletion or data change of the session by any
    /// process drops the check at once; while it is not (the listening connection dropped,
    /// PostgreSQL's triggers missing), the [`revalidate_after`](Self::revalidate_after) bound
    /// applies, and every check trusted for longer is dropped. How stale a copy can then be:
    /// the feed's delivery (a few milliseconds), or, for PostgreSQL on a connection that died
    /// without closing, up to three [`HEARTBEAT`](crate::store::postgres::HEARTBEAT)s. A row
    /// *deleted* outright (not revoked) drops the check too, but then the durable store has
    /// no record of the session at all, and its Redis copy is served as a Redis-only
    /// session's (see the crate's known limitations): revoke rows, as this crate does, rather
    /// than delete them.
    ///
    /// [`Notifications`]: crate::store::postgres::Notifications
    #[must_use]
    pub fn notifications<F: ChangeFeed + Clone + 'static>(
        mut self,
        feed: &F,
        trust_for: Duration,
    ) -> Self {
        let listener: Arc<dyn FeedListener> = self.validations.clone();
        feed.follow(Arc::downgrade(&listener));
        self.notified = Some((Arc::new(feed.clone()), duration_ms(trust_for)));
        self
    }

    /// At most this many checked copies are remembered (default 200,000, about 150 bytes
    /// each); past it, sessions not remembered are checked on every request.
    #[must_use]
    pub fn max_validations(self, max: usize) -> Self {
        // In place: the notifications (if followed already) hold this very value.
        self.validations.set_limit(max);
        self
    }

    /// How long a checked copy is trusted now.
    fn bound_ms(&self) -> i64 {
        if let Some((feed, trust_ms)) = &self.notified {
            if feed.is_healthy() {
                return *trust_ms;
            }
        }
        self.revalidate_ms
    }

    fn is_fresh(&self, context: &AppContext, id: &SessionId, now: i64) -> bool {
        self.validations.is_fresh(context, id, now, self.bound_ms())
    }

    fn mark(&self, context: &AppContext, id: &SessionId, now: i64, epoch: u64) {
        self.validations
            .mark(context, id, now, self.bound_ms(), epoch);
    }

    fn forget(&self, context: &AppContext, id: &SessionId) {
        self.validations.forget(context, id);
    }

    /// The store that holds `context`'s sessions durably: contexts the durable store cannot
    /// hold (custom contexts on PostgreSQL) live in the fast store alone.
    fn durable_for(&self, context: &AppContext) -> Option<&dyn SessionStore> {
        self.durable
            .capabilities()
            .supports(context)
            .then_some(self.durable.as_ref())
    }

    /// Whether the durable store holds any record of `id`, live or not. A durable store that
    /// keeps no ended records knows only its live ones.
    async fn durable_holds(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Result<bool, StoreError> {
        match self.durable.capabilities().durable {
            Some(durable) => durable.contains(context, id, now).await,
            None => Ok(self.durable.load(context, id, now).await?.is_some()),
        }
    }

    /// Whether the fast store knows `id` was deleted on purpose (false if it cannot tell).
    async fn deleted_from_fast(
        &self,
        context: &AppContext,
        id: &SessionId,
        user_id: &Uuid,
        now: i64,
    ) -> Result<bool, StoreError> {
        match self.fast.capabilities().deletions {
            Some(deletions) => {
                deletions
                    .deleted_on_purpose(context, id, user_id, now)
                    .await
            }
            None => Ok(false),
        }
    }

    async fn read(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<Loaded>, StoreError> {
        let fast = |found: Option<SessionRecord>| found.map(Loaded::from);
        if self.durable_for(context).is_none() {
            return self.fast.load_with_user(context, id, now).await;
        }
        let mut cached = match self.fast.load(context, id, now).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(context = %context, %error, "fast session store failed; reading the durable store");
                // Sessions the durable store does not hold (written by Redis-only apps) cannot
                // be checked now: the fast store's failure is the answer (503), not "none".
                return match self.durable.load_with_user(context, id, now).await? {
                    Some(loaded) => Ok(Some(loaded)),
                    None => Err(error),
                };
            }
        };
        if cached.is_some() && self.is_fresh(context, id, now) {
            return Ok(fast(cached));
        }
        let epoch = self.validations.epoch();
        match self.durable.load_with_user(context, id, now).await? {
            Some(loaded) => {
                let record = &loaded.record;
                if cached.is_none()
                    && self
                        .deleted_from_fast(context, id, &record.user_id, now)
                        .await?
                {
                    // The index says the key was written: deleted since, or being written
                    // right now (a login or a refill by another instance writes the key
                    // before its index entry, so an entry seen means its key can be seen).
                    // Look again before taking the miss for a logout.
                    cached = self.fast.load(context, id, now).await?;
                    if cached.is_none() {
                        // Deleted from the fast store on purpose (a logout by an app that
                        // only deletes the Redis key): the logout holds, and reaches the
                        // durable store.
                        self.forget(context, id);
                        self.durable.delete(context, id, now).await?;
                        return Ok(None);
                    }
                }
                if cached.is_none() {
                    // Lost with the fast store's data (a restart): refill it.
                    if let Err(error) = self.fast.save(context, id, record, now).await {
                        tracing::warn!(context = %context, %error, "could not refill the fast session store");
                    }
                } else if cached.as_ref().is_some_and(|c| c.data != record.data) {
                    // A data patch that reached only the durable store (the fast half failed,
                    // or a refill overtook it): the durable record wins, within this bound.
                    if let Err(error) = self.fast.save(context, id, record, now).await {
                        tracing::warn!(context = %context, %error, "could not refresh the fast session store");
                    }
                }
                self.mark(context, id, now, epoch);
                Ok(Some(loaded))
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
                if !self.durable_holds(context, id, now).await? {
                    self.mark(context, id, now, epoch);
                    return Ok(Some(Loaded::from(cached)));
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
        let epoch = self.validations.epoch();
        durable.save(context, id, record, now).await?;
        self.fast_best_effort(self.fast.save(context, id, record, now).await);
        self.mark(context, id, now, epoch);
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
        let epoch = self.validations.epoch();
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
            self.mark(context, new, now, epoch);
            return Ok(Some(record));
        }
        if self.durable_holds(context, old, now).await? {
            // Revoked or expired in the durable store: ended, whatever the fast copy says.
            self.fast_best_effort(self.fast.delete(context, old, now).await.map(drop));
            return Ok(None);
        }
        // A Redis-only app's session: the fast store is its authority.
        self.fast.rotate(context, old, new, user_id, now).await
    }

    /// A change of a live record (a slide, a data patch), `change` run on a store: on the
    /// durable store first, which decides; then on the fast copy, best effort (a copy it
    /// lacks is refilled, changed, from the durable store). A session the durable store
    /// never held (a Redis-only app's) is the fast store's alone; one it holds but refuses
    /// (revoked, expired) ends, and its fast copy goes.
    ///
    /// The durable store's answer is the answer: a data patch it refuses over the limits
    /// ([`DataUpdate::OverLimit`]) changes neither store, and one it applies is applied to
    /// the fast copy too, which may refuse it only if it differs (then it is refreshed, as
    /// after a failure).
    async fn change_live<'s, T: LiveChange>(
        &'s self,
        context: &'s AppContext,
        id: &'s SessionId,
        now: i64,
        change: impl Fn(&'s dyn SessionStore) -> StoreFuture<'s, Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(durable) = self.durable_for(context) else {
            return change(self.fast.as_ref()).await;
        };
        let decided = change(durable).await?;
        if decided.is_not_live() {
            if !self.durable_holds(context, id, now).await? {
                // A Redis-only app's session: the fast store is its authority.
                return change(self.fast.as_ref()).await;
            }
            self.forget(context, id);
            self.fast_best_effort(self.fast.delete(context, id, now).await.map(drop));
            return Ok(decided);
        }
        if !decided.is_applied() {
            // Refused by the authority: nothing changed, the fast copy stays as it is.
            return Ok(decided);
        }
        match change(self.fast.as_ref()).await {
            Ok(outcome) if outcome.is_applied() => {}
            // No fast copy to change, a copy that refused it, or the change failed: the next
            // read revalidates against the durable record at once and refreshes a copy that
            // differs. (Deleting the copy instead would read as a logout by a Redis-only app.)
            outcome => {
                if let Err(error) = outcome {
                    tracing::warn!(context = %context, %error, "fast session store write failed; the next read revalidates");
                }
                self.forget(context, id);
            }
        }
        Ok(decided)
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
}

impl SessionStore for TieredStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(async move {
            Ok(self
                .read(context, id, now)
                .await?
                .map(|loaded| loaded.record))
        })
    }

    /// The durable store's user comes along when it joined one (the revalidating read).
    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        StoreFuture::new(self.read(context, id, now))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(self.write(context, id, record, now))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(self.remove(context, id, now))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(self.move_session(context, old, new, user_id, now))
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(self.change_live(context, id, now, move |store| {
            store.extend(context, id, expires_at, now)
        }))
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        StoreFuture::new(self.change_live(context, id, now, move |store| {
            store.update_data(context, id, patch, limits, now)
        }))
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        StoreFuture::new(self.revoke_user(user_id, scope, now))
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        match scope {
            Scope::Context(context) if self.durable_for(context).is_none() => {
                self.fast.list_user_sessions(user_id, scope, now)
            }
            // The durable store's live sessions, plus the fast store's that it has no record
            // of at all: sessions of contexts it cannot hold, and Redis-only sessions (the
            // TypeScript apps' own, or migrated from legacy keys), which `load` serves too.
            // A fast copy the durable store holds ended is not listed: it is ended.
            _ => StoreFuture::new(async move {
                let mut listed = self.durable.list_user_sessions(user_id, scope, now).await?;
                let fast = self.fast.list_user_sessions(user_id, scope, now).await?;
                for session in fast {
                    let known = listed
                        .iter()
                        .any(|l| l.context == session.context && l.id == session.id);
                    if known {
                        continue;
                    }
                    let alone = match self.durable_for(&session.context) {
                        None => true,
                        Some(_) => {
                            !self
                                .durable_holds(&session.context, &session.id, now)
                                .await?
                        }
                    };
                    if alone {
                        listed.push(session);
                    }
                }
                Ok(listed)
            }),
        }
    }

    fn capabilities(&self) -> Capabilities<'_> {
        let (fast, durable) = (self.fast.capabilities(), self.durable.capabilities());
        let mut capabilities = Capabilities::none().durable(self);
        if fast.stats.is_some() || durable.stats.is_some() {
            capabilities = capabilities.stats(self);
        }
        if fast.legacy.is_some() || durable.legacy.is_some() {
            capabilities = capabilities.legacy(self);
        }
        capabilities
    }
}

#[cfg(test)]
mod tests;
