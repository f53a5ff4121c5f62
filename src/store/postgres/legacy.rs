//! The pre-migration `users.session_id` column, read and cleared for the legacy fallback.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{timed, PgSessionStore};
use crate::data::SessionData;
use crate::store::{LegacySessions, StoreError, StoreFuture};
use crate::{SessionId, SessionRecord};

impl PgSessionStore {
    async fn legacy_user(
        &self,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let users: Vec<(Uuid, Option<DateTime<Utc>>)> = timed(
            self.timeout,
            sqlx::query_as("SELECT id, last_login_at FROM users WHERE session_id = $1 LIMIT 2")
                .bind(id.as_str())
                .fetch_all(&self.pool),
        )
        .await?;
        // Two users with one id is ambiguous: neither is chosen.
        let [(user_id, last_login)] = users[..] else {
            return Ok(None);
        };
        // `users.session_id` has no expiry of its own. The last login stands in for the
        // creation time, so the layer's absolute lifetime counts from it; without a last login
        // nothing tells how old the token is, and it is refused. A short expiry makes every
        // request re-read the column, so clearing it takes effect at once.
        let Some(last_login) = last_login else {
            tracing::debug!("a users.session_id without last_login_at refused: its age is unknown");
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            user_id,
            created_at: last_login.timestamp_millis(),
            expires_at: now + 60_000,
            ip: None,
            user_agent: None,
            data: SessionData::new(),
        }))
    }

    async fn clear_legacy(&self, id: &SessionId) -> Result<bool, StoreError> {
        let done = timed(
            self.timeout,
            sqlx::query("UPDATE users SET session_id = NULL WHERE session_id = $1")
                .bind(id.as_str())
                .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The pre-migration `users.session_id` column.
impl LegacySessions for PgSessionStore {
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(self.legacy_user(id, now))
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(self.clear_legacy(id))
    }
}
