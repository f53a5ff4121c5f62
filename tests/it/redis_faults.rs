#![cfg(feature = "redis")]
//! Real Redis outages, no mocks: a throwaway `redis-server` is SIGKILLed under traffic and
//! restarted on the same port, or hung with `DEBUG SLEEP`. The layer must fail closed and
//! fast (`503` on routes that need a user, anonymous elsewhere, never `401`, `500` or a
//! panic) and recover by itself, without rebuilding the app or the store.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use common::redis_server::{cli_bin, RedisServer};
use common::{get, login, post, send, Finish, Reply};
use http::{Request, StatusCode};
use tower_app_sessions::require::UNAVAILABLE_BODY;
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::{AppContext, MemoryUsers, Role, Sessions, User};
use uuid::Uuid;

/// Per-operation Redis deadline of the store under test.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(300);
// The bounds below are sanity bounds in seconds: what a request must never exceed, not how
// fast it is (a shared 2-core machine can stall a process for a second). What these tests
// prove is the answer (503, never a hang, never a 500); the latencies measured are logged.
/// Bound on any one request while Redis is down: fail fast, never hang.
const OUTAGE_REQUEST_BOUND: Duration = Duration::from_secs(3);
/// Bound on a request while Redis is hung (`DEBUG SLEEP`): ten response timeouts.
const HUNG_REQUEST_BOUND: Duration = Duration::from_secs(3);
/// How long Redis stays hung: longer than the three checked requests at their bound, so they
/// all meet a hung server.
const HUNG_FOR_SECS: u64 = 10;
/// `/me` must be `200` again this soon after the restarted server answers `PING`.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// The traffic task stops after this many requests or this long, whichever comes first.
const TRAFFIC_MAX_REQUESTS: usize = 5_000;
const TRAFFIC_MAX_TIME: Duration = Duration::from_secs(20);

async fn connect(url: String) -> RedisStore {
    RedisStore::connect(RedisConfig::new(url).response_timeout(RESPONSE_TIMEOUT))
        .await
        .expect("the throwaway Redis is up")
}

/// The shared routes (`/login/{id}`, `/me` requires a user, `/maybe` does not) on one web
/// layer.
fn app(store: RedisStore) -> (Router, Uuid) {
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();
    let sessions = Sessions::new(store, users);
    let app = common::routes().layer(sessions.layer(AppContext::Web));
    (app, alice.id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Me,
    Maybe,
    Login,
}

const KINDS: [Kind; 3] = [Kind::Me, Kind::Maybe, Kind::Login];

/// `/me` and `/maybe` carry the session (so both hit the store); login carries none (so a
/// successful one never rotates the session away from the other requests).
fn request(kind: Kind, token: &str, user: Uuid) -> Request<Body> {
    match kind {
        Kind::Me => get("/me").cookie("sessionId", token).empty(),
        Kind::Maybe => get("/maybe").bearer(token).empty(),
        Kind::Login => post(&format!("/login/{user}")).empty(),
    }
}

async fn timed_send(app: &Router, req: Request<Body>) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = send(app, req).await;
    (reply, started.elapsed())
}

/// What a request must get while Redis is unreachable (or hung).
fn check_unavailable(kind: Kind, reply: &Reply) -> Result<(), String> {
    let ok = match kind {
        Kind::Me => {
            reply.status == StatusCode::SERVICE_UNAVAILABLE && reply.body == UNAVAILABLE_BODY
        }
        Kind::Maybe => reply.status == StatusCode::OK && reply.body == "anonymous",
        Kind::Login => {
            reply.status == StatusCode::SERVICE_UNAVAILABLE
                && reply.body == UNAVAILABLE_BODY
                // No session issued. (A failed login answers with a clearing cookie, fail
                // closed, even when the request had no session: harmless.)
                && reply.issued().is_none()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind:?} while Redis is down: {} {:?} (Set-Cookie: {:?})",
            reply.status, reply.body, reply.set_cookies
        ))
    }
}

/// What a request may get at any moment of the test, outage or not: `/me` is `200` or `503`
/// (the session is valid throughout, so never `401`), `/maybe` is always `200`, nothing is
/// ever `500`.
fn check_any_phase(kind: Kind, status: StatusCode) -> Result<(), String> {
    let ok = match kind {
        Kind::Me | Kind::Login => {
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE
        }
        Kind::Maybe => status == StatusCode::OK,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{kind:?} answered {status}"))
    }
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const RESTARTING: u8 = 2;
const DONE: u8 = 3;

/// One request of the traffic task, with the phase when it started and when it ended.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    from: u8,
    to: u8,
    status: StatusCode,
    body: String,
    set_cookies: Vec<String>,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_gives_fast_503s_and_recovers_by_itself() {
    let mut server = RedisServer::start_persistent();
    let (app, user) = app(connect(server.url()).await);
    let token = login(&app, user).await;
    let me = send(&app, get("/me").cookie("sessionId", &token).empty()).await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (StatusCode::OK, "alice@example.com")
    );

    // Background traffic through the whole test, bounded in count and time.
    let phase = Arc::new(AtomicU8::new(UP));
    let traffic = tokio::spawn({
        let (app, token, phase) = (app.clone(), token.clone(), Arc::clone(&phase));
        async move {
            let started = Instant::now();
            let mut seen = Vec::new();
            for n in 0..TRAFFIC_MAX_REQUESTS {
                let from = phase.load(Ordering::SeqCst);
                if from == DONE || started.elapsed() > TRAFFIC_MAX_TIME {
                    break;
                }
                let kind = KINDS[n % KINDS.len()];
                let (reply, took) = timed_send(&app, request(kind, &token, user)).await;
                seen.push(Seen {
                    kind,
                    from,
                    to: phase.load(Ordering::SeqCst),
                    status: reply.status,
                    body: reply.body,
                    set_cookies: reply.set_cookies,
                    took,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGKILL mid-traffic.
    tokio::task::block_in_place(|| server.kill());
    phase.store(DOWN, Ordering::SeqCst);
    let down_at = Instant::now();

    // The outage, checked from here as well: every kind, at least twice, for 2 s.
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while rounds < 2 || down_at.elapsed() < Duration::from_secs(2) {
        for kind in KINDS {
            let (reply, took) = timed_send(&app, request(kind, &token, user)).await;
            check_unavailable(kind, &reply).unwrap();
            assert!(
                took < OUTAGE_REQUEST_BOUND,
                "{kind:?} took {took:?} while Redis was down"
            );
            slowest = slowest.max(took);
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Restart on the same port; the app and the store are the ones built above.
    phase.store(RESTARTING, Ordering::SeqCst);
    let restart_called = Instant::now();
    tokio::task::block_in_place(|| server.start());
    let ready = Instant::now();
    let recovered = loop {
        let (reply, _) = timed_send(&app, request(Kind::Me, &token, user)).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body, "alice@example.com");
            break ready.elapsed();
        }
        check_any_phase(Kind::Me, reply.status).unwrap();
        assert!(
            ready.elapsed() < RECOVERY_BOUND,
            "/me still {} {:?} {:?} after the restarted Redis answered PING",
            reply.status,
            reply.body,
            ready.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "redis_faults: /me 200 again {recovered:?} after the restarted Redis answered PING \
         ({:?} after start() was called); outage lasted {:?}; slowest request during the \
         outage {slowest:?} ({rounds} rounds of /me, /maybe, login)",
        ready - restart_called + recovered,
        restart_called - down_at,
    );
    let maybe = send(&app, request(Kind::Maybe, &token, user)).await;
    assert_eq!(
        (maybe.status, maybe.body.as_str()),
        (StatusCode::OK, "alice@example.com")
    );
    login(&app, user).await;

    phase.store(DONE, Ordering::SeqCst);
    let seen = traffic.await.expect("the traffic task did not panic");
    let mut outage_seen = 0;
    let mut traffic_slowest = Duration::ZERO;
    for s in &seen {
        check_any_phase(s.kind, s.status).unwrap_or_else(|e| panic!("{e}: {s:?}"));
        if s.from == DOWN && s.to == DOWN {
            let reply = Reply {
                status: s.status,
                set_cookies: s.set_cookies.clone(),
                body: s.body.clone(),
            };
            check_unavailable(s.kind, &reply).unwrap();
            assert!(s.took < OUTAGE_REQUEST_BOUND, "{s:?}");
            traffic_slowest = traffic_slowest.max(s.took);
            outage_seen += 1;
        }
    }
    let before = seen.iter().filter(|s| s.from == UP && s.to == UP).count();
    eprintln!(
        "redis_faults: traffic task sent {} requests ({before} before the kill, {outage_seen} \
         inside the outage, slowest of those {traffic_slowest:?})",
        seen.len()
    );
    assert!(before > 0, "no traffic before the kill");
    assert!(
        outage_seen >= 3,
        "the traffic task saw only {outage_seen} requests inside the outage"
    );
}

/// Whether the server is stuck: a raw `PING` gets no answer within 150 ms.
fn hung(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_gives_fast_503s_then_recovers() {
    let server = RedisServer::start_debuggable();
    let port = server.port;
    let (app, user) = app(connect(server.url()).await);
    let token = login(&app, user).await;
    let me = send(&app, get("/me").cookie("sessionId", &token).empty()).await;
    assert_eq!(me.status, StatusCode::OK);

    // `server.cli(&["DEBUG", "SLEEP", …])`, on a thread that holds only the port: the
    // server's guard stays with the test, so a failing assertion still kills the server.
    let sleeper = std::thread::spawn(move || {
        let out = std::process::Command::new(cli_bin())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["DEBUG", "SLEEP", &HUNG_FOR_SECS.to_string()])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while !tokio::task::block_in_place(|| hung(port)) {
        assert!(Instant::now() < deadline, "DEBUG SLEEP did not take effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hung_at = Instant::now();

    let mut slowest = Duration::ZERO;
    for kind in KINDS {
        let (reply, took) = timed_send(&app, request(kind, &token, user)).await;
        check_unavailable(kind, &reply).unwrap();
        assert!(
            took < HUNG_REQUEST_BOUND,
            "{kind:?} took {took:?} while Redis was hung"
        );
        slowest = slowest.max(took);
    }
    let checked_within = hung_at.elapsed();
    assert!(
        tokio::task::block_in_place(|| hung(port)),
        "Redis woke up before the checks ended ({checked_within:?}): they prove nothing"
    );

    let reply = tokio::task::spawn_blocking(move || sleeper.join())
        .await
        .unwrap()
        .expect("redis-cli thread");
    assert_eq!(reply.trim(), "OK", "DEBUG SLEEP answered {reply:?}");
    let woke = Instant::now();
    let recovered = loop {
        let (reply, _) = timed_send(&app, request(Kind::Me, &token, user)).await;
        if reply.status == StatusCode::OK {
            break woke.elapsed();
        }
        check_any_phase(Kind::Me, reply.status).unwrap();
        assert!(
            woke.elapsed() < RECOVERY_BOUND,
            "/me still {} {:?} after Redis woke up",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "redis_faults: hung Redis: slowest request {slowest:?} (all three checked within \
         {checked_within:?} of the hang); /me 200 again {recovered:?} after it woke"
    );
}

/// README: the default Redis timeouts (connect 2 s, response 1 s) turn a dead or hung Redis
/// into a fast failure. Nothing is overridden here: `RedisConfig::new(url)` as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_timeouts_bound_a_hung_redis_and_a_silent_server() {
    // Connecting to a server that accepts TCP and never answers fails after the connect
    // timeout: not earlier (it is what ended the wait), and long before the test's bound.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let connected = RedisStore::connect(RedisConfig::new(silent_url)).await;
    let took = started.elapsed();
    assert!(
        connected.is_err(),
        "connected to a server that never answers"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "connect failed after {took:?}"
    );
    drop(silent);

    // A request to a hung server answers 503 after the response timeout, while the server
    // is still asleep: the timeout, not the server, ended it.
    let server = RedisServer::start_debuggable();
    let port = server.port;
    let store = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .expect("the throwaway Redis is up");
    let (app, user) = app(store);
    let token = login(&app, user).await;
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new(cli_bin())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["DEBUG", "SLEEP", "8"])
            .output()
            .expect("redis-cli runs")
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tokio::task::block_in_place(|| hung(port)) {
        assert!(Instant::now() < deadline, "DEBUG SLEEP did not take effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for kind in KINDS {
        let (reply, took) = timed_send(&app, request(kind, &token, user)).await;
        check_unavailable(kind, &reply).unwrap();
        if kind != Kind::Maybe {
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
        }
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "{kind:?} answered after {took:?} (response timeout 1 s)"
        );
    }
    assert!(
        tokio::task::block_in_place(|| hung(port)),
        "Redis woke up before the checks ended: they prove nothing"
    );
    tokio::task::spawn_blocking(move || sleeper.join())
        .await
        .unwrap()
        .expect("redis-cli thread");
}
