//! Decorators that publish every change made through them on the [`InvalidationBus`]
//! before returning it, so no cache anywhere keeps serving a session or user that changed.

use std::sync::Arc;

use uuid::Uuid;

use super::InvalidationBus;
use crate::data::{DataLimits, DataPatch};
use crate::store::{
    Capabilities, DataUpdate, ListedSession, Scope, SessionStore, StoreError, StoreFuture,
};
use crate::users::{PermissionGrant, User, UserError, UserRepository, UserResolver};
use crate::{AppContext, SessionId, SessionRecord};

/// A store that publishes every deletion and data change on the bus before returning it, so
/// no cache anywhere keeps serving a session that ended or changed.
pub(crate) struct PublishingStore {
    pub(crate) inner: Arc<dyn SessionStore>,
    pub(crate) bus: InvalidationBus,
}

impl SessionStore for PublishingStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.load(context, id, now)
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<crate::store::Loaded>, StoreError>> {
        self.inner.load_with_user(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.inner.save(context, id, record, now)
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let deleted = self.inner.delete(context, id, now).await?;
            self.bus.session_changed(context, id).await;
            Ok(deleted)
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
            let moved = self.inner.rotate(context, old, new, user_id, now).await;
            // Whatever happened, the old id must not be served from any cache.
            self.bus.session_changed(context, old).await;
            moved
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.inner.extend(context, id, expires_at, now)
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
            let updated = self
                .inner
                .update_data(context, id, patch, limits, now)
                .await;
            // Cached copies carry the old data: none may be served again, whatever happened.
            self.bus.session_changed(context, id).await;
            updated
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        StoreFuture::new(async move {
            let deleted = self.inner.delete_user_sessions(user_id, scope, now).await?;
            self.bus.user_changed(user_id).await;
            Ok(deleted)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.inner.list_user_sessions(user_id, scope, now)
    }

    // Legacy sessions are never cached (the layer does not cache them), so their deletion
    // publishes nothing: the inner store's capabilities pass through.
    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}

/// A user repository that publishes every change of a user (role, password, permissions), so
/// cached users are dropped everywhere.
pub(crate) struct PublishingUsers {
    pub(crate) inner: Arc<dyn UserRepository>,
    pub(crate) bus: InvalidationBus,
}

impl UserResolver for PublishingUsers {
    type User = User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.inner.resolve(context, user_id)
    }

    fn joined(
        &self,
        context: &AppContext,
        user_id: &Uuid,
        joined: &crate::store::JoinedUser,
    ) -> Option<Option<Arc<User>>> {
        self.inner.joined(context, user_id, joined)
    }
}

impl UserRepository for PublishingUsers {
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.inner.find_by_email(email)
    }

    fn create(&self, user: User) -> StoreFuture<'_, Result<Arc<User>, UserError>> {
        self.inner.create(user)
    }

    fn update(&self, user: User) -> StoreFuture<'_, Result<Option<Arc<User>>, UserError>> {
        StoreFuture::new(async move {
            let id = user.id;
            // Whatever happened: a write that timed out may still have committed.
            let updated = self.inner.update(user).await;
            self.bus.user_changed(&id).await;
            updated
        })
    }

    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> StoreFuture<'a, Result<(), StoreError>> {
        self.inner.record_login(user_id)
    }

    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(async move {
            let granted = self.inner.grant(grant).await;
            self.bus.user_changed(grant.user_id).await;
            granted
        })
    }

    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let revoked = self
                .inner
                .revoke_permission(user_id, context, permission)
                .await;
            self.bus.user_changed(user_id).await;
            revoked
        })
    }
}
