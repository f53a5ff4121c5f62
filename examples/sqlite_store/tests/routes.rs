//! The store serves an axum app through `SessionLayer`, as the `multi_app` example's routes:
//! log in, `/me`, session data, logout; and isolation between two apps sharing the store.

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_app_sessions::UserRepository;
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryUsers, Role, Session, SessionLayer, SessionMetadata, User,
};
use tower_app_sessions_sqlite_example::SqliteStore;

async fn login(
    State(users): State<MemoryUsers>,
    session: Session,
    email: String,
) -> Result<&'static str, StatusCode> {
    let user = users
        .find_by_email(&email)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    session
        .login(user.id, SessionMetadata::new().user_agent("routes-test"))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok("in")
}

async fn me(user: CurrentUser<User>) -> String {
    user.email.clone()
}

async fn logout(session: Session) -> Result<StatusCode, StatusCode> {
    session
        .logout()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn theme(_: CurrentUser<User>, session: Session) -> Json<Option<String>> {
    Json(session.get::<String>("theme").ok().flatten())
}

async fn set_theme(_: CurrentUser<User>, session: Session, theme: String) -> StatusCode {
    match session.insert("theme", &theme) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn app(context: AppContext, store: SqliteStore, users: MemoryUsers) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/preferences/theme", get(theme).put(set_theme))
        .with_state(users.clone())
        .layer(SessionLayer::new(context, store, users))
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (StatusCode, Option<String>, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set_cookie = response.headers().get("set-cookie").map(|value| {
        value
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    });
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        set_cookie,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn log_in_use_the_session_and_log_out() {
    let store = SqliteStore::in_memory().await.unwrap();
    let users = MemoryUsers::new();
    users
        .insert(User::new("ada@example.com", Role::User))
        .unwrap();
    let web = app(AppContext::Web, store.clone(), users.clone());

    let (status, _, _) = send(&web, "GET", "/me", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&web, "POST", "/login", None, "nobody@example.com").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, cookie, _) = send(&web, "POST", "/login", None, "ada@example.com").await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("a session cookie");
    let (status, _, body) = send(&web, "GET", "/me", Some(&cookie), "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ada@example.com"));

    // Session data goes through the store's `update_data` and comes back.
    let (status, _, body) = send(&web, "GET", "/preferences/theme", Some(&cookie), "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "null"));
    let (status, _, _) = send(&web, "PUT", "/preferences/theme", Some(&cookie), "dark").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send(&web, "GET", "/preferences/theme", Some(&cookie), "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "\"dark\""));

    // The same store behind another app's layer: the web session does not authenticate there.
    let admin = app(AppContext::Admin, store.clone(), users.clone());
    let (status, _, _) = send(&admin, "GET", "/me", Some(&cookie), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, _) = send(&web, "POST", "/logout", Some(&cookie), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(&web, "GET", "/me", Some(&cookie), "").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session outlived logout"
    );
}
