//! A store that cannot hold a layer's context (its `DurableRecords::supports` says no, as a
//! bare `PgSessionStore` does for custom contexts) is a typed error where asked for
//! (`SessionLayer::try_new`, `SessionLayer::check`, `Sessions::try_layer`), and never a
//! panic: a layer built all the same answers every request as a store failure, 503 where a
//! user is required.

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_app_sessions::config::ConfigError;
use tower_app_sessions::data::{DataLimits, DataPatch};
use tower_app_sessions::store::{Capabilities, DataUpdate, DurableRecords, ListedSession};
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryStore, MemoryUsers, Role, Scope, Session, SessionId,
    SessionLayer, SessionMetadata, SessionRecord, SessionStore, Sessions, StoreError, StoreFuture,
    User,
};
use uuid::Uuid;

/// Memory that, like PostgreSQL's `"ApplicationType"`, holds `web` and `admin` only.
#[derive(Clone, Default)]
struct WebAndAdminOnly(MemoryStore);

impl DurableRecords for WebAndAdminOnly {
    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move { Ok(self.0.load(context, id, now).await?.is_some()) })
    }

    fn supports(&self, context: &AppContext) -> bool {
        matches!(context, AppContext::Web | AppContext::Admin)
    }
}

impl SessionStore for WebAndAdminOnly {
    fn load<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.0.load(c, id, now)
    }
    fn save<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        r: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.save(c, id, r, now)
    }
    fn delete<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.0.delete(c, id, now)
    }
    fn rotate<'a>(
        &'a self,
        c: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.0.rotate(c, old, new, user, now)
    }
    fn update_data<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.0.update_data(c, id, patch, limits, now)
    }
    fn extend<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.0.extend(c, id, expires_at, now)
    }
    fn delete_user_sessions<'a>(
        &'a self,
        user: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.0.delete_user_sessions(user, scope, now)
    }
    fn list_user_sessions<'a>(
        &'a self,
        user: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.0.list_user_sessions(user, scope, now)
    }
    /// The capability that says which contexts it holds.
    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().durable(self)
    }
}

fn bot() -> AppContext {
    AppContext::custom("telegram-bot").unwrap()
}

fn is_unsupported(result: Result<(), ConfigError>) -> bool {
    matches!(result, Err(ConfigError::UnsupportedContext { context }) if context == bot())
}

#[test]
fn the_mismatch_is_a_typed_error_wherever_it_is_asked_for() {
    let store = WebAndAdminOnly::default();
    let users = MemoryUsers::new();
    let refused = SessionLayer::try_new(bot(), store.clone(), users.clone()).map(|_| ());
    assert!(is_unsupported(refused));
    assert!(SessionLayer::try_new(AppContext::Web, store.clone(), users.clone()).is_ok());

    // Built without asking: no panic, and `check` says what is wrong.
    assert!(is_unsupported(
        SessionLayer::new(bot(), store.clone(), users.clone()).check()
    ));
    assert!(is_unsupported(
        SessionLayer::for_context(bot())
            .store(store.clone())
            .check()
    ));
    assert!(SessionLayer::for_context(AppContext::Admin)
        .store(store.clone())
        .check()
        .is_ok());

    let sessions = Sessions::new(store, users);
    assert!(is_unsupported(sessions.try_layer(bot()).map(|_| ())));
    assert!(is_unsupported(sessions.layer(bot()).check()));
    assert!(sessions.layer(AppContext::Web).check().is_ok());
}

#[tokio::test]
async fn a_layer_built_all_the_same_answers_503_never_500() {
    let users = MemoryUsers::new();
    let ada = users
        .insert(User::new("ada@example.com", Role::User))
        .unwrap()
        .id;
    let app = Router::new()
        .route(
            "/login",
            post(move |session: Session| async move {
                session
                    .login(ada, SessionMetadata::new())
                    .await
                    .map(|_| "in")
            }),
        )
        .route(
            "/me",
            get(|user: CurrentUser<User>| async move { user.email.clone() }),
        )
        .route("/public", get(|| async { "anyone" }))
        .layer(SessionLayer::new(bot(), WebAndAdminOnly::default(), users));
    let send = |request: Request<Body>| app.clone().oneshot(request);

    let login = send(Request::post("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(login.headers().get("set-cookie").is_none());
    let forged = "sessionId=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let me = send(
        Request::get("/me")
            .header("cookie", forged)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(me.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(me.headers()["retry-after"], "1");
    // A route that needs no user is served.
    let public = send(Request::get("/public").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);
}
