//! A real PostgreSQL outage from the app's point of view, without stopping the shared server:
//! the app's pool reaches PostgreSQL through a small TCP proxy in the test, which can drop
//! every connection and refuse new ones (its port closed), then accept again. The layer must
//! fail closed and fast (`503` on routes that need a user, anonymous on optional ones, `503`
//! on login; never `401` or `500`) and recover by itself, with the same app, store and pool.
#![cfg(all(feature = "postgres", feature = "axum"))]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use common::pg::TestDb;
use common::pg_proxy::Proxy;
use common::{get, login, post, routes, send, Finish, Reply};
use http::{Request, StatusCode};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tower_app_sessions::require::UNAVAILABLE_BODY;
use tower_app_sessions::store::postgres::PgSessionStore;
use tower_app_sessions::users::PgUsers;
use tower_app_sessions::{AppContext, Role, Sessions, User, UserRepository};
use uuid::Uuid;

/// Query timeout of the store and the users, and the pool's acquire timeout.
const BACKEND_TIMEOUT: Duration = Duration::from_millis(500);
/// Sanity bound on one request during the outage: fail fast, never hang.
const OUTAGE_REQUEST_BOUND: Duration = Duration::from_secs(3);
/// How long the outage is exercised.
const OUTAGE: Duration = Duration::from_secs(2);
/// `/me` must be `200` again this soon after the proxy accepts again (liveness bound, generous
/// for two noisy cores).
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

// ---- the app -------------------------------------------------------------------------------

/// The app's pool, through the proxy.
async fn proxied_pool(db: &TestDb, proxy: &Proxy) -> PgPool {
    PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(BACKEND_TIMEOUT)
        .connect(&proxy.url(&db.url()))
        .await
        .expect("connect through the proxy")
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Me,
    Maybe,
    Login,
}

fn request(kind: Kind, token: &str, user: Uuid) -> Request<Body> {
    match kind {
        Kind::Me => get("/me").cookie("sessionId", token).empty(),
        Kind::Maybe => get("/maybe").bearer(token).empty(),
        Kind::Login => post(&format!("/login/{user}")).empty(),
    }
}

fn check_unavailable(kind: Kind, reply: &Reply) {
    let ok = match kind {
        Kind::Me => {
            reply.status == StatusCode::SERVICE_UNAVAILABLE && reply.body == UNAVAILABLE_BODY
        }
        Kind::Maybe => reply.status == StatusCode::OK && reply.body == "anonymous",
        Kind::Login => {
            reply.status == StatusCode::SERVICE_UNAVAILABLE
                && reply.body == UNAVAILABLE_BODY
                && reply.issued().is_none()
        }
    };
    assert!(
        ok,
        "{kind:?} while PostgreSQL is unreachable: {} {:?} (Set-Cookie: {:?})",
        reply.status, reply.body, reply.set_cookies
    );
}

/// Runs the outage and the recovery against `app`, whose backends use `pool` through `proxy`.
async fn outage_and_recovery(label: &str, app: &Router, proxy: &mut Proxy, user: &User) {
    let token = login(app, user.id).await;
    let me = send(app, get("/me").cookie("sessionId", &token).empty()).await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (StatusCode::OK, user.email.as_str())
    );
    assert!(
        proxy.open_connections() > 0,
        "the pool does not go through the proxy"
    );

    proxy.cut().await;
    let down = Instant::now();
    let (mut rounds, mut slowest) = (0, Duration::ZERO);
    while rounds < 2 || down.elapsed() < OUTAGE {
        for kind in [Kind::Me, Kind::Maybe, Kind::Login] {
            let started = Instant::now();
            let reply = send(app, request(kind, &token, user.id)).await;
            let took = started.elapsed();
            check_unavailable(kind, &reply);
            assert!(took < OUTAGE_REQUEST_BOUND, "{kind:?} took {took:?}");
            slowest = slowest.max(took);
        }
        rounds += 1;
    }
    assert_eq!(
        proxy.open_connections(),
        0,
        "a connection got through the outage"
    );

    proxy.restore().await;
    let up = Instant::now();
    let mut statuses = Vec::new();
    let recovered = loop {
        let reply = send(app, get("/me").cookie("sessionId", &token).empty()).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body, user.email);
            break up.elapsed();
        }
        // The session is valid throughout: never a 401, never a 500.
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        statuses.push(reply.status.as_u16());
        assert!(
            up.elapsed() < RECOVERY_BOUND,
            "/me still 503 {:?} after the proxy accepts again",
            up.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "pg_faults: {label}: outage {:?} ({rounds} rounds of /me, /maybe, login; slowest request \
         {slowest:?}); /me 200 again {recovered:?} after the proxy accepted again ({} 503s \
         before)",
        up - down,
        statuses.len()
    );
    let maybe = send(app, request(Kind::Maybe, &token, user.id)).await;
    assert_eq!(
        (maybe.status, maybe.body.as_str()),
        (StatusCode::OK, user.email.as_str())
    );
    let fresh = login(app, user.id).await;
    let me = send(app, get("/me").bearer(&fresh).empty()).await;
    assert_eq!(me.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_gives_503s_and_recovers_by_itself() {
    let db = TestDb::migrated().await;
    let alice = PgUsers::new(db.pool.clone())
        .create(User::new(
            format!("alice-{}@example.com", Uuid::new_v4().simple()),
            Role::User,
        ))
        .await
        .unwrap();
    let mut proxy = Proxy::start().await;
    let pool = proxied_pool(&db, &proxy).await;
    let sessions = Sessions::new(
        PgSessionStore::new(pool.clone()).timeout(BACKEND_TIMEOUT),
        PgUsers::new(pool.clone()).timeout(BACKEND_TIMEOUT),
    );
    let app = routes().layer(sessions.layer(AppContext::Web));
    outage_and_recovery("PostgreSQL alone", &app, &mut proxy, &alice).await;

    // No login attempted during the outage left a session behind.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 2,
        "the sessions before and after the outage, nothing else"
    );
}

/// The same with the crate's own pool settings (`store::postgres::connect`, the pool
/// `Sessions::from_env` builds: connections not tested before use), so connections broken by
/// the outage are found by the queries themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_with_the_crates_pool_recovers_by_itself() {
    let db = TestDb::migrated().await;
    let alice = PgUsers::new(db.pool.clone())
        .create(User::new(
            format!("alice-{}@example.com", Uuid::new_v4().simple()),
            Role::User,
        ))
        .await
        .unwrap();
    let mut proxy = Proxy::start().await;
    let pool = tower_app_sessions::store::postgres::connect(&proxy.url(&db.url()))
        .await
        .expect("connect through the proxy");
    let sessions = Sessions::new(
        PgSessionStore::new(pool.clone()).timeout(BACKEND_TIMEOUT),
        PgUsers::new(pool.clone()).timeout(BACKEND_TIMEOUT),
    );
    let app = routes().layer(sessions.layer(AppContext::Web));
    // Several connections in the pool, so several are broken by the cut.
    let token = login(&app, alice.id).await;
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            let token = token.clone();
            tokio::spawn(async move { send(&app, get("/me").bearer(&token).empty()).await.status })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    outage_and_recovery("PostgreSQL alone, connect()", &app, &mut proxy, &alice).await;
    // Once recovered, it stays recovered: no stale connection left to fail a request.
    for _ in 0..30 {
        let reply = send(&app, get("/me").bearer(&token).empty()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

/// The tiered store in front of the same outage: Redis is up and holds the session, but the
/// users (and the durable record) are in PostgreSQL, so the app fails closed all the same.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_behind_redis_fails_closed_and_recovers() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::TieredStore;

    let db = TestDb::migrated().await;
    let alice = PgUsers::new(db.pool.clone())
        .create(User::new(
            format!("alice-{}@example.com", Uuid::new_v4().simple()),
            Role::User,
        ))
        .await
        .unwrap();
    let mut proxy = Proxy::start().await;
    let pool = proxied_pool(&db, &proxy).await;
    let redis = RedisStore::connect(
        RedisConfig::new(common::redis_server::shared_url())
            .response_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("Redis answers");
    let store = TieredStore::new(
        Arc::new(redis),
        Arc::new(PgSessionStore::new(pool.clone()).timeout(BACKEND_TIMEOUT)),
    )
    .revalidate_after(Duration::from_secs(1));
    let users = PgUsers::new(pool.clone()).timeout(BACKEND_TIMEOUT);
    let sessions = Sessions::new(store, users);
    let app = routes().layer(
        sessions
            .layer(AppContext::Web)
            .idle_timeout(Duration::from_secs(600)),
    );
    outage_and_recovery("Redis + PostgreSQL", &app, &mut proxy, &alice).await;
    let users = PgUsers::new(db.pool.clone());
    assert!(users.find_by_email(&alice.email).await.unwrap().is_some());

    // Writes go to PostgreSQL first: the logins refused during the outage wrote nothing to
    // Redis either. Every Redis write of a session adds it to its user's index, which holds
    // exactly the two sessions made while PostgreSQL was up (as the table does).
    let client = redis::Client::open(common::redis_server::shared_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let index = tower_app_sessions::store::redis::keys::user_index(&alice.id);
    let indexed: u64 = redis::cmd("ZCARD")
        .arg(&index)
        .query_async(&mut raw)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((indexed, rows), (2, 2), "a refused login left a Redis key");
    let _: () = redis::cmd("DEL")
        .arg(&index)
        .query_async(&mut raw)
        .await
        .unwrap();
}
