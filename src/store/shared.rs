//! `Arc<S>` is a store: the forwarding that lets layers and decorators share one.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, ListedSession, Loaded, Scope, SessionStore, StoreError, StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::{AppContext, SessionId, SessionRecord};

/// A shared store is a store: layers and decorators take `Arc<dyn SessionStore>` as they
/// take any other.
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        (**self).load(context, id, now)
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        (**self).load_with_user(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).save(context, id, record, now)
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        (**self).delete(context, id, now)
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        (**self).rotate(context, old, new, user_id, now)
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        (**self).update_data(context, id, patch, limits, now)
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        (**self).extend(context, id, expires_at, now)
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        (**self).delete_user_sessions(user_id, scope, now)
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        (**self).list_user_sessions(user_id, scope, now)
    }

    fn capabilities(&self) -> Capabilities<'_> {
        (**self).capabilities()
    }
}
