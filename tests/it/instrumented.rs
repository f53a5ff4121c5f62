//! `store::Instrumented`: a store of one's own gets the crate's timeout (and metrics) by
//! wrapping it.

use std::future::pending;
use std::time::Duration;

use tower_app_sessions::data::{DataLimits, DataPatch};
use tower_app_sessions::store::{
    Capabilities, DataUpdate, Instrumented, ListedSession, Scope, SessionStore, StoreError,
    StoreFuture,
};
use tower_app_sessions::{AppContext, SessionId, SessionRecord};
use uuid::Uuid;

/// A backend that never answers (a hung server).
struct Hung;

fn never<'a, T: Send + 'a>() -> StoreFuture<'a, Result<T, StoreError>> {
    StoreFuture::new(pending())
}

impl SessionStore for Hung {
    fn load<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        never()
    }
    fn save<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a SessionRecord,
        _: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        never()
    }
    fn delete<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        never()
    }
    fn rotate<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a SessionId,
        _: &'a Uuid,
        _: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        never()
    }
    fn extend<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
        _: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        never()
    }
    fn update_data<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a DataPatch,
        _: DataLimits,
        _: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        never()
    }
    fn delete_user_sessions<'a>(
        &'a self,
        _: &'a Uuid,
        _: Scope<'a>,
        _: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        never()
    }
    fn list_user_sessions<'a>(
        &'a self,
        _: &'a Uuid,
        _: Scope<'a>,
        _: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        never()
    }
    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::default()
    }
}

#[tokio::test]
async fn a_hung_backend_times_out_with_its_own_name_on_every_operation() {
    let store = Instrumented::new(Hung, "hung").timeout(Duration::from_millis(20));
    let (context, id, user) = (
        AppContext::Web,
        SessionId::generate().unwrap(),
        Uuid::new_v4(),
    );
    let timed_out = |error: StoreError| matches!(error, StoreError::Timeout { backend: "hung" });
    // Bounded by the test's own timeout: a decorator that does not bound must not hang CI.
    let all = async {
        assert!(timed_out(store.load(&context, &id, 0).await.unwrap_err()));
        assert!(timed_out(
            store.load_with_user(&context, &id, 0).await.unwrap_err()
        ));
        assert!(timed_out(store.delete(&context, &id, 0).await.unwrap_err()));
        assert!(timed_out(
            store.extend(&context, &id, 1, 0).await.unwrap_err()
        ));
        let scope = Scope::AllContexts;
        assert!(timed_out(
            store
                .delete_user_sessions(&user, scope, 0)
                .await
                .unwrap_err()
        ));
        assert!(timed_out(
            store.list_user_sessions(&user, scope, 0).await.unwrap_err()
        ));
    };
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("every operation answered within its timeout");
}
