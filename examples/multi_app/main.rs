//! Two applications, `web` and `admin`, on one server and one set of stores, with sessions
//! isolated per application: a web session never opens the admin panel.
//!
//! ```text
//! cargo run --example multi_app
//! ```
//!
//! Nothing to set up: with `SESSION_ENV` unset, [`Sessions::from_env`] gives in-memory
//! stores. `BIND_ADDR` changes the address (default `127.0.0.1:3000`), `RUST_LOG` the log
//! level (default `info`). The server prints ready-to-paste `curl` commands when it starts.
//!
//! Routes, under `/web` and `/admin` alike:
//!
//! | route | answer |
//! |---|---|
//! | `POST /register` `{"email","password"}` | `201` the new user (web only); `422` for an email without a canonical form or a password out of bounds |
//! | `POST /login` `{"email","password"}` | `200` `{"token","user"}` and the app's cookie; `401` for any wrong email or password, `429` past the attempt limits, `503` when verification is saturated |
//! | `GET /me` | `200` `{"id","email","role","context"}` (on admin, `"notice"` too, once after a login), else `401` |
//! | `POST /logout` | `204`, the session deleted server-side, else `401` |
//! | `GET /preferences` (web) | `200` the session's preferences, `{}` at first |
//! | `GET /stats` (admin, role `admin` only) | `200` `Sessions::stats()` as JSON; `403` for other roles |
//! | `PATCH /preferences` (web) `{"theme":"dark","language":"ru"}` | each key set, `null` removes it; `200` the merged preferences; all or nothing: `413` past 16 KiB or 256 keys, `422` for a bad key or value, and then no preference of the body is changed |
//! | `GET /` | the app as a page (see `pages.rs`): sign in, your sessions, end them; on admin, users' sessions |
//! | `GET /assets/style.css` (no prefix) | the pages' stylesheet |
//! | `GET /sessions`, `DELETE /sessions/<handle>`, `POST /sessions/revoke-others`, admin `GET /users?email=`, `GET`/`DELETE /users/<id>/sessions`, `DELETE /users/<id>/sessions/<handle>` | session management as JSON (see `manage.rs`) |
//!
//! Each preference is its own key of the session data, so concurrent changes of different
//! preferences never lose each other, and a pre-migration session row's `data`
//! (`{"theme":"dark"}`) shows up as preferences.
//!
//! The admin app admits only the `admin`, `operator` and `support` roles, at login and on
//! every request, and its sessions are short: 30 minutes idle, 12 hours at most. Cookies
//! are `__Host-web_sid` and `__Host-admin_sid` (no sibling subdomain can plant one).
//!
//! Logins, registrations and the password re-entry of "sign out other devices" go through
//! the crate's [`PasswordLogin`] (Argon2id, the TypeScript apps' PHC hashes): at most one
//! password hash per core at once; attempts from unknown devices limited per client address
//! (`LOGIN_LIMIT_PER_ADDRESS`, default 30 per minute) and per account
//! (`LOGIN_LIMIT_PER_ACCOUNT`, default 10); a device that signed in before (its
//! `__Host-device` cookie, signed with `SESSION_DEVICE_KEY`) has a budget of its own
//! (`LOGIN_LIMIT_PER_DEVICE`, default 10), so guesses from elsewhere never lock its owner
//! out; re-authentication is limited per session (`LOGIN_LIMIT_PER_SESSION`, default 10);
//! `0` turns a limit off. Request bodies over 16 KiB get `413`; error bodies never repeat
//! the input.
//!
//! On real backends (feature `redis`, plus `postgres` for users):
//!
//! ```text
//! SESSION_ENV=development REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example multi_app
//! SESSION_ENV=production SESSION_AUTO_MIGRATE=true REDIS_URL=redis://127.0.0.1:6379 \
//!   DATABASE_URL=postgres://postgres@127.0.0.1:5432/app cargo run --features redis,postgres --example multi_app
//! ```
//!
//! In production no demo user is seeded: users are the `users` table's (argon2 PHC hashes,
//! as the TypeScript apps store them), and `SESSION_AUTO_MIGRATE=true` runs the crate's
//! migrations first (a no-op the second time).

mod accounts;
mod manage;
mod pages;
mod render;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::Layer;
use tower_app_sessions::config::Environment;
use tower_app_sessions::data::DataPatch;
use tower_app_sessions::login::{Argon2Verifier, PasswordLogin, PasswordVerifier};
use tower_app_sessions::users::UserError;
use tower_app_sessions::{
    AppContext, CurrentUser, Role, Session, SessionError, Sessions, User, UserRepository,
};
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing_subscriber::EnvFilter;

/// Roles the admin panel admits.
const ADMIN_ROLES: [Role; 3] = [Role::Admin, Role::Operator, Role::Support];
/// Largest request body the JSON routes read.
const MAX_BODY: usize = 16 * 1024;
/// The admin panel's session lifetimes: short, as befits more privileges.
const ADMIN_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);
const ADMIN_ABSOLUTE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Every answer's `Content-Security-Policy`: never framed, nothing loaded but the app's own
/// stylesheet, forms posted to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const DEMO_USERS: [(&str, &str, Role); 3] = [
    ("admin@example.com", "admin-password", Role::Admin),
    ("support@example.com", "support-password", Role::Support),
    ("user@example.com", "user-password", Role::User),
];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // stdout is for the `listening on` line and the instructions.
        .with_writer(std::io::stderr)
        .init();

    // The Prometheus recorder goes in before any layer is built: layers register their
    // metric handles when they are built.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    // One Argon2 verifier for the process: it keeps its working memory for the next hash.
    let argon2 = Arc::new(Argon2Verifier::default());
    let (sessions, login) = match configure(&argon2).await {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("configuration error: {error}");
            std::process::exit(1);
        }
    };

    // Schema changes are never implicit: SESSION_AUTO_MIGRATE=true runs the crate's
    // migrations (a no-op when already applied); otherwise run them from a deploy step.
    if std::env::var("SESSION_AUTO_MIGRATE").is_ok_and(|v| v == "true" || v == "1") {
        sessions.migrate().await?;
        tracing::info!("database migrations applied");
    }

    // Demo users only outside production: there, users are the `users` table's, including
    // the ones the TypeScript apps created.
    let seed_demo_users = sessions.environment() != Environment::Production;
    if seed_demo_users {
        for (email, password, role) in DEMO_USERS {
            let hash = hash_password(&argon2, password).await?;
            let user = User::new(email, role).hashed_password(hash).verified();
            match sessions.user_repository().create(user).await {
                // Already there (a persistent user store): keep it, and its password.
                Ok(_) | Err(UserError::EmailTaken) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    let web = App {
        users: Arc::clone(sessions.user_repository()),
        login: login.clone(),
        admin: false,
        sessions: sessions.clone(),
    };
    // The admin panel signs in only the roles its layer admits (403 for the others, once
    // their password was right); both apps share the throttle's budgets and the device key.
    let admin = App {
        login: login.admit_roles(ADMIN_ROLES),
        admin: true,
        ..web.clone()
    };
    let app = Router::new()
        .route("/assets/style.css", get(render::stylesheet))
        // Prometheus text format. On the app's own address for the demo; a real deployment
        // serves it on an internal port only (it shows traffic per context and outcome).
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move {
                    let kind = "text/plain; version=0.0.4; charset=utf-8";
                    ([(header::CONTENT_TYPE, kind)], text)
                }
            }),
        )
        .nest(
            "/web",
            routes(web, true).layer(
                sessions
                    .layer(AppContext::Web)
                    .cookie_name("__Host-web_sid"),
            ),
        )
        .nest(
            "/admin",
            routes(admin, false).layer(
                sessions
                    .layer(AppContext::Admin)
                    .cookie_name("__Host-admin_sid")
                    .idle_timeout(ADMIN_IDLE)
                    .absolute_timeout(ADMIN_ABSOLUTE)
                    .admit_roles(ADMIN_ROLES),
            ),
        )
        // No page may be framed by another site (clickjacking "End all sessions"): both the
        // old header and CSP's `frame-ancestors`, on every answer. The pages load nothing
        // but their stylesheet, so the policy also refuses scripts and foreign resources.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| format!("cannot listen on {bind}: {error}"))?;
    let addr = listener.local_addr()?;
    print_instructions(addr, seed_demo_users)?;

    // `/web/` and `/admin/` are the pages: a trailing slash is trimmed before routing, so
    // the nested routers' `/` answers both spellings.
    let app = NormalizePathLayer::trim_trailing_slash().layer(app);
    axum::serve(
        listener,
        ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(
            app,
        ),
    )
    .with_graceful_shutdown(async {
        // If Ctrl-C cannot be watched, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}

/// The sessions and the password login the environment asks for (the login's limits and
/// device key: `LOGIN_LIMIT_*`, `SESSION_DEVICE_KEY`).
async fn configure(argon2: &Arc<Argon2Verifier>) -> Result<(Sessions, PasswordLogin), BoxError> {
    let sessions = Sessions::from_env().await?;
    let (users, argon2) = (Arc::clone(sessions.user_repository()), Arc::clone(argon2));
    // Setting up hashes the dummy password (for unknown emails): off the async threads.
    let login =
        tokio::task::spawn_blocking(move || PasswordLogin::from_env(users, argon2)).await??;
    Ok((sessions, login))
}

/// One application's handlers' state.
#[derive(Clone)]
struct App {
    users: Arc<dyn UserRepository>,
    /// Sign-in, registration and re-authentication. Shared by both apps (one bound on
    /// password hashing, one set of budgets for the process); the admin app's admits the
    /// roles its layer admits.
    login: PasswordLogin,
    /// The admin panel (a notice after signing in).
    admin: bool,
    /// For the operators' figures (`GET /admin/stats`).
    sessions: Sessions,
}

fn routes(app: App, web_only: bool) -> Router {
    let mut router = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/sessions", get(manage::list_mine))
        .route("/sessions/{handle}", delete(manage::end_mine))
        .route("/sessions/revoke-others", post(manage::revoke_others))
        .route("/form/logout", post(pages::logout));
    if web_only {
        router = router
            .route("/", get(pages::web_home))
            .route("/form/login", post(pages::web_login))
            .route("/form/register", post(pages::web_register))
            .route("/form/sessions/{handle}/end", post(pages::web_end_session))
            .route("/form/revoke-others", post(pages::web_revoke_others))
            .route("/form/preferences", post(pages::web_preferences))
            .route("/register", post(register))
            .route("/preferences", get(preferences).patch(set_preferences));
    } else {
        router = router
            .route("/", get(pages::admin_home))
            .route("/form/login", post(pages::admin_login))
            .route(
                "/form/users/{user}/sessions/{handle}/end",
                post(pages::admin_end_session),
            )
            .route(
                "/form/users/{user}/sessions/end",
                post(pages::admin_end_all),
            )
            .route("/stats", get(stats))
            .route("/users", get(manage::find_user))
            .route(
                "/users/{user}/sessions",
                get(manage::user_sessions).delete(manage::end_user_sessions),
            )
            .route(
                "/users/{user}/sessions/{handle}",
                delete(manage::end_user_session),
            );
    }
    router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// What clients see of a user.
#[derive(Serialize)]
struct UserView<'a> {
    id: uuid::Uuid,
    email: &'a str,
    role: Role,
}

#[derive(Serialize)]
struct LoginView<'a> {
    token: &'a str,
    user: UserView<'a>,
}

#[derive(Serialize)]
struct MeView<'a> {
    #[serde(flatten)]
    user: UserView<'a>,
    context: &'a str,
    /// The flash message of the last login, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            id: user.id,
            email: &user.email,
            role: user.role,
        }
    }
}

/// An error answer, mostly `{"error": "…"}` with a status.
struct ApiError(Box<Response>);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let body = Json(json!({ "error": message.into() }));
        Self(Box::new((status, body).into_response()))
    }

    fn status(&self) -> StatusCode {
        self.0.status()
    }

    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "user store unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl ApiError {
    /// A body that is not the JSON a route wants: axum's status (`400` syntax, `413` too
    /// large, `415` not JSON, `422` wrong shape) with a fixed message, `shape` saying what
    /// the route expects; the parser's own message quotes the input, and error bodies never
    /// repeat what a client sent.
    fn bad_json(rejection: &JsonRejection, shape: &'static str) -> Self {
        let status = rejection.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "expected a JSON body (Content-Type: application/json)"
            }
            StatusCode::UNPROCESSABLE_ENTITY => shape,
            _ => "the body is not valid JSON",
        };
        Self::new(status, message)
    }
}

/// The credentials' routes' answer to a body that is not `{"email","password"}`.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_json(
            &rejection,
            "expected a JSON object with string fields email and password",
        )
    }
}

/// The stores' figures (`Sessions::stats`), for the `admin` role only: SCAN-based, so an
/// operator's page, not something to poll per request.
async fn stats(State(app): State<App>, user: CurrentUser<User>) -> Result<Response, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden"));
    }
    match app.sessions.stats().await {
        Ok(stats) => Ok(no_store(Json(stats).into_response())),
        Err(error) => {
            tracing::warn!(%error, "session figures unavailable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "session figures unavailable",
            ))
        }
    }
}

/// The crate's own answer to a failed session operation: `503` (logged by the crate).
impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        Self(Box::new(error.into_response()))
    }
}

/// Reads a JSON body of `{"email","password"}` (see `From<JsonRejection>` for the answers
/// when it is not one).
fn credentials(body: Result<Json<Credentials>, JsonRejection>) -> Result<Credentials, ApiError> {
    let Json(credentials) = body?;
    Ok(credentials)
}

/// Registration (web only).
async fn register(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Credentials { email, password } = credentials(body)?;
    let user = app.register(peer, &headers, &email, password).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&*user))).into_response())
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Credentials { email, password } = credentials(body)?;
    let user = app.check_password(peer, &headers, &email, password).await?;
    let Some(user) = user else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid email or password",
        ));
    };
    let id = app.sign_in(&session, &user, peer, &headers).await?;
    let view = LoginView {
        token: id.as_str(),
        user: UserView::from(&*user),
    };
    Ok(no_store(Json(view).into_response()))
}

async fn me(user: CurrentUser<User>, session: Session) -> Result<Response, SessionError> {
    let view = MeView {
        user: UserView::from(&*user),
        context: session.context().as_str(),
        notice: flash_notice(&session)?,
    };
    Ok(no_store(Json(view).into_response()))
}

/// The login's flash notice, taken (shown once). One that is not a string (written by
/// another app, or an older version) is dropped and logged: a bad stored value must never
/// keep a user from their own pages.
fn flash_notice(session: &Session) -> Result<Option<String>, SessionError> {
    Ok(match session.take_flash::<serde_json::Value>("notice")? {
        None => None,
        Some(serde_json::Value::String(notice)) => Some(notice),
        Some(other) => {
            tracing::warn!(
                kind = pages::value_kind(&other),
                "ignoring a stored flash notice that is not a string"
            );
            None
        }
    })
}

/// The session's preferences: its data, flash messages left out.
fn preferences_of(
    session: &Session,
) -> Result<serde_json::Map<String, serde_json::Value>, SessionError> {
    let data = session.data()?;
    let mut all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&data.to_json()).unwrap_or_default();
    all.retain(|key, _| !key.starts_with("flash."));
    Ok(all)
}

async fn preferences(_user: CurrentUser<User>, session: Session) -> Result<Response, SessionError> {
    Ok(no_store(Json(preferences_of(&session)?).into_response()))
}

/// Sets each preference in the body (`null` removes it), each its own key: a concurrent
/// change of another preference is kept. All or nothing: the whole body is checked (every
/// key, every value) before the session is touched, so a bad preference anywhere in it
/// changes none (`422`); one that would pass the session's limits refuses them all (`413`).
async fn set_preferences(
    _user: CurrentUser<User>,
    session: Session,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(changes) = body.map_err(|rejection| {
        ApiError::bad_json(
            &rejection,
            "expected a JSON object of preferences (a value each, null removes one)",
        )
    })?;
    // The same checks the session makes, on a patch of our own first: nothing reaches the
    // session unless every key and value of the body is one it takes.
    let mut checked = DataPatch::new();
    for (key, value) in &changes {
        if value.is_null() {
            checked.remove(key).map_err(SessionError::from)?;
        } else {
            checked.set(key, value).map_err(SessionError::from)?;
        }
    }
    for (key, value) in &changes {
        if value.is_null() {
            session.remove(key)?;
        } else {
            session.insert(key, value)?;
        }
    }
    Ok(no_store(Json(preferences_of(&session)?).into_response()))
}

/// Answers about who is signed in are for this client only: no cache may keep them.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn logout(_user: CurrentUser<User>, session: Session) -> Result<StatusCode, SessionError> {
    session.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A password hash made off the async threads (for seeding the demo users; requests hash
/// through the login's throttle).
async fn hash_password(argon2: &Arc<Argon2Verifier>, password: &str) -> Result<String, BoxError> {
    let (argon2, password) = (Arc::clone(argon2), password.to_owned());
    Ok(tokio::task::spawn_blocking(move || argon2.hash(&password)).await??)
}

/// The `listening on` line first (tests read it), then how to try it out.
fn print_instructions(addr: SocketAddr, demo_users: bool) -> std::io::Result<()> {
    use std::io::Write;

    let base = format!("http://{addr}");
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {base}")?;
    out.flush()?;
    writeln!(out)?;
    writeln!(
        out,
        "in a browser: {base}/web/ (sign in, your sessions) and {base}/admin/ (users' sessions)"
    )?;
    if demo_users {
        writeln!(out, "demo users:")?;
        for (email, password, role) in DEMO_USERS {
            writeln!(out, "  {email} / {password} (role {role})")?;
        }
    } else {
        writeln!(
            out,
            "production: no demo users; log in with the users of the `users` table"
        )?;
    }
    writeln!(
        out,
        "sessions: web 24 h idle, 7 days at most; admin {} min idle, {} h at most",
        ADMIN_IDLE.as_secs() / 60,
        ADMIN_ABSOLUTE.as_secs() / 3600
    )?;
    // The cookies are `Secure`. Browsers treat http://localhost (and 127.0.0.1) as a secure
    // context, and so do recent curl versions with `-c`/`-b`; an older curl does not send a
    // Secure cookie over http: pass it with `-H "Cookie: __Host-web_sid=<token>"` or use the bearer
    // token.
    let json = "-H 'Content-Type: application/json'";
    let token = r#"sed -nE 's/.*"token":"([^"]+)".*/\1/p'"#;
    writeln!(
        out,
        r#"
try it (bash or zsh):
  # register a web user (role user)
  curl -i {json} -d '{{"email":"me@example.com","password":"my-password"}}' {base}/web/register
  # log in to the web app: the cookie goes to /tmp/web.jar, the token (for API clients) is in the body
  TOKEN=$(curl -s -c /tmp/web.jar {json} -d '{{"email":"user@example.com","password":"user-password"}}' {base}/web/login | {token}); echo "token: $TOKEN"
  curl -i -b /tmp/web.jar {base}/web/me
  # the web session does not open the admin panel: 401 with the cookie, under the admin cookie name, or as a bearer token
  curl -i -b /tmp/web.jar {base}/admin/me
  curl -i -H "Cookie: __Host-admin_sid=$TOKEN" {base}/admin/me
  curl -i -H "Authorization: Bearer $TOKEN" {base}/admin/me
  # API clients send the token instead of the cookie
  curl -i -H "Authorization: Bearer $TOKEN" {base}/web/me
  # the admin panel refuses role user (403) and admits the admin
  curl -i {json} -d '{{"email":"user@example.com","password":"user-password"}}' {base}/admin/login
  curl -i -c /tmp/admin.jar {json} -d '{{"email":"admin@example.com","password":"admin-password"}}' {base}/admin/login
  # the first /admin/me after a login carries a "notice", the next ones do not
  curl -s -b /tmp/admin.jar {base}/admin/me; echo; curl -s -b /tmp/admin.jar {base}/admin/me; echo
  # preferences live in the session: each key set on its own, null removes one
  curl -i -b /tmp/web.jar -X PATCH {json} -d '{{"theme":"dark","language":"ru"}}' {base}/web/preferences
  curl -i -b /tmp/web.jar -X PATCH {json} -d '{{"language":null}}' {base}/web/preferences
  curl -i -b /tmp/web.jar {base}/web/preferences
  # your sessions in this app (by handle, never the id; DELETE {base}/web/sessions/<handle> ends one)
  curl -s -b /tmp/web.jar {base}/web/sessions; echo
  # what the layers counted (Prometheus text format; keep it on an internal port in production)
  curl -s {base}/metrics | grep tower_app_sessions_requests_total
  # the stores' figures, for the admin role (sessions per context, legacy keys, memory, index use)
  curl -s -b /tmp/admin.jar {base}/admin/stats; echo
  # log out: the session is deleted server-side; the old cookie and token no longer work (401)
  curl -i -b /tmp/web.jar -X POST {base}/web/logout
  curl -i -H "Cookie: __Host-web_sid=$TOKEN" {base}/web/me
  curl -i -H "Authorization: Bearer $TOKEN" {base}/web/me
(the cookies are Secure: a curl too old to send them to http://localhost with -b can use -H "Cookie: __Host-web_sid=$TOKEN")"#
    )?;
    out.flush()
}
