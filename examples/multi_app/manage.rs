//! Session management as JSON, beside the pages (`pages.rs`), so API clients have the same
//! features:
//!
//! | route | answer |
//! |---|---|
//! | `GET /<app>/sessions` | `200` the caller's sessions in this app (`SessionInfo` array, newest first) |
//! | `DELETE /<app>/sessions/<handle>` | `204`; `404` for a handle that is not one of the caller's; `400` for one that is not a handle |
//! | `POST /<app>/sessions/revoke-others` `{"password"}` | `200` `{"ended"}`, and `"token"` (the id the session moved to) for bearer clients; cookie clients get the new cookie; `401 {"error":"reauthentication_required"}` without the right password |
//! | `GET /admin/users?email=` | `200` the user `{"id","email","role"}`; `404` |
//! | `GET /admin/users/<id>/sessions` | `200` the user's sessions in every app |
//! | `DELETE /admin/users/<id>/sessions` | `204`, every session of the user ended; `403` without `sessions:revoke` (role `admin`) |
//! | `DELETE /admin/users/<id>/sessions/<handle>` | `204`; `404`; `403` as above |

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tower_app_sessions::require::ReauthenticationRequired;
use tower_app_sessions::users::canonical_email;
use tower_app_sessions::{CurrentUser, Role, Scope, Session, SessionHandle, User};
use uuid::Uuid;

use super::{no_store, ApiError, App, UserView};

/// The permission that lets an admin-panel user end other users' sessions. Role `admin`
/// holds it without a row; support and operators may list sessions but not end them.
pub(crate) const REVOKE_PERMISSION: &str = "sessions:revoke";

/// Whether `user` may end other users' sessions.
pub(crate) fn may_revoke(user: &User) -> bool {
    user.role == Role::Admin || user.has_permission(REVOKE_PERMISSION)
}

/// A path segment that should be a handle; `400` when it is not one.
pub(crate) fn parse_handle(raw: &str) -> Result<SessionHandle, ApiError> {
    SessionHandle::parse(raw)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "not a session handle"))
}

/// A path segment that should be a user id; `404` when it is not one (no user has it).
pub(crate) fn parse_user_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

pub(crate) async fn list_mine(
    _: CurrentUser<User>,
    session: Session,
) -> Result<Response, ApiError> {
    Ok(no_store(Json(session.list_mine().await?).into_response()))
}

pub(crate) async fn end_mine(
    _: CurrentUser<User>,
    session: Session,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    let handle = parse_handle(&handle)?;
    if session.revoke(&handle).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// "Sign out all other devices": asks for the password again first.
pub(crate) async fn revoke_others(
    State(app): State<App>,
    _: CurrentUser<User>,
    session: Session,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Without a readable password there is no proof: the same answer as a wrong one. Only
    // an object with a string `password` counts (serde would also read `["…"]` as one).
    let password = match body {
        Ok(Json(serde_json::Value::Object(mut fields))) => match fields.remove("password") {
            Some(serde_json::Value::String(password)) => password,
            _ => return Ok(ReauthenticationRequired.into_response()),
        },
        _ => return Ok(ReauthenticationRequired.into_response()),
    };
    if !app.reauthenticate(&session, password).await? {
        return Ok(ReauthenticationRequired.into_response());
    }
    let Some(done) = session.revoke_others(Scope::AllContexts).await? else {
        return Ok(ReauthenticationRequired.into_response());
    };
    // API clients need their new token; a browser has it as the HttpOnly cookie, and page
    // scripts must not see it.
    let body = match session.credential_source() {
        Some(tower_app_sessions::CredentialSource::Bearer) => {
            json!({ "ended": done.ended, "token": done.id.as_str() })
        }
        _ => json!({ "ended": done.ended }),
    };
    Ok(no_store(Json(body).into_response()))
}

#[derive(Deserialize)]
pub(crate) struct ByEmail {
    email: String,
}

pub(crate) async fn find_user(
    State(app): State<App>,
    _: CurrentUser<User>,
    query: Result<Query<ByEmail>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(ByEmail { email })) = query else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "expected ?email="));
    };
    let user = app.find_user(&email).await?.ok_or_else(not_found)?;
    Ok(no_store(Json(UserView::from(&*user)).into_response()))
}

impl App {
    /// The user of `email`; `None` for an address no user can have.
    pub(crate) async fn find_user(
        &self,
        email: &str,
    ) -> Result<Option<std::sync::Arc<User>>, ApiError> {
        let Ok(email) = canonical_email(email) else {
            return Ok(None);
        };
        self.users
            .find_by_email(&email)
            .await
            .map_err(ApiError::unavailable)
    }
}

pub(crate) async fn user_sessions(
    State(app): State<App>,
    _: CurrentUser<User>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id = parse_user_id(&user_id)?;
    let listed = app
        .sessions
        .list_user(&user_id, Scope::AllContexts)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(no_store(Json(listed).into_response()))
}

pub(crate) async fn end_user_sessions(
    State(app): State<App>,
    admin: CurrentUser<User>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !may_revoke(&admin) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden"));
    }
    let user_id = parse_user_id(&user_id)?;
    let ended = app
        .sessions
        .revoke_user(&user_id, Scope::AllContexts)
        .await
        .map_err(ApiError::unavailable)?;
    tracing::info!(admin = %admin.id, user = %user_id, ended, "sessions of a user ended");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn end_user_session(
    State(app): State<App>,
    admin: CurrentUser<User>,
    Path((user_id, handle)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !may_revoke(&admin) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden"));
    }
    let (user_id, handle) = (parse_user_id(&user_id)?, parse_handle(&handle)?);
    let ended = app
        .sessions
        .revoke_session(&user_id, &handle)
        .await
        .map_err(ApiError::unavailable)?;
    if ended {
        tracing::info!(admin = %admin.id, user = %user_id, session = %handle, "session ended");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
