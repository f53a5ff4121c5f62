//! [`WebDatabase`]: the web application's own PostgreSQL database (`DATABASE_WEB_URL`), with
//! the TypeScript web app's `web_sessions` (per-session preferences, theme, language) and
//! `web_user_cache` tables.
//!
//! A handler reaches the current session's rows through the [`WebSession`] extractor, which
//! takes the database from the router's state (`WebDatabase: FromRef<S>`, so a route that
//! cannot have it does not compile), or, outside axum, through [`WebDatabase::session`]. Only
//! sessions of the `web` context have rows there: an admin session never reads or writes
//! the web app's data.
//!
//! ```no_run
//! # async fn run(pool: sqlx::PgPool) {
//! use axum::{routing::get, Router};
//! use tower_app_sessions::webdb::{WebDatabase, WebSession};
//! use tower_app_sessions::{AppContext, Sessions};
//!
//! let sessions = Sessions::memory();
//! let web_db = WebDatabase::new(pool);
//! let app: Router = Router::new()
//!     .route("/theme", get(|web: WebSession| async move {
//!         let row = web.get().await.map_err(|_| http::StatusCode::SERVICE_UNAVAILABLE)?;
//!         Ok::<_, http::StatusCode>(row.and_then(|r| r.theme).unwrap_or_default())
//!     }))
//!     .with_state(web_db)
//!     .layer(sessions.layer(AppContext::Web));
//! # let _ = app; }
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::store::postgres::timed;
use crate::store::StoreError;
use crate::{AppContext, Session, SessionId};

/// The web app's database (feature `postgres`). One pool, shared by every web layer.
#[derive(Clone, Debug)]
pub struct WebDatabase {
    pool: PgPool,
    timeout: Duration,
}

/// A row of `web_sessions`, as far as a handler cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebSessionData {
    /// `data`: free-form JSON.
    pub data: Option<Value>,
    /// `preferences`: free-form JSON.
    pub preferences: Option<Value>,
    /// `theme`, at most 20 characters.
    pub theme: Option<String>,
    /// `language`, at most 10 characters.
    pub language: Option<String>,
}

impl WebDatabase {
    /// The web database on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
        }
    }

    /// Creates `web_sessions` and `web_user_cache` if they are missing (`migrations_web/`).
    ///
    /// # Errors
    /// The migrator's error.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations_web").run(&self.pool).await
    }

    /// The migrations of [`migrate`](Self::migrate) this database has not applied: a dry
    /// run, which creates nothing.
    ///
    /// # Errors
    /// [`StoreError`] if PostgreSQL fails.
    pub async fn pending_migrations(
        &self,
    ) -> Result<Vec<crate::store::postgres::SchemaMigration>, StoreError> {
        crate::store::postgres::pending_of(&self.pool, &sqlx::migrate!("./migrations_web")).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The rows of `session` in this database: `Some` for an authenticated session of the
    /// `web` context (after a login in the request: the new one), `None` otherwise.
    pub fn session(&self, session: &Session) -> Option<WebSession> {
        if *session.context() != AppContext::Web {
            return None;
        }
        let (id, record) = session.current()?;
        Some(WebSession {
            db: self.clone(),
            id,
            user_id: record.user_id,
            expires_at: record.expires_at,
        })
    }
}

/// The current web session's rows in the web database: the [extractor](self) or
/// [`WebDatabase::session`].
#[derive(Debug, Clone)]
pub struct WebSession {
    db: WebDatabase,
    id: SessionId,
    user_id: Uuid,
    expires_at: i64,
}

impl WebSession {
    /// This session's `web_sessions` row, if one was saved.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn get(&self) -> Result<Option<WebSessionData>, StoreError> {
        type Row = (Option<Value>, Option<Value>, Option<String>, Option<String>);
        let row: Option<Row> = timed(
            self.db.timeout,
            sqlx::query_as(
                "SELECT data, preferences, theme, language FROM web_sessions \
                 WHERE id = $1 AND user_id = $2 AND expires_at > now()",
            )
            .bind(self.id.as_str())
            .bind(self.user_id)
            .fetch_optional(&self.db.pool),
        )
        .await?;
        Ok(
            row.map(|(data, preferences, theme, language)| WebSessionData {
                data,
                preferences,
                theme,
                language,
            }),
        )
    }

    /// Writes this session's `web_sessions` row (it expires with the session).
    ///
    /// # Errors
    /// [`StoreError`] if the database fails or `theme` / `language` are too long.
    pub async fn save(&self, data: &WebSessionData) -> Result<(), StoreError> {
        let expires_at = DateTime::<Utc>::from_timestamp_millis(self.expires_at)
            .ok_or_else(|| StoreError::backend("postgres", "expiry out of range"))?;
        timed(
            self.db.timeout,
            sqlx::query(
                "INSERT INTO web_sessions (id, user_id, data, preferences, theme, language, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, preferences = EXCLUDED.preferences, \
                   theme = EXCLUDED.theme, language = EXCLUDED.language, expires_at = EXCLUDED.expires_at, \
                   last_activity = now() \
                 WHERE web_sessions.user_id = EXCLUDED.user_id",
            )
            .bind(self.id.as_str())
            .bind(self.user_id)
            .bind(&data.data)
            .bind(&data.preferences)
            .bind(data.theme.as_deref())
            .bind(data.language.as_deref())
            .bind(expires_at)
            .execute(&self.db.pool),
        )
        .await
        .map(drop)
    }

    /// The user's `web_user_cache` entry.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn user_cache(&self) -> Result<Option<Value>, StoreError> {
        let row: Option<(Value,)> = timed(
            self.db.timeout,
            sqlx::query_as("SELECT data FROM web_user_cache WHERE user_id = $1")
                .bind(self.user_id)
                .fetch_optional(&self.db.pool),
        )
        .await?;
        Ok(row.map(|(data,)| data))
    }

    /// Replaces the user's `web_user_cache` entry.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn set_user_cache(&self, data: &Value) -> Result<(), StoreError> {
        timed(
            self.db.timeout,
            sqlx::query(
                "INSERT INTO web_user_cache (user_id, data, updated_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (user_id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
            )
            .bind(self.user_id)
            .bind(data)
            .execute(&self.db.pool),
        )
        .await
        .map(drop)
    }
}
