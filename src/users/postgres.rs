//! [`PgUsers`]: the `users` and `user_permissions` tables (feature `postgres`).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{
    canonical_email, PermissionGrant, Role, User, UserError, UserRepository, UserResolver,
};
use crate::clock::Clock;
use crate::record::duration_ms;
use crate::store::postgres::{pg_context, timed, BACKEND};
use crate::store::{BoxFuture, StoreError, StoreFuture};
use crate::telemetry::{StoreMetrics, StoreOp};
use crate::AppContext;

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
/// no permission rows at all, so each context is probed at most once per
/// [`permissions_probe_interval`](Self::permissions_probe_interval) (default 1 s) and, while
/// it holds none, users are loaded without the subquery. Revocations are always seen at once
/// (a context with any row gets the full query); a first grant in an empty context, made by
/// another process or by SQL, shows up within the interval, and one made through this value
/// (or a clone) at once.
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
    /// Start (ms) of the last probe that found no row at all, or 0.
    empty_since: AtomicI64,
    /// When (ms) a grant through this value last committed: a probe that started no later
    /// saw a table without it.
    granted_at: AtomicI64,
    /// One probe at a time; other requests take the full query meanwhile.
    probing: AtomicBool,
}

impl GrantProbe {
    fn known_empty(&self, now: i64, interval: i64) -> bool {
        let since = self.empty_since.load(Ordering::Acquire);
        since > 0
            && now < since.saturating_add(interval)
            && self.granted_at.load(Ordering::Acquire) < since
    }
}

/// The one probe in flight for a label; dropping it (done, or the request was cancelled
/// mid-probe) lets the next request probe.
struct Probing<'a>(&'a GrantProbe);

impl<'a> Probing<'a> {
    fn start(probe: &'a GrantProbe) -> Option<Self> {
        (!probe.probing.swap(true, Ordering::AcqRel)).then_some(Self(probe))
    }
}

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
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

/// A user without permissions: contexts with no permission rows, and custom contexts.
const BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
/// A user with their unexpired permissions in the context `$2`.
const BY_ID_WITH_PERMISSIONS: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", ARRAY(SELECT p.permission::text FROM user_permissions p \
       WHERE p.user_id = $1 AND p.application_context = $2::text::\"ApplicationType\" \
       AND (p.expires_at IS NULL OR p.expires_at > now())) \
     FROM users WHERE id = $1"
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
/// Whether the context `$1` holds any permission row, expired ones included.
const ANY_GRANT: &str = "SELECT EXISTS (SELECT 1 FROM user_permissions \
     WHERE application_context = $1::text::\"ApplicationType\")";

type UserRow = (
    Uuid,
    String,
    Option<String>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// [`UserRow`] and the context's permissions.
type UserRowWithPermissions = (
    Uuid,
    String,
    Option<String>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<String>,
);

const USER_COLUMNS: &str = user_columns!();

fn user(row: UserRow, permissions: Vec<String>) -> Result<User, StoreError> {
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
        let with_permissions = match label {
            Some(label) => !self.holds_no_grants(label).await?,
            None => false,
        };
        if !with_permissions {
            let row: Option<UserRow> = timed(
                self.timeout,
                sqlx::query_as(BY_ID).bind(id).fetch_optional(&self.pool),
            )
            .await?;
            return row
                .map(|row| user(row, Vec::new()).map(Arc::new))
                .transpose();
        }
        let row: Option<UserRowWithPermissions> = timed(
            self.timeout,
            sqlx::query_as(BY_ID_WITH_PERMISSIONS)
                .bind(id)
                .bind(label)
                .fetch_optional(&self.pool),
        )
        .await?;
        row.map(|(a, b, c, d, e, f, g, mut permissions)| {
            permissions.sort_unstable();
            user((a, b, c, d, e, f, g), permissions).map(Arc::new)
        })
        .transpose()
    }

    /// Whether the context `label` is known to hold no permission rows, probing it when what
    /// is known is older than the probe interval. Unknown counts as "may hold some".
    async fn holds_no_grants(&self, label: &str) -> Result<bool, StoreError> {
        let interval = duration_ms(self.probe_interval);
        if interval == 0 {
            return Ok(false);
        }
        let probe = &self.grants[grant_slot(label)];
        let now = self.clock.now_ms();
        if probe.known_empty(now, interval) {
            return Ok(true);
        }
        let Some(_probing) = Probing::start(probe) else {
            return Ok(false);
        };
        let found = timed(
            self.timeout,
            sqlx::query_scalar::<_, bool>(ANY_GRANT)
                .bind(label)
                .fetch_one(&self.pool),
        )
        .await;
        // A failed probe knows nothing: the full query decides (and reports the outage).
        let empty = match found {
            Ok(any) => !any,
            Err(error) => {
                tracing::debug!(%error, "permission probe failed");
                false
            }
        };
        probe
            .empty_since
            .store(if empty { now } else { 0 }, Ordering::Release);
        Ok(empty && probe.granted_at.load(Ordering::Acquire) < now)
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
    fn one_probe_at_a_time_and_a_cancelled_one_frees_the_slot() {
        let probe = GrantProbe::default();
        let first = Probing::start(&probe).expect("nobody is probing");
        assert!(Probing::start(&probe).is_none(), "two probes at once");
        // A request dropped mid-probe drops its guard with it.
        drop(first);
        assert!(Probing::start(&probe).is_some(), "the slot stayed taken");
    }

    #[test]
    fn an_empty_probe_is_trusted_for_the_interval_and_not_after_a_grant() {
        let probe = GrantProbe::default();
        assert!(!probe.known_empty(1_000, 500), "nothing probed yet");
        probe.empty_since.store(1_000, Ordering::Release);
        assert!(probe.known_empty(1_499, 500));
        assert!(!probe.known_empty(1_500, 500), "trusted past the interval");
        // A grant committed in the same millisecond as the probe started may be unseen.
        probe.granted_at.store(1_000, Ordering::Release);
        assert!(!probe.known_empty(1_200, 500), "trusted after a grant");
    }
}
