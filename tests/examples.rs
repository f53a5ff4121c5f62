//! The examples' routes over a real socket: each test starts the example binary on a free
//! port (`BIND_ADDR=127.0.0.1:0`), reads the `listening on` line, and talks HTTP/1.1 to it.
//!
//! Each run builds the examples once with `cargo build` and exactly this test build's features
//! (see `examples/process.rs`), so an earlier build with other features is never run.
#![cfg(all(feature = "axum", feature = "memory"))]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[path = "examples/manage.rs"]
mod manage;
#[path = "examples/pages.rs"]
mod pages;

#[path = "examples/process.rs"]
mod process;

use process::{binary, ensure_built, Features, Server};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where `process` builds the examples from.
const EXAMPLES_ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every feature of the crate, as `Cargo.toml` lists them (a test below keeps the two equal).
const CRATE_FEATURES: [(&str, bool); 10] = [
    ("memory", cfg!(feature = "memory")),
    ("axum", cfg!(feature = "axum")),
    ("cache", cfg!(feature = "cache")),
    ("throttle", cfg!(feature = "throttle")),
    ("argon2", cfg!(feature = "argon2")),
    ("metrics", cfg!(feature = "metrics")),
    ("redis", cfg!(feature = "redis")),
    ("postgres", cfg!(feature = "postgres")),
    ("cli", cfg!(feature = "cli")),
    ("testing", cfg!(feature = "testing")),
];

/// The examples run with exactly the features this test binary was built with: a test of the
/// Redis mode needs a binary with `redis`, whatever an earlier `cargo build` left behind.
fn example_features() -> Features {
    Features::Exactly(
        CRATE_FEATURES
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect(),
    )
}

/// The list above names every feature of `Cargo.toml`'s `[features]` table, so the examples
/// are never built without one the tests were built with. (The table is read line by line: a
/// TOML parser as a dev-dependency would be compiled by the quickstart too.)
#[test]
fn the_example_build_knows_every_crate_feature() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let table = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("a [features] table");
    let mut declared: Vec<&str> = table
        .lines()
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#') && *name != "default")
        .collect();
    let mut known: Vec<&str> = CRATE_FEATURES.iter().map(|(name, _)| *name).collect();
    declared.sort_unstable();
    known.sort_unstable();
    assert_eq!(declared, known);
}

// ---------------------------------------------------------------------------------------
// Requests to a running example
// ---------------------------------------------------------------------------------------

impl Server {
    fn get(&self, path: &str) -> Call {
        Call::new(self.addr, Method::GET, path)
    }

    fn post(&self, path: &str) -> Call {
        Call::new(self.addr, Method::POST, path)
    }

    fn patch(&self, path: &str) -> Call {
        Call::new(self.addr, Method::PATCH, path)
    }

    fn delete(&self, path: &str) -> Call {
        Call::new(self.addr, Method::DELETE, path)
    }
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 client: one connection per request
// ---------------------------------------------------------------------------------------

struct Call {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Call {
    fn new(addr: SocketAddr, method: Method, path: &str) -> Self {
        Self {
            addr,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn cookie(self, name: &str, value: &str) -> Self {
        self.header("cookie", format!("{name}={value}"))
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A body sent as is, with the content type set separately.
    fn body_text(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// A JSON body (sent as is, so it can be malformed on purpose).
    fn json(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self.header("content-type", "application/json")
    }

    async fn send(self) -> Reply {
        tokio::time::timeout(TIMEOUT, self.exchange())
            .await
            .expect("request timed out")
    }

    async fn exchange(self) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("host", self.addr.to_string());
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
        {
            req = req.header("user-agent", "tower-app-sessions-tests");
        }
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body.unwrap_or_default())))
            .expect("request");
        let res = sender.send_request(req).await.expect("response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
        }
    }
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ASCII Set-Cookie"))
            .collect()
    }

    fn token(&self) -> String {
        self.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {:?}", self.body))
            .to_owned()
    }

    #[track_caller]
    fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }
}

fn credentials(email: &str, password: &str) -> String {
    serde_json::json!({ "email": email, "password": password }).to_string()
}

async fn login(server: &Server, app: &str, email: &str, password: &str) -> Reply {
    server
        .post(&format!("/{app}/login"))
        .json(&credentials(email, password))
        .send()
        .await
}

/// Asserts a Set-Cookie issuing `name=value` with the secure defaults.
#[track_caller]
fn assert_session_cookie(reply: &Reply, name: &str, value: &str) {
    let cookies = reply.set_cookies();
    let prefix = format!("{name}=");
    let (session, others): (Vec<&str>, Vec<&str>) =
        cookies.iter().partition(|c| c.starts_with(&prefix));
    assert_eq!(session.len(), 1, "{cookies:?}");
    // Besides the session cookie, a sign-in sets the device cookie only.
    assert!(
        others.iter().all(|c| c.starts_with("__Host-device=")),
        "{cookies:?}"
    );
    let attrs: Vec<&str> = session[0].split(';').map(str::trim).collect();
    assert_eq!(attrs[0], format!("{name}={value}"), "{cookies:?}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(attrs.contains(&attr), "{attr} missing in {cookies:?}");
    }
}

// ---------------------------------------------------------------------------------------
// multi_app
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn web_register_login_me_isolation_and_logout() {
    let server = Server::start("multi_app");
    let body = credentials("alice@example.com", "correct horse");

    let created = server.post("/web/register").json(&body).send().await;
    created.assert_status(201);
    let user = created.json();
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["role"], "user");
    assert!(
        user["id"].as_str().is_some_and(|id| id.len() == 36),
        "{user}"
    );
    assert!(created.json().get("hashed_password").is_none());

    let duplicate = server.post("/web/register").json(&body).send().await;
    duplicate.assert_status(409);
    assert_eq!(duplicate.json()["error"], "email already registered");

    let logged_in = login(&server, "web", "alice@example.com", "correct horse").await;
    logged_in.assert_status(200);
    let token = logged_in.token();
    assert_eq!(token.len(), 43);
    assert_eq!(logged_in.json()["user"], user);
    assert_session_cookie(&logged_in, "__Host-web_sid", &token);

    let me = server
        .get("/web/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await;
    me.assert_status(200);
    assert!(me.body.contains(r#""context":"web""#), "{}", me.body);
    assert_eq!(me.json()["id"], user["id"]);
    assert_eq!(me.json()["email"], "alice@example.com");

    // A web session opens nothing in the admin app, whatever it is presented as.
    let as_cookie = server
        .get("/admin/me")
        .cookie("__Host-admin_sid", &token)
        .send()
        .await;
    as_cookie.assert_status(401);
    let as_bearer = server.get("/admin/me").bearer(&token).send().await;
    as_bearer.assert_status(401);
    let web_cookie = server
        .get("/admin/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await;
    web_cookie.assert_status(401);

    let by_bearer = server.get("/web/me").bearer(&token).send().await;
    by_bearer.assert_status(200);
    assert_eq!(by_bearer.json()["context"], "web");
    assert!(by_bearer.set_cookies().is_empty(), "{by_bearer:?}");

    let logout = server
        .post("/web/logout")
        .cookie("__Host-web_sid", &token)
        .send()
        .await;
    logout.assert_status(204);
    let removal = logout.set_cookies();
    assert!(
        removal.len() == 1
            && removal[0].starts_with("__Host-web_sid=;")
            && removal[0].contains("Max-Age=0"),
        "{removal:?}"
    );

    // Deleted server-side: neither the old cookie nor the old token works.
    server
        .get("/web/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await
        .assert_status(401);
    server
        .get("/web/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
    server
        .post("/web/logout")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
}

#[tokio::test]
async fn login_failures_and_admin_policy() {
    let server = Server::start("multi_app");

    let wrong_password = login(&server, "web", "user@example.com", "not-the-password").await;
    let unknown_email = login(&server, "web", "nobody@example.com", "not-the-password").await;
    wrong_password.assert_status(401);
    assert_eq!(wrong_password.status, unknown_email.status);
    assert_eq!(wrong_password.body, unknown_email.body);
    assert_eq!(wrong_password.json()["error"], "invalid email or password");
    assert!(wrong_password.set_cookies().is_empty());
    assert!(unknown_email.set_cookies().is_empty());

    // Right password, but the admin app does not admit role `user`: no session at all.
    let refused = login(&server, "admin", "user@example.com", "user-password").await;
    refused.assert_status(403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert!(refused.set_cookies().is_empty(), "{refused:?}");
    assert!(refused.json().get("token").is_none());

    let admin = login(&server, "admin", "admin@example.com", "admin-password").await;
    admin.assert_status(200);
    let token = admin.token();
    assert_session_cookie(&admin, "__Host-admin_sid", &token);
    assert_eq!(admin.json()["user"]["role"], "admin");

    let me = server
        .get("/admin/me")
        .cookie("__Host-admin_sid", &token)
        .send()
        .await;
    me.assert_status(200);
    assert_eq!(me.json()["context"], "admin");
    assert_eq!(me.json()["email"], "admin@example.com");

    // The admin session does not open the web app either.
    server
        .get("/web/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
    server
        .get("/web/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await
        .assert_status(401);

    // The admin app has no registration.
    server
        .post("/admin/register")
        .json(&credentials("eve@example.com", "long enough"))
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn every_login_is_a_new_session_and_others_stay() {
    let server = Server::start("multi_app");

    let first = login(&server, "web", "user@example.com", "user-password").await;
    let second = login(&server, "web", "user@example.com", "user-password").await;
    first.assert_status(200);
    second.assert_status(200);
    let (laptop, phone) = (first.token(), second.token());
    assert_ne!(laptop, phone);

    for token in [&laptop, &phone] {
        server
            .get("/web/me")
            .bearer(token)
            .send()
            .await
            .assert_status(200);
    }

    server
        .post("/web/logout")
        .bearer(&laptop)
        .send()
        .await
        .assert_status(204);
    server
        .get("/web/me")
        .bearer(&laptop)
        .send()
        .await
        .assert_status(401);
    let still = server
        .get("/web/me")
        .cookie("__Host-web_sid", &phone)
        .send()
        .await;
    still.assert_status(200);
    assert_eq!(still.json()["email"], "user@example.com");
}

#[tokio::test]
async fn bad_input_is_never_a_server_error() {
    let server = Server::start("multi_app");
    let valid = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();

    let anonymous = server.get("/web/me").send().await;
    anonymous.assert_status(401);
    assert_eq!(anonymous.json()["error"], "unauthorized");

    let long_cookie = "A".repeat(8 * 1024);
    let attempts = [
        (
            "path traversal cookie",
            server.get("/web/me").cookie("__Host-web_sid", "../../etc"),
        ),
        (
            "8 KiB cookie",
            server.get("/web/me").cookie("__Host-web_sid", &long_cookie),
        ),
        (
            "basic auth",
            server
                .get("/web/me")
                .header("authorization", "Basic dXNlcjpwYXNzd29yZA=="),
        ),
        (
            "bearer without token",
            server.get("/web/me").header("authorization", "Bearer"),
        ),
        (
            "bearer with spaces only",
            server.get("/web/me").header("authorization", "Bearer    "),
        ),
        (
            "well-formed unknown token",
            server
                .get("/web/me")
                .bearer("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        (
            "query parameter",
            server.get(&format!("/web/me?session={valid}")),
        ),
        (
            "query parameter sessionId",
            server.get(&format!("/web/me?sessionId={valid}")),
        ),
        (
            "valid token, cookie name of another app",
            server.get("/web/me").cookie("__Host-admin_sid", &valid),
        ),
    ];
    for (what, call) in attempts {
        let reply = call.send().await;
        assert_eq!(reply.status, anonymous.status, "{what}: {reply:?}");
        assert_eq!(reply.body, anonymous.body, "{what}: {reply:?}");
    }

    // Bad bodies: a clear 4xx whose message never repeats the input.
    let json_inputs = [
        ("/web/login", "{not json", 400),
        ("/web/login", "", 400),
        ("/web/login", "[]", 422),
        ("/web/login", r#"{"email":1,"password":2}"#, 422),
        ("/web/login", r#"{"email":"user@example.com"}"#, 422),
        ("/web/register", "{not json", 400),
        (
            "/web/register",
            r#"{"email":"","password":"long enough"}"#,
            422,
        ),
        (
            "/web/register",
            r#"{"email":"   ","password":"long enough"}"#,
            422,
        ),
        (
            "/web/register",
            r#"{"email":"short@example.com","password":"1234567"}"#,
            422,
        ),
        (
            "/web/register",
            r#"{"email":"\u212Aate@example.com","password":"long enough"}"#,
            422,
        ),
        (
            "/web/register",
            r#"{"email":"kate\u0000@example.com","password":"long enough"}"#,
            422,
        ),
        (
            "/web/register",
            r#"{"email":"ka\u200Bte@example.com","password":"long enough"}"#,
            422,
        ),
        ("/admin/login", "{not json", 400),
        (
            "/web/login",
            r#"{"email":"<script>SECRET-INPUT</script>","password":["SECRET-INPUT"]}"#,
            422,
        ),
    ];
    for (path, body, status) in json_inputs {
        let reply = server.post(path).json(body).send().await;
        assert_eq!(reply.status, status, "{path} {body:?}: {reply:?}");
        assert!(
            reply.json()["error"].is_string(),
            "{path} {body:?}: {reply:?}"
        );
        assert!(
            !reply.body.contains("SECRET-INPUT"),
            "{path}: the input was echoed: {reply:?}"
        );
    }
    // A body over the limit is 413, not 400.
    let too_big = credentials("user@example.com", &"x".repeat(20 * 1024));
    for path in ["/web/login", "/web/register"] {
        let reply = server.post(path).json(&too_big).send().await;
        reply.assert_status(413);
        assert_eq!(reply.json()["error"], "request body too large");
    }
    // An email no user can have is the wrong-password answer at login, before any lookup.
    let wrong = login(&server, "web", "user@example.com", "not-the-password").await;
    wrong.assert_status(401);
    for email in [
        "user\\u0000@example.com",
        "\\u212Aate@example.com",
        "a@b@example.com",
    ] {
        let body = format!(r#"{{"email":"{email}","password":"not-the-password"}}"#);
        let reply = server.post("/web/login").json(&body).send().await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (wrong.status, wrong.body.as_str()),
            "{email}"
        );
    }

    // Not JSON at all, or absurd: some 4xx, never 5xx.
    let huge_password = credentials("user@example.com", &"x".repeat(10_000));
    let others = [
        server
            .post("/web/login")
            .header("content-type", "text/plain"),
        server.post("/web/login"),
        server.post("/web/login").json(&huge_password),
        server.post("/web/register").json(&huge_password),
        server.get("/web/login"),
        server.post("/web/me"),
    ];
    for call in others {
        let reply = call.send().await;
        assert!(reply.status.is_client_error(), "{reply:?}");
    }

    // After all that, the valid session still works.
    server
        .get("/web/me")
        .bearer(&valid)
        .send()
        .await
        .assert_status(200);
}

// ---------------------------------------------------------------------------------------
// hyper_service
// ---------------------------------------------------------------------------------------

/// README's "A complete app" is `examples/minimal.rs`, byte for byte: the snippet a newcomer
/// copies is the file CI builds and the next test runs.
#[test]
fn the_readme_shows_examples_minimal_rs_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let file = std::fs::read_to_string(root.join("examples/minimal.rs")).unwrap();
    let begin = "<!-- examples/minimal.rs: begin -->\n```rust\n";
    let end = "```\n<!-- examples/minimal.rs: end -->";
    let start = readme
        .find(begin)
        .expect("README marks the block's beginning")
        + begin.len();
    let stop = start
        + readme[start..]
            .find(end)
            .expect("README marks the block's end");
    assert!(
        readme[start..stop] == file,
        "README's \"A complete app\" differs from examples/minimal.rs: paste the file between the markers"
    );
}

/// The minimal app as a user runs it: two contexts, login (Argon2 through `PasswordLogin`),
/// the user read by a handler, roles, the shared `Sessions`, logout.
#[tokio::test]
async fn minimal_app_signs_in_reads_the_user_admits_roles_and_signs_out() {
    let server = Server::start("minimal");
    let wrong = login(&server, "web", "bob@example.com", "not-bobs").await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.body.as_str()),
        (401, r#"{"error":"invalid_credentials"}"#)
    );
    let unknown = login(&server, "web", "nobody@example.com", "bob-password").await;
    assert_eq!(unknown.body, wrong.body);

    let bob = login(&server, "web", "bob@example.com", "bob-password").await;
    bob.assert_status(200);
    let token = bob.body.clone();
    assert_eq!(token.len(), 43);
    assert_session_cookie(&bob, "__Host-web_sid", &token);
    device_cookie(&bob);
    let me = server
        .get("/web/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await;
    assert_eq!(
        (me.status.as_u16(), me.body.as_str()),
        (200, "bob@example.com (user) in web")
    );
    let me = server.get("/web/me").bearer(&token).send().await;
    assert_eq!(me.body, "bob@example.com (user) in web");
    // A web session never opens the admin panel; bob's role may not sign in there.
    server
        .get("/admin/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
    let refused = login(&server, "admin", "bob@example.com", "bob-password").await;
    assert_eq!(
        (refused.status.as_u16(), refused.body.as_str()),
        (403, r#"{"error":"forbidden"}"#)
    );
    let ada = login(&server, "admin", "ada@example.com", "ada-password").await;
    ada.assert_status(200);
    let stats = server.get("/admin/stats").bearer(&ada.body).send().await;
    stats.assert_status(200);
    assert!(stats.json()["contexts"].is_object(), "{stats:?}");
    server
        .get("/web/stats")
        .bearer(&token)
        .send()
        .await
        .assert_status(404);

    let bye = server
        .post("/web/logout")
        .cookie("__Host-web_sid", &token)
        .send()
        .await;
    assert_eq!((bye.status.as_u16(), bye.body.as_str()), (200, "bye"));
    server
        .get("/web/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
    server
        .post("/web/logout")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);
}

#[tokio::test]
async fn hyper_service_login_me_logout() {
    let server = Server::start("hyper_service");

    server.get("/me").send().await.assert_status(401);

    let login = server.post("/login").send().await;
    login.assert_status(200);
    let token = login.token();
    assert_session_cookie(&login, "sessionId", &token);

    let me = server.get("/me").cookie("sessionId", &token).send().await;
    me.assert_status(200);
    assert_eq!(me.json()["email"], "demo@example.com");
    assert!(me.json()["id"].is_string());

    let by_bearer = server.get("/me").bearer(&token).send().await;
    by_bearer.assert_status(200);
    assert_eq!(by_bearer.json(), me.json());

    server
        .post("/logout")
        .bearer(&token)
        .send()
        .await
        .assert_status(204);
    let after = server.get("/me").bearer(&token).send().await;
    after.assert_status(401);
    assert_eq!(after.json()["error"], "unauthorized");
    server
        .get("/me")
        .cookie("sessionId", &token)
        .send()
        .await
        .assert_status(401);
}

/// `SESSION_ENV=development REDIS_URL=…`: the same example keeps its sessions in Redis under
/// the TypeScript apps' keys.
#[cfg(feature = "redis")]
#[tokio::test]
async fn multi_app_keeps_its_sessions_in_redis_in_development() {
    let url = redis_server::shared_url();
    let server = Server::start_with(
        "multi_app",
        &[("SESSION_ENV", "development"), ("REDIS_URL", &url)],
    );
    let reply = login(&server, "web", "user@example.com", "user-password").await;
    reply.assert_status(200);
    let token = reply.token();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let value: Option<String> = redis::cmd("GET")
        .arg(format!("session:web:{token}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let value = value.expect("the web login is a key session:web:<token>");
    let record: Value = serde_json::from_str(&value).unwrap();
    assert_eq!(record["user_id"], reply.json()["user"]["id"]);
    server
        .get("/web/me")
        .cookie("__Host-web_sid", &token)
        .send()
        .await
        .assert_status(200);
    server
        .get("/admin/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);

    server
        .post("/web/logout")
        .bearer(&token)
        .send()
        .await
        .assert_status(204);
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("session:web:{token}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "logout deleted the Redis key");

    // The operators' figures: the admin role only; Redis counts and memory.
    let admin = login(&server, "admin", "admin@example.com", "admin-password").await;
    let stats = server
        .get("/admin/stats")
        .bearer(&admin.token())
        .send()
        .await;
    stats.assert_status(200);
    let stats = stats.json();
    assert!(
        stats["contexts"]["admin"]["redis_sessions"].as_u64() >= Some(1),
        "{stats}"
    );
    assert!(
        stats["redis"]["used_memory_bytes"].as_u64() > Some(0),
        "{stats}"
    );
    assert!(stats["redis"]["legacy_keys"].is_u64(), "{stats}");
    assert!(
        !stats.to_string().contains(&admin.token()),
        "an id in the stats"
    );
    let web = login(&server, "web", "user@example.com", "user-password").await;
    server
        .get("/admin/stats")
        .bearer(&web.token())
        .send()
        .await
        .assert_status(401);
}

#[cfg(all(feature = "redis", feature = "postgres"))]
#[path = "it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

#[cfg(feature = "redis")]
#[path = "it/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

/// `SESSION_ENV=production` on PostgreSQL + Redis: migrations on start (twice: the second is a
/// no-op), no demo users, users and sessions are real rows shared with the TypeScript apps.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test]
async fn multi_app_in_production_on_postgres_and_redis() {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};

    let db = pg::TestDb::create().await;
    let url = pg::database_url(&db.name);
    let redis_url = redis_server::shared_url();
    let env = [
        ("SESSION_ENV", "production"),
        ("SESSION_AUTO_MIGRATE", "true"),
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let server = Server::start_with("multi_app", &env);

    // No demo users in production.
    login(&server, "web", "user@example.com", "user-password")
        .await
        .assert_status(401);

    // A user the TypeScript app created: a raw row with a standard argon2 PHC hash.
    let hash = argon2::Argon2::default()
        .hash_password(b"ts-password", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
    sqlx::query("INSERT INTO users (email, hashed_password, role, is_verified) VALUES ($1, $2, 'support', true)")
        .bind("ts@example.com")
        .bind(&hash)
        .execute(&db.pool)
        .await
        .unwrap();
    let reply = login(&server, "admin", "ts@example.com", "ts-password").await;
    reply.assert_status(200);
    let token = reply.token();
    let row: (String, Option<String>, Option<String>, bool) = sqlx::query_as(
        "SELECT application_context::text, host(ip_address), user_agent, revoked FROM sessions WHERE id = $1",
    )
    .bind(&token)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "admin");
    assert_eq!(row.1.as_deref(), Some("127.0.0.1"));
    assert!(!row.3);
    let logged: (bool,) = sqlx::query_as(
        "SELECT last_login_at IS NOT NULL FROM users WHERE email = 'ts@example.com'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(logged.0, "last_login_at recorded");
    server
        .get("/admin/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(200);
    server
        .get("/web/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(401);

    // Registration writes a real row; logout marks the session revoked (kept for audit).
    server
        .post("/web/register")
        .json(&credentials("new@example.com", "new-password"))
        .send()
        .await
        .assert_status(201);
    let reply = login(&server, "web", "new@example.com", "new-password").await;
    reply.assert_status(200);
    let web_token = reply.token();
    server
        .post("/web/logout")
        .bearer(&web_token)
        .send()
        .await
        .assert_status(204);
    let revoked: (bool, bool) =
        sqlx::query_as("SELECT revoked, revoked_at IS NOT NULL FROM sessions WHERE id = $1")
            .bind(&web_token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(revoked, (true, true));
    server
        .get("/web/me")
        .bearer(&web_token)
        .send()
        .await
        .assert_status(401);
    drop(server);

    // A second start migrates again as a no-op, and the data is still there.
    let server = Server::start_with("multi_app", &env);
    let reply = login(&server, "web", "new@example.com", "new-password").await;
    reply.assert_status(200);
    let migrations: (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(migrations.0, 1);
}

/// Production without a database URL does not start, and says which variable is missing.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[test]
fn multi_app_in_production_without_a_database_names_the_variable() {
    ensure_built();
    let out = Command::new(binary("multi_app"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SESSION_ENV", "production")
        .env("REDIS_URL", redis_server::shared_url())
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_IDENTITY_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_the_same_for_unknown_emails() {
    let server = Server::start("multi_app");
    for account in ["user@example.com", "nobody@example.com"] {
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(login(&server, "web", account, "not-the-password").await);
        }
        assert!(
            answers.iter().all(|r| r.status == 401),
            "{account}: {answers:?}"
        );
        // The eleventh within the minute, in any letter case: 429 with Retry-After.
        let limited = login(&server, "web", &account.to_uppercase(), "not-the-password").await;
        limited.assert_status(429);
        assert_eq!(limited.json()["error"], "too_many_attempts");
        let retry: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        // Even the right password waits (the limit does not look at it).
        let right = login(&server, "web", account, "user-password").await;
        right.assert_status(429);
    }
    // Another account from the same address is not affected (its own limit is 30).
    login(&server, "web", "admin@example.com", "admin-password")
        .await
        .assert_status(200);
    // The admin app shares the limits: the account is counted there too.
    login(&server, "admin", "user@example.com", "user-password")
        .await
        .assert_status(429);
}

/// Login CSRF: a form another site posts carries no session cookie, yet must not sign the
/// victim's browser in (as the attacker) nor register anyone. Every login and registration
/// route, JSON and form, refuses it before any handler runs; the site's own pages and
/// non-browser clients are unaffected.
#[tokio::test]
async fn cross_site_logins_and_registrations_are_refused() {
    let server = Server::start("multi_app");
    let json = credentials("user@example.com", "user-password");
    let form = "email=user%40example.com&password=user-password";
    let routes = [
        ("/web/login", &json, "application/json"),
        ("/admin/login", &json, "application/json"),
        ("/web/register", &json, "application/json"),
        (
            "/web/form/login",
            &form.to_owned(),
            "application/x-www-form-urlencoded",
        ),
        (
            "/admin/form/login",
            &form.to_owned(),
            "application/x-www-form-urlencoded",
        ),
        (
            "/web/form/register",
            &form.to_owned(),
            "application/x-www-form-urlencoded",
        ),
    ];
    let own = format!("http://{}", server.addr);
    for (path, body, kind) in routes {
        for forged in [
            vec![("sec-fetch-site", "cross-site".to_owned())],
            vec![
                ("sec-fetch-site", "same-site".to_owned()),
                ("origin", "http://sibling.localhost".to_owned()),
            ],
            vec![("origin", "https://evil.example".to_owned())],
            // An old browser on the site's http origin is fine on loopback, not from https.
            vec![("origin", own.replace("http://", "https://evil."))],
        ] {
            let mut call = server
                .post(path)
                .header("content-type", kind)
                .body_text(body);
            for (name, value) in &forged {
                call = call.header(name, value.clone());
            }
            let reply = call.send().await;
            assert_eq!(reply.status, 403, "{path} {forged:?}: {reply:?}");
            assert!(reply.set_cookies().is_empty(), "{path}: {reply:?}");
        }
    }
    // The site's own page (same-origin) and an old browser on the site's own http origin
    // (loopback) sign in; so does curl.
    for headers in [
        vec![("sec-fetch-site", "same-origin".to_owned())],
        vec![("origin", own.clone())],
        vec![],
    ] {
        let mut call = server.post("/web/login").json(&json);
        for (name, value) in &headers {
            call = call.header(name, value.clone());
        }
        call.send().await.assert_status(200);
    }
}

/// The `__Host-device` cookie of a sign-in: its `name=value` pair, after checking its
/// attributes.
#[track_caller]
fn device_cookie(reply: &Reply) -> String {
    let cookies = reply.set_cookies();
    let device: Vec<&str> = cookies
        .iter()
        .copied()
        .filter(|c| c.starts_with("__Host-device="))
        .collect();
    assert_eq!(device.len(), 1, "{cookies:?}");
    let attrs: Vec<&str> = device[0].split(';').map(str::trim).collect();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=15552000",
    ] {
        assert!(attrs.contains(&attr), "{attr} missing in {device:?}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "{device:?}");
    attrs[0].to_owned()
}

/// Victim lockout, as a process: once the account's budget is spent by wrong passwords (and
/// the right password from an unknown device waits too), the owner's device that signed in
/// before still signs in, and ends the thief's session with its password; a thief guessing
/// inside the stolen session spends that session's budget only.
#[tokio::test]
async fn a_known_device_signs_in_and_ends_the_thiefs_session_while_the_account_is_guessed() {
    let server = Server::start("multi_app");
    let owner = login(&server, "web", "user@example.com", "user-password").await;
    owner.assert_status(200);
    let device = device_cookie(&owner);
    // The thief holds a session of the owner (a stolen laptop, a copied token).
    let stolen = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();
    // Guessing from anywhere without the device cookie spends the account's budget...
    for n in 0..8 {
        let reply = login(&server, "web", "user@example.com", "guess").await;
        assert_eq!(reply.status, 401, "guess {n}: {reply:?}");
    }
    login(&server, "web", "user@example.com", "guess")
        .await
        .assert_status(429);
    // ...so the right password from an unknown device waits, and a forged or altered
    // device cookie is an unknown device.
    login(&server, "web", "user@example.com", "user-password")
        .await
        .assert_status(429);
    let (name, value) = device.split_once('=').unwrap();
    let mut altered = value.to_owned();
    altered.replace_range(0..1, if value.starts_with('A') { "B" } else { "A" });
    for cookie in [
        format!("{name}={altered}"),
        format!("{name}=not-a-device"),
        format!("{name}={}", "A".repeat(43)),
    ] {
        let reply = server
            .post("/web/login")
            .header("cookie", cookie.clone())
            .json(&credentials("user@example.com", "user-password"))
            .send()
            .await;
        assert_eq!(reply.status, 429, "{cookie}: {reply:?}");
    }
    // The thief guesses the password inside the stolen session: its own budget (10).
    for n in 0..10 {
        let reply = server
            .post("/web/sessions/revoke-others")
            .bearer(&stolen)
            .json(r#"{"password":"guess"}"#)
            .send()
            .await;
        assert_eq!(reply.status, 401, "re-authentication guess {n}: {reply:?}");
    }
    server
        .post("/web/sessions/revoke-others")
        .bearer(&stolen)
        .json(r#"{"password":"guess"}"#)
        .send()
        .await
        .assert_status(429);
    // The owner's known device signs in all the same (and gets its device cookie renewed)...
    let again = server
        .post("/web/login")
        .header("cookie", device.clone())
        .json(&credentials("user@example.com", "user-password"))
        .send()
        .await;
    again.assert_status(200);
    let renewed = device_cookie(&again);
    assert_ne!(renewed, device, "a sign-in issues a fresh entry");
    // ...and ends every other session, the thief's included, with its password.
    let token = again.token();
    let ended = server
        .post("/web/sessions/revoke-others")
        .cookie("__Host-web_sid", &token)
        .header("cookie", renewed.clone())
        .json(r#"{"password":"user-password"}"#)
        .send()
        .await;
    ended.assert_status(200);
    assert!(ended.json()["ended"].as_u64().unwrap() >= 2, "{ended:?}");
    server
        .get("/web/me")
        .bearer(&stolen)
        .send()
        .await
        .assert_status(401);
    // One device, several accounts: signing in to another keeps this one's entry.
    let admin = server
        .post("/admin/login")
        .header("cookie", renewed.clone())
        .json(&credentials("admin@example.com", "admin-password"))
        .send()
        .await;
    admin.assert_status(200);
    let both = device_cookie(&admin);
    let entries: Vec<&str> = both.split_once('=').unwrap().1.split('.').collect();
    assert_eq!(entries.len(), 2, "{both}");
    assert_eq!(entries[1], renewed.split_once('=').unwrap().1, "{both}");
}

#[tokio::test]
async fn login_limits_come_from_the_environment_and_zero_turns_them_off() {
    let server = Server::start_with(
        "multi_app",
        &[
            ("LOGIN_LIMIT_PER_ACCOUNT", "0"),
            ("LOGIN_LIMIT_PER_ADDRESS", "12"),
        ],
    );
    for n in 0..12 {
        let reply = login(&server, "web", "user@example.com", "not-the-password").await;
        assert_eq!(reply.status, 401, "attempt {n}: {reply:?}");
    }
    let limited = login(&server, "web", "other@example.com", "not-the-password").await;
    limited.assert_status(429);
}

#[tokio::test]
async fn who_is_signed_in_is_never_cached_and_admin_sessions_are_short() {
    let server = Server::start("multi_app");
    assert!(
        server.output().contains("admin 30 min idle, 12 h at most"),
        "{}",
        server.output()
    );
    let web = login(&server, "web", "user@example.com", "user-password").await;
    web.assert_status(200);
    assert_eq!(web.headers["cache-control"], "no-store");
    let me = server.get("/web/me").bearer(&web.token()).send().await;
    me.assert_status(200);
    assert_eq!(me.headers["cache-control"], "no-store");
    let admin = login(&server, "admin", "admin@example.com", "admin-password").await;
    let cookie = admin.set_cookies()[0].to_owned();
    assert!(cookie.starts_with("__Host-admin_sid="), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "12 h: {cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test]
async fn web_preferences_are_session_data_set_key_by_key() {
    let server = Server::start("multi_app");
    let web = login(&server, "web", "user@example.com", "user-password").await;
    web.assert_status(200);
    let token = web.token();
    let get = || {
        server
            .get("/web/preferences")
            .cookie("__Host-web_sid", &token)
    };
    let patch = |body: &str| {
        server
            .patch("/web/preferences")
            .cookie("__Host-web_sid", &token)
            .json(body)
    };

    let empty = get().send().await;
    empty.assert_status(200);
    assert_eq!(empty.json(), serde_json::json!({}));
    assert_eq!(empty.headers["cache-control"], "no-store");

    let set = patch(r#"{"theme":"dark","language":"ru"}"#).send().await;
    set.assert_status(200);
    assert_eq!(
        set.json(),
        serde_json::json!({"theme": "dark", "language": "ru"})
    );
    // Another key later: the earlier ones stay; null removes one.
    patch(r#"{"timezone":"Europe/Moscow","language":null}"#)
        .send()
        .await
        .assert_status(200);
    let merged = get().send().await;
    merged.assert_status(200);
    assert_eq!(
        merged.json(),
        serde_json::json!({"theme": "dark", "timezone": "Europe/Moscow"})
    );

    // Concurrent PATCHes of different preferences on one session all survive.
    let patches = (0..10).map(|i| {
        let body = format!(r#"{{"pref_{i}":{i}}}"#);
        async move { patch(&body).send().await }
    });
    for reply in futures_util::future::join_all(patches).await {
        reply.assert_status(200);
    }
    let after = get().send().await.json();
    for i in 0..10 {
        assert_eq!(after[format!("pref_{i}")], i, "{after}");
    }
    assert_eq!(after["theme"], "dark");

    // Bad input: a clear 4xx, and nothing of the request is kept (all or nothing), not even
    // the good keys before the bad one.
    let big = "x".repeat(9 * 1024);
    patch(&format!(r#"{{"big_one":"{big}"}}"#))
        .send()
        .await
        .assert_status(200);
    // The session holds about 10 KB now: a good key, then one past the limit.
    let too_large = patch(&format!(r#"{{"a_first":"kept?","big_two":"{big}"}}"#))
        .send()
        .await;
    too_large.assert_status(413);
    assert_eq!(too_large.json()["error"], "session_data_too_large");
    for (body, status) in [
        (r#"{"a":"kept?","b b":1}"#, 422),
        (r#"{"a":"ok","b":"x\u0000y"}"#, 422),
        (r#"{"b":"x\u0000y","c":"after"}"#, 422),
        (r#"{"bad key":"x"}"#, 422),
        (r#"{"th\u0435me":"x"}"#, 422), // Cyrillic e: not a key
        (r#"{"a\u0000b":"x"}"#, 422),
        (&*format!(r#"{{"{}":"x"}}"#, "k".repeat(129)), 422),
        (r#"{"":"x"}"#, 422),
        (r#"["theme","dark"]"#, 422),
        (r#"{"theme":"dark""#, 400),
        ("\u{feff}{}", 400),
    ] {
        let reply = patch(body).send().await;
        assert_eq!(reply.status.as_u16(), status, "{body:?}: {}", reply.body);
    }
    let kept = get().send().await.json();
    assert_eq!(kept["theme"], "dark", "{kept}");
    assert!(kept.get("big_one").is_some());
    for refused in ["big_two", "a_first", "a", "c"] {
        assert!(kept.get(refused).is_none(), "{refused} kept: {kept}");
    }
    assert_eq!(kept.as_object().map(|o| o.len()), Some(13), "{kept}");
    // The answer to a body of the wrong shape says what the route wants (preferences, not
    // credentials), and never repeats the input.
    for body in [r#"["theme","dark"]"#, r#""dark""#, "7"] {
        let reply = patch(body).send().await;
        reply.assert_status(422);
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("preferences"), "{body}: {message}");
        assert!(
            !message.contains("email") && !message.contains("password"),
            "{message}"
        );
        assert!(!message.contains("dark"), "{message}");
    }

    // Data belongs to a session: without one, 401; a web session has none on admin.
    server
        .get("/web/preferences")
        .send()
        .await
        .assert_status(401);
    server
        .patch("/web/preferences")
        .json(r#"{"theme":"light"}"#)
        .send()
        .await
        .assert_status(401);
    server
        .get("/admin/preferences")
        .bearer(&token)
        .send()
        .await
        .assert_status(404);

    // A new login is a new session with empty data (no fixation of data either).
    let again = login(&server, "web", "user@example.com", "user-password").await;
    let fresh = server
        .get("/web/preferences")
        .bearer(&again.token())
        .send()
        .await;
    assert_eq!(fresh.json(), serde_json::json!({}));
}

#[tokio::test]
async fn metrics_count_requests_and_events_per_context() {
    let server = Server::start("multi_app");
    let web = login(&server, "web", "user@example.com", "user-password").await;
    server
        .get("/web/me")
        .bearer(&web.token())
        .send()
        .await
        .assert_status(200);
    server
        .get("/admin/me")
        .bearer(&web.token())
        .send()
        .await
        .assert_status(401);
    let scrape = server.get("/metrics").send().await;
    scrape.assert_status(200);
    assert!(
        scrape.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        scrape.headers
    );
    let line = |needle: &str| {
        scrape
            .body
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in {}", scrape.body))
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    };
    let authenticated =
        r#"tower_app_sessions_requests_total{context="web",outcome="authenticated"}"#;
    assert_eq!(line(authenticated), Some(1.0));
    let replayed = r#"tower_app_sessions_requests_total{context="admin",outcome="unknown"}"#;
    assert_eq!(line(replayed), Some(1.0));
    let created = r#"tower_app_sessions_events_total{context="web",event="created"}"#;
    assert_eq!(line(created), Some(1.0));
    assert!(
        !scrape.body.contains(&web.token()),
        "a session id in the metrics"
    );
}

#[tokio::test]
async fn admin_stats_are_for_the_admin_role_only() {
    let server = Server::start("multi_app");
    server.get("/admin/stats").send().await.assert_status(401);
    server.get("/web/stats").send().await.assert_status(404);
    let admin = login(&server, "admin", "admin@example.com", "admin-password").await;
    let stats = server
        .get("/admin/stats")
        .bearer(&admin.token())
        .send()
        .await;
    stats.assert_status(200);
    assert_eq!(stats.headers["cache-control"], "no-store");
    // The embedded memory store counts its live sessions per app.
    assert_eq!(
        stats.json(),
        serde_json::json!({"contexts": {"admin": {"memory_sessions": 1}}})
    );
    for _ in 0..2 {
        login(&server, "web", "user@example.com", "user-password")
            .await
            .assert_status(200);
    }
    let stats = server
        .get("/admin/stats")
        .bearer(&admin.token())
        .send()
        .await;
    assert_eq!(
        stats.json(),
        serde_json::json!({"contexts": {
            "admin": {"memory_sessions": 1},
            "web": {"memory_sessions": 2},
        }})
    );
}

#[tokio::test]
async fn the_admin_notice_is_shown_once_after_login() {
    let server = Server::start("multi_app");
    let admin = login(&server, "admin", "admin@example.com", "admin-password").await;
    admin.assert_status(200);
    let me = || {
        server
            .get("/admin/me")
            .cookie("__Host-admin_sid", &admin.token())
    };
    let first = me().send().await;
    first.assert_status(200);
    let notice = first.json()["notice"].as_str().map(str::to_owned);
    assert!(
        notice.as_deref().is_some_and(|n| n.contains("30 minutes")),
        "{}",
        first.body
    );
    let second = me().send().await;
    second.assert_status(200);
    assert!(second.json().get("notice").is_none(), "{}", second.body);
    // A second login shows it again, on the new session only.
    let again = login(&server, "admin", "admin@example.com", "admin-password").await;
    let new_me = server.get("/admin/me").bearer(&again.token()).send().await;
    assert!(new_me.json().get("notice").is_some(), "{}", new_me.body);
    assert!(me().send().await.json().get("notice").is_none());
    // The web app has no notice.
    let web = login(&server, "web", "user@example.com", "user-password").await;
    let web_me = server.get("/web/me").bearer(&web.token()).send().await;
    assert!(web_me.json().get("notice").is_none(), "{}", web_me.body);
}
