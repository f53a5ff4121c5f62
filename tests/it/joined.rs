//! A user that comes with the session: a store of one's own that reads the user in the
//! session's query (`SessionStore::load_with_user`) spares the resolver that recognises it
//! (`UserResolver::joined`) its own lookup — on the in-process path as on the waiting one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tower_app_sessions::data::{DataLimits, DataPatch};
use tower_app_sessions::store::{
    Capabilities, DataUpdate, JoinedUser, ListedSession, Loaded, Scope, StoreError, StoreFuture,
};
use tower_app_sessions::{
    AppContext, MemoryStore, MemoryUsers, Role, SessionId, SessionLayer, SessionRecord,
    SessionStore, User, UserResolver,
};
use uuid::Uuid;

use crate::common::{login, me_bearer, routes, unauthorized};

/// The identity of the resolver the store joins for.
const OURS: usize = 1;

/// What the store's "join" finds.
#[derive(Clone, Copy)]
enum Join {
    /// The user, for our resolver.
    Ours,
    /// The user, for another resolver (another database): ours must ask itself.
    Theirs,
    /// The user is gone (the join found no row).
    Gone,
}

/// A memory store whose loads bring the user along, as a SQL store's join would; waiting
/// (`StoreFuture::new`) or ready.
#[derive(Clone)]
struct JoiningStore {
    inner: MemoryStore,
    users: MemoryUsers,
    join: Join,
    waits: bool,
}

impl SessionStore for JoiningStore {
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
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        let join = |record: SessionRecord| {
            // MemoryUsers answers at once: the "join".
            let found = match self.users.resolve(context, &record.user_id).into_ready() {
                Ok(Ok(found)) => found,
                _ => None,
            };
            let joined = match self.join {
                Join::Ours => JoinedUser::new(OURS, found),
                Join::Theirs => JoinedUser::new(OURS + 1, found),
                Join::Gone => JoinedUser::new::<User>(OURS, None),
            };
            Loaded::with_user(record, joined)
        };
        let loaded = self
            .inner
            .load(context, id, now)
            .map(move |found| found.map(|record| record.map(join)));
        if self.waits {
            StoreFuture::new(loaded)
        } else {
            loaded
        }
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
        self.inner.delete(context, id, now)
    }
    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.rotate(context, old, new, user_id, now)
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
        self.inner.update_data(context, id, patch, limits, now)
    }
    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.inner.delete_user_sessions(user_id, scope, now)
    }
    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.inner.list_user_sessions(user_id, scope, now)
    }
    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}

/// Memory users that count their own lookups and recognise what the store joined for them.
#[derive(Clone)]
struct CountingResolver {
    users: MemoryUsers,
    lookups: Arc<AtomicUsize>,
}

impl UserResolver for CountingResolver {
    type User = User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> StoreFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.users.resolve(context, user_id)
    }

    fn joined(
        &self,
        _context: &AppContext,
        _user_id: &Uuid,
        joined: &JoinedUser,
    ) -> Option<Option<Arc<User>>> {
        joined.take_for::<User>(OURS)
    }
}

#[tokio::test]
async fn a_joined_user_is_served_without_a_lookup_only_to_the_resolver_it_is_for() {
    // (what the store joins, whether its loads wait, `/me`'s status, lookups the resolver made)
    let cases = [
        (Join::Ours, false, 200, 0),
        (Join::Ours, true, 200, 0),
        (Join::Theirs, false, 200, 1),
        (Join::Theirs, true, 200, 1),
        (Join::Gone, false, 401, 0),
        (Join::Gone, true, 401, 0),
    ];
    for (join, waits, status, lookups) in cases {
        let users = MemoryUsers::new();
        let alice = users
            .insert(User::new("alice@example.com", Role::User))
            .unwrap();
        let store = JoiningStore {
            inner: MemoryStore::new(),
            users: users.clone(),
            join,
            waits,
        };
        let resolver = CountingResolver {
            users,
            lookups: Arc::new(AtomicUsize::new(0)),
        };
        let app = routes().layer(SessionLayer::new(AppContext::Web, store, resolver.clone()));
        let token = login(&app, alice.id).await;
        let (got, body) = me_bearer(&app, &token).await;
        let case = format!("join {}, waits {waits}", join as u8);
        assert_eq!(got, status, "{case}: {body}");
        if status == 401 {
            assert_eq!((got, body), unauthorized(), "{case}");
        } else {
            assert!(body.contains("alice@example.com"), "{case}: {body}");
        }
        assert_eq!(resolver.lookups.load(Ordering::SeqCst), lookups, "{case}");
    }
}
