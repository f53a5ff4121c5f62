//! Users: the [`UserResolver`] the layer calls on every authenticated request, the built-in
//! [`User`] type shaped like the `users` table, and the [`UserRepository`] operations of the
//! TypeScript apps' `ProductionUserManager` that login and registration need.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backend::{StoreError, StoreFuture};
use crate::AppContext;

mod email;
pub use email::{canonical_email, EmailError, MAX_EMAIL_BYTES};
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::MemoryUsers;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PgUsers;

/// Turns the `user_id` of a session into your user type.
///
/// Returning `Ok(None)` (the user was deleted) makes the request anonymous; returning an
/// error makes it unauthenticated with `503` on routes that require a user. Users are shared
/// as `Arc`s so a cached user costs a reference-count increment per request, not a copy.
///
/// ```
/// use std::sync::Arc;
/// use tower_app_sessions::{store::{StoreError, StoreFuture}, AppContext, UserResolver};
///
/// struct Everyone;
/// impl UserResolver for Everyone {
///     type User = String;
///     fn resolve<'a>(&'a self, context: &'a AppContext, id: &'a uuid::Uuid) -> StoreFuture<'a, Result<Option<Arc<String>>, StoreError>> {
///         // Known in process: answered at once (a database would use `StoreFuture::new`).
///         StoreFuture::ready(Ok(Some(Arc::new(format!("user {id} in {context}")))))
///     }
/// }
/// ```
pub trait UserResolver: Send + Sync + 'static {
    /// The user type handlers receive in [`CurrentUser`](crate::CurrentUser).
    type User: Send + Sync + 'static;

    /// The user with this id as the application `context` sees them (for [`User`]: with the
    /// permissions granted in that context), if there is one.
    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<Self::User>>, StoreError>>;

    /// The user a store read with the session ([`Loaded::user`](crate::store::Loaded)), if
    /// this resolver recognises it as its own answer for `user_id` in `context`: the layer
    /// then does not [`resolve`](Self::resolve). `Some(None)`: the query found the user
    /// gone. The default recognises nothing.
    fn joined(
        &self,
        context: &AppContext,
        user_id: &Uuid,
        joined: &crate::backend::JoinedUser,
    ) -> Option<Option<Arc<Self::User>>> {
        let _ = (context, user_id, joined);
        None
    }
}

/// A shared resolver is a resolver.
impl<R: UserResolver + ?Sized> UserResolver for Arc<R> {
    type User = R::User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<Self::User>>, StoreError>> {
        (**self).resolve(context, user_id)
    }

    fn joined(
        &self,
        context: &AppContext,
        user_id: &Uuid,
        joined: &crate::backend::JoinedUser,
    ) -> Option<Option<Arc<Self::User>>> {
        (**self).joined(context, user_id, joined)
    }
}

/// A user's role, the `UserRole` enum of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `user`
    User,
    /// `admin`
    Admin,
    /// `operator`
    Operator,
    /// `support`
    Support,
}

/// A role label that is not one of `user`, `admin`, `operator`, `support`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected user, admin, operator or support")]
pub struct UnknownRole(pub String);

labels!(Role, UnknownRole, trim: false, |other: &str| UnknownRole(other.chars().take(32).collect()),
    Role::User => "user",
    Role::Admin => "admin",
    Role::Operator => "operator",
    Role::Support => "support",
);

/// A row of the `users` table.
///
/// `Debug` and `Serialize` leave the password hash out.
///
/// ```
/// use tower_app_sessions::{Role, User};
/// let user = User::new("ada@example.com", Role::Admin).hashed_password("$argon2id$…");
/// assert!(!format!("{user:?}").contains("argon2"));
/// assert!(!serde_json::to_string(&user).unwrap().contains("argon2"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// `users.id`
    pub id: Uuid,
    /// `users.email`
    pub email: String,
    /// `users.hashed_password` (a PHC string such as argon2's); never serialized.
    #[serde(skip)]
    pub hashed_password: Option<String>,
    /// `users.role`
    pub role: Role,
    /// `users.is_verified`
    pub is_verified: bool,
    /// `users.created_at`
    pub created_at: DateTime<Utc>,
    /// `users.last_login_at`
    pub last_login_at: Option<DateTime<Utc>>,
    /// The unexpired `user_permissions` of the context the user was resolved in, sorted.
    /// Empty on users not obtained through [`UserResolver::resolve`].
    pub permissions: Vec<String>,
}

impl User {
    /// A new, unverified user with a random id, created now, without a password.
    #[must_use]
    pub fn new(email: impl Into<String>, role: Role) -> Self {
        Self {
            id: Uuid::new_v4(),
            email: email.into(),
            hashed_password: None,
            role,
            is_verified: false,
            created_at: Utc::now(),
            last_login_at: None,
            permissions: Vec::new(),
        }
    }

    /// Whether the user holds `permission` in the context they were resolved in.
    ///
    /// ```
    /// use tower_app_sessions::{Role, User};
    /// let mut user = User::new("ops@example.com", Role::Operator);
    /// user.permissions = vec!["orders:refund".into()];
    /// assert!(user.has_permission("orders:refund"));
    /// assert!(!user.has_permission("users:delete"));
    /// ```
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// Sets the password hash (hash it yourself, e.g. with argon2; plain passwords never
    /// reach this crate).
    #[must_use]
    pub fn hashed_password(mut self, hash: impl Into<String>) -> Self {
        self.hashed_password = Some(hash.into());
        self
    }

    /// Marks the email as verified.
    #[must_use]
    pub fn verified(mut self) -> Self {
        self.is_verified = true;
        self
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("is_verified", &self.is_verified)
            .field("created_at", &self.created_at)
            .field("last_login_at", &self.last_login_at)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Another user has this email (`users_email_key`).
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The email has no canonical form ([`canonical_email`]); nothing was written.
    #[error(transparent)]
    InvalidEmail(#[from] EmailError),
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The user operations of the TypeScript apps' `ProductionUserManager`: what login and
/// registration need on top of [`UserResolver`].
///
/// Emails are stored and compared in their [`canonical_email`] form (ASCII letters
/// compared without case); an address without one is never stored
/// ([`UserError::InvalidEmail`]) and never found.
pub trait UserRepository: UserResolver<User = User> {
    /// The user with this email; `None` (without any I/O) for an address that has no
    /// [`canonical_email`] form.
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>>;

    /// Stores a new user.
    fn create(&self, user: User) -> StoreFuture<'_, Result<Arc<User>, UserError>>;

    /// Replaces the stored user with the same id; `None` if there is none.
    fn update(&self, user: User) -> StoreFuture<'_, Result<Option<Arc<User>>, UserError>>;

    /// Sets `last_login_at` to now.
    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Grants `permission` in `context` until `expires_at` (forever if `None`); granting it
    /// again replaces the expiry (`user_permissions` is unique on user, permission, context).
    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Revokes `permission` in `context`; `true` if it was granted.
    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> StoreFuture<'a, Result<bool, StoreError>>;
}

/// A row of `user_permissions` to write with [`UserRepository::grant`].
#[derive(Debug, Clone, Copy)]
pub struct PermissionGrant<'a> {
    /// Who gets it.
    pub user_id: &'a Uuid,
    /// Where it applies.
    pub context: &'a AppContext,
    /// The permission, at most 100 characters (`VARCHAR(100)`).
    pub permission: &'a str,
    /// Who granted it (`granted_by`).
    pub granted_by: Option<&'a Uuid>,
    /// When it lapses; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
}
