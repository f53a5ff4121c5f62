//! What a handler does with its session: log in (with the per-user limit), rotate, log out,
//! revoke all of the user's sessions.

use uuid::Uuid;

use super::{Change, Session, SessionError};
use crate::events::{RevokedScope, SessionEventKind};
use crate::policy::OverLimit;
use crate::store::{Scope, StoreError};
use crate::{SessionId, SessionMetadata, SessionRecord};

/// What [`Session::remove_current`] deleted.
#[derive(Default)]
struct Removed {
    /// A legacy record (those are outside the per-context user index).
    legacy: bool,
    /// Anything at all (nothing: the session had ended already).
    any: bool,
}

impl Session {
    /// Starts a new session for `user_id` and returns its id (for API clients that want a
    /// bearer token; browsers get the cookie).
    ///
    /// The id is always fresh, and the session the request came with, if any, is deleted
    /// first (session fixation). Other sessions of the user, on other devices, are kept.
    ///
    /// # Errors
    /// [`SessionError`] if the store fails or no id can be generated; the request's old
    /// session is then deleted or still intact, never both alive and replaced.
    pub async fn login(
        &self,
        user_id: Uuid,
        metadata: SessionMetadata,
    ) -> Result<SessionId, SessionError> {
        let now = self.now();
        let shared = &self.inner.shared;
        let limit = shared.settings.session_limit;
        if let Some(max) = limit.when(OverLimit::RefuseLogin) {
            // The request's own session is replaced by this login: it does not count.
            let current = self.state().current.as_ref().map(|c| c.id.clone());
            let others = shared
                .store
                .list_user_sessions(&user_id, Scope::Context(&shared.context), now)
                .await?
                .into_iter()
                .filter(|s| Some(&s.id) != current.as_ref())
                .count();
            if others >= max {
                return Err(SessionError::LimitReached);
            }
        }
        let record = SessionRecord::new(user_id, metadata, now, shared.settings.first_ttl());
        let id = self.replace(record, now).await?;
        if let Some(max) = limit.when(OverLimit::EvictLeastRecentlyUsed) {
            if let Err(error) = self.evict_over(&user_id, max, &id, now).await {
                // The login stands; the next one trims the user's sessions again.
                tracing::warn!(context = %shared.context, %error, "could not evict sessions over the per-user limit");
            }
        }
        Ok(id)
    }

    /// Ends the user's least recently used sessions in this context (those closest to
    /// expiry: every use slides the expiry) until at most `max` are left, `keep` among them.
    async fn evict_over(
        &self,
        user_id: &Uuid,
        max: usize,
        keep: &SessionId,
        now: i64,
    ) -> Result<(), StoreError> {
        let shared = &self.inner.shared;
        let mut live = shared
            .store
            .list_user_sessions(user_id, Scope::Context(&shared.context), now)
            .await?;
        if live.len() <= max {
            return Ok(());
        }
        live.retain(|s| s.id != *keep);
        live.sort_by_key(|s| s.record.expires_at);
        let excess = live.len() + 1 - max;
        for evicted in &live[..excess] {
            if shared
                .store
                .delete(&shared.context, &evicted.id, now)
                .await?
            {
                shared.emit(
                    SessionEventKind::Evicted,
                    now,
                    Some(&evicted.id),
                    Some(&evicted.record),
                );
            }
        }
        tracing::debug!(context = %shared.context, evicted = excess, "sessions over the per-user limit evicted");
        Ok(())
    }

    /// Moves the current session to a new id, keeping its user, creation time and expiry
    /// (so rotation never extends the absolute lifetime). Call it on any privilege change.
    /// `Ok(None)` when there is no session to rotate.
    ///
    /// The move is atomic in the store with respect to logout and revocation: if the
    /// session was ended while the request ran (a logout from another tab, an admin's
    /// revoke-all, a rotation by another request), nothing is written, the request is
    /// anonymous from here on, and the answer is [`SessionError::Ended`].
    ///
    /// Such a request never removes the cookie. It cannot tell a session that ended from one
    /// that lives on under a new id: when another request of the same browser rotated it
    /// (say "sign out other devices" in another tab), that response may already have
    /// handed the browser the new id, and a removal arriving after it would sign the
    /// browser out. A cookie left behind for a session that did end authenticates nobody.
    ///
    /// # Errors
    /// [`SessionError::Ended`] as above; otherwise as [`Session::login`].
    pub async fn rotate(&self) -> Result<Option<SessionId>, SessionError> {
        let Some((old, record, legacy)) = self
            .state()
            .current
            .as_ref()
            .map(|c| (c.id.clone(), c.record.to_record(), c.legacy))
        else {
            return Ok(None);
        };
        let new = SessionId::generate()?;
        let now = self.now();
        let shared = &self.inner.shared;
        let (store, context) = (&shared.store, &shared.context);
        let moved = if legacy {
            // A legacy session has no context key to move: take its legacy key (gone if
            // another request ended it), then write it under the context's key.
            if shared.delete_legacy(&old).await? {
                store.delete(context, &old, now).await?;
                store.save(context, &new, &record, now).await?;
                Some(record)
            } else {
                None
            }
        } else {
            // A copy under the legacy key (fallback on) must not revive the old id; it goes
            // first, as in `remove_current`.
            if shared.reads_legacy() {
                shared.delete_legacy(&old).await?;
            }
            store
                .rotate(context, &old, &new, &record.user_id, now)
                .await?
        };
        let Some(record) = moved else {
            tracing::info!(context = %context, "rotation of a session that ended meanwhile refused");
            // No cookie removal: see above.
            self.state().current = None;
            return Err(SessionError::Ended);
        };
        shared.emit(
            SessionEventKind::Rotated { from: old.handle() },
            now,
            Some(&new),
            Some(&record),
        );
        let max_age = shared.settings.cookie_max_age(&record, now);
        self.set_current(new.clone(), record, max_age);
        Ok(Some(new))
    }

    /// Ends the current session server-side at once and removes the cookie.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store could not delete it; the session is then still
    /// alive and the cookie is kept.
    pub async fn logout(&self) -> Result<(), SessionError> {
        let now = self.now();
        let shared = &self.inner.shared;
        // The record is copied for the event only when someone hears events.
        let listening = shared.settings.events.listening();
        let ending = self
            .state()
            .current
            .as_ref()
            .map(|c| (c.id.clone(), listening.then(|| c.record.to_record())));
        let removed = self.remove_current(now).await?;
        self.set_change(Change::Removed);
        // Reported only when this logout ended it (not one a revocation had ended already).
        if let Some((id, record)) = ending.filter(|_| removed.any) {
            shared.emit(SessionEventKind::LoggedOut, now, Some(&id), record.as_ref());
        }
        Ok(())
    }

    /// Ends every session of the current user in `scope` (this one included), server-side
    /// at once, and removes the cookie; copies under the legacy key go too where the
    /// fallback reads them. Returns how many sessions were ended; `0` when the request has
    /// no session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn revoke_all(&self, scope: Scope<'_>) -> Result<u64, SessionError> {
        let Some(user_id) = self.user_id() else {
            return Ok(0);
        };
        let shared = &self.inner.shared;
        let now = self.now();
        // Copies of the user's other sessions under the legacy key (the fallback on for
        // their context) must not outlive the revocation: they go first, as in a logout.
        // Listed only when some context in scope reads them.
        let settings = &shared.settings;
        if settings.legacy_contexts.iter().any(|c| scope.includes(c)) {
            let listed = shared
                .store
                .list_user_sessions(&user_id, scope, now)
                .await?;
            crate::manage::end_legacy_copies(shared.store.as_ref(), settings, &listed).await?;
        }
        let ended = shared
            .store
            .delete_user_sessions(&user_id, scope, now)
            .await?;
        let removed = self.remove_current(now).await;
        let count = ended + removed.as_ref().map_or(0, |r| u64::from(r.legacy));
        // Reported even if removing this request's own copy failed: the others are gone.
        let (scope, context) = match scope {
            Scope::Context(context) => (RevokedScope::Context, context),
            Scope::AllContexts => (RevokedScope::AllContexts, &shared.context),
        };
        shared.emit_with(
            SessionEventKind::Revoked { scope, count },
            now,
            |mut event| {
                event.context = context.clone();
                event.user(user_id)
            },
        );
        removed?;
        self.set_change(Change::Removed);
        Ok(count)
    }

    /// Deletes the current session from the store (a no-op without one).
    async fn remove_current(&self, now: i64) -> Result<Removed, StoreError> {
        let Some((id, legacy)) = self
            .state()
            .current
            .as_ref()
            .map(|c| (c.id.clone(), c.legacy))
        else {
            return Ok(Removed::default());
        };
        // Data changes for a session that is going away are not saved anywhere.
        self.discard_data();
        let shared = &self.inner.shared;
        // While the fallback is on, the session may live under both keys (`migrate_legacy`
        // copies `session:<id>` to the context's key). The legacy key goes first: a migration
        // that copies it right now checks that it still exists after the copy, and deletes
        // its copy when it does not; deleting the context key first would let such a copy
        // outlive this logout.
        let deleted_legacy = if legacy || shared.reads_legacy() {
            shared.delete_legacy(&id).await?
        } else {
            false
        };
        let deleted = shared.store.delete(&shared.context, &id, now).await?;
        let mut state = self.state();
        if state.current.as_ref().is_some_and(|c| c.id == id) {
            state.current = None;
        }
        Ok(Removed {
            legacy: deleted_legacy,
            any: deleted || deleted_legacy,
        })
    }

    async fn replace(&self, record: SessionRecord, now: i64) -> Result<SessionId, SessionError> {
        let id = SessionId::generate()?;
        // Old id first: if that fails nothing changed; if the save below fails the user is
        // logged out, which fails closed.
        let had_session = self.state().current.is_some();
        if self.remove_current(now).await?.legacy {
            tracing::debug!(context = %self.context(), "legacy session replaced by a context-scoped one");
        }
        if had_session {
            // If the save below fails, the browser must not keep the id we just deleted.
            self.set_change(Change::Removed);
        }
        let shared = &self.inner.shared;
        shared
            .store
            .save(&shared.context, &id, &record, now)
            .await?;
        shared.emit(SessionEventKind::Created, now, Some(&id), Some(&record));
        let max_age = shared.settings.cookie_max_age(&record, now);
        self.set_current(id.clone(), record, max_age);
        Ok(id)
    }
}
