//! PostgreSQL (feature `postgres`): the crate's migrations and [`PgSessionStore`] on the Prisma
//! `sessions` table that the TypeScript apps share.
//!
//! - Every query filters on `application_context`. The column is the Prisma enum
//!   `"ApplicationType"` (`web`, `admin`): custom contexts cannot be stored in it, so they are
//!   a [`StoreError`] here (keep such apps on Redis or memory).
//! - Logout and revoke mark rows `revoked` / `revoked_at` (kept for audit); a revoked row
//!   never authenticates.
//! - `last_activity` moves only with a slide of the idle timeout, i.e. at most once per
//!   touch interval, not on every request.
//! - The legacy fallback reads `users.session_id`, as the TypeScript apps' `findBySessionId` does — but
//!   only when the layer enables it, and only for the `web` context (their version
//!   ignores the context).

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, DurableRecords, ListedSession, Scope, SessionStore, StoreError,
    StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::telemetry::{StoreMetrics, StoreOp};
use crate::{AppContext, SessionId, SessionRecord};

mod data;
mod joined;
mod legacy;
mod maintenance;
mod notify;
mod row;
mod schema;
mod stats;

pub use maintenance::PurgeReport;
pub use notify::{
    install_notifications, uninstall_notifications, Notifications, HEARTBEAT, NOTIFY_CHANNEL,
};
pub(crate) use row::pg_context;
use row::{data_json, inet, pg_error, scope_labels, to_time, Row};
pub(crate) use schema::pending_of;
pub use schema::{pending_migrations, SchemaMigration, SchemaProblem};

pub(crate) use crate::users::postgres::BACKEND;

/// Takes the transaction-scoped advisory lock of `user_id`'s sessions: rotations and
/// revocations of one user's sessions run one at a time.
async fn lock_user(conn: &mut sqlx::PgConnection, user_id: &Uuid) -> Result<(), sqlx::Error> {
    // Two-key form: the first key names this lock's class, so it cannot collide with the
    // email lock of `PgUsers` (one key, `hashtext`).
    sqlx::query("SELECT pg_advisory_xact_lock(1936028526, hashtext($1::text))")
        .bind(user_id)
        .execute(conn)
        .await
        .map(drop)
}

/// Runs the crate's migrations (`migrations/`) on `pool`: an empty database gets the Prisma
/// target shape, a pre-migration database is upgraded in place (rows kept, old sessions become
/// `web` sessions), an up-to-date one is left unchanged. Safe to rerun. Never called
/// implicitly: call it (or [`Sessions::migrate`](crate::Sessions::migrate)) at startup or from
/// a deploy step.
///
/// # Errors
/// The migrator's error (connection, SQL, or a migration changed after it was applied).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// A pool with the TypeScript apps' settings: at most 10 connections, 5 s to connect
/// (`SESSION_CONSTANTS.DATABASE`), connections checked lazily. Its connections ask the
/// server for warnings and errors only (`client_min_messages=warning`): the idempotent
/// statements of [`migrate`] and [`install_notifications`] would otherwise log a NOTICE
/// such as `enum label "admin" already exists, skipping` for every step they skip.
///
/// # Errors
/// [`StoreError::Backend`] if the URL is invalid or the server cannot be reached in time.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(pg_error)?
        .options([("client_min_messages", "warning")]);
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
        // A round trip per checkout costs more than a rare dead connection: a broken
        // connection fails its query, the request answers 503, the pool replaces it.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(pg_error)
}

pub(crate) use crate::users::postgres::timed;

/// A [`SessionStore`] on the `sessions` table (feature `postgres`).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_app_sessions::store::postgres::{connect, migrate, PgSessionStore};
///
/// let pool = connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// migrate(&pool).await?;
/// let store = PgSessionStore::new(pool);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgSessionStore {
    pool: PgPool,
    timeout: Duration,
    metrics: StoreMetrics,
    /// Whose users a request's session query also selects ([`users`](Self::users)).
    users: Option<crate::users::PgUsers>,
}

/// The columns of [`Row`], once, as a literal (statements are static strings: sqlx finds
/// its prepared statement by them, and none is formatted per request).
macro_rules! columns {
    () => {
        columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "user_id, ",
            $t,
            "created_at, ",
            $t,
            "expires_at, host(",
            $t,
            "ip_address) AS ip, ",
            $t,
            "user_agent, ",
            $t,
            "data::text AS data"
        )
    };
}
pub(super) use columns;

const COLUMNS: &str = columns!();

/// A live session by id and context.
const LOAD: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE id = $1 AND application_context = $2::\"ApplicationType\" \
     AND NOT revoked AND expires_at > $3"
);

impl PgSessionStore {
    /// A store on `pool` (shared with the user repository and every context).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
            metrics: StoreMetrics::new(BACKEND),
            users: None,
        }
    }

    /// Pairs the store with the resolver of the same database: when a request reads its
    /// session here (a cold session, or a [`TieredStore`](crate::store::TieredStore)
    /// revalidating its Redis copy), the same query selects the session's user and the
    /// context's permissions, and `users` answers the request's lookup of that user without
    /// a second query. Outside the layer's request path (listings, admin calls) loads stay
    /// plain. `Sessions::from_env` pairs them.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_app_sessions::store::postgres::{connect, PgSessionStore};
    /// use tower_app_sessions::users::PgUsers;
    ///
    /// let pool = connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// let users = PgUsers::new(pool.clone());
    /// let store = PgSessionStore::new(pool).users(&users);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn users(mut self, users: &crate::users::PgUsers) -> Self {
        self.users = Some(users.clone());
        self
    }

    /// How long one query may take before it fails with [`StoreError::Timeout`] (default 2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn load_row(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let label = pg_context(context)?;
        let row: Option<Row> = timed(
            self.timeout,
            sqlx::query_as(LOAD)
                .bind(id.as_str())
                .bind(label)
                .bind(to_time(now)?)
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(SessionRecord::from))
    }

    async fn upsert(
        &self,
        context: &AppContext,
        id: &SessionId,
        rec: &SessionRecord,
    ) -> Result<(), StoreError> {
        let label = pg_context(context)?;
        let rec = rec.bounded();
        // An id is never moved to another context nor revived once revoked.
        let written = timed(
            self.timeout,
            sqlx::query(
                "INSERT INTO sessions \
                   (id, user_id, expires_at, created_at, last_activity, ip_address, user_agent, application_context, data) \
                 VALUES ($1, $2, $3, $4, now(), $5::inet, $6, $7::\"ApplicationType\", $8::jsonb) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at, \
                   created_at = EXCLUDED.created_at, last_activity = now(), \
                   ip_address = EXCLUDED.ip_address, user_agent = EXCLUDED.user_agent, data = EXCLUDED.data \
                 WHERE sessions.application_context = EXCLUDED.application_context AND NOT sessions.revoked",
            )
            .bind(id.as_str())
            .bind(rec.user_id)
            .bind(to_time(rec.expires_at)?)
            .bind(to_time(rec.created_at)?)
            .bind(inet(rec.ip.as_deref()))
            .bind(rec.user_agent.as_deref())
            .bind(label)
            .bind(data_json(&rec.data))
            .execute(&self.pool),
        )
        .await?;
        if written.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::backend(
                BACKEND,
                "session id already taken by a revoked session or another context",
            ))
        }
    }

    async fn revoke(&self, context: &AppContext, id: &SessionId) -> Result<bool, StoreError> {
        let label = pg_context(context)?;
        let done = timed(
            self.timeout,
            sqlx::query(
                "UPDATE sessions SET revoked = true, revoked_at = now() \
                 WHERE id = $1 AND application_context = $2::\"ApplicationType\" AND NOT revoked",
            )
            .bind(id.as_str())
            .bind(label)
            .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves the live row of `old` to `new` in one transaction: the old row is revoked (kept
    /// for audit) and a copy inserted under `new`. The transaction first takes the user's
    /// advisory lock, as a revoke-all does, so the two serialize: a revoke-all that commits
    /// first leaves nothing to move, and one that starts later sees the new row.
    async fn move_row(
        &self,
        context: &AppContext,
        old: &SessionId,
        new: &SessionId,
        user_id: &Uuid,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let label = pg_context(context)?;
        let now = to_time(now)?;
        let work = async {
            let mut tx = self.pool.begin().await?;
            lock_user(&mut tx, user_id).await?;
            let sql = format!(
                "WITH old AS ( \
                   UPDATE sessions SET revoked = true, revoked_at = now() \
                   WHERE id = $1 AND application_context = $2::\"ApplicationType\" \
                     AND user_id = $4 AND NOT revoked AND expires_at > $3 \
                   RETURNING user_id, created_at, expires_at, ip_address, user_agent, data) \
                 INSERT INTO sessions \
                   (id, user_id, expires_at, created_at, last_activity, ip_address, user_agent, application_context, data) \
                 SELECT $5, user_id, expires_at, created_at, now(), ip_address, user_agent, $2::\"ApplicationType\", data \
                 FROM old RETURNING {COLUMNS}"
            );
            let row: Option<Row> = sqlx::query_as(&sql)
                .bind(old.as_str())
                .bind(label)
                .bind(now)
                .bind(user_id)
                .bind(new.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        };
        Ok(timed(self.timeout, work).await?.map(SessionRecord::from))
    }

    async fn slide(
        &self,
        context: &AppContext,
        id: &SessionId,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let label = pg_context(context)?;
        let done = timed(
            self.timeout,
            sqlx::query(
                "UPDATE sessions SET expires_at = $3, last_activity = now() \
                 WHERE id = $1 AND application_context = $2::\"ApplicationType\" \
                 AND NOT revoked AND expires_at > $4",
            )
            .bind(id.as_str())
            .bind(label)
            .bind(to_time(expires_at)?)
            .bind(to_time(now)?)
            .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let labels = scope_labels(scope)?;
        let now = to_time(now)?;
        let work = async {
            let mut tx = self.pool.begin().await?;
            // Serializes with rotations of this user's sessions (see `move_row`).
            lock_user(&mut tx, user_id).await?;
            let done = sqlx::query(
                "UPDATE sessions SET revoked = true, revoked_at = now() \
                 WHERE application_context = ANY($2::text[]::\"ApplicationType\"[]) AND user_id = $1 \
                 AND NOT revoked AND expires_at > $3",
            )
            .bind(user_id)
            .bind(&labels)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        };
        timed(self.timeout, work).await
    }

    async fn list_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<ListedSession>, StoreError> {
        let labels = scope_labels(scope)?;
        let sql = format!(
            "SELECT id, application_context::text AS context, {COLUMNS} FROM sessions \
             WHERE application_context = ANY($2::text[]::\"ApplicationType\"[]) AND user_id = $1 \
             AND NOT revoked AND expires_at > $3 ORDER BY created_at"
        );
        #[derive(sqlx::FromRow)]
        struct ListRow {
            id: String,
            context: String,
            #[sqlx(flatten)]
            row: Row,
        }
        let rows: Vec<ListRow> = timed(
            self.timeout,
            sqlx::query_as(&sql)
                .bind(user_id)
                .bind(&labels)
                .bind(to_time(now)?)
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|ListRow { id, context, row }| {
                Some(ListedSession {
                    // Rows written by other apps with ids outside our shape are skipped.
                    id: SessionId::parse(&id)?,
                    context: context.parse().ok()?,
                    record: row.into(),
                })
            })
            .collect())
    }
}

impl SessionStore for PgSessionStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.metrics
            .pending(StoreOp::Load, self.load_row(context, id, now))
    }

    /// With [`users`](Self::users): the session and its user (with the context's
    /// permissions) in one query, for that repository to
    /// [recognise](crate::UserResolver::joined).
    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<crate::store::Loaded>, StoreError>> {
        let Some(users) = &self.users else {
            // One future, not `load`'s mapped (which would box a second).
            return self.metrics.pending(StoreOp::Load, async move {
                let found = self.load_row(context, id, now).await?;
                Ok(found.map(crate::store::Loaded::from))
            });
        };
        self.metrics.pending(StoreOp::Load, async move {
            let label = pg_context(context)?;
            self.load_joined(users, label, id, now).await
        })
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        _now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.metrics
            .pending(StoreOp::Save, self.upsert(context, id, record))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        _now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics
            .pending(StoreOp::Delete, self.revoke(context, id))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.metrics.pending(
            StoreOp::Rotate,
            self.move_row(context, old, new, user_id, now),
        )
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics
            .pending(StoreOp::Extend, self.slide(context, id, expires_at, now))
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.metrics.pending(
            StoreOp::UpdateData,
            self.patch_data(context, id, patch, limits, now),
        )
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.metrics.pending(
            StoreOp::DeleteUserSessions,
            self.revoke_user(user_id, scope, now),
        )
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.metrics.pending(
            StoreOp::ListUserSessions,
            self.list_user(user_id, scope, now),
        )
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().legacy(self).durable(self).stats(self)
    }
}

/// Revoked and expired rows are kept (audit); custom contexts cannot be stored.
impl DurableRecords for PgSessionStore {
    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        _now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let label = pg_context(context)?;
            let (exists,): (bool,) = timed(
                self.timeout,
                sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM sessions \
                     WHERE id = $1 AND application_context = $2::\"ApplicationType\")",
                )
                .bind(id.as_str())
                .bind(label)
                .fetch_one(&self.pool),
            )
            .await?;
            Ok(exists)
        })
    }

    fn supports(&self, context: &AppContext) -> bool {
        pg_context(context).is_ok()
    }
}
