//! Lifecycle events under forced interleavings: two requests that find one session expired
//! report it once; a logout held while another device revokes every session reports the
//! revocation only. Barriers fix the order; nothing sleeps; every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_app_sessions::events::{RevokedScope, SessionEvent, SessionEventKind};
use tower_app_sessions::store::{Capabilities, ListedSession, StoreFuture};
use tower_app_sessions::{
    AppContext, MemoryUsers, Scope, SessionId, SessionRecord, SessionStore, Sessions, StoreError,
    User,
};
use uuid::Uuid;

use crate::common::races::within;
use crate::common::{get, login_at, post, routes, send, Finish};
use crate::events::{apps, kind, memory_user, Collected};

/// A store whose deletes wait until two are in flight: two requests that found the same
/// session expired both reach their delete before either runs.
struct DeletesInPairs {
    inner: Arc<dyn SessionStore>,
    pair: Arc<tokio::sync::Barrier>,
}

impl SessionStore for DeletesInPairs {
    fn load<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.load(c, id, now)
    }
    fn save<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        r: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.inner.save(c, id, r, now)
    }
    fn delete<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            within("the other request's delete", self.pair.wait()).await;
            self.inner.delete(c, id, now).await
        })
    }
    fn rotate<'a>(
        &'a self,
        c: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.rotate(c, old, new, user, now)
    }
    fn update_data<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        patch: &'a tower_app_sessions::data::DataPatch,
        limits: tower_app_sessions::data::DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<tower_app_sessions::store::DataUpdate, StoreError>> {
        self.inner.update_data(c, id, patch, limits, now)
    }
    fn extend<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.inner.extend(c, id, expires_at, now)
    }
    fn delete_user_sessions<'a>(
        &'a self,
        user: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.inner.delete_user_sessions(user, scope, now)
    }
    fn list_user_sessions<'a>(
        &'a self,
        user: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.inner.list_user_sessions(user, scope, now)
    }
    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}

/// Two requests find one session past its absolute lifetime at the same time: both answer
/// `401`, both delete it, and `Expired` is reported once, by the delete that found it.
async fn concurrent_expiry_is_reported_once(store: Arc<dyn SessionStore>) {
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let paired = DeletesInPairs {
        inner: Arc::clone(&store),
        pair: Arc::new(tokio::sync::Barrier::new(2)),
    };
    let collected = Collected::default();
    let sessions = Sessions::new(paired, users);
    let app = apps(&sessions, &collected);
    let id = SessionId::generate().unwrap();
    let now = sessions.now();
    let mut record = SessionRecord::new(
        user,
        tower_app_sessions::SessionMetadata::new(),
        now - 8 * 24 * 3_600_000,
        Duration::from_secs(3600),
    );
    record.expires_at = now + 3_600_000; // live for the store, over the lifetime for the layer
    store
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        send(&app, get("/web/me").bearer(id.as_str()).empty()),
        send(&app, get("/web/me").bearer(id.as_str()).empty()),
    );
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (401, 401));
    let events = collected.take();
    let events: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(events, [("web", SessionEventKind::Expired)]);
    assert_eq!(store.load(&AppContext::Web, &id, now).await.unwrap(), None);
}

#[tokio::test]
async fn concurrent_expiry_is_reported_once_on_memory() {
    concurrent_expiry_is_reported_once(Arc::new(tower_app_sessions::MemoryStore::new())).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn concurrent_expiry_is_reported_once_on_redis() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let store = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    concurrent_expiry_is_reported_once(Arc::new(store)).await;
}

/// A logout held while another device revokes every session of the user reports the
/// revocation (two sessions) and no logout: the logout ended nothing.
async fn a_logout_after_a_concurrent_revoke_is_not_reported(store: Arc<dyn SessionStore>) {
    use crate::common::races::Gate;
    use axum::routing;
    use tower_app_sessions::{CurrentUser, Session};
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let collected = Collected::default();
    let sink = collected.clone();
    let sessions = Sessions::new(store, users)
        .on_event(move |e: &SessionEvent| sink.0.lock().unwrap().push(e.clone()));
    let gate = Gate::new();
    let held = gate.clone();
    let web = routes().route(
        "/logout-held",
        routing::post(move |_: CurrentUser<User>, session: Session| {
            let gate = held.clone();
            async move {
                gate.hold().await;
                session.logout().await.map(|()| "bye")
            }
        }),
    );
    let app = Router::new().nest("/web", web.layer(sessions.layer(AppContext::Web)));
    let (mine, other) = (
        login_at(&app, "/web", user).await,
        login_at(&app, "/web", user).await,
    );
    let logging_out = {
        let (app, mine) = (app.clone(), mine.clone());
        tokio::spawn(
            async move { send(&app, post("/web/logout-held").bearer(&mine).empty()).await },
        )
    };
    gate.reached().await;
    let revoked = send(&app, post("/web/revoke-all").bearer(&other).empty()).await;
    assert_eq!((revoked.status.as_u16(), revoked.body.as_str()), (200, "2"));
    gate.release().await;
    let logged_out = within("the held logout to answer", logging_out).await;
    assert_eq!(logged_out.unwrap().status, 200);
    let events = collected.take();
    let events: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(
        events,
        [
            ("web", SessionEventKind::Created),
            ("web", SessionEventKind::Created),
            (
                "web",
                SessionEventKind::Revoked {
                    scope: RevokedScope::AllContexts,
                    count: 2
                }
            ),
        ]
    );
    for token in [&mine, &other] {
        let reply = send(&app, get("/web/me").bearer(token).empty()).await;
        assert_eq!(reply.status, 401);
    }
}

#[tokio::test]
async fn a_logout_after_a_concurrent_revoke_is_not_reported_on_memory() {
    let store = Arc::new(tower_app_sessions::MemoryStore::new());
    a_logout_after_a_concurrent_revoke_is_not_reported(store).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_logout_after_a_concurrent_revoke_is_not_reported_on_redis() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let store = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    a_logout_after_a_concurrent_revoke_is_not_reported(Arc::new(store)).await;
}
