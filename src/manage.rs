//! Session management: a user's sessions as people see them ([`SessionInfo`]), listed and
//! ended by the user or by an admin, and re-authentication before sensitive actions.
//!
//! | who | list | end |
//! |---|---|---|
//! | the user, in a handler | [`Session::list_mine`](crate::Session::list_mine) (this context) | [`Session::revoke`](crate::Session::revoke) (one, by handle), [`Session::revoke_others`](crate::Session::revoke_others), [`Session::revoke_all`](crate::Session::revoke_all) |
//! | an admin or operator | [`Sessions::list_user`](crate::Sessions::list_user) | [`Sessions::revoke_user`](crate::Sessions::revoke_user) |
//!
//! Sessions are named by their [`SessionHandle`], never by their id: a listing can be shown,
//! logged and sent to a browser without handing out a credential. Ending a session reaches
//! every instance at once: the deletion goes through the store (and the cache's bus, when
//! there is one), as a logout does.
//!
//! Which sessions are listed: those of the store's per-user index. On Redis that index is
//! written by this crate; a session the TypeScript apps wrote without it is listed once it
//! is migrated or next written by this crate (a slide does not add it; a login or rotation
//! does). Pre-migration `users.session_id` tokens are not listed.
//!
//! `last_seen` costs no write per request: it is the session's last slide of the idle
//! timeout, which moves at most once per
//! [touch interval](crate::SessionLayer::touch_interval) (60 s by default). That interval is
//! its resolution; a session used once is seen at its creation.
//!
//! [`RequireRecentLoginLayer`](crate::require::RequireRecentLoginLayer) and
//! [`Session::require_recent_login`](crate::Session::require_recent_login) ask for the
//! credential again when the session's last proof of one is older than a bound.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tower_app_sessions::{AppContext, MemoryUsers, Role, Scope, Sessions, User};
//!
//! let users = MemoryUsers::new();
//! let ada = users.insert(User::new("ada@example.com", Role::User)).unwrap();
//! let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users);
//! assert!(sessions.list_user(&ada.id, Scope::AllContexts).await?.is_empty());
//! assert_eq!(sessions.revoke_user(&ada.id, Scope::AllContexts).await?, 0);
//! # Ok::<(), tower_app_sessions::StoreError>(())
//! # }).unwrap();
//! ```

use serde::Serialize;

use crate::policy::Settings;
use crate::store::{ListedSession, SessionStore, StoreError};
use crate::{AppContext, SessionHandle, SessionId};

/// One session of a user, as a person sees it: never the id.
///
/// Serialized (for a JSON API) with these field names; times are milliseconds since the
/// Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's non-secret name: what [`Session::revoke`](crate::Session::revoke) takes.
    pub handle: SessionHandle,
    /// The application it belongs to.
    pub context: AppContext,
    /// When it was created (the login).
    pub created_at: i64,
    /// When it was last used, to the touch interval (see the [module docs](self)).
    pub last_seen: i64,
    /// When it ends unless used again.
    pub expires_at: i64,
    /// Client address at login, if known.
    pub ip: Option<String>,
    /// Client `User-Agent` at login, if known.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request that listed it.
    pub current: bool,
}

/// What [`Session::revoke_others`](crate::Session::revoke_others) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OthersRevoked {
    /// How many other sessions ended.
    pub ended: u64,
    /// The id this session moved to: browsers get it as the cookie; hand it to API clients
    /// (their bearer token changed).
    pub id: SessionId,
}

/// The sessions of a listing that are live at `now` by `settings` (the absolute lifetime
/// counts), as people see them, newest first; `current` marks the caller's own.
pub(crate) fn infos(
    listed: Vec<ListedSession>,
    settings: &Settings,
    now: i64,
    current: Option<&SessionId>,
) -> Vec<SessionInfo> {
    let mut infos: Vec<SessionInfo> = listed
        .into_iter()
        .filter(|s| settings.is_live(&s.record, now))
        .map(|s| SessionInfo {
            handle: s.id.handle(),
            current: current == Some(&s.id),
            last_seen: settings.last_seen(&s.record, now),
            created_at: s.record.created_at,
            expires_at: s.record.expires_at,
            context: s.context,
            ip: s.record.ip,
            user_agent: s.record.user_agent,
        })
        .collect();
    infos.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.handle)));
    infos
}

/// Ends `id` in `context`: its copy under the legacy key first, where the fallback reads
/// that context (a copy must not keep it alive, and a migration that copies it meanwhile
/// checks the legacy key after its copy), then its record. `true` if either was live. The
/// one way every revocation by handle or of the others ends a session.
pub(crate) async fn end_session(
    store: &dyn SessionStore,
    settings: &Settings,
    context: &AppContext,
    id: &SessionId,
    now: i64,
) -> Result<bool, StoreError> {
    let legacy = match store.capabilities().legacy {
        Some(legacy) if settings.reads_legacy(context) => legacy.delete_legacy(id).await?,
        _ => false,
    };
    Ok(store.delete(context, id, now).await? || legacy)
}

/// Deletes the legacy copies of `sessions` where the fallback reads their context: what a
/// revocation of all of a user's sessions does before `delete_user_sessions`, which knows
/// nothing of legacy keys.
pub(crate) async fn end_legacy_copies(
    store: &dyn SessionStore,
    settings: &Settings,
    sessions: &[ListedSession],
) -> Result<(), StoreError> {
    let Some(legacy) = store.capabilities().legacy else {
        return Ok(());
    };
    for session in sessions {
        if settings.reads_legacy(&session.context) {
            legacy.delete_legacy(&session.id).await?;
        }
    }
    Ok(())
}

/// The listed session named `handle`, if any.
pub(crate) fn find(listed: Vec<ListedSession>, handle: &SessionHandle) -> Option<ListedSession> {
    listed.into_iter().find(|s| s.id.handle() == *handle)
}
