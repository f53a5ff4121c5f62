//! Cross-site writes not authenticated by a bearer token are refused by the layer (on by
//! default): with the session cookie (CSRF) and without any credential (login CSRF). On axum
//! and on bare hyper over a real socket; one table, both servers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{service_fn, Layer, ServiceExt};
use tower_app_sessions::cross_origin::{CrossOriginPolicy, CROSS_ORIGIN_BODY};
use tower_app_sessions::{AppContext, CurrentUser, MemoryUsers, Role, Session, Sessions, User};

const HOST: &str = "app.example.com";

/// (name, method, credential, headers, allowed)
type Row = (
    &'static str,
    Method,
    Credential,
    Vec<(&'static str, Vec<u8>)>,
    bool,
);

#[derive(Debug, Clone, Copy)]
enum Credential {
    Cookie,
    Bearer,
    /// A session cookie that is not an id (`sessionId=not!an!id`): no credential.
    MalformedCookie,
    /// `Authorization: Bearer` with something that is not an id: not bearer-authenticated.
    MalformedBearer,
    None,
}

fn table() -> Vec<Row> {
    use Credential::*;
    let h = |name: &'static str, value: &str| (name, value.as_bytes().to_vec());
    let long_origin = format!("https://{}.example.com", "a".repeat(8000));
    vec![
        (
            "cross-site",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "cross-site, PUT",
            Method::PUT,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "cross-site, PATCH",
            Method::PATCH,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "cross-site, DELETE",
            Method::DELETE,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "cross-site, custom method",
            Method::from_bytes(b"PURGE").unwrap(),
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "cross-site with a same-looking Origin",
            Method::POST,
            Cookie,
            vec![
                h("sec-fetch-site", "cross-site"),
                h("origin", "https://app.example.com"),
            ],
            false,
        ),
        (
            "same-site",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "same-site")],
            false,
        ),
        (
            "same-origin",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "same-origin")],
            true,
        ),
        (
            "none (typed by the user)",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "none")],
            true,
        ),
        (
            "unknown Sec-Fetch-Site",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "CROSS-SITE")],
            false,
        ),
        (
            "empty Sec-Fetch-Site",
            Method::POST,
            Cookie,
            vec![h("sec-fetch-site", "")],
            false,
        ),
        (
            "non-UTF-8 Sec-Fetch-Site",
            Method::POST,
            Cookie,
            vec![("sec-fetch-site", b"same-origin\xff".to_vec())],
            false,
        ),
        (
            "old browser, foreign Origin",
            Method::POST,
            Cookie,
            vec![h("origin", "https://evil.example")],
            false,
        ),
        (
            "old browser, Origin null",
            Method::POST,
            Cookie,
            vec![h("origin", "null")],
            false,
        ),
        (
            "old browser, own Origin",
            Method::POST,
            Cookie,
            vec![h("origin", "https://app.example.com")],
            true,
        ),
        (
            "old browser, own Origin in capitals",
            Method::POST,
            Cookie,
            vec![h("origin", "https://APP.example.com")],
            true,
        ),
        (
            "old browser, other port",
            Method::POST,
            Cookie,
            vec![h("origin", "https://app.example.com:8443")],
            false,
        ),
        (
            "old browser, look-alike host",
            Method::POST,
            Cookie,
            vec![h("origin", "https://app.example.com.evil.example")],
            false,
        ),
        (
            "old browser, Unicode look-alike",
            Method::POST,
            Cookie,
            vec![("origin", "https://аpp.example.com".as_bytes().to_vec())],
            false,
        ),
        (
            "old browser, non-UTF-8 Origin",
            Method::POST,
            Cookie,
            vec![("origin", b"https://\xffapp".to_vec())],
            false,
        ),
        (
            "old browser, oversized Origin",
            Method::POST,
            Cookie,
            vec![h("origin", &long_origin)],
            false,
        ),
        (
            "old browser, Origin with a path",
            Method::POST,
            Cookie,
            vec![h("origin", "https://app.example.com/x")],
            false,
        ),
        (
            "no browser headers (curl, a server)",
            Method::POST,
            Cookie,
            vec![],
            true,
        ),
        (
            "GET cross-site",
            Method::GET,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            true,
        ),
        (
            "HEAD cross-site",
            Method::HEAD,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            true,
        ),
        (
            "OPTIONS cross-site",
            Method::OPTIONS,
            Cookie,
            vec![h("sec-fetch-site", "cross-site")],
            true,
        ),
        (
            "trusted origin, cross-site",
            Method::POST,
            Cookie,
            vec![
                h("sec-fetch-site", "cross-site"),
                h("origin", "https://admin.example.com"),
            ],
            true,
        ),
        (
            "trusted origin, old browser",
            Method::POST,
            Cookie,
            vec![h("origin", "https://admin.example.com")],
            true,
        ),
        (
            "trusted origin with another scheme",
            Method::POST,
            Cookie,
            vec![
                h("sec-fetch-site", "cross-site"),
                h("origin", "http://admin.example.com"),
            ],
            false,
        ),
        (
            "bearer, cross-site",
            Method::POST,
            Bearer,
            vec![h("sec-fetch-site", "cross-site")],
            true,
        ),
        (
            "bearer, foreign Origin",
            Method::POST,
            Bearer,
            vec![h("origin", "https://evil.example")],
            true,
        ),
        // Login CSRF: a cross-site form posting credentials carries no session cookie.
        (
            "no credential, cross-site",
            Method::POST,
            None,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "no credential, cross-site, PUT",
            Method::PUT,
            None,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "no credential, same-site",
            Method::POST,
            None,
            vec![h("sec-fetch-site", "same-site")],
            false,
        ),
        (
            "no credential, unknown Sec-Fetch-Site",
            Method::POST,
            None,
            vec![h("sec-fetch-site", "cross-origin")],
            false,
        ),
        (
            "no credential, old browser, foreign Origin",
            Method::POST,
            None,
            vec![h("origin", "https://evil.example")],
            false,
        ),
        (
            "no credential, old browser, Origin null",
            Method::POST,
            None,
            vec![h("origin", "null")],
            false,
        ),
        (
            "no credential, old browser, http Origin of the https site",
            Method::POST,
            None,
            vec![h("origin", "http://app.example.com")],
            false,
        ),
        (
            "no credential, same-origin",
            Method::POST,
            None,
            vec![h("sec-fetch-site", "same-origin")],
            true,
        ),
        (
            "no credential, none (typed by the user)",
            Method::POST,
            None,
            vec![h("sec-fetch-site", "none")],
            true,
        ),
        (
            "no credential, old browser, own Origin",
            Method::POST,
            None,
            vec![h("origin", "https://app.example.com")],
            true,
        ),
        (
            "no credential, no browser headers (curl, a server, an app)",
            Method::POST,
            None,
            vec![],
            true,
        ),
        (
            "no credential, GET cross-site",
            Method::GET,
            None,
            vec![h("sec-fetch-site", "cross-site")],
            true,
        ),
        (
            "no credential, trusted origin, cross-site",
            Method::POST,
            None,
            vec![
                h("sec-fetch-site", "cross-site"),
                h("origin", "https://admin.example.com"),
            ],
            true,
        ),
        (
            "malformed cookie, cross-site",
            Method::POST,
            MalformedCookie,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            "malformed cookie, no browser headers",
            Method::POST,
            MalformedCookie,
            vec![],
            true,
        ),
        (
            "malformed bearer, cross-site",
            Method::POST,
            MalformedBearer,
            vec![h("sec-fetch-site", "cross-site")],
            false,
        ),
        // Without Sec-Fetch-Site the Origin's scheme counts: https, unless the URI says
        // otherwise, and http too on loopback hosts (browsers treat them as secure).
        (
            "old browser, http Origin of the https site",
            Method::POST,
            Cookie,
            vec![h("origin", "http://app.example.com")],
            false,
        ),
        (
            "old browser, Origin with another scheme",
            Method::POST,
            Cookie,
            vec![h("origin", "ftp://app.example.com")],
            false,
        ),
        (
            "old browser, Origin without a scheme",
            Method::POST,
            Cookie,
            vec![h("origin", "://app.example.com")],
            false,
        ),
        (
            "old browser, scheme in capitals",
            Method::POST,
            Cookie,
            vec![h("origin", "HTTPS://app.example.com")],
            true,
        ),
        (
            "old browser, http on localhost",
            Method::POST,
            Cookie,
            vec![
                h("host", "localhost:3000"),
                h("origin", "http://localhost:3000"),
            ],
            true,
        ),
        (
            "old browser, https on localhost",
            Method::POST,
            Cookie,
            vec![
                h("host", "localhost:3000"),
                h("origin", "https://localhost:3000"),
            ],
            true,
        ),
        (
            "old browser, http on a name under .localhost",
            Method::POST,
            None,
            vec![
                h("host", "app.localhost:3000"),
                h("origin", "http://app.localhost:3000"),
            ],
            true,
        ),
        (
            "old browser, http on 127.0.0.1",
            Method::POST,
            Cookie,
            vec![
                h("host", "127.0.0.1:3000"),
                h("origin", "http://127.0.0.1:3000"),
            ],
            true,
        ),
        (
            "old browser, http on [::1]",
            Method::POST,
            None,
            vec![h("host", "[::1]:3000"), h("origin", "http://[::1]:3000")],
            true,
        ),
        (
            "old browser, http on a look-alike of localhost",
            Method::POST,
            Cookie,
            vec![
                h("host", "localhost.evil.example"),
                h("origin", "http://localhost.evil.example"),
            ],
            false,
        ),
        (
            "old browser, http on a private, not loopback, address",
            Method::POST,
            None,
            vec![
                h("host", "10.0.0.5:3000"),
                h("origin", "http://10.0.0.5:3000"),
            ],
            false,
        ),
        (
            "old browser, localhost Origin to another host",
            Method::POST,
            None,
            vec![h("origin", "http://localhost")],
            false,
        ),
    ]
}

fn policy() -> CrossOriginPolicy {
    CrossOriginPolicy::default()
        .trust_origin("https://admin.example.com")
        .unwrap()
}

/// One app's sessions, its user, and how many requests reached its handler.
struct Fixture {
    sessions: Sessions,
    user: Arc<User>,
    reached: Arc<AtomicUsize>,
}

fn fixture() -> Fixture {
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();
    Fixture {
        sessions: Sessions::new(tower_app_sessions::MemoryStore::new(), users),
        user,
        reached: Arc::new(AtomicUsize::new(0)),
    }
}

/// The handler every row reaches when allowed: it logs the session out (a write), so a
/// refused request that reached it would show as a lost session.
async fn handler<B>(
    req: Request<B>,
    reached: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    reached.fetch_add(1, Ordering::SeqCst);
    let session = req.extensions().get::<Session>().cloned();
    if req.extensions().get::<CurrentUser<User>>().is_some() {
        if let Some(session) = session {
            session.logout().await.unwrap();
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"reached"))))
}

fn request<B: Default>(row: &Row, token: &str) -> Request<B> {
    let (_, method, credential, headers, _) = row;
    let mut req = Request::builder()
        .method(method.clone())
        .uri("/write")
        .header("host", host_of(row));
    match credential {
        Credential::Cookie => req = req.header("cookie", format!("sessionId={token}")),
        Credential::Bearer => req = req.header("authorization", format!("Bearer {token}")),
        Credential::MalformedCookie => req = req.header("cookie", "sessionId=not!an!id"),
        Credential::MalformedBearer => req = req.header("authorization", "Bearer not!an!id"),
        Credential::None => {}
    }
    for (name, value) in headers.iter().filter(|(name, _)| *name != "host") {
        req = req.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    req.body(B::default()).unwrap()
}

/// The row's `Host` (its own `host` header), else [`HOST`].
fn host_of(row: &Row) -> HeaderValue {
    let (_, _, _, headers, _) = row;
    headers
        .iter()
        .find(|(name, _)| *name == "host")
        .map_or(HeaderValue::from_static(HOST), |(_, value)| {
            HeaderValue::from_bytes(value).unwrap()
        })
}

async fn check(
    fixture: &Fixture,
    row: &Row,
    send: impl AsyncFnOnce(Request<Body>) -> (u16, String),
    token: &str,
) {
    let (name, _, _, _, allowed) = row;
    let before = fixture.reached.load(Ordering::SeqCst);
    let (status, body) = send(request(row, token)).await;
    let reached = fixture.reached.load(Ordering::SeqCst) > before;
    if *allowed {
        assert!(
            status != 403 && reached,
            "{name}: refused ({status} {body})"
        );
    } else {
        assert_eq!((status, body.as_str()), (403, CROSS_ORIGIN_BODY), "{name}");
        assert!(!reached, "{name}: a refused request reached the handler");
        // And changed no session: it is still in the store.
        let me = fixture
            .sessions
            .session_store()
            .load(
                &AppContext::Web,
                &tower_app_sessions::SessionId::parse(token).unwrap(),
                fixture.sessions.now(),
            )
            .await
            .unwrap();
        assert!(
            me.is_some(),
            "{name}: the refused request ended the session"
        );
    }
}

/// A new live session of the fixture's user.
async fn fresh_token(fixture: &Fixture) -> String {
    let store = fixture.sessions.session_store();
    let record = tower_app_sessions::SessionRecord::new(
        fixture.user.id,
        tower_app_sessions::SessionMetadata::new(),
        fixture.sessions.now(),
        std::time::Duration::from_secs(600),
    );
    let token = tower_app_sessions::SessionId::generate().unwrap();
    store
        .save(&AppContext::Web, &token, &record, fixture.sessions.now())
        .await
        .unwrap();
    token.as_str().to_owned()
}

#[tokio::test]
async fn the_table_on_axum() {
    let fixture = fixture();
    let reached = Arc::clone(&fixture.reached);
    let app = axum::Router::new()
        .route(
            "/write",
            axum::routing::any(move |req: Request<Body>| {
                let reached = Arc::clone(&reached);
                async move { handler(req, reached).await.map(|r| r.map(Body::new)) }
            }),
        )
        .layer(
            fixture
                .sessions
                .layer(AppContext::Web)
                .cross_origin(policy()),
        );
    for row in table() {
        let token = fresh_token(&fixture).await;
        let app = app.clone();
        check(
            &fixture,
            &row,
            async move |req| {
                let res = app.oneshot(req).await.unwrap();
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            },
            &token,
        )
        .await;
    }
}

#[tokio::test]
async fn the_table_on_hyper_over_a_socket() {
    let fixture = fixture();
    let layer = fixture
        .sessions
        .layer(AppContext::Web)
        .cross_origin(policy());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reached = Arc::clone(&fixture.reached);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let reached = Arc::clone(&reached);
            let service = layer.layer(service_fn(move |req: Request<hyper::body::Incoming>| {
                handler(req, Arc::clone(&reached))
            }));
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    });
    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
    for row in table() {
        let token = fresh_token(&fixture).await;
        let client = client.clone();
        check(
            &fixture,
            &row,
            async move |mut req| {
                let host = req.headers()["host"].clone();
                *req.uri_mut() = format!("http://{addr}/write").parse().unwrap();
                // The client would set Host from the URI: keep the row's.
                req.headers_mut().insert("host", host);
                let res = client.request(req).await.unwrap();
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            },
            &token,
        )
        .await;
    }
}

#[tokio::test]
async fn same_site_may_be_allowed_and_the_check_switched_off() {
    let fixture = fixture();
    let reached = Arc::clone(&fixture.reached);
    let route = move || {
        let reached = Arc::clone(&reached);
        axum::routing::any(move |req: Request<Body>| {
            let reached = Arc::clone(&reached);
            async move { handler(req, reached).await.map(|r| r.map(Body::new)) }
        })
    };
    for (policy, same_site, cross_site) in [
        (CrossOriginPolicy::default().allow_same_site(true), 200, 403),
        (CrossOriginPolicy::disabled(), 200, 200),
    ] {
        let app = axum::Router::new()
            .route("/write", route())
            .layer(fixture.sessions.layer(AppContext::Web).cross_origin(policy));
        for (site, want) in [("same-site", same_site), ("cross-site", cross_site)] {
            let token = fresh_token(&fixture).await;
            let req = Request::post("/write")
                .header("cookie", format!("sessionId={token}"))
                .header("sec-fetch-site", site)
                .body(Body::empty())
                .unwrap();
            assert_eq!(
                app.clone().oneshot(req).await.unwrap().status(),
                want,
                "{site}"
            );
        }
    }
}

#[tokio::test]
async fn trusted_origins_from_the_environment() {
    let sessions = Sessions::from_lookup(|var| {
        (var == "SESSION_TRUSTED_ORIGINS")
            .then(|| " https://admin.example.com , http://localhost:3000".to_owned())
    })
    .await
    .unwrap();
    let app = axum::Router::new()
        .route("/write", axum::routing::post(|| async { "reached" }))
        .layer(sessions.layer(AppContext::Web));
    for (origin, want) in [
        ("https://admin.example.com", 200),
        ("http://localhost:3000", 200),
        ("https://evil.example", 403),
    ] {
        let req = Request::post("/write")
            .header("cookie", "sessionId=AAAAAAAAAAAAAAAAAAAAAA")
            .header("sec-fetch-site", "cross-site")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            want,
            "{origin}"
        );
    }
    let err = Sessions::from_lookup(|var| {
        (var == "SESSION_TRUSTED_ORIGINS").then(|| "https://ok.example,not an origin".to_owned())
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("SESSION_TRUSTED_ORIGINS="),
        "{err}"
    );
}

/// When the request's URI has a scheme (HTTP/2's `:scheme`, an absolute-form request line),
/// the `Origin` must have that one, loopback hosts included.
#[tokio::test]
async fn the_uris_scheme_decides_when_it_has_one() {
    let sessions = Sessions::memory();
    let app = axum::Router::new()
        .route("/write", axum::routing::post(|| async { "reached" }))
        .layer(sessions.layer(AppContext::Web));
    for (uri, origin, want) in [
        (
            "https://app.example.com/write",
            "https://app.example.com",
            200,
        ),
        (
            "http://app.example.com/write",
            "http://app.example.com",
            200,
        ),
        (
            "http://app.example.com/write",
            "https://app.example.com",
            403,
        ),
        (
            "https://app.example.com/write",
            "http://app.example.com",
            403,
        ),
        ("https://localhost:3000/write", "http://localhost:3000", 403),
        ("http://localhost:3000/write", "http://localhost:3000", 200),
        (
            "https://app.example.com/write",
            "https://app.example.com:443",
            403,
        ),
        ("https://app.example.com/write", "https://evil.example", 403),
    ] {
        let req = Request::post(uri)
            .header("origin", origin)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            want,
            "{uri} from {origin}"
        );
    }
}
