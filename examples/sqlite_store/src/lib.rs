//! A [`SessionStore`] on SQLite, written against `tower-app-sessions`'s public API only, as a
//! store of your own would be: [`SqliteStore`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tower_app_sessions::{AppContext, SessionId, SessionMetadata, SessionRecord, SessionStore};
//! use tower_app_sessions_sqlite_example::SqliteStore;
//!
//! let store = SqliteStore::in_memory().await.unwrap();
//! let (id, now) = (SessionId::generate().unwrap(), 1_757_660_000_000);
//! let user = uuid::Uuid::new_v4();
//! let record = SessionRecord::new(user, SessionMetadata::new(), now, std::time::Duration::from_secs(60));
//! store.save(&AppContext::Web, &id, &record, now).await.unwrap();
//! assert_eq!(store.load(&AppContext::Web, &id, now).await.unwrap(), Some(record));
//! assert_eq!(store.load(&AppContext::Admin, &id, now).await.unwrap(), None);
//! # });
//! ```
//!
//! **Atomicity.** SQLite runs one writer at a time; the store holds **one** connection, so
//! every operation, and every transaction (`rotate`, `update_data`, `extend`), runs whole
//! before or after any other: `rotate` against `delete_user_sessions` needs no revocation
//! count here (a store whose operations can interleave needs one; see the `store` module of
//! `tower-app-sessions`). The price is no parallelism, which an embedded database barely has
//! anyway.
//!
//! **Time.** Every decision about liveness compares the stored `expires_at` with the `now`
//! the caller passes (its clock), never SQLite's own clock, so the store keeps the contract
//! under a `ManualClock`.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::Row;
use tower_app_sessions::data::{DataLimits, DataPatch, SessionData};
use tower_app_sessions::store::{Capabilities, DataUpdate, ListedSession};
use tower_app_sessions::{
    AppContext, Scope, SessionId, SessionMetadata, SessionRecord, SessionStore, StoreError,
    StoreFuture,
};
use uuid::Uuid;

/// The backend name in [`StoreError`]s (and so in logs and metrics).
const BACKEND: &str = "sqlite";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sessions (
    context TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip TEXT,
    user_agent TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (context, id)
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, context)";

const COLUMNS: &str = "context, id, user_id, created_at, expires_at, ip, user_agent, data";

/// Sessions in a SQLite database: a table keyed by context and id, indexed by user.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn failed(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(BACKEND, error)
}

impl SqliteStore {
    /// A store in a database of its own in memory (gone with the store).
    ///
    /// # Errors
    /// [`sqlx::Error`] if SQLite cannot open it.
    pub async fn in_memory() -> Result<Self, sqlx::Error> {
        Self::open("sqlite::memory:".parse()?).await
    }

    /// A store in the database file at `path`, created if missing.
    ///
    /// # Errors
    /// [`sqlx::Error`] if SQLite cannot open or create it.
    pub async fn file(path: impl AsRef<std::path::Path>) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open(options).await
    }

    async fn open(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        // One connection: it serializes every operation (see the crate docs), and it keeps an
        // in-memory database alive (each connection would have a database of its own). Never
        // closed for being idle or old, for the same reason.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }
}

/// A row as a listed session; a row that is not one (edited by hand) is skipped, logged by
/// the caller's absence of it rather than failing the whole listing.
fn listed(row: &SqliteRow) -> Option<ListedSession> {
    let context: String = row.try_get("context").ok()?;
    let id: String = row.try_get("id").ok()?;
    Some(ListedSession {
        context: context.parse().ok()?,
        id: SessionId::parse(&id)?,
        record: record(row)?,
    })
}

/// The record a row holds; `None` if it is not one (a stored value that is not a record is
/// "not found", as the contract says).
fn record(row: &SqliteRow) -> Option<SessionRecord> {
    let user: String = row.try_get("user_id").ok()?;
    let mut record = SessionRecord::new(
        Uuid::parse_str(&user).ok()?,
        SessionMetadata::new(),
        row.try_get("created_at").ok()?,
        Duration::ZERO,
    );
    record.expires_at = row.try_get("expires_at").ok()?;
    record.ip = row.try_get("ip").ok()?;
    record.user_agent = row.try_get("user_agent").ok()?;
    let data: String = row.try_get("data").ok()?;
    record.data = SessionData::from_json(&data);
    Some(record)
}

impl SessionStore for SqliteStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(async move {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE context = ? AND id = ? AND expires_at > ?"
            ))
            .bind(context.as_str())
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
            Ok(row.as_ref().and_then(record))
        })
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        _now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(async move {
            // As every store keeps them: the address and user agent cut to their maximum.
            let record = record.bounded();
            sqlx::query(&format!(
                "INSERT OR REPLACE INTO sessions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(context.as_str())
            .bind(id.as_str())
            .bind(record.user_id.to_string())
            .bind(record.created_at)
            .bind(record.expires_at)
            .bind(record.ip.as_deref())
            .bind(record.user_agent.as_deref())
            .bind(record.data.to_json())
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let expires_at: Option<i64> = sqlx::query_scalar(
                "DELETE FROM sessions WHERE context = ? AND id = ? RETURNING expires_at",
            )
            .bind(context.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
            Ok(expires_at.is_some_and(|at| at > now))
        })
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(async move {
            // One transaction on the one connection: no deletion runs in between.
            let mut tx = self.pool.begin().await.map_err(failed)?;
            let moved = sqlx::query(
                "UPDATE sessions SET id = ? \
                 WHERE context = ? AND id = ? AND user_id = ? AND expires_at > ?",
            )
            .bind(new.as_str())
            .bind(context.as_str())
            .bind(old.as_str())
            .bind(user_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            if moved.rows_affected() != 1 {
                return Ok(None);
            }
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE context = ? AND id = ?"
            ))
            .bind(context.as_str())
            .bind(new.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(record(&row))
        })
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        StoreFuture::new(async move {
            // Read, measure and write in one transaction: the limits hold whatever runs
            // beside it, and a concurrent patch of other keys keeps its change.
            let mut tx = self.pool.begin().await.map_err(failed)?;
            let data: Option<String> = sqlx::query_scalar(
                "SELECT data FROM sessions WHERE context = ? AND id = ? AND expires_at > ?",
            )
            .bind(context.as_str())
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed)?;
            let Some(data) = data else {
                return Ok(DataUpdate::NotLive);
            };
            let mut data = SessionData::from_json(&data);
            if !limits.admits(data.size(), data.size_with(patch)) {
                return Ok(DataUpdate::OverLimit);
            }
            data.apply(patch);
            sqlx::query("UPDATE sessions SET data = ? WHERE context = ? AND id = ?")
                .bind(data.to_json())
                .bind(context.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(DataUpdate::Applied)
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            // One statement, conditioned on the record being live: never a resurrection.
            let done = sqlx::query(
                "UPDATE sessions SET expires_at = ? \
                 WHERE context = ? AND id = ? AND expires_at > ?",
            )
            .bind(expires_at)
            .bind(context.as_str())
            .bind(id.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        StoreFuture::new(async move {
            let context = match scope {
                Scope::Context(context) => Some(context.as_str()),
                Scope::AllContexts => None,
            };
            let ended: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM sessions WHERE user_id = ? AND (? IS NULL OR context = ?) \
                 RETURNING expires_at",
            )
            .bind(user_id.to_string())
            .bind(context)
            .bind(context)
            .fetch_all(&self.pool)
            .await
            .map_err(failed)?;
            Ok(ended.into_iter().filter(|&at| at > now).count() as u64)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        StoreFuture::new(async move {
            let context = match scope {
                Scope::Context(context) => Some(context.as_str()),
                Scope::AllContexts => None,
            };
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM sessions \
                 WHERE user_id = ? AND (? IS NULL OR context = ?) AND expires_at > ? \
                 ORDER BY created_at, id"
            ))
            .bind(user_id.to_string())
            .bind(context)
            .bind(context)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(failed)?;
            Ok(rows.iter().filter_map(listed).collect())
        })
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none()
    }
}
