//! The [`Session`] handle (login, logout, rotate) and [`CurrentUser`].

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::HeaderValue;
use uuid::Uuid;

use crate::extract::CredentialSource;
use crate::id::RandomError;
use crate::layer::Shared;
use crate::store::{Scope, StoreError};
use crate::{AppContext, SessionId, SessionMetadata, SessionRecord};

/// The authenticated user of a request, inserted by [`SessionLayer`](crate::SessionLayer).
///
/// Present in the request extensions only when a valid session of the layer's context
/// resolved to a user the context admits. Dereferences to the user.
///
/// ```
/// use std::sync::Arc;
/// use tower_app_sessions::{CurrentUser, Role, User};
/// let current = CurrentUser::new(Arc::new(User::new("ada@example.com", Role::Admin)));
/// assert_eq!(current.email, "ada@example.com");
/// ```
pub struct CurrentUser<U = crate::User> {
    user: Arc<U>,
}

impl<U> CurrentUser<U> {
    /// Wraps a user (the layer does this; useful in tests of handlers).
    pub fn new(user: Arc<U>) -> Self {
        Self { user }
    }

    /// The shared user.
    pub fn arc(&self) -> &Arc<U> {
        &self.user
    }

    /// Takes the shared user out.
    pub fn into_inner(self) -> Arc<U> {
        self.user
    }
}

impl<U> Clone for CurrentUser<U> {
    fn clone(&self) -> Self {
        Self {
            user: Arc::clone(&self.user),
        }
    }
}

impl<U> Deref for CurrentUser<U> {
    type Target = U;
    fn deref(&self) -> &U {
        &self.user
    }
}

impl<U: fmt::Debug> fmt::Debug for CurrentUser<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrentUser").field(&self.user).finish()
    }
}

/// What the layer concluded about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// No valid session: no or malformed credential, unknown, expired, revoked or foreign
    /// session, deleted user, or a user the context does not admit.
    Anonymous,
    /// A valid session resolved to a user ([`CurrentUser`] is in the extensions).
    Authenticated,
    /// A backend failed, so the request could not be authenticated. Routes that require a
    /// user answer `503`.
    Unavailable,
}

/// Why a [`Session`] operation failed. Nothing was half-done that could let an old id live on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No id could be generated.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The session was logged out, revoked or expired while the request ran, so it could not
    /// be rotated; nothing was written and the request is anonymous from here on (`401`).
    #[error("the session ended while the request ran")]
    Ended,
    /// The user already has the most sessions the layer allows in this context and the
    /// layer refuses new logins then ([`OverLimit::RefuseLogin`]); nothing was written
    /// (`409` in axum handlers).
    #[error("the user has too many sessions")]
    LimitReached,
}

/// What a login does when the user already has the most sessions
/// [`SessionLayer::max_sessions_per_user`](crate::SessionLayer::max_sessions_per_user)
/// allows in the layer's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverLimit {
    /// The new session is made and the least recently used ones (those closest to expiry,
    /// since every use slides it) end at once. The default.
    #[default]
    EvictLeastRecentlyUsed,
    /// The login is refused ([`SessionError::LimitReached`]); the user signs out elsewhere
    /// first.
    RefuseLogin,
}

/// A per-user session limit of a layer: at most `max` sessions in its context (`0`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SessionLimit {
    pub(crate) max: usize,
    pub(crate) over: OverLimit,
}

impl SessionLimit {
    /// The limit, if there is one and it is enforced with `over`.
    fn when(self, over: OverLimit) -> Option<usize> {
        (self.max > 0 && self.over == over).then_some(self.max)
    }
}

/// The request's session: inspect it, log in, log out, rotate the id.
///
/// The layer puts one in every request's extensions, anonymous ones included (a login
/// request is anonymous). Changes are written to the store at once; the response then gets
/// exactly one `Set-Cookie` (a new id, or a removal on logout) if, and only if, the handler
/// changed something, and never when the request was authenticated by a bearer token.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{routing::post, Extension, Router};
/// use tower::ServiceExt;
/// use tower_app_sessions::{AppContext, Session, SessionLayer, SessionMetadata};
///
/// let user_id = uuid::Uuid::new_v4();
/// let app = Router::new()
///     .route("/login", post(move |Extension(session): Extension<Session>| async move {
///         session.login(user_id, SessionMetadata::new()).await.map(|_| "welcome").map_err(|_| "try later")
///     }))
///     .layer(SessionLayer::for_context(AppContext::Web));
///
/// let req = http::Request::post("/login").body(axum::body::Body::empty()).unwrap();
/// let res = app.oneshot(req).await.unwrap();
/// assert!(res.headers()["set-cookie"].to_str().unwrap().starts_with("sessionId="));
/// # });
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    source: Option<CredentialSource>,
    status: SessionStatus,
    state: Mutex<State>,
    /// Set whenever `state.change` is: most requests change nothing, and the response path
    /// then needs no lock.
    changed: AtomicBool,
}

struct State {
    current: Option<Current>,
    change: Change,
}

struct Current {
    id: SessionId,
    record: SessionRecord,
    /// Loaded through the pre-migration, context-less key.
    legacy: bool,
}

enum Change {
    None,
    Issued { id: SessionId, max_age: Duration },
    Removed,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("context", &self.inner.shared.context)
            .field("status", &self.inner.status)
            .field("user_id", &self.user_id())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        source: Option<CredentialSource>,
        status: SessionStatus,
        current: Option<(SessionId, SessionRecord, bool)>,
    ) -> Self {
        let current = current.map(|(id, record, legacy)| Current { id, record, legacy });
        Self {
            inner: Arc::new(Inner {
                shared,
                source,
                status,
                state: Mutex::new(State {
                    current,
                    change: Change::None,
                }),
                changed: AtomicBool::new(false),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Critical sections are plain assignments; a poisoned lock holds consistent data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The layer's application context.
    pub fn context(&self) -> &AppContext {
        &self.inner.shared.context
    }

    /// What the layer concluded when the request came in.
    pub fn status(&self) -> SessionStatus {
        self.inner.status
    }

    /// Where the request's credential came from, if it had a valid-looking one.
    pub fn credential_source(&self) -> Option<CredentialSource> {
        self.inner.source
    }

    /// The user of the current session (after a login in this request: the new one).
    pub fn user_id(&self) -> Option<Uuid> {
        self.state().current.as_ref().map(|c| c.record.user_id)
    }

    /// A copy of the current session's record.
    pub fn record(&self) -> Option<SessionRecord> {
        self.state().current.as_ref().map(|c| c.record.clone())
    }

    /// The current session's rows in the web app's own database (`DATABASE_WEB_URL`):
    /// `Some` only in the `web` context, with a web database configured, for a request with
    /// a session (feature `postgres`).
    #[cfg(feature = "postgres")]
    pub fn web(&self) -> Option<crate::webdb::WebSession> {
        let shared = &self.inner.shared;
        let db = shared
            .settings
            .web_db
            .as_ref()
            .filter(|_| shared.context == AppContext::Web)?;
        let state = self.state();
        let current = state.current.as_ref()?;
        Some(db.for_session(
            current.id.clone(),
            current.record.user_id,
            current.record.expires_at,
        ))
    }

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
            shared
                .store
                .delete(&shared.context, &evicted.id, now)
                .await?;
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
    /// revoke-all), nothing is written, the request is anonymous from here on, its cookie is
    /// removed, and the answer is [`SessionError::Ended`].
    ///
    /// # Errors
    /// [`SessionError::Ended`] as above; otherwise as [`Session::login`].
    pub async fn rotate(&self) -> Result<Option<SessionId>, SessionError> {
        let Some((old, record, legacy)) = self
            .state()
            .current
            .as_ref()
            .map(|c| (c.id.clone(), c.record.clone(), c.legacy))
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
            if store.delete_legacy(&old).await? {
                store.delete(context, &old, now).await?;
                store.save(context, &new, &record, now).await?;
                Some(record)
            } else {
                None
            }
        } else {
            // A copy under the legacy key (fallback on) must not revive the old id; it goes
            // first, as in `remove_current`.
            if shared.legacy_active() {
                store.delete_legacy(&old).await?;
            }
            store
                .rotate(context, &old, &new, &record.user_id, now)
                .await?
        };
        let Some(record) = moved else {
            tracing::info!(context = %context, "rotation of a session that ended meanwhile refused");
            self.state().current = None;
            self.set_change(Change::Removed);
            return Err(SessionError::Ended);
        };
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
        self.remove_current(self.now()).await?;
        self.set_change(Change::Removed);
        Ok(())
    }

    /// Ends every session of the current user in `scope` (this one included), server-side
    /// at once, and removes the cookie. Returns how many sessions were ended; `0` when the
    /// request has no session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn revoke_all(&self, scope: Scope<'_>) -> Result<u64, SessionError> {
        let Some(user_id) = self.user_id() else {
            return Ok(0);
        };
        let shared = &self.inner.shared;
        let now = self.now();
        let ended = shared
            .store
            .delete_user_sessions(&user_id, scope, now)
            .await?;
        let legacy = self.remove_current(now).await?;
        self.set_change(Change::Removed);
        Ok(ended + u64::from(legacy))
    }

    /// Deletes the current session from the store (a no-op without one). Returns whether a
    /// legacy record was deleted (those are outside the per-context user index).
    async fn remove_current(&self, now: i64) -> Result<bool, StoreError> {
        let Some((id, legacy)) = self
            .state()
            .current
            .as_ref()
            .map(|c| (c.id.clone(), c.legacy))
        else {
            return Ok(false);
        };
        let shared = &self.inner.shared;
        // While the fallback is on, the session may live under both keys (`migrate_legacy`
        // copies `session:<id>` to the context's key). The legacy key goes first: a migration
        // that copies it right now checks that it still exists after the copy, and deletes
        // its copy when it does not; deleting the context key first would let such a copy
        // outlive this logout.
        let deleted_legacy = if legacy || shared.legacy_active() {
            shared.store.delete_legacy(&id).await?
        } else {
            false
        };
        shared.store.delete(&shared.context, &id, now).await?;
        let mut state = self.state();
        if state.current.as_ref().is_some_and(|c| c.id == id) {
            state.current = None;
        }
        Ok(deleted_legacy)
    }

    async fn replace(&self, record: SessionRecord, now: i64) -> Result<SessionId, SessionError> {
        let id = SessionId::generate()?;
        // Old id first: if that fails nothing changed; if the save below fails the user is
        // logged out, which fails closed.
        let had_session = self.state().current.is_some();
        if self.remove_current(now).await? {
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
        let max_age = shared.settings.cookie_max_age(&record, now);
        self.set_current(id.clone(), record, max_age);
        Ok(id)
    }

    /// Makes `id` the request's session and has the response hand it to the browser.
    fn set_current(&self, id: SessionId, record: SessionRecord, max_age: Duration) {
        let mut state = self.state();
        state.change = Change::Issued {
            id: id.clone(),
            max_age,
        };
        state.current = Some(Current {
            id,
            record,
            legacy: false,
        });
        self.inner.changed.store(true, Ordering::Release);
    }

    /// The layer's clock reading.
    fn now(&self) -> i64 {
        self.inner.shared.settings.clock.now_ms()
    }

    fn set_change(&self, change: Change) {
        self.state().change = change;
        self.inner.changed.store(true, Ordering::Release);
    }

    /// Writes the `Set-Cookie` the handler's changes call for, if any.
    pub(crate) fn apply<B>(&self, response: &mut http::Response<B>) {
        if !self.inner.changed.load(Ordering::Acquire) {
            return;
        }
        // API clients that authenticate with a bearer token never get cookies. (A stale or
        // unknown bearer does not count: that request was anonymous.)
        if self.inner.source == Some(CredentialSource::Bearer)
            && self.inner.status != SessionStatus::Anonymous
        {
            return;
        }
        let cookie = &self.inner.shared.settings.cookie;
        let value = match &self.state().change {
            Change::None => return,
            Change::Issued { id, max_age } => cookie.issue(id, *max_age),
            Change::Removed => cookie.removal(),
        };
        if let Some(value) = value {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, value);
            // A response that hands out or withdraws a session must not be stored by a shared
            // cache and replayed to someone else; the handler's own policy, if any, stands.
            if !headers.contains_key(CACHE_CONTROL) {
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
        }
    }
}
