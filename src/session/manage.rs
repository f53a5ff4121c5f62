//! What a user does with their own sessions: list them, end one by its handle, end all but
//! this one, and prove a recent login (see [`manage`](crate::manage)).

use std::time::Duration;

use super::{Session, SessionError};
use crate::events::{RevokedScope, SessionEventKind};
use crate::manage::{self, OthersRevoked, SessionInfo};
use crate::store::Scope;
use crate::SessionHandle;

/// The session's last proof of a credential is too old for this action (or there is no
/// session): log in again. A `401` with [`REAUTHENTICATION_REQUIRED_BODY`](crate::require::REAUTHENTICATION_REQUIRED_BODY) (feature `axum`:
/// `IntoResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reauthentication required")]
pub struct ReauthenticationRequired;

impl Session {
    /// The user's live sessions in this layer's context, newest first, this one marked
    /// [`current`](SessionInfo::current). Empty without a session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn list_mine(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let Some((id, record)) = self.current() else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let shared = &self.inner.shared;
        let scope = Scope::Context(&shared.context);
        let listed = shared
            .store
            .list_user_sessions(&record.user_id, scope, now)
            .await?;
        Ok(manage::infos(listed, &shared.settings, now, Some(&id)))
    }

    /// Ends the user's session named `handle` in this layer's context, at once on every
    /// instance. `Ok(false)` when the user has no such session: a wrong handle and another
    /// user's are the same answer. Ending the current session is a [`logout`](Self::logout).
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed; nothing was ended then.
    pub async fn revoke(&self, handle: &SessionHandle) -> Result<bool, SessionError> {
        let Some((current, record)) = self.current() else {
            return Ok(false);
        };
        if current.handle() == *handle {
            self.logout().await?;
            return Ok(true);
        }
        let now = self.now();
        let shared = &self.inner.shared;
        let scope = Scope::Context(&shared.context);
        let listed = shared
            .store
            .list_user_sessions(&record.user_id, scope, now)
            .await?;
        let Some(found) = manage::find(listed, handle) else {
            return Ok(false);
        };
        let (store, settings) = (shared.store.as_ref(), &shared.settings);
        let ended = manage::end_session(store, settings, &shared.context, &found.id, now).await?;
        if ended {
            let kind = SessionEventKind::Revoked {
                scope: RevokedScope::Session,
                count: 1,
            };
            shared.emit(kind, now, Some(&found.id), Some(&found.record));
        }
        Ok(ended)
    }

    /// Ends every other session of the user in `scope` and moves this one to a fresh id
    /// ([`rotate`](Self::rotate)), so a copy of this session's cookie (the one a thief may
    /// hold) ends too. Call it after a password change, or from "sign out other devices"
    /// after [asking for the password again](Self::require_recent_login). Returns how many
    /// other sessions ended and the id this one moved to; `None` without a session.
    ///
    /// The rotation comes first: if this session ended meanwhile, nothing else is touched
    /// and the answer is [`SessionError::Ended`].
    ///
    /// # Errors
    /// [`SessionError::Ended`] as above, [`SessionError::Store`] if the store failed (the
    /// sessions ended before the failure stay ended).
    pub async fn revoke_others(
        &self,
        scope: Scope<'_>,
    ) -> Result<Option<OthersRevoked>, SessionError> {
        let Some(kept) = self.rotate().await? else {
            return Ok(None);
        };
        let Some((_, record)) = self.current() else {
            return Ok(None);
        };
        let now = self.now();
        let shared = &self.inner.shared;
        let listed = shared
            .store
            .list_user_sessions(&record.user_id, scope, now)
            .await?;
        let (store, settings) = (shared.store.as_ref(), &shared.settings);
        let mut ended = 0;
        let mut failed = None;
        for other in listed.iter().filter(|s| s.id != kept) {
            match manage::end_session(store, settings, &other.context, &other.id, now).await {
                Ok(true) => ended += 1,
                Ok(false) => {}
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        // Reported even when a delete failed: those before it are ended.
        let kind = SessionEventKind::Revoked {
            scope: RevokedScope::Others,
            count: ended,
        };
        shared.emit(kind, now, Some(&kept), Some(&record));
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(Some(OthersRevoked { ended, id: kept })),
        }
    }

    /// When the user last proved a credential for this session (milliseconds since the
    /// Unix epoch): its login, see [`SessionRecord::authenticated_at`](crate::SessionRecord::authenticated_at).
    /// `None` without a session.
    pub fn authenticated_at(&self) -> Option<i64> {
        self.state()
            .current
            .as_ref()
            .map(|c| c.record.authenticated_at())
    }

    /// `Ok` if the user proved a credential at most `within` ago (by the layer's clock);
    /// else [`ReauthenticationRequired`], a `401 {"error":"reauthentication_required"}` in
    /// axum handlers. Without a session it is the same error: route guards that need a user
    /// at all come first.
    ///
    /// # Errors
    /// [`ReauthenticationRequired`] as above.
    pub fn require_recent_login(&self, within: Duration) -> Result<(), ReauthenticationRequired> {
        let proved = self.authenticated_at().ok_or(ReauthenticationRequired)?;
        let bound = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        if self.now().saturating_sub(proved) <= bound {
            Ok(())
        } else {
            Err(ReauthenticationRequired)
        }
    }
}
