//! [`MemoryUsers`]: users held in process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{canonical_email, PermissionGrant, User, UserError, UserRepository, UserResolver};
use crate::backend::{StoreError, StoreFuture};
use crate::AppContext;

/// An in-process [`UserRepository`]: the users of `SESSION_ENV=mock` and of tests and demos.
/// Clones share the same users.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tower_app_sessions::{MemoryUsers, Role, User, UserRepository, UserResolver};
///
/// let users = MemoryUsers::new();
/// let ada = users.create(User::new("Ada@Example.com", Role::Admin)).await.unwrap();
/// assert_eq!(users.find_by_email("ada@example.com").await.unwrap().unwrap().id, ada.id);
/// assert!(users.resolve(&tower_app_sessions::AppContext::Admin, &ada.id).await.unwrap().is_some());
/// # });
/// ```
#[derive(Clone, Default)]
pub struct MemoryUsers {
    inner: Arc<RwLock<Directory>>,
}

#[derive(Default)]
struct Directory {
    by_id: HashMap<Uuid, Arc<User>>,
    by_email: HashMap<String, Uuid>,
    /// permission → expiry, per user and context
    permissions: HashMap<(Uuid, AppContext), Grants>,
}

/// Permission → expiry (`None`: never).
type Grants = HashMap<String, Option<DateTime<Utc>>>;

impl std::fmt::Debug for MemoryUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryUsers")
            .field("users", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryUsers {
    /// An empty directory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.read(|d| d.by_id.len())
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts a user now (the synchronous form of [`UserRepository::create`]), with the
    /// email in its canonical form.
    ///
    /// # Errors
    /// [`UserError::EmailTaken`] if the email is already used, [`UserError::InvalidEmail`]
    /// if it has no canonical form.
    pub fn insert(&self, mut user: User) -> Result<Arc<User>, UserError> {
        let key = canonical_email(&user.email)?;
        self.write(|d| {
            if d.by_email.contains_key(&key) {
                return Err(UserError::EmailTaken);
            }
            user.email.clone_from(&key);
            let user = Arc::new(user);
            d.by_email.insert(key, user.id);
            d.by_id.insert(user.id, Arc::clone(&user));
            Ok(user)
        })
    }

    /// Deletes the user (and their permissions) now; their sessions stop authenticating at
    /// their next request, which finds no user. Returns the deleted user.
    pub fn remove(&self, user_id: &Uuid) -> Option<Arc<User>> {
        self.write(|d| {
            let user = d.by_id.remove(user_id)?;
            d.by_email.remove(&user.email);
            d.permissions.retain(|(id, _), _| id != user_id);
            Some(user)
        })
    }

    /// The user as `context` sees them: with the permissions granted there and still valid.
    fn get(&self, context: &AppContext, user_id: &Uuid) -> Option<Arc<User>> {
        self.read(|d| {
            let user = d.by_id.get(user_id)?;
            // No hashing at all while nobody holds a permission (the common case).
            let grants = (!d.permissions.is_empty())
                .then(|| d.permissions.get(&(*user_id, context.clone())))
                .flatten();
            let Some(grants) = grants else {
                // The common case shares the stored user: no copy per request.
                return Some(Arc::clone(user));
            };
            let now = Utc::now();
            let mut granted: Vec<String> = grants
                .iter()
                .filter(|(_, expires)| expires.is_none_or(|at| at > now))
                .map(|(p, _)| p.clone())
                .collect();
            if granted.is_empty() {
                return Some(Arc::clone(user));
            }
            granted.sort();
            let mut user = User::clone(user);
            user.permissions = granted;
            Some(Arc::new(user))
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Directory) -> T) -> T {
        f(&crate::sync::read(&self.inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Directory) -> T) -> T {
        f(&mut crate::sync::write(&self.inner))
    }
}

impl UserResolver for MemoryUsers {
    type User = User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        StoreFuture::ready(Ok(self.get(context, user_id)))
    }
}

impl UserRepository for MemoryUsers {
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        let Ok(key) = canonical_email(email) else {
            return StoreFuture::ready(Ok(None));
        };
        StoreFuture::ready(Ok(
            self.read(|d| d.by_email.get(&key).and_then(|id| d.by_id.get(id)).cloned())
        ))
    }

    fn create(&self, user: User) -> StoreFuture<'_, Result<Arc<User>, UserError>> {
        StoreFuture::ready(self.insert(user))
    }

    fn update(&self, mut user: User) -> StoreFuture<'_, Result<Option<Arc<User>>, UserError>> {
        let new_key = match canonical_email(&user.email) {
            Ok(key) => key,
            Err(error) => return StoreFuture::ready(Err(error.into())),
        };
        user.email.clone_from(&new_key);
        StoreFuture::ready(self.write(|d| {
            let Some(old) = d.by_id.get(&user.id).cloned() else {
                return Ok(None);
            };
            let old_key = old.email.clone();
            if old_key != new_key {
                if d.by_email.contains_key(&new_key) {
                    return Err(UserError::EmailTaken);
                }
                d.by_email.remove(&old_key);
                d.by_email.insert(new_key, user.id);
            }
            let user = Arc::new(user);
            d.by_id.insert(user.id, Arc::clone(&user));
            Ok(Some(user))
        }))
    }

    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> StoreFuture<'a, Result<(), StoreError>> {
        self.write(|d| {
            if let Some(user) = d.by_id.get_mut(user_id) {
                Arc::make_mut(user).last_login_at = Some(Utc::now());
            }
        });
        StoreFuture::ready(Ok(()))
    }

    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> StoreFuture<'a, Result<(), StoreError>> {
        self.write(|d| {
            d.permissions
                .entry((*grant.user_id, grant.context.clone()))
                .or_default()
                .insert(grant.permission.to_owned(), grant.expires_at);
        });
        StoreFuture::ready(Ok(()))
    }

    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::ready(Ok(self.write(|d| {
            d.permissions
                .get_mut(&(*user_id, context.clone()))
                .is_some_and(|granted| granted.remove(permission).is_some())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[tokio::test]
    async fn emails_are_unique_case_insensitively() {
        let users = MemoryUsers::new();
        users
            .create(User::new("a@example.com", Role::User))
            .await
            .unwrap();
        assert!(matches!(
            users.create(User::new(" A@EXAMPLE.com", Role::User)).await,
            Err(UserError::EmailTaken)
        ));
        assert_eq!(users.len(), 1);
    }

    #[tokio::test]
    async fn update_and_record_login() {
        let users = MemoryUsers::new();
        let a = users
            .create(User::new("a@example.com", Role::User))
            .await
            .unwrap();
        users
            .create(User::new("b@example.com", Role::User))
            .await
            .unwrap();
        let mut changed = (*a).clone();
        changed.email = "b@example.com".into();
        assert!(matches!(
            users.update(changed).await,
            Err(UserError::EmailTaken)
        ));
        let mut changed = (*a).clone();
        changed.role = Role::Support;
        changed.email = "c@example.com".into();
        users.update(changed).await.unwrap().unwrap();
        assert!(users
            .find_by_email("a@example.com")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            users
                .find_by_email("c@example.com")
                .await
                .unwrap()
                .unwrap()
                .role,
            Role::Support
        );
        assert!(a.last_login_at.is_none());
        users.record_login(&a.id).await.unwrap();
        assert!(users
            .resolve(&AppContext::Web, &a.id)
            .await
            .unwrap()
            .unwrap()
            .last_login_at
            .is_some());
        assert!(users
            .update(User::new("z@example.com", Role::User))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn permissions_are_per_context_and_expire() {
        let users = MemoryUsers::new();
        let a = users
            .insert(User::new("a@example.com", Role::Operator))
            .unwrap();
        let grant = |permission, expires_at| PermissionGrant {
            user_id: &a.id,
            context: &AppContext::Admin,
            permission,
            granted_by: None,
            expires_at,
        };
        users.grant(grant("refunds", None)).await.unwrap();
        let past = Utc::now() - chrono::Duration::seconds(1);
        users.grant(grant("exports", Some(past))).await.unwrap();
        let admin = users
            .resolve(&AppContext::Admin, &a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.permissions, ["refunds"]);
        let web = users
            .resolve(&AppContext::Web, &a.id)
            .await
            .unwrap()
            .unwrap();
        assert!(web.permissions.is_empty());
        assert!(users
            .revoke_permission(&a.id, &AppContext::Admin, "refunds")
            .await
            .unwrap());
        let admin = users
            .resolve(&AppContext::Admin, &a.id)
            .await
            .unwrap()
            .unwrap();
        assert!(admin.permissions.is_empty());
    }
}
