//! [`RequireUserLayer`]: answers `401` (no session) or `503` (backend down) before the inner
//! service runs, for whole routers that only signed-in users may reach;
//! [`RequirePermissionLayer`] adds a `403` without a permission, and
//! [`RequireRecentLoginLayer`] a `401 {"error":"reauthentication_required"}` when the login
//! is older than a bound.
//!
//! Works with any body type that can be made from a `&'static str` (axum's `Body`,
//! `http_body_util::Full<Bytes>`, `String`, …), so it serves bare hyper as well as axum.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Rejection, Session, SessionStatus};

mod future;
mod recent;

pub use future::ResponseFuture;
pub use recent::{
    ReauthenticationRequired, RequireRecentLogin, RequireRecentLoginLayer,
    REAUTHENTICATION_REQUIRED_BODY,
};

pub use crate::rejection::{UNAUTHORIZED_BODY, UNAVAILABLE_BODY};

/// The `401` or `503` a request gets when it needs a user and has none.
pub(crate) fn rejection<B: From<&'static str>>(status: SessionStatus) -> Response<B> {
    Rejection::without_user(status).response()
}

/// Status of a request as seen by [`SessionLayer`](crate::SessionLayer); a request the layer
/// never saw counts as anonymous (fail closed).
pub(crate) fn status_of(extensions: &http::Extensions) -> SessionStatus {
    extensions
        .get::<Session>()
        .map_or(SessionStatus::Anonymous, Session::status)
}

/// Requires an authenticated user for every request of the wrapped service.
///
/// Put it inside (after) a [`SessionLayer`](crate::SessionLayer):
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_app_sessions::{require::RequireUserLayer, AppContext, MemoryUsers, SessionLayer};
///
/// let admin = Router::new()
///     .route("/stats", get(|| async { "secret" }))
///     .layer(RequireUserLayer::new())
///     .layer(SessionLayer::for_context(AppContext::Admin).users(MemoryUsers::new()));
///
/// let res = admin.oneshot(http::Request::get("/stats").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct RequireUserLayer {
    _priv: (),
}

impl RequireUserLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUser<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireUser { inner }
    }
}

/// The service of [`RequireUserLayer`].
#[derive(Debug, Clone)]
pub struct RequireUser<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireUser<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match status_of(req.extensions()) {
            SessionStatus::Authenticated => ResponseFuture::Inner {
                future: self.inner.call(req),
            },
            status => ResponseFuture::Rejected {
                response: Some(rejection(status)),
            },
        }
    }
}

/// Body of every `403` for a missing permission.
pub const FORBIDDEN_BODY: &str = r#"{"error":"forbidden"}"#;

/// A user type that carries permissions, for [`RequirePermissionLayer`].
pub trait HasPermission {
    /// Whether the user holds `permission` in the context they were resolved in.
    fn has_permission(&self, permission: &str) -> bool;
}

impl HasPermission for crate::User {
    fn has_permission(&self, permission: &str) -> bool {
        crate::User::has_permission(self, permission)
    }
}

/// Requires a user holding a permission (a `user_permissions` row of the layer's context,
/// unexpired): `401`/`503` as [`RequireUserLayer`] without a user, `403` without the
/// permission.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_app_sessions::{require::RequirePermissionLayer, AppContext, MemoryUsers, SessionLayer, User};
///
/// let refunds: Router = Router::new()
///     .route("/refund", post(|| async { "refunded" }))
///     .layer(RequirePermissionLayer::<User>::new("orders:refund"))
///     .layer(SessionLayer::for_context(AppContext::Admin).users(MemoryUsers::new()));
/// let res = refunds.oneshot(http::Request::post("/refund").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[must_use]
pub struct RequirePermissionLayer<U = crate::User> {
    permission: std::borrow::Cow<'static, str>,
    _user: std::marker::PhantomData<fn() -> U>,
}

impl<U> RequirePermissionLayer<U> {
    /// Requires `permission`.
    pub fn new(permission: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            permission: permission.into(),
            _user: std::marker::PhantomData,
        }
    }
}

impl<U> Clone for RequirePermissionLayer<U> {
    fn clone(&self) -> Self {
        Self::new(self.permission.clone())
    }
}

impl<U> fmt::Debug for RequirePermissionLayer<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequirePermissionLayer")
            .field(&self.permission)
            .finish()
    }
}

impl<S, U> Layer<S> for RequirePermissionLayer<U> {
    type Service = RequirePermission<S, U>;
    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequirePermissionLayer`].
pub struct RequirePermission<S, U = crate::User> {
    inner: S,
    layer: RequirePermissionLayer<U>,
}

impl<S: Clone, U> Clone for RequirePermission<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, U> fmt::Debug for RequirePermission<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequirePermission")
            .field("inner", &self.inner)
            .field("permission", &self.layer.permission)
            .finish()
    }
}

/// `403` with [`FORBIDDEN_BODY`].
impl From<Forbidden> for Rejection {
    fn from(_: Forbidden) -> Self {
        Rejection::new(StatusCode::FORBIDDEN, FORBIDDEN_BODY)
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
    U: HasPermission + Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let response = match req.extensions().get::<crate::CurrentUser<U>>() {
            Some(user) if user.has_permission(&self.layer.permission) => {
                return ResponseFuture::Inner {
                    future: self.inner.call(req),
                }
            }
            Some(_) => Rejection::from(Forbidden).response(),
            None => rejection(status_of(req.extensions())),
        };
        ResponseFuture::Rejected {
            response: Some(response),
        }
    }
}

/// A user lacks a permission; answers `403` (feature `axum`: `IntoResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("forbidden: missing permission")]
pub struct Forbidden;

impl<U: HasPermission> crate::CurrentUser<U> {
    /// `Ok` if the user holds `permission`, else [`Forbidden`] (a `403` in axum handlers):
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tower_app_sessions::{CurrentUser, Role, User};
    /// let user = CurrentUser::new(Arc::new(User::new("ops@example.com", Role::Operator)));
    /// assert!(user.require_permission("orders:refund").is_err());
    /// ```
    ///
    /// # Errors
    /// [`Forbidden`] when the permission is missing.
    pub fn require_permission(&self, permission: &str) -> Result<(), Forbidden> {
        if self.has_permission(permission) {
            Ok(())
        } else {
            Err(Forbidden)
        }
    }
}
