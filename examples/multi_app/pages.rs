//! The apps as pages a person uses: plain server-rendered HTML (maud escapes every value),
//! forms that post back and redirect (`303`), one stylesheet (`/assets/style.css`,
//! `style.css` beside this file), no JavaScript.
//!
//! - `/web/`: sign in or register; signed in: "Your sessions" (this device first and marked,
//!   then the others by last activity; device and browser from the user agent, address,
//!   sign-in time to the second, last activity as a duration, the session's handle) with a
//!   button per session to end it, "Sign out all other devices" (asks for the password
//!   again), the theme preference (applied to the page), sign out.
//! - `/admin/`: sign in (an account whose role the panel does not admit is told so); signed
//!   in: find a user by email, their sessions in every app, "End this session" and "End all
//!   sessions of this user" (role `admin`, see `manage::may_revoke`; support and operators
//!   see the list, a sentence saying their role can only view, and get `403` on ending).
//!
//! Every page links to the other app. Notices after a redirect are fixed texts chosen by a
//! code in the query (`?notice=…`, with a count for "sessions ended"): no notice repeats
//! what a client sent (the search field keeps the email typed, escaped). A stored
//! preference of the wrong type is ignored and logged, never an error page. The forms are
//! protected by the layer's cross-origin rule (a cookie-authenticated write from another
//! site is refused with `403`); the pages cannot be framed (see `main.rs`).

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use tower_app_sessions::manage::SessionInfo;
use tower_app_sessions::{AppContext, CurrentUser, Scope, Session, User, UserResolver};

use super::manage::{may_revoke, parse_handle, parse_user_id};
use super::render::{
    in_display_order, login_form, notice, notice_text, page, sessions_table, Actions, Site,
};
use super::{ApiError, App};

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    notice: Option<String>,
    /// How many sessions "End all sessions of this user" ended (with its notice).
    ended: Option<String>,
    email: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    password: String,
}

#[derive(Deserialize)]
pub(crate) struct PreferencesForm {
    theme: String,
}

/// Where a form's post-redirect-get lands.
fn back(app: &str, notice: &str) -> Response {
    Redirect::to(&format!("/{app}/?notice={notice}")).into_response()
}

// ---- web -----------------------------------------------------------------------------

/// The theme stored in the session, if it is one the pages know. A value of another type
/// (written by another app, or an older version) is ignored and logged: a bad stored
/// preference must never keep a user from their pages.
fn stored_theme(session: &Session) -> Result<Option<&'static str>, ApiError> {
    let stored: Option<serde_json::Value> = session.get("theme")?;
    Ok(match stored {
        None => None,
        Some(value) => match value.as_str() {
            Some("dark") => Some("dark"),
            Some("light") => Some("light"),
            _ => {
                tracing::warn!(
                    kind = value_kind(&value),
                    "ignoring a stored theme that is not light or dark"
                );
                None
            }
        },
    })
}

/// A JSON value's kind, for a log line (never the value: it is the user's data).
pub(crate) fn value_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

pub(crate) async fn web_home(
    State(app): State<App>,
    user: Option<CurrentUser<User>>,
    session: Session,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(user) = user else {
        return Ok(page(
            Site::Web,
            "Web app: sign in",
            None,
            html! {
                h1 { "Web app" }
                (notice(query.notice.as_deref(), query.ended.as_deref()))
                (login_form("/web/form/login", "Sign in"))
                section {
                    form method="post" action="/web/form/register" id="register" {
                        h2 { "Create an account" }
                        label { "Email" input type="email" name="email" autocomplete="username" required; }
                        label { "Password (8 characters or more)" input type="password" name="password" minlength="8" autocomplete="new-password" required; }
                        button type="submit" { "Register" }
                    }
                }
                p.muted { "Staff sign in to the " a href="/admin/" { "admin panel" } "." }
            },
        ));
    };
    let sessions = in_display_order(session.list_mine().await?);
    let theme = stored_theme(&session)?;
    let end = |s: &SessionInfo| format!("/web/form/sessions/{}/end", s.handle);
    let actions = Actions::End {
        action: &end,
        sign_out: Some("/web/form/logout"),
    };
    Ok(page(
        Site::Web,
        "Web app: your sessions",
        theme,
        html! {
            h1 { "Web app" }
            (notice(query.notice.as_deref(), query.ended.as_deref()))
            div.signed-in {
                span { "Signed in as " strong id="email" { (user.email) } }
                form method="post" action="/web/form/logout" { button type="submit" { "Sign out" } }
            }
            section {
                h2 { "Your sessions" }
                p.muted { "Every browser and app signed in to your account in this app. End any you do not recognise." }
                (sessions_table(&sessions, app.sessions.now(), &actions, "No active sessions."))
            }
            section {
                form method="post" action="/web/form/revoke-others" id="revoke-others" {
                    h2 { "Sign out all other devices" }
                    p { "Enter your password again to end every other session of your account, in every app." }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button.danger type="submit" { "Sign out all other devices" }
                }
            }
            section {
                form method="post" action="/web/form/preferences" id="preferences" {
                    h2 { "Preferences" }
                    label { "Theme"
                        select name="theme" {
                            @for option in ["light", "dark"] {
                                option value=(option) selected[theme == Some(option)] { (option) }
                            }
                        }
                    }
                    button type="submit" { "Save" }
                }
            }
        },
    ))
}

pub(crate) async fn web_login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    form_login(&app, "web", peer, &session, &headers, form).await
}

pub(crate) async fn admin_login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    form_login(&app, "admin", peer, &session, &headers, form).await
}

async fn form_login(
    app: &App,
    name: &str,
    peer: SocketAddr,
    session: &Session,
    headers: &HeaderMap,
    form: LoginForm,
) -> Result<Response, ApiError> {
    let user = match app
        .check_password(peer, headers, &form.email, form.password)
        .await
    {
        Ok(user) => user,
        // The right password of an account this app does not admit: say so (the JSON API
        // answers `403`); only the right password gets here.
        Err(error) if error.status() == StatusCode::FORBIDDEN => {
            return Ok(back(name, "not-admitted"))
        }
        Err(error) => return Err(error),
    };
    let Some(user) = user else {
        return Ok(back(name, "wrong-password"));
    };
    app.sign_in(session, &user, peer, headers).await?;
    Ok(Redirect::to(&format!("/{name}/")).into_response())
}

pub(crate) async fn web_register(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let user = match app
        .register(peer, &headers, &form.email, form.password)
        .await
    {
        Ok(user) => user,
        Err(error)
            if error.status().is_client_error()
                && error.status() != StatusCode::TOO_MANY_REQUESTS =>
        {
            return Ok(back("web", "not-registered"))
        }
        Err(error) => return Err(error),
    };
    app.sign_in(&session, &user, peer, &headers).await?;
    Ok(back("web", "registered"))
}

/// Signs out and goes back to the app's page. The app is the layer's context: inside a
/// nested router the request's path no longer starts with the app's prefix.
pub(crate) async fn logout(session: Session) -> Result<Response, ApiError> {
    session.logout().await?;
    Ok(Redirect::to(&format!("/{}/", session.context())).into_response())
}

pub(crate) async fn web_end_session(
    _: CurrentUser<User>,
    session: Session,
    Path(handle): Path<String>,
) -> Result<Response, ApiError> {
    let handle = parse_handle(&handle)?;
    let ended = session.revoke(&handle).await?;
    Ok(back(
        "web",
        if ended { "session-ended" } else { "not-found" },
    ))
}

pub(crate) async fn web_revoke_others(
    State(app): State<App>,
    _: CurrentUser<User>,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    if !app.reauthenticate(&session, form.password).await? {
        return Ok(back("web", "reauthentication-required"));
    }
    session.revoke_others(Scope::AllContexts).await?;
    Ok(back("web", "others-ended"))
}

pub(crate) async fn web_preferences(
    _: CurrentUser<User>,
    session: Session,
    Form(form): Form<PreferencesForm>,
) -> Result<Response, ApiError> {
    if !["light", "dark"].contains(&form.theme.as_str()) {
        return Err(ApiError::unprocessable("theme must be light or dark"));
    }
    session.insert("theme", &form.theme)?;
    Ok(back("web", "saved"))
}

// ---- admin ---------------------------------------------------------------------------

pub(crate) async fn admin_home(
    State(app): State<App>,
    admin: Option<CurrentUser<User>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(admin) = admin else {
        return Ok(page(
            Site::Admin,
            "Admin panel: sign in",
            None,
            html! {
                h1 { "Admin panel" }
                (notice(query.notice.as_deref(), query.ended.as_deref()))
                (login_form("/admin/form/login", "Sign in to the admin panel"))
                p.muted { "For admin, operator and support accounts. Everyone else uses the " a href="/web/" { "web app" } "." }
            },
        ));
    };
    // The user to show: by email (the search form) or by id (after an action).
    let shown = match (&query.email, &query.user) {
        (Some(email), _) => app.find_user(email).await?,
        (None, Some(id)) => match parse_user_id(id) {
            Ok(id) => app
                .users
                .resolve(&AppContext::Web, &id)
                .await
                .map_err(ApiError::unavailable)?,
            Err(_) => None,
        },
        (None, None) => None,
    };
    let searched = query.email.is_some() || query.user.is_some();
    let listed = match &shown {
        Some(user) => in_display_order(
            app.sessions
                .list_user(&user.id, Scope::AllContexts)
                .await
                .map_err(ApiError::unavailable)?,
        ),
        None => Vec::new(),
    };
    let may_end = may_revoke(&admin);
    Ok(page(
        Site::Admin,
        "Admin panel: users",
        None,
        html! {
            h1 { "Admin panel" }
            (notice(query.notice.as_deref(), query.ended.as_deref()))
            div.signed-in {
                span { "Signed in as " strong { (admin.email) } " (" (admin.role) ")" }
                form method="post" action="/admin/form/logout" { button type="submit" { "Sign out" } }
            }
            section {
                form method="get" action="/admin/" id="search" {
                    h2 { "Find a user" }
                    label { "Email" input type="email" name="email" value=[query.email.as_deref()] required; }
                    button type="submit" { "Search" }
                }
            }
            @if let Some(user) = &shown {
                section {
                    h2 { "Sessions of " span id="user-email" { (user.email) } }
                    @if !may_end {
                        p.notice id="view-only" {
                            "Your role (" (admin.role) ") can view sessions but not end them; an admin can."
                        }
                    }
                    @let id = user.id;
                    @let end = move |s: &SessionInfo| format!("/admin/form/users/{id}/sessions/{}/end", s.handle);
                    @let actions = if may_end { Actions::End { action: &end, sign_out: None } } else { Actions::None };
                    (sessions_table(&listed, app.sessions.now(), &actions, "This user has no active sessions."))
                    @if may_end && !listed.is_empty() {
                        form method="post" action=(format!("/admin/form/users/{id}/sessions/end")) id="end-all" {
                            button.danger type="submit" { "End all sessions of this user" }
                        }
                    }
                }
            } @else if searched {
                p.notice { (notice_text(Some("no-user"), None).unwrap_or_default()) }
            }
        },
    ))
}

fn back_to_user(user: uuid::Uuid, notice: &str) -> Response {
    Redirect::to(&format!("/admin/?user={user}&notice={notice}")).into_response()
}

/// `403` for a role that may see sessions but not end them: a page, not a redirect (a
/// browser shows a `403`'s body, it does not follow its `Location`).
fn forbidden_page(user: uuid::Uuid) -> Response {
    let body = page(
        Site::Admin,
        "Admin panel: forbidden",
        None,
        html! {
            h1 { "Admin panel" }
            p.notice role="alert" { (notice_text(Some("forbidden"), None).unwrap_or_default()) }
            a href=(format!("/admin/?user={user}")) { "Back to the user's sessions" }
        },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

pub(crate) async fn admin_end_session(
    State(app): State<App>,
    admin: CurrentUser<User>,
    Path((user_id, handle)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (user_id, handle) = (parse_user_id(&user_id)?, parse_handle(&handle)?);
    if !may_revoke(&admin) {
        return Ok(forbidden_page(user_id));
    }
    let ended = app
        .sessions
        .revoke_session(&user_id, &handle)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(back_to_user(
        user_id,
        if ended { "session-ended" } else { "not-found" },
    ))
}

pub(crate) async fn admin_end_all(
    State(app): State<App>,
    admin: CurrentUser<User>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id = parse_user_id(&user_id)?;
    if !may_revoke(&admin) {
        return Ok(forbidden_page(user_id));
    }
    let ended = app
        .sessions
        .revoke_user(&user_id, Scope::AllContexts)
        .await
        .map_err(ApiError::unavailable)?;
    tracing::info!(admin = %admin.id, user = %user_id, ended, "sessions of a user ended");
    Ok(back_to_user(
        user_id,
        &format!("user-sessions-ended&ended={ended}"),
    ))
}
