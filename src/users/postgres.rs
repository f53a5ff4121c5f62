//! [`PgUsers`]: the `users` and `user_permissions` tables (feature `postgres`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{
    canonical_email, PermissionGrant, Role, User, UserError, UserRepository, UserResolver,
};
use crate::backend::{BoxFuture, StoreError, StoreFuture};
use crate::clock::Clock;
use crate::record::duration_ms;
use crate::telemetry::{StoreMetrics, StoreOp};
use crate::AppContext;

/// The backend's name in errors and metrics (the session store's, [`PgSessionStore`]'s, too:
/// one database).
///
/// [`PgSessionStore`]: crate::store::PgSessionStore
pub(crate) const BACKEND: &str = "postgres";

/// A driver error as a [`StoreError`] (a pool that ran out of time: a timeout).
pub(crate) fn pg_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Timeout { backend: BACKEND },
        other => StoreError::backend(BACKEND, other),
    }
}

/// [`crate::backend::timed`] for sqlx: one query or transaction within `limit`.
pub(crate) async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    crate::backend::timed(BACKEND, limit, f, pg_error).await
}

/// The `"ApplicationType"` label of a context, or an error for contexts the enum lacks.
pub(crate) fn pg_context(context: &AppContext) -> Result<&'static str, StoreError> {
    match context {
        AppContext::Web => Ok("web"),
        AppContext::Admin => Ok("admin"),
        AppContext::Custom(c) => Err(StoreError::backend(
            BACKEND,
            format!(
                "context {:?} is not a label of the \"ApplicationType\" enum (web, admin); store its sessions in Redis or memory",
                c.as_str()
            ),
        )),
    }
}

/// The users of the shared PostgreSQL database, as the TypeScript apps' Prisma models them:
/// [`UserResolver`] (with the context's unexpired permissions) and the TypeScript apps'
/// `ProductionUserManager` operations ([`UserRepository`]).
///
/// `hashed_password` is whatever the apps store (a PHC string such as argon2's); this crate
/// never hashes or sees plain passwords.
///
/// # Permissions on the request path
///
/// Resolving a user also loads their unexpired permissions in the context, a subquery that
/// costs PostgreSQL about a quarter of the lookup. Most contexts (the public `web` app) hold
/// no permission rows at all, so the query that loads permissions also tells whether the
/// context holds any, and while a context is known to hold none (for at most
/// [`permissions_probe_interval`](Self::permissions_probe_interval), default 1 s) users are
/// loaded without the subquery. That knowledge costs no query of its own. Revocations are
/// always seen at once (a context with any row gets the full query); a first grant in an
/// empty context, made by another process or by SQL, shows up within the interval, and one
/// made through this value (or a clone) at once.
///
/// # One query per request
///
/// Paired with the session store ([`PgSessionStore::users`]), a request whose session
/// is read from PostgreSQL gets its user from that same query, so it makes one round trip to
/// PostgreSQL, not two. `Sessions::from_env` pairs them.
///
/// [`PgSessionStore::users`]: crate::store::postgres::PgSessionStore::users
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_app_sessions::{store::postgres::connect, users::PgUsers, UserRepository};
/// let users = PgUsers::new(connect("postgres://postgres@127.0.0.1:5432/app").await?);
/// let ada = users.find_by_email("ada@example.com").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgUsers {
    pool: PgPool,
    timeout: Duration,
    probe_interval: Duration,
    grants: Arc<[GrantProbe; 2]>,
    clock: Clock,
    metrics: StoreMetrics,
}

/// What is known about the permission rows of one `"ApplicationType"` label (web, admin).
#[derive(Debug, Default)]
struct GrantProbe {
    /// Start (ms) of the last query that found no row at all in the context, or 0.
    empty_since: AtomicI64,
    /// When (ms) a grant through this value last committed: a query that started no later
    /// saw a table without it.
    granted_at: AtomicI64,
}

impl GrantProbe {
    fn known_empty(&self, now: i64, interval: i64) -> bool {
        let since = self.empty_since.load(Ordering::Acquire);
        since > 0
            && now < since.saturating_add(interval)
            && self.granted_at.load(Ordering::Acquire) < since
    }

    /// What a query that started at `started` found: whether the context holds any row.
    fn found(&self, started: i64, any: bool) {
        self.empty_since
            .store(if any { 0 } else { started }, Ordering::Release);
    }
}

/// The slot of a context's label in [`PgUsers::grants`].
fn grant_slot(label: &str) -> usize {
    usize::from(label == "admin")
}

/// `users.email` with its ASCII letters lowercased and nothing else changed: the SQL side of
/// [`canonical_email`]. (`lower()` would map non-ASCII letters too, and some of them to ASCII
/// ones: `lower('\u{212A}')` is `k`.)
macro_rules! ascii_folded_email {
    () => {
        "translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
    };
}

// The columns of `User`, once: every statement below is a literal, so none is formatted per
// request and sqlx finds its prepared statement by a static string.
macro_rules! user_columns {
    () => {
        "id, email, hashed_password, is_verified, role::text, created_at, last_login_at"
    };
}

/// The unexpired permissions of user `$user` in the context label `$label`, as an array.
macro_rules! context_permissions {
    ($user:literal, $label:literal) => {
        concat!(
            "ARRAY(SELECT p.permission::text FROM user_permissions p WHERE p.user_id = ",
            $user,
            " AND p.application_context = ",
            $label,
            "::text::\"ApplicationType\" AND (p.expires_at IS NULL OR p.expires_at > now()))"
        )
    };
}
pub(crate) use context_permissions;

/// Whether the context label `$label` holds any permission row, expired ones included.
macro_rules! context_has_grants {
    ($label:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM user_permissions WHERE application_context = ",
            $label,
            "::text::\"ApplicationType\")"
        )
    };
}
pub(crate) use context_has_grants;

/// A user without permissions: contexts with no permission rows, and custom contexts.
const BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
/// A user with their unexpired permissions in the context `$2`, and whether that context
/// holds any permission row at all (an index probe that keeps [`GrantProbe`] current).
const BY_ID_WITH_PERMISSIONS: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", ",
    context_permissions!("$1", "$2"),
    ", ",
    context_has_grants!("$2"),
    " FROM users WHERE id = $1"
);
/// A user by exact email, and by email in any letter case (at most two, to spot ambiguity).
const BY_EMAIL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
const BY_FOLDED_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE ",
    ascii_folded_email!(),
    " = $1 LIMIT 2"
);
pub(crate) type UserRow = (
    Uuid,
    String,
    Option<String>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// [`UserRow`], the context's permissions, and whether the context holds any.
type UserRowWithPermissions = (
    Uuid,
    String,
    Option<String>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<String>,
    bool,
);

const USER_COLUMNS: &str = user_columns!();

pub(crate) fn user(row: UserRow, mut permissions: Vec<String>) -> Result<User, StoreError> {
    permissions.sort_unstable();
    let (id, email, hashed_password, is_verified, role, created_at, last_login_at) = row;
    let role: Role = role.parse().map_err(|e| StoreError::backend(BACKEND, e))?;
    Ok(User {
        id,
        email,
        hashed_password,
        role,
        is_verified,
        created_at,
        last_login_at,
        permissions,
    })
}

impl PgUsers {
    /// Users on `pool` (share it with [`PgSessionStore`](crate::store::postgres::PgSessionStore)).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(1),
            grants: Arc::default(),
            clock: Clock::system(),
            metrics: StoreMetrics::new(BACKEND),
        }
    }

    /// Reads the time for the probe interval from `clock` (default: the system clock; see
    /// [`clock`](crate::clock)).
    #[must_use]
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// How long a context found to hold no permission rows is trusted to still hold none
    /// (default 1 s; see [Permissions on the request path](Self#permissions-on-the-request-path)).
    /// `Duration::ZERO` loads permissions with every user.
    #[must_use]
    pub fn permissions_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// How long one query may take (default 2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn by_id(
        &self,
        context: &AppContext,
        id: &Uuid,
    ) -> Result<Option<Arc<User>>, StoreError> {
        // Contexts that are not labels of "ApplicationType" have no permission rows.
        let label = pg_context(context).ok();
        let Some(label) = label.filter(|label| !self.grants_absent(label)) else {
            let row: Option<UserRow> = timed(
                self.timeout,
                sqlx::query_as(BY_ID).bind(id).fetch_optional(&self.pool),
            )
            .await?;
            return row
                .map(|row| user(row, Vec::new()).map(Arc::new))
                .transpose();
        };
        let started = self.clock.now_ms();
        let row: Option<UserRowWithPermissions> = timed(
            self.timeout,
            sqlx::query_as(BY_ID_WITH_PERMISSIONS)
                .bind(id)
                .bind(label)
                .fetch_optional(&self.pool),
        )
        .await?;
        row.map(|(a, b, c, d, e, f, g, permissions, any)| {
            self.grants_found(label, started, any);
            user((a, b, c, d, e, f, g), permissions).map(Arc::new)
        })
        .transpose()
    }

    /// Whether the context `label` is known to hold no permission rows now (no I/O): then
    /// its users are loaded without the permissions subquery.
    pub(crate) fn grants_absent(&self, label: &str) -> bool {
        let interval = duration_ms(self.probe_interval);
        interval > 0 && self.grants[grant_slot(label)].known_empty(self.clock.now_ms(), interval)
    }

    /// What a query that loaded permissions, started at `started` (this value's clock), found
    /// of the context `label`: whether it holds any permission row.
    pub(crate) fn grants_found(&self, label: &str, started: i64, any: bool) {
        self.grants[grant_slot(label)].found(started, any);
    }

    /// Who this value (and its clones) is: a [`JoinedUser`](crate::backend::JoinedUser)'s source.
    pub(crate) fn owner(&self) -> usize {
        Arc::as_ptr(&self.grants).cast::<()>() as usize
    }

    /// This value's clock reading, for [`grants_found`](Self::grants_found).
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Records a committed grant in `label`, so this value stops trusting an empty probe.
    fn granted(&self, label: &str) {
        self.grants[grant_slot(label)]
            .granted_at
            .store(self.clock.now_ms(), Ordering::Release);
    }

    async fn by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        // No user can have an address without a canonical form: found without asking.
        let Ok(email) = canonical_email(email) else {
            return Ok(None);
        };
        let row: Option<UserRow> = timed(
            self.timeout,
            sqlx::query_as(BY_EMAIL)
                .bind(&email)
                .fetch_optional(&self.pool),
        )
        .await?;
        let row = match row {
            Some(row) => Some(row),
            // Rows written by other apps may keep the case the user typed; the unique index is
            // case-sensitive, so accept an ASCII-case-insensitive match only when it is
            // unambiguous.
            None => {
                let rows: Vec<UserRow> = timed(
                    self.timeout,
                    sqlx::query_as(BY_FOLDED_EMAIL)
                        .bind(&email)
                        .fetch_all(&self.pool),
                )
                .await?;
                match <[UserRow; 1]>::try_from(rows) {
                    Ok([row]) => Some(row),
                    Err(_) => None,
                }
            }
        };
        row.map(|row| user(row, Vec::new()).map(Arc::new))
            .transpose()
    }

    /// Runs `write` in a transaction that first makes sure no *other* user has `email` in any
    /// letter case. `users_email_key` is case-sensitive (it is Prisma's, so it stays as it is)
    /// while logins match emails case-insensitively, so the check is done here, under an
    /// advisory lock on the folded email that serializes concurrent writers of it.
    async fn write_unique<T, F>(&self, id: Uuid, folded: &str, write: F) -> Result<T, UserError>
    where
        F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    {
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(folded)
                .execute(&mut *tx)
                .await?;
            let (taken,): (bool,) = sqlx::query_as(concat!(
                "SELECT EXISTS (SELECT 1 FROM users WHERE ",
                ascii_folded_email!(),
                " = $1 AND id <> $2)"
            ))
            .bind(folded)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if taken {
                return Ok(None);
            }
            let out = write(&mut tx).await?;
            tx.commit().await?;
            Ok(Some(out))
        };
        match timed(self.timeout, work).await {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(UserError::EmailTaken),
            Err(error) => Err(email_taken(error)),
        }
    }

    async fn insert(&self, new: User) -> Result<Arc<User>, UserError> {
        let email = canonical_email(&new.email)?;
        let row: UserRow = self
            .write_unique(new.id, &email.clone(), |conn| {
                Box::pin(async move {
                    let sql = format!(
                        "INSERT INTO users (id, email, hashed_password, is_verified, role, created_at, last_login_at) \
                         VALUES ($1, $2, $3, $4, $5::text::\"UserRole\", $6, $7) RETURNING {USER_COLUMNS}"
                    );
                    sqlx::query_as(&sql)
                        .bind(new.id)
                        .bind(&email)
                        .bind(new.hashed_password.as_deref())
                        .bind(new.is_verified)
                        .bind(new.role.as_str())
                        .bind(new.created_at)
                        .bind(new.last_login_at)
                        .fetch_one(conn)
                        .await
                })
            })
            .await?;
        Ok(Arc::new(user(row, Vec::new())?))
    }

    async fn replace(&self, changed: User) -> Result<Option<Arc<User>>, UserError> {
        let email = canonical_email(&changed.email)?;
        let row: Option<UserRow> = self
            .write_unique(changed.id, &email.clone(), |conn| {
                Box::pin(async move {
                    let sql = format!(
                        "UPDATE users SET email = $2, hashed_password = $3, is_verified = $4, \
                           role = $5::text::\"UserRole\", last_login_at = $6 \
                         WHERE id = $1 RETURNING {USER_COLUMNS}"
                    );
                    sqlx::query_as(&sql)
                        .bind(changed.id)
                        .bind(&email)
                        .bind(changed.hashed_password.as_deref())
                        .bind(changed.is_verified)
                        .bind(changed.role.as_str())
                        .bind(changed.last_login_at)
                        .fetch_optional(conn)
                        .await
                })
            })
            .await?;
        row.map(|row| user(row, Vec::new()).map(Arc::new))
            .transpose()
            .map_err(UserError::Store)
    }
}

/// `users_email_key` violations are [`UserError::EmailTaken`]; anything else a store error.
fn email_taken(error: StoreError) -> UserError {
    let unique = match &error {
        StoreError::Backend { source, .. } => source
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|e| e.constraint() == Some("users_email_key")),
        _ => false,
    };
    if unique {
        UserError::EmailTaken
    } else {
        UserError::Store(error)
    }
}

impl UserResolver for PgUsers {
    type User = User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.metrics
            .pending(StoreOp::ResolveUser, self.by_id(context, user_id))
    }

    /// What a [`PgSessionStore`](crate::store::PgSessionStore) paired with this value
    /// ([`users`](crate::store::PgSessionStore::users)) read with the session, in
    /// the same query: this value's own answer, so the request makes one query, not two.
    fn joined(
        &self,
        _context: &AppContext,
        user_id: &Uuid,
        joined: &crate::backend::JoinedUser,
    ) -> Option<Option<Arc<User>>> {
        joined
            .take_for::<User>(self.owner())
            .filter(|user| user.as_ref().is_none_or(|user| user.id == *user_id))
    }
}

impl UserRepository for PgUsers {
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        StoreFuture::new(self.by_email(email))
    }

    fn create(&self, user: User) -> StoreFuture<'_, Result<Arc<User>, UserError>> {
        StoreFuture::new(self.insert(user))
    }

    fn update(&self, user: User) -> StoreFuture<'_, Result<Option<Arc<User>>, UserError>> {
        StoreFuture::new(self.replace(user))
    }

    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(async move {
            timed(
                self.timeout,
                sqlx::query("UPDATE users SET last_login_at = now() WHERE id = $1")
                    .bind(user_id)
                    .execute(&self.pool),
            )
            .await
            .map(drop)
        })
    }

    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(async move {
            let label = pg_context(grant.context)?;
            let done = timed(
                self.timeout,
                sqlx::query(
                    "INSERT INTO user_permissions (user_id, permission, application_context, granted_by, expires_at) \
                     VALUES ($1, $2, $3::\"ApplicationType\", $4, $5) \
                     ON CONFLICT (user_id, permission, application_context) DO UPDATE \
                     SET granted_by = EXCLUDED.granted_by, expires_at = EXCLUDED.expires_at, granted_at = now()",
                )
                .bind(grant.user_id)
                .bind(grant.permission)
                .bind(label)
                .bind(grant.granted_by)
                .bind(grant.expires_at)
                .execute(&self.pool),
            )
            .await;
            // Even after an error: a timed-out INSERT may still commit.
            self.granted(label);
            done.map(drop)
        })
    }

    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let label = pg_context(context)?;
            let done = timed(
                self.timeout,
                sqlx::query(
                    "DELETE FROM user_permissions \
                     WHERE application_context = $2::\"ApplicationType\" AND user_id = $1 AND permission = $3",
                )
                .bind(user_id)
                .bind(label)
                .bind(permission)
                .execute(&self.pool),
            )
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_probe_is_trusted_for_the_interval_and_not_after_a_grant() {
        let probe = GrantProbe::default();
        assert!(!probe.known_empty(1_000, 500), "nothing probed yet");
        probe.found(1_000, false);
        assert!(probe.known_empty(1_499, 500));
        assert!(!probe.known_empty(1_500, 500), "trusted past the interval");
        // A grant committed in the same millisecond as the probe started may be unseen.
        probe.granted_at.store(1_000, Ordering::Release);
        assert!(!probe.known_empty(1_200, 500), "trusted after a grant");
        // A query that found a row forgets the empty probe at once.
        probe.found(2_000, false);
        probe.found(2_100, true);
        assert!(
            !probe.known_empty(2_200, 500),
            "trusted after rows were found"
        );
    }
}
