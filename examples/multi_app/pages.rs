//! The apps as pages a person uses: plain server-rendered HTML (maud escapes every value),
//! forms that post back and redirect (`303`), no JavaScript.
//!
//! - `/web/`: sign in or register; signed in: "Your sessions" (device, address, created,
//!   last active, this device marked) with a button per session to end it, "Sign out all
//!   other devices" (asks for the password again), the theme preference, sign out.
//! - `/admin/`: sign in; signed in: find a user by email, their sessions in every app, "End
//!   this session" and "End all sessions of this user" (role `admin`, see
//!   `manage::may_revoke`; support and operators see the list, and get `403` on ending).
//!
//! Notices after a redirect are fixed texts chosen by a code in the query (`?notice=…`): no
//! notice repeats what a client sent (the search field keeps the email typed, escaped). The forms are protected by the layer's cross-origin
//! rule (a cookie-authenticated write from another site is refused with `403`).

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use tower_app_sessions::manage::SessionInfo;
use tower_app_sessions::{AppContext, CurrentUser, Scope, Session, User, UserResolver};

use super::manage::{may_revoke, parse_handle, parse_user_id};
use super::{ApiError, App};

/// What a page says after a redirect: a code in the query, a fixed text here.
const NOTICES: [(&str, &str); 10] = [
    ("wrong-password", "Wrong email or password."),
    ("registered", "Account created; you are signed in."),
    (
        "not-registered",
        "That account could not be created (taken, or an invalid email or password).",
    ),
    ("session-ended", "The session was ended."),
    ("not-found", "No such session."),
    (
        "others-ended",
        "Every other session was ended; this one continues.",
    ),
    (
        "reauthentication-required",
        "Wrong password: nothing was ended.",
    ),
    ("saved", "Preferences saved."),
    ("forbidden", "Your role may not end sessions."),
    ("no-user", "No user with that email."),
];

fn notice_text(code: Option<&str>) -> Option<&'static str> {
    let code = code?;
    NOTICES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, text)| *text)
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    notice: Option<String>,
    email: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: String,
}

#[derive(Deserialize)]
pub struct PreferencesForm {
    theme: String,
}

fn page(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (STYLE) }
            }
            body { main { (body) } }
        }
    };
    super::no_store(markup.into_response())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
main{max-width:60rem}table{border-collapse:collapse;margin:1rem 0}\
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}\
.notice{background:#eef;padding:.5rem}.current{font-weight:bold}\
form.inline{display:inline}input,select,button{margin:.2rem}";

fn notice(query: &PageQuery) -> Markup {
    html! {
        @if let Some(text) = notice_text(query.notice.as_deref()) {
            p.notice role="status" { (text) }
        }
    }
}

fn login_form(action: &str, title: &str) -> Markup {
    html! {
        form method="post" action=(action) id="login" {
            h2 { (title) }
            label { "Email " input type="email" name="email" required; }
            label { "Password " input type="password" name="password" required; }
            button type="submit" { "Sign in" }
        }
    }
}

/// "Chrome on Linux", from the user agent.
fn device(user_agent: Option<&str>) -> String {
    let Some(parsed) = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua)) else {
        return "Unknown device".to_owned();
    };
    if parsed.os == "UNKNOWN" {
        parsed.name.to_owned()
    } else {
        format!("{} on {}", parsed.name, parsed.os)
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The sessions table; `end` gives each row's "End" form action (none: no buttons).
fn sessions_table(
    sessions: &[SessionInfo],
    end: Option<&dyn Fn(&SessionInfo) -> String>,
) -> Markup {
    html! {
        table id="sessions" {
            tr { th { "App" } th { "Device" } th { "Address" } th { "Created" } th { "Last active" } th {} }
            @for s in sessions {
                tr.current[s.current] data-handle=(s.handle) {
                    td { (s.context) }
                    td { (device(s.user_agent.as_deref())) }
                    td { (s.ip.as_deref().unwrap_or("")) }
                    td { (time(s.created_at)) }
                    td { (time(s.last_seen)) }
                    td {
                        @if s.current {
                            "This device"
                        } @else if let Some(end) = end {
                            form.inline method="post" action=(end(s)) {
                                button type="submit" { "End this session" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where a form's post-redirect-get lands.
fn back(app: &str, notice: &str) -> Response {
    Redirect::to(&format!("/{app}/?notice={notice}")).into_response()
}

// ---- web -----------------------------------------------------------------------------

pub async fn web_home(
    user: Option<CurrentUser<User>>,
    session: Session,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(user) = user else {
        return Ok(page(
            "Web app: sign in",
            html! {
                h1 { "Web app" }
                (notice(&query))
                (login_form("/web/form/login", "Sign in"))
                form method="post" action="/web/form/register" id="register" {
                    h2 { "Create an account" }
                    label { "Email " input type="email" name="email" required; }
                    label { "Password " input type="password" name="password" minlength="8" required; }
                    button type="submit" { "Register" }
                }
            },
        ));
    };
    let sessions = session.list_mine().await?;
    let theme: Option<String> = session.get("theme")?;
    let end = |s: &SessionInfo| format!("/web/form/sessions/{}/end", s.handle);
    Ok(page(
        "Web app: your sessions",
        html! {
            h1 { "Web app" }
            (notice(&query))
            p { "Signed in as " strong id="email" { (user.email) } }
            form method="post" action="/web/form/logout" { button type="submit" { "Sign out" } }
            h2 { "Your sessions" }
            (sessions_table(&sessions, Some(&end)))
            form method="post" action="/web/form/revoke-others" id="revoke-others" {
                h2 { "Sign out all other devices" }
                p { "Enter your password again to end every other session of your account." }
                label { "Password " input type="password" name="password" required; }
                button type="submit" { "Sign out all other devices" }
            }
            form method="post" action="/web/form/preferences" id="preferences" {
                h2 { "Preferences" }
                label { "Theme "
                    select name="theme" {
                        @for option in ["light", "dark"] {
                            option value=(option) selected[theme.as_deref() == Some(option)] { (option) }
                        }
                    }
                }
                button type="submit" { "Save" }
            }
        },
    ))
}

pub async fn web_login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    form_login(&app, "web", peer, &session, &headers, form).await
}

pub async fn admin_login(
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
        Err(error) if error.status() == StatusCode::FORBIDDEN => None,
        Err(error) => return Err(error),
    };
    let Some(user) = user else {
        return Ok(back(name, "wrong-password"));
    };
    app.sign_in(session, &user, peer, headers).await?;
    Ok(Redirect::to(&format!("/{name}/")).into_response())
}

pub async fn web_register(
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

pub async fn logout(session: Session, uri: axum::http::Uri) -> Result<Response, ApiError> {
    session.logout().await?;
    let app = if uri.path().starts_with("/admin") {
        "admin"
    } else {
        "web"
    };
    Ok(Redirect::to(&format!("/{app}/")).into_response())
}

pub async fn web_end_session(
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

pub async fn web_revoke_others(
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

pub async fn web_preferences(
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

pub async fn admin_home(
    State(app): State<App>,
    admin: Option<CurrentUser<User>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(admin) = admin else {
        return Ok(page(
            "Admin panel: sign in",
            html! {
                h1 { "Admin panel" }
                (notice(&query))
                (login_form("/admin/form/login", "Sign in to the admin panel"))
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
        Some(user) => app
            .sessions
            .list_user(&user.id, Scope::AllContexts)
            .await
            .map_err(ApiError::unavailable)?,
        None => Vec::new(),
    };
    let may_end = may_revoke(&admin);
    Ok(page(
        "Admin panel: users",
        html! {
            h1 { "Admin panel" }
            (notice(&query))
            p { "Signed in as " strong { (admin.email) } " (" (admin.role) ")" }
            form method="post" action="/admin/form/logout" { button type="submit" { "Sign out" } }
            form method="get" action="/admin/" id="search" {
                h2 { "Find a user" }
                label { "Email " input type="email" name="email" value=[query.email.as_deref()] required; }
                button type="submit" { "Search" }
            }
            @if let Some(user) = &shown {
                h2 { "Sessions of " span id="user-email" { (user.email) } }
                @let id = user.id;
                @let end = move |s: &SessionInfo| format!("/admin/form/users/{id}/sessions/{}/end", s.handle);
                (sessions_table(&listed, may_end.then_some(&end as &dyn Fn(&SessionInfo) -> String)))
                @if may_end {
                    form method="post" action=(format!("/admin/form/users/{id}/sessions/end")) id="end-all" {
                        button type="submit" { "End all sessions of this user" }
                    }
                }
            } @else if searched {
                p.notice { (notice_text(Some("no-user")).unwrap_or_default()) }
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
        "Admin panel: forbidden",
        html! {
            h1 { "Admin panel" }
            p.notice role="alert" { (notice_text(Some("forbidden")).unwrap_or_default()) }
            a href=(format!("/admin/?user={user}")) { "Back to the user's sessions" }
        },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

pub async fn admin_end_session(
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

pub async fn admin_end_all(
    State(app): State<App>,
    admin: CurrentUser<User>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id = parse_user_id(&user_id)?;
    if !may_revoke(&admin) {
        return Ok(forbidden_page(user_id));
    }
    app.sessions
        .revoke_user(&user_id, Scope::AllContexts)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(back_to_user(user_id, "session-ended"))
}
