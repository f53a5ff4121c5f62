//! The request path's session query with the session's user in it
//! ([`PgSessionStore::users`], [`SessionStore::load_with_user`]): one round trip for
//! both.
//!
//! [`SessionStore::load_with_user`]: crate::store::SessionStore::load_with_user

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::row::{to_time, Row};
use super::{columns, timed, PgSessionStore, BACKEND};
use crate::store::{JoinedUser, Loaded, StoreError};
use crate::users::postgres::{context_has_grants, context_permissions, user, UserRow};
use crate::users::{PgUsers, User};
use crate::{SessionId, SessionRecord};

/// The session's columns, its user's (null when the user is gone), as one select list. The
/// user's carry `u_` names: `Joined` reads the session's by theirs.
macro_rules! joined_columns {
    () => {
        concat!(
            columns!("s."),
            ", u.id AS u_id, u.email AS u_email, \
         u.hashed_password AS u_hashed_password, u.is_verified AS u_is_verified, \
         u.role::text AS u_role, u.created_at AS u_created_at, u.last_login_at AS u_last_login_at"
        )
    };
}

macro_rules! live_session_of_user {
    () => {
        " FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE s.id = $1 AND s.application_context = $2::text::\"ApplicationType\" \
         AND NOT s.revoked AND s.expires_at > $3"
    };
}

/// A live session and its user, for a context known to hold no permission rows.
const SESSION_AND_USER: &str = concat!("SELECT ", joined_columns!(), live_session_of_user!());

/// A live session, its user with their unexpired permissions in the context, and whether the
/// context holds any permission row.
const SESSION_AND_USER_WITH_PERMISSIONS: &str = concat!(
    "SELECT ",
    joined_columns!(),
    ", ",
    context_permissions!("s.user_id", "$2"),
    " AS u_permissions, ",
    context_has_grants!("$2"),
    " AS any_grant",
    live_session_of_user!()
);

#[derive(sqlx::FromRow)]
struct Joined {
    #[sqlx(flatten)]
    session: Row,
    u_id: Option<Uuid>,
    u_email: Option<String>,
    u_hashed_password: Option<String>,
    u_is_verified: Option<bool>,
    u_role: Option<String>,
    u_created_at: Option<DateTime<Utc>>,
    u_last_login_at: Option<DateTime<Utc>>,
    #[sqlx(default)]
    u_permissions: Option<Vec<String>>,
    #[sqlx(default)]
    any_grant: Option<bool>,
}

impl Joined {
    /// The user the row joined, `None` if it is gone.
    fn user(&mut self) -> Result<Option<User>, StoreError> {
        let Some(id) = self.u_id else {
            return Ok(None);
        };
        let (Some(email), Some(is_verified), Some(role), Some(created_at)) = (
            self.u_email.take(),
            self.u_is_verified,
            self.u_role.take(),
            self.u_created_at,
        ) else {
            return Err(StoreError::backend(
                BACKEND,
                "a users row with NULL in a NOT NULL column",
            ));
        };
        let row: UserRow = (
            id,
            email,
            self.u_hashed_password.take(),
            is_verified,
            role,
            created_at,
            self.u_last_login_at,
        );
        user(row, self.u_permissions.take().unwrap_or_default()).map(Some)
    }
}

impl PgSessionStore {
    /// The live record of `id` and its user, as `users` would resolve it.
    pub(super) async fn load_joined(
        &self,
        users: &PgUsers,
        label: &'static str,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<Loaded>, StoreError> {
        let with_permissions = !users.grants_absent(label);
        let sql = if with_permissions {
            SESSION_AND_USER_WITH_PERMISSIONS
        } else {
            SESSION_AND_USER
        };
        let started = users.now_ms();
        let row: Option<Joined> = timed(
            self.timeout,
            sqlx::query_as(sql)
                .bind(id.as_str())
                .bind(label)
                .bind(to_time(now)?)
                .fetch_optional(&self.pool),
        )
        .await?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        if let Some(any) = row.any_grant {
            users.grants_found(label, started, any);
        }
        let user = row.user()?.map(Arc::new);
        let record = SessionRecord::from(row.session);
        Ok(Some(Loaded::with_user(
            record,
            JoinedUser::new(users.owner(), user),
        )))
    }
}
