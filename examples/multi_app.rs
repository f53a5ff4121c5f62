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
//! | `POST /register` `{"email","password"}` | `201` the new user (web only) |
//! | `POST /login` `{"email","password"}` | `200` `{"token","user"}` and the app's cookie |
//! | `GET /me` | `200` `{"id","email","role","context"}`, else `401` |
//! | `POST /logout` | `204`, the session deleted server-side, else `401` |
//!
//! The admin app admits only the `admin`, `operator` and `support` roles, at login and on
//! every request.
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

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_app_sessions::config::Environment;
use tower_app_sessions::users::UserError;
use tower_app_sessions::{
    AppContext, CurrentUser, Role, Session, SessionError, SessionMetadata, Sessions, User,
    UserRepository,
};
use tracing_subscriber::EnvFilter;

/// Roles the admin panel admits.
const ADMIN_ROLES: [Role; 3] = [Role::Admin, Role::Operator, Role::Support];
const MIN_PASSWORD: usize = 8;
/// Argon2 accepts longer passwords, but nobody needs them and they cost hashing time.
const MAX_PASSWORD: usize = 1024;
const MAX_EMAIL: usize = 254;

const DEMO_USERS: [(&str, &str, Role); 2] = [
    ("admin@example.com", "admin-password", Role::Admin),
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

    let sessions = match Sessions::from_env().await {
        Ok(sessions) => sessions,
        Err(error) => {
            eprintln!("configuration error: {error}");
            std::process::exit(1);
        }
    };

    // Unknown emails are checked against this hash too, so that a login for an email that
    // does not exist takes as long as one with a wrong password.
    let dummy_hash = hash_password("not the password of anyone".into()).await?;

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
            let hash = hash_password(password.into()).await?;
            let user = User::new(email, role).with_password_hash(hash).verified();
            match sessions.users().create(user).await {
                // Already there (a persistent user store): keep it, and its password.
                Ok(_) | Err(UserError::EmailTaken) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    let web = App {
        users: Arc::clone(sessions.users()),
        dummy_hash: dummy_hash.into(),
        admits: None,
    };
    let admin = App {
        admits: Some(&ADMIN_ROLES),
        ..web.clone()
    };
    let app = Router::new()
        .nest(
            "/web",
            routes(web, true).layer(sessions.layer(AppContext::Web).cookie_name("web_sid")),
        )
        .nest(
            "/admin",
            routes(admin, false).layer(
                sessions
                    .layer(AppContext::Admin)
                    .cookie_name("admin_sid")
                    .admit_roles(ADMIN_ROLES),
            ),
        );

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| format!("cannot listen on {bind}: {error}"))?;
    let addr = listener.local_addr()?;
    print_instructions(addr, seed_demo_users)?;

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
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

/// One application's handlers' state.
#[derive(Clone)]
struct App {
    users: Arc<dyn UserRepository>,
    dummy_hash: Arc<str>,
    /// The roles this app admits (`None`: all). The same list goes to the layer's
    /// `admit_roles`, which enforces it on every request; login checks it to refuse up front.
    admits: Option<&'static [Role]>,
}

fn routes(app: App, with_registration: bool) -> Router {
    let mut router = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout));
    if with_registration {
        router = router.route("/register", post(register));
    }
    router.with_state(app)
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

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
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

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, rejection.body_text())
    }
}

/// The crate's own answer to a failed session operation: `503` (logged by the crate).
impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        Self(Box::new(error.into_response()))
    }
}

/// Reads a JSON body of `{"email","password"}`, answering `400`/`415` when it is not one.
fn credentials(body: Result<Json<Credentials>, JsonRejection>) -> Result<Credentials, ApiError> {
    let Json(mut credentials) = body?;
    credentials.email = credentials.email.trim().to_owned();
    Ok(credentials)
}

async fn register(
    State(app): State<App>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Credentials { email, password } = credentials(body)?;
    if email.is_empty() {
        return Err(ApiError::bad_request("email is required"));
    }
    if email.len() > MAX_EMAIL || !email.contains('@') {
        return Err(ApiError::bad_request("email is not a valid address"));
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::bad_request(format!(
            "password must be at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::bad_request(format!(
            "password must be at most {MAX_PASSWORD} bytes"
        )));
    }
    let hash = hash_password(password)
        .await
        .map_err(ApiError::unavailable)?;
    let user = User::new(email, Role::User).with_password_hash(hash);
    match app.users.create(user).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(UserView::from(&*user))).into_response()),
        Err(UserError::EmailTaken) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "email already registered",
        )),
        Err(error) => Err(ApiError::unavailable(error)),
    }
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Credentials { email, password } = credentials(body)?;
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid email or password");
    if password.len() > MAX_PASSWORD {
        return Err(invalid());
    }
    let user = app
        .users
        .find_by_email(&email)
        .await
        .map_err(ApiError::unavailable)?;
    // Always verify a hash, a dummy one for unknown emails (and users without a password),
    // so the answer's timing does not tell which emails exist.
    let hash = user
        .as_ref()
        .and_then(|user| user.hashed_password.as_deref())
        .map_or_else(|| Arc::clone(&app.dummy_hash), Arc::from);
    let password_ok = verify_password(password, hash).await;
    let user = match user {
        Some(user) if password_ok => user,
        _ => return Err(invalid()),
    };
    if app.admits.is_some_and(|roles| !roles.contains(&user.role)) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden"));
    }

    let metadata = SessionMetadata::from_headers(&headers).ip(peer.ip().to_string());
    // A fresh id every time: the request's own session, if any, is replaced (fixation);
    // the user's sessions on other devices stay.
    let id = session.login(user.id, metadata).await?;
    if let Err(error) = app.users.record_login(&user.id).await {
        tracing::warn!(%error, "could not record the login time");
    }
    tracing::info!(context = %session.context(), user = %user.id, "logged in");
    let view = LoginView {
        token: id.as_str(),
        user: UserView::from(&*user),
    };
    Ok(Json(view).into_response())
}

async fn me(user: CurrentUser<User>, session: Session) -> Response {
    let view = MeView {
        user: UserView::from(&*user),
        context: session.context().as_str(),
    };
    Json(view).into_response()
}

async fn logout(_user: CurrentUser<User>, session: Session) -> Result<StatusCode, SessionError> {
    session.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Argon2id with the default parameters and a random salt, off the async threads.
async fn hash_password(password: String) -> Result<String, BoxError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| format!("password hashing failed: {error}").into())
    })
    .await?
}

/// Whether `password` matches the PHC string `hash`; an unparsable hash never matches.
async fn verify_password(password: String, hash: Arc<str>) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// The `listening on` line first (tests read it), then how to try it out.
fn print_instructions(addr: SocketAddr, demo_users: bool) -> std::io::Result<()> {
    use std::io::Write;

    let base = format!("http://{addr}");
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {base}")?;
    out.flush()?;
    writeln!(out)?;
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
    // The cookies are `Secure`. Browsers treat http://localhost (and 127.0.0.1) as a secure
    // context, and so do recent curl versions with `-c`/`-b`; an older curl does not send a
    // Secure cookie over http: pass it with `-H "Cookie: web_sid=<token>"` or use the bearer
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
  curl -i -H "Cookie: admin_sid=$TOKEN" {base}/admin/me
  curl -i -H "Authorization: Bearer $TOKEN" {base}/admin/me
  # API clients send the token instead of the cookie
  curl -i -H "Authorization: Bearer $TOKEN" {base}/web/me
  # the admin panel refuses role user (403) and admits the admin
  curl -i {json} -d '{{"email":"user@example.com","password":"user-password"}}' {base}/admin/login
  curl -i -c /tmp/admin.jar {json} -d '{{"email":"admin@example.com","password":"admin-password"}}' {base}/admin/login
  curl -i -b /tmp/admin.jar {base}/admin/me
  # log out: the session is deleted server-side; the old cookie and token no longer work (401)
  curl -i -b /tmp/web.jar -X POST {base}/web/logout
  curl -i -H "Cookie: web_sid=$TOKEN" {base}/web/me
  curl -i -H "Authorization: Bearer $TOKEN" {base}/web/me
(the cookies are Secure: a curl too old to send them to http://localhost with -b can use -H "Cookie: web_sid=$TOKEN")"#
    )?;
    out.flush()
}
