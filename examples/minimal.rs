//! The smallest complete app: two contexts (`web` for everyone, `admin` for role admin),
//! password login with Argon2, logout, a handler that reads the user.
//! `cargo run --example minimal`; README's "A complete app" shows this file and how to call it.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_app_sessions::login::PasswordVerifier as _;
use tower_app_sessions::login::{Argon2Verifier, Credentials, LoginError, PasswordLogin};
use tower_app_sessions::{
    stats::SessionStats, AppContext, CurrentUser, Role, Session, Sessions, User,
};

/// What the handlers share (axum's `State`): the sessions and this context's login.
#[derive(Clone)]
struct App {
    sessions: Sessions,
    login: PasswordLogin,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let sessions = Sessions::from_env().await?; // in memory unless SESSION_ENV says otherwise
    let argon2 = Arc::new(Argon2Verifier::default()); // reads the TypeScript apps' PHC hashes
    for (email, password, role) in [
        ("ada@example.com", "ada-password", Role::Admin),
        ("bob@example.com", "bob-password", Role::User),
    ] {
        let user = User::new(email, role).hashed_password(argon2.hash(password)?);
        sessions.user_repository().create(user).await?; // demo users; yours are in your database
    }
    // Throttled per address, account and known device; LOGIN_LIMIT_*, SESSION_DEVICE_KEY.
    let login = PasswordLogin::from_env(Arc::clone(sessions.user_repository()), argon2)?;
    let web = App {
        sessions: sessions.clone(),
        login: login.clone(),
    };
    let admin = App {
        sessions: sessions.clone(),
        login: login.admit_roles([Role::Admin]), // 403 for the others, once the password is right
    };
    let routes = Router::new()
        .route("/login", post(login_handler))
        .route("/me", get(me))
        .route("/logout", post(logout));
    let web_layer = sessions
        .layer(AppContext::Web)
        .cookie_name("__Host-web_sid");
    let admin_layer = sessions
        .layer(AppContext::Admin)
        .cookie_name("__Host-admin_sid")
        .admit_roles([Role::Admin]);
    let app = Router::new()
        .nest("/web", routes.clone().with_state(web).layer(web_layer))
        .nest(
            "/admin",
            routes
                .route("/stats", get(stats))
                .with_state(admin)
                .layer(admin_layer),
        );
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // `ConnectInfo` hands handlers the client's address (the login throttle counts by it).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// `200` the new session's id (a bearer token; browsers get the cookie), `401` wrong email or
/// password, `403` a role this context does not admit, `429` too many attempts.
async fn login_handler(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Json(credentials): Json<Credentials>,
) -> Result<String, LoginError> {
    let signed_in = app
        .login
        .login(&session, peer, &headers, credentials)
        .await?;
    Ok(signed_in.id.as_str().to_owned())
}

/// `CurrentUser` rejects with `401` (no session) or `503` (a store down); it derefs to `User`.
async fn me(user: CurrentUser<User>, session: Session) -> String {
    format!("{} ({}) in {}", user.email, user.role, session.context())
}

async fn logout(_: CurrentUser<User>, session: Session) -> Result<&'static str, LoginError> {
    session.logout().await?; // deleted server-side at once; the cookie is removed
    Ok("bye")
}

/// Admin only (the layer's `admit_roles`): the stores' figures, through the shared `Sessions`.
async fn stats(
    State(app): State<App>,
    _: CurrentUser<User>,
) -> Result<Json<SessionStats>, StatusCode> {
    app.sessions
        .stats()
        .await
        .map(Json)
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}
