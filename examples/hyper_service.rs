//! The same [`SessionLayer`] on bare hyper 1: no axum, just a `tower::service_fn`.
//!
//! ```text
//! cargo run --example hyper_service
//! curl -i -X POST http://127.0.0.1:3001/login            # {"token":…} and a Set-Cookie
//! curl -i -H "Authorization: Bearer <token>" http://127.0.0.1:3001/me
//! curl -i -H "Authorization: Bearer <token>" -X POST http://127.0.0.1:3001/logout
//! ```
//!
//! This example is about wiring, so `POST /login` logs in the seeded `demo@example.com`
//! without asking for a password; see `multi_app` for a real login. `BIND_ADDR` changes the
//! address (default `127.0.0.1:3001`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::{service_fn, Layer};
use tower_app_sessions::Rejection;
use tower_app_sessions::{
    AppContext, CurrentUser, Role, Session, SessionMetadata, SessionStatus, Sessions, User,
};

type Body = Full<Bytes>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let sessions = Sessions::memory();
    let demo = sessions
        .user_repository()
        .create(User::new("demo@example.com", Role::User).verified())
        .await?;
    let layer = sessions.layer(AppContext::Web);

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| format!("cannot listen on {bind}: {error}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::Write::flush(&mut std::io::stdout())?;

    let http = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        // One service per connection: the handler knows the peer's address.
        let demo = Arc::clone(&demo);
        let handler = service_fn(move |req| handle(req, Arc::clone(&demo), peer));
        let service = TowerToHyperService::new(layer.layer(handler));
        let http = http.clone();
        tokio::spawn(async move {
            if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection from {peer}: {error}");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    demo: Arc<User>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    // The layer puts a `Session` in every request it sees.
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return Ok(Rejection::without_user(SessionStatus::Anonymous).response());
    };
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, "/login") => {
            let metadata = SessionMetadata::from_headers(req.headers()).ip(peer.ip().to_string());
            match session.login(demo.id, metadata).await {
                // The layer adds the Set-Cookie; API clients use the token.
                Ok(id) => json(StatusCode::OK, format!(r#"{{"token":"{}"}}"#, id.as_str())),
                Err(_) => Rejection::without_user(SessionStatus::Unavailable).response(),
            }
        }
        (&Method::GET, "/me") => match req.extensions().get::<CurrentUser<User>>() {
            Some(user) => {
                let body = serde_json::json!({ "id": user.id, "email": user.email });
                json(StatusCode::OK, body.to_string())
            }
            // 401 without a valid session, 503 when the store failed.
            None => Rejection::without_user(session.status()).response(),
        },
        (&Method::POST, "/logout") => match session.status() {
            SessionStatus::Authenticated => match session.logout().await {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(_) => Rejection::without_user(SessionStatus::Unavailable).response(),
            },
            status => Rejection::without_user(status).response(),
        },
        _ => empty(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}
