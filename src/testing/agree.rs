//! The layer reads sessions through [`SessionStore::load_with_user`], the rules through
//! [`SessionStore::load`]: every rule runs twice, once on the store as it is and once wrapped
//! in [`ThroughJoin`], whose `load` is the store's `load_with_user`. So a store that
//! overrides `load_with_user` (to join its user) is held to every rule on the path the layer
//! takes. (Asking both in one `load` and comparing would not do: a store that drops an
//! expired record as it reads hides it from the second.)

use uuid::Uuid;

use crate::data::{DataLimits, DataPatch};
use crate::store::{Capabilities, DataUpdate, ListedSession, Loaded, Scope, StoreError};
use crate::{AppContext, SessionId, SessionRecord, SessionStore, StoreFuture};

pub(super) struct ThroughJoin<S>(pub(super) S);

impl<S: SessionStore> SessionStore for ThroughJoin<S> {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        // `map` keeps a ready answer ready: the fast path's rule sees the store as it is.
        self.0
            .load_with_user(context, id, now)
            .map(|found| found.map(|loaded| loaded.map(|loaded| loaded.record)))
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        self.0.load_with_user(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.save(context, id, record, now)
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.0.delete(context, id, now)
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.0.rotate(context, old, new, user_id, now)
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.0.update_data(context, id, patch, limits, now)
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.0.extend(context, id, expires_at, now)
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.0.delete_user_sessions(user_id, scope, now)
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.0.list_user_sessions(user_id, scope, now)
    }

    fn capabilities(&self) -> Capabilities<'_> {
        self.0.capabilities()
    }
}
