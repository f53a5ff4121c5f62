//! Shared helpers for the integration tests: requests through a Router, and a store
//! decorator that counts calls and can be switched to fail (a user-written `SessionStore`
//! around the real `MemoryStore`, as a custom backend would be).
#![allow(dead_code)]

pub(crate) mod data;
pub(crate) mod emails;
pub(crate) mod limits;
pub(crate) mod manage;
pub(crate) mod node;
pub(crate) mod pg;
pub(crate) mod pg_proxy;
pub(crate) mod races;
pub(crate) mod redis_server;
pub(crate) mod skip;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_app_sessions::store::{
    Capabilities, ListedSession, Scope, SessionStore, StoreError, StoreFuture,
};
use tower_app_sessions::{AppContext, MemoryStore, SessionId, SessionRecord};
use uuid::Uuid;

#[derive(Clone, Default)]
pub(crate) struct CountingStore {
    pub inner: MemoryStore,
    pub reads: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend switched off by the test")
    }
}
impl std::error::Error for Down {}

impl CountingStore {
    pub(crate) fn calls(&self) -> usize {
        self.reads.load(Ordering::SeqCst) + self.writes.load(Ordering::SeqCst)
    }
    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn count(&self, write: bool) -> Result<(), StoreError> {
        if write { &self.writes } else { &self.reads }.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::backend("test", Down))
        } else {
            Ok(())
        }
    }
}

/// Counts the call and fails it when switched to; otherwise forwards the inner store's
/// answer as it is, so the memory store's ready answers stay ready (as a decorator must).
macro_rules! guarded {
    ($self:ident, $write:expr, $call:expr) => {{
        match $self.count($write) {
            Ok(()) => $call,
            Err(e) => StoreFuture::ready(Err(e)),
        }
    }};
}

impl SessionStore for CountingStore {
    fn load<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        guarded!(self, false, self.inner.load(c, id, now))
    }
    fn save<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        r: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        guarded!(self, true, self.inner.save(c, id, r, now))
    }
    fn delete<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        guarded!(self, true, self.inner.delete(c, id, now))
    }
    fn extend<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        guarded!(self, true, self.inner.extend(c, id, at, now))
    }
    fn update_data<'a>(
        &'a self,
        c: &'a AppContext,
        id: &'a SessionId,
        patch: &'a tower_app_sessions::data::DataPatch,
        limits: tower_app_sessions::data::DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<tower_app_sessions::store::DataUpdate, StoreError>> {
        guarded!(
            self,
            true,
            self.inner.update_data(c, id, patch, limits, now)
        )
    }
    fn rotate<'a>(
        &'a self,
        c: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        u: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        guarded!(self, true, self.inner.rotate(c, old, new, u, now))
    }
    fn delete_user_sessions<'a>(
        &'a self,
        u: &'a Uuid,
        s: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        guarded!(self, true, self.inner.delete_user_sessions(u, s, now))
    }
    fn list_user_sessions<'a>(
        &'a self,
        u: &'a Uuid,
        s: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        guarded!(self, false, self.inner.list_user_sessions(u, s, now))
    }
    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Reply {
    /// The session id of the first `Set-Cookie`, if it issues one.
    pub(crate) fn issued(&self) -> Option<String> {
        let first = self.set_cookies.first()?;
        let pair = first.split(';').next()?;
        let value = pair.split_once('=')?.1;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

pub(crate) async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res: Response<Body> = app.clone().oneshot(req).await.expect("infallible router");
    let status = res.status();
    let set_cookies = res
        .headers()
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        set_cookies,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub(crate) fn get(path: &str) -> http::request::Builder {
    Request::get(path)
}

pub(crate) fn post(path: &str) -> http::request::Builder {
    Request::post(path)
}

pub(crate) trait Finish {
    fn cookie(self, name: &str, value: &str) -> Self;
    fn bearer(self, token: &str) -> Self;
    fn empty(self) -> Request<Body>;
}

impl Finish for http::request::Builder {
    fn cookie(self, name: &str, value: &str) -> Self {
        self.header("cookie", format!("{name}={value}"))
    }
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    fn empty(self) -> Request<Body> {
        self.body(Body::empty()).unwrap()
    }
}

/// The routes every integration test puts behind a layer:
/// - `/login/{user id}`: logs in (ip `198.51.100.4`, user agent `rust-test`), answers the
///   new token;
/// - `/me`: the user's email (401/503 without one); `/whoami`: `"<email> in <context>"`;
/// - `/maybe`: the email or `anonymous`, never rejects;
/// - `/logout` (`bye`), `/rotate` (the new token), `/revoke-all` (how many ended);
/// - `/refund` (needs `orders:refund`), `/required/` (behind `RequireUserLayer`),
///   `/exports/` (behind `RequirePermissionLayer("orders:export")`).
pub(crate) fn routes() -> axum::Router {
    use axum::extract::Path;
    use axum::routing;
    use tower_app_sessions::require::{RequirePermissionLayer, RequireUserLayer};
    use tower_app_sessions::{CurrentUser, Session, SessionMetadata, User};

    axum::Router::new()
        .route(
            "/login/{id}",
            routing::post(|Path(id): Path<Uuid>, session: Session| async move {
                let meta = SessionMetadata::new()
                    .ip("198.51.100.4")
                    .user_agent("rust-test");
                session
                    .login(id, meta)
                    .await
                    .map(|id| id.as_str().to_owned())
            }),
        )
        .route(
            "/me",
            routing::get(|user: CurrentUser<User>| async move { user.email.clone() }),
        )
        .route(
            "/whoami",
            routing::get(|user: CurrentUser<User>, session: Session| async move {
                format!("{} in {}", user.email, session.context())
            }),
        )
        .route(
            "/maybe",
            routing::get(|user: Option<CurrentUser<User>>| async move {
                user.map_or_else(|| "anonymous".to_owned(), |u| u.email.clone())
            }),
        )
        .route(
            "/logout",
            routing::post(|_: CurrentUser<User>, session: Session| async move {
                session.logout().await.map(|()| "bye")
            }),
        )
        .route(
            "/rotate",
            routing::post(|_: CurrentUser<User>, session: Session| async move {
                session
                    .rotate()
                    .await
                    .map(|id| id.map(|id| id.as_str().to_owned()).unwrap_or_default())
            }),
        )
        .route(
            "/revoke-all",
            routing::post(|_: CurrentUser<User>, session: Session| async move {
                session
                    .revoke_all(Scope::AllContexts)
                    .await
                    .map(|n| n.to_string())
            }),
        )
        .route(
            "/refund",
            routing::post(|user: CurrentUser<User>| async move {
                user.require_permission("orders:refund")
                    .map(|()| "refunded")
            }),
        )
        .nest(
            "/required",
            axum::Router::new()
                .route("/", routing::get(|| async { "inside" }))
                .layer(RequireUserLayer::new()),
        )
        .nest(
            "/exports",
            axum::Router::new()
                .route("/", routing::get(|| async { "exported" }))
                .layer(RequirePermissionLayer::<User>::new("orders:export")),
        )
}

/// Logs `user` in through `/login/{id}`; the token, which is also the one issued cookie's
/// value.
pub(crate) async fn login(router: &axum::Router, user: Uuid) -> String {
    login_at(router, "", user).await
}

/// Logs `user` in through `{prefix}/login/{id}` (`prefix` such as `/web`, for routers that
/// nest an app per context).
pub(crate) async fn login_at(router: &axum::Router, prefix: &str, user: Uuid) -> String {
    let reply = send(router, post(&format!("{prefix}/login/{user}")).empty()).await;
    assert_eq!(reply.status, 200, "login: {}", reply.body);
    assert_eq!(
        reply.set_cookies.len(),
        1,
        "exactly one Set-Cookie on login"
    );
    assert_eq!(reply.issued().as_deref(), Some(reply.body.as_str()));
    reply.body
}

/// `GET /me` with the session in cookie `cookie`: status and body.
pub(crate) async fn me_cookie(router: &axum::Router, cookie: &str, token: &str) -> (u16, String) {
    me_cookie_at(router, "", cookie, token).await
}

/// `GET /me` with the session as a bearer token: status and body.
pub(crate) async fn me_bearer(router: &axum::Router, token: &str) -> (u16, String) {
    me_bearer_at(router, "", token).await
}

/// `GET {prefix}/me` with the session in cookie `cookie`: status and body.
pub(crate) async fn me_cookie_at(
    router: &axum::Router,
    prefix: &str,
    cookie: &str,
    token: &str,
) -> (u16, String) {
    let reply = send(
        router,
        get(&format!("{prefix}/me")).cookie(cookie, token).empty(),
    )
    .await;
    (reply.status.as_u16(), reply.body)
}

/// `GET {prefix}/me` with the session as a bearer token: status and body.
pub(crate) async fn me_bearer_at(
    router: &axum::Router,
    prefix: &str,
    token: &str,
) -> (u16, String) {
    let reply = send(router, get(&format!("{prefix}/me")).bearer(token).empty()).await;
    (reply.status.as_u16(), reply.body)
}

/// The one answer every refused credential gets.
pub(crate) fn unauthorized() -> (u16, String) {
    (
        401,
        tower_app_sessions::require::UNAUTHORIZED_BODY.to_owned(),
    )
}
