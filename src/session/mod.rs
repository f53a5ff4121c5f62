//! The [`Session`] handle (login, logout, rotate) and [`CurrentUser`].

mod data;
mod held;
mod lifecycle;
mod manage;
mod rejection;
#[cfg_attr(not(feature = "throttle"), allow(unused_imports))]
pub(crate) use rejection::quietly as rejection_quietly;

pub(crate) use held::HeldRecord;
pub use manage::ReauthenticationRequired;

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::HeaderValue;
use uuid::Uuid;

use crate::credential::CredentialSource;
use crate::data::{DataError, Draft};
use crate::id::RandomError;
use crate::policy::Settings;
use crate::store::StoreError;
use crate::store::{SessionStore, StoreFuture};
use crate::{AppContext, SessionId, SessionRecord};

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
    /// The session was logged out, revoked, expired or rotated by another request while
    /// this one ran, so it could not be rotated nor its data saved; nothing was written and
    /// the request is anonymous from here on (`401`, the cookie left as it is: see
    /// [`Session::rotate`]).
    #[error("the session ended while the request ran")]
    Ended,
    /// The user already has the most sessions the layer allows in this context and the
    /// layer refuses new logins then ([`OverLimit::RefuseLogin`](crate::OverLimit::RefuseLogin)); nothing was written
    /// (`409` in axum handlers).
    #[error("the user has too many sessions")]
    LimitReached,
    /// A session data operation was refused ([`DataError`]); nothing was written. In axum
    /// handlers: `401` without a session, `413` over the size limit, `422` otherwise.
    #[error(transparent)]
    Data(#[from] DataError),
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
/// use tower_app_sessions::{AppContext, MemoryUsers, Session, SessionLayer, SessionMetadata};
///
/// let user_id = uuid::Uuid::new_v4();
/// let app = Router::new()
///     .route("/login", post(move |Extension(session): Extension<Session>| async move {
///         session.login(user_id, SessionMetadata::new()).await.map(|_| "welcome").map_err(|_| "try later")
///     }))
///     .layer(SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()));
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
    /// Set while `state.draft` holds changes not saved yet.
    unsaved: AtomicBool,
}

struct State {
    current: Option<Current>,
    change: Change,
    /// Another cookie for the response (the login's device cookie), written with the
    /// session's by the same rules.
    companion: Option<HeaderValue>,
    /// This request's data changes, saved after the handler.
    draft: Draft,
}

struct Current {
    id: SessionId,
    record: HeldRecord,
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

/// Everything a layer's services and the handles they make share: context, store and
/// settings.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) context: AppContext,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) settings: Settings,
    /// The layer's metric handles, registered when it was built.
    pub(crate) metrics: Arc<crate::telemetry::LayerMetrics>,
}

impl Shared {
    /// Reports a lifecycle event of this layer, about `id` and its `record` where known.
    pub(crate) fn emit(
        &self,
        kind: crate::events::SessionEventKind,
        now: i64,
        id: Option<&SessionId>,
        record: Option<&SessionRecord>,
    ) {
        self.emit_with(kind, now, |event| match (id, record) {
            (Some(id), record) => event.about(id.handle(), record),
            (None, Some(record)) => event.user(record.user_id),
            (None, None) => event,
        });
    }

    /// Counts the event, and reports it as `complete` fills it in, if anyone listens.
    pub(crate) fn emit_with(
        &self,
        kind: crate::events::SessionEventKind,
        now: i64,
        complete: impl FnOnce(crate::events::SessionEvent) -> crate::events::SessionEvent,
    ) {
        self.metrics.event(&kind);
        self.settings
            .events
            .emit(|| complete(crate::events::SessionEvent::new(kind, &self.context, now)));
    }

    /// Whether this layer reads pre-migration, context-less sessions.
    pub(crate) fn reads_legacy(&self) -> bool {
        self.settings.reads_legacy(&self.context)
    }

    /// Deletes the legacy record of `id` (nothing to delete for stores without legacy data).
    pub(crate) fn delete_legacy<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        match self.store.capabilities().legacy {
            Some(legacy) => legacy.delete_legacy(id),
            None => StoreFuture::ready(Ok(false)),
        }
    }
}

impl Session {
    /// The handle of a request without a (valid) session.
    pub(crate) fn anonymous(shared: Arc<Shared>, source: Option<CredentialSource>) -> Self {
        Self::with(shared, source, SessionStatus::Anonymous, None)
    }

    /// The handle of a request whose session could not be checked (a backend failed).
    pub(crate) fn unavailable(shared: Arc<Shared>, source: CredentialSource) -> Self {
        Self::with(shared, Some(source), SessionStatus::Unavailable, None)
    }

    /// The handle of an authenticated request: session `id`, its `record`, and whether it
    /// was read through the pre-migration, context-less key.
    pub(crate) fn authenticated(
        shared: Arc<Shared>,
        source: CredentialSource,
        id: SessionId,
        record: HeldRecord,
        legacy: bool,
    ) -> Self {
        let current = Current { id, record, legacy };
        Self::with(
            shared,
            Some(source),
            SessionStatus::Authenticated,
            Some(current),
        )
    }

    fn with(
        shared: Arc<Shared>,
        source: Option<CredentialSource>,
        status: SessionStatus,
        current: Option<Current>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                source,
                status,
                state: Mutex::new(State {
                    current,
                    change: Change::None,
                    companion: None,
                    draft: Draft::default(),
                }),
                changed: AtomicBool::new(false),
                unsaved: AtomicBool::new(false),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.inner.state)
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
        self.state().current.as_ref().map(|c| c.record.to_record())
    }

    /// The current session's id and record. Not public: the id is the credential.
    pub(crate) fn current(&self) -> Option<(SessionId, SessionRecord)> {
        let state = self.state();
        let current = state.current.as_ref()?;
        Some((current.id.clone(), current.record.to_record()))
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
            record: record.into(),
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

    /// Has the response set `set_cookie` too (a whole `Set-Cookie` value), by the session
    /// cookie's rules: never for a request authenticated by a bearer token, and with
    /// `Cache-Control: no-store`. The last one given wins.
    #[cfg_attr(not(feature = "throttle"), allow(dead_code))]
    pub(crate) fn add_cookie(&self, set_cookie: HeaderValue) {
        self.state().companion = Some(set_cookie);
        self.inner.changed.store(true, Ordering::Release);
    }

    /// Writes the `Set-Cookie`s the handler's changes call for, if any.
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
        let state = self.state();
        let value = match &state.change {
            Change::None => None,
            Change::Issued { id, max_age } => cookie.issue(id, *max_age),
            Change::Removed => cookie.removal(),
        };
        let headers = response.headers_mut();
        let mut wrote = false;
        for value in value.into_iter().chain(state.companion.clone()) {
            headers.append(SET_COOKIE, value);
            wrote = true;
        }
        // A response that hands out or withdraws a session must not be stored by a shared
        // cache and replayed to someone else; the handler's own policy, if any, stands.
        if wrote && !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}
