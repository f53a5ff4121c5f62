//! [`PgUsers`]: the `users` and `user_permissions` tables (feature `postgres`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::{PermissionGrant, Role, User, UserError, UserRepository, UserResolver};
use crate::store::postgres::{pg_context, timed, BACKEND};
use crate::store::{BoxFuture, StoreError};
use crate::AppContext;

/// The users of the shared PostgreSQL database, as the TypeScript apps' Prisma models them:
/// [`UserResolver`] (with the context's unexpired permissions) and the seed's
/// `ProductionUserManager` operations ([`UserRepository`]).
///
/// `hashed_password` is whatever the apps store (a PHC string such as argon2's); this crate
/// never hashes or sees plain passwords.
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
}

type UserRow = (
    Uuid,
    String,
    Option<String>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const USER_COLUMNS: &str =
    "id, email, hashed_password, is_verified, role::text, created_at, last_login_at";

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

fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

impl PgUsers {
    /// Users on `pool` (share it with [`PgSessionStore`](crate::store::postgres::PgSessionStore)).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: Duration::from_secs(2),
        }
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
        // One round trip: the user and the context's live permissions. Contexts that are not
        // labels of "ApplicationType" have no permission rows.
        let label = pg_context(context).ok();
        let sql = format!(
            "SELECT {USER_COLUMNS}, \
               CASE WHEN $2::text IS NULL THEN ARRAY[]::text[] ELSE ARRAY( \
                 SELECT p.permission::text FROM user_permissions p \
                 WHERE p.application_context = $2::text::\"ApplicationType\" AND p.user_id = u.id \
                 AND (p.expires_at IS NULL OR p.expires_at > now()) ORDER BY p.permission) END \
             FROM users u WHERE u.id = $1"
        );
        type Row = (
            Uuid,
            String,
            Option<String>,
            bool,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Vec<String>,
        );
        let row: Option<Row> = timed(
            self.timeout,
            sqlx::query_as(&sql)
                .bind(id)
                .bind(label)
                .fetch_optional(&self.pool),
        )
        .await?;
        row.map(|(a, b, c, d, e, f, g, permissions)| {
            user((a, b, c, d, e, f, g), permissions).map(Arc::new)
        })
        .transpose()
    }

    async fn by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        let email = normalize(email);
        let exact = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row: Option<UserRow> = timed(
            self.timeout,
            sqlx::query_as(&exact)
                .bind(&email)
                .fetch_optional(&self.pool),
        )
        .await?;
        let row = match row {
            Some(row) => Some(row),
            // Rows written by other apps may keep the case the user typed; the unique index is
            // case-sensitive, so accept a case-insensitive match only when it is unambiguous.
            None => {
                let folded =
                    format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = $1 LIMIT 2");
                let rows: Vec<UserRow> = timed(
                    self.timeout,
                    sqlx::query_as(&folded).bind(&email).fetch_all(&self.pool),
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
    async fn write_unique<T, F>(&self, id: Uuid, email: &str, write: F) -> Result<T, UserError>
    where
        F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    {
        let folded = normalize(email);
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&folded)
                .execute(&mut *tx)
                .await?;
            let (taken,): (bool,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = $1 AND id <> $2)",
            )
            .bind(&folded)
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
        let email = normalize(&new.email);
        let row: UserRow = self
            .write_unique(new.id, &new.email, |conn| {
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
        let email = normalize(&changed.email);
        let row: Option<UserRow> = self
            .write_unique(changed.id, &changed.email, |conn| {
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
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        Box::pin(self.by_id(context, user_id))
    }
}

impl UserRepository for PgUsers {
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        Box::pin(self.by_email(email))
    }

    fn create(&self, user: User) -> BoxFuture<'_, Result<Arc<User>, UserError>> {
        Box::pin(self.insert(user))
    }

    fn update(&self, user: User) -> BoxFuture<'_, Result<Option<Arc<User>>, UserError>> {
        Box::pin(self.replace(user))
    }

    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
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

    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let label = pg_context(grant.context)?;
            timed(
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
            .await
            .map(drop)
        })
    }

    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
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
