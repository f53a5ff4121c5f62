//! axum extractors (feature `axum`).
//!
//! - [`CurrentUser<U>`](crate::CurrentUser): `401` when there is no user, `503` when a backend
//!   failed (never `500`), as a [`Rejection`];
//! - `Option<CurrentUser<U>>`: the user if there is one, never rejects;
//! - [`Session`]: the handle, present on every request through the layer;
//! - `WebSession` (feature `postgres`): the session's rows in the web app's database, see
//!   [`webdb`](crate::webdb).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_app_sessions::{AppContext, CurrentUser, MemoryUsers, SessionLayer, User};
//!
//! let app = Router::new()
//!     .route("/me", get(|user: CurrentUser<User>| async move { user.email.clone() }))
//!     .route("/hello", get(|user: Option<CurrentUser<User>>| async move {
//!         if user.is_some() { "welcome back" } else { "hello, stranger" }
//!     }))
//!     .layer(SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()));
//!
//! let get = |path| http::Request::get(path).body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(get("/me")).await.unwrap().status(), 401);
//! assert_eq!(app.oneshot(get("/hello")).await.unwrap().status(), 200);
//! # });
//! ```

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::require::status_of;
use crate::{CurrentUser, Rejection, Session, SessionError};

impl<S: Send + Sync, U: Send + Sync + 'static> FromRequestParts<S> for CurrentUser<U> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser<U>>()
            .cloned()
            .ok_or_else(|| Rejection::without_user(status_of(&parts.extensions)))
    }
}

impl<S: Send + Sync, U: Send + Sync + 'static> OptionalFromRequestParts<S> for CurrentUser<U> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<CurrentUser<U>>().cloned())
    }
}

/// `401` without a session of the `web` context, `503` when a backend failed.
#[cfg(feature = "postgres")]
impl<S> FromRequestParts<S> for crate::webdb::WebSession
where
    S: Send + Sync,
    crate::webdb::WebDatabase: axum_core::extract::FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        web_session(parts, state)
            .ok_or_else(|| Rejection::without_user(status_of(&parts.extensions)))
    }
}

#[cfg(feature = "postgres")]
impl<S> OptionalFromRequestParts<S> for crate::webdb::WebSession
where
    S: Send + Sync,
    crate::webdb::WebDatabase: axum_core::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(web_session(parts, state))
    }
}

#[cfg(feature = "postgres")]
fn web_session<S>(parts: &Parts, state: &S) -> Option<crate::webdb::WebSession>
where
    crate::webdb::WebDatabase: axum_core::extract::FromRef<S>,
{
    use axum_core::extract::FromRef;
    let session = parts.extensions.get::<Session>()?;
    crate::webdb::WebDatabase::from_ref(state).session(session)
}

/// The [`Session`] extractor was used on a route without a
/// [`SessionLayer`](crate::SessionLayer): a wiring mistake, answered `500` with a message
/// that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Session extractor used on a route without SessionLayer",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// A session that ended while the request ran is `401`, like any request without a session;
/// refused session data is `401` (no session), `413` (past a limit of bytes or keys, when
/// the handler made the change or when the store refused it) or `422` (a bad key or value,
/// or a change after a refused one); any other failed login, logout or rotation is a backend
/// failure: `503`, never `500`. See [`Rejection`]'s `From<&SessionError>`.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        Rejection::from(&self).response()
    }
}

impl IntoResponse for crate::require::Forbidden {
    fn into_response(self) -> Response {
        Rejection::from(self).response()
    }
}

impl IntoResponse for crate::require::ReauthenticationRequired {
    fn into_response(self) -> Response {
        Rejection::from(self).response()
    }
}
