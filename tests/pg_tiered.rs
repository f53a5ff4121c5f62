//! Redis in front of PostgreSQL (`TieredStore`), the production setup, against real servers
//! (`REDIS_URL`, `DATABASE_URL`; throwaway databases, and a throwaway `redis-server` where
//! one is restarted): the store contract, isolation, revocation by another app through the
//! database, logout, a Redis restart, the multi-database configuration from variables, and a
//! rough latency figure.
#![cfg(all(feature = "postgres", feature = "redis", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing;
use axum::{Json, Router};
use common::pg::{row_state, TestDb};
use common::redis_server::{shared_url, RedisServer};
use common::{get, login, me_bearer, me_cookie, post, routes, send, unauthorized, Finish};
use redis::AsyncCommands;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::config::{ConfigError, Environment, MigrationStrategy};
use tower_app_sessions::store::postgres::PgSessionStore;
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::store::tiered::TieredStore;
use tower_app_sessions::users::PgUsers;
use tower_app_sessions::webdb::WebSessionData;
use tower_app_sessions::{AppContext, CurrentUser, Role, Session, Sessions, User, UserRepository};
use uuid::Uuid;

// ---- helpers -----------------------------------------------------------------------------

/// Idle timeout of the layers here: keys left in the shared Redis expire soon.
const IDLE: Duration = Duration::from_secs(600);

async fn redis_store(url: String) -> RedisStore {
    RedisStore::connect(RedisConfig::new(url).response_timeout(Duration::from_millis(300)))
        .await
        .expect("Redis answers (scripts/test starts one)")
}

async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(shared_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn exists(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis.exists(key).await.unwrap()
}

fn tiered(redis: RedisStore, pool: &PgPool, revalidate: Duration) -> TieredStore {
    TieredStore::new(Arc::new(redis), Arc::new(PgSessionStore::new(pool.clone())))
        .revalidate_after(revalidate)
}

async fn new_user(users: &dyn UserRepository, tag: &str, role: Role) -> Arc<User> {
    let email = format!("{tag}-{}@example.com", Uuid::new_v4().simple());
    users
        .create(User::new(email, role))
        .await
        .expect("create user")
}

async fn public_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

// ---- 1. the store contract ---------------------------------------------------------------

#[tokio::test]
async fn the_tiered_store_keeps_the_contract() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let (a, b) = (
        new_user(&users, "contract-a", Role::User).await,
        new_user(&users, "contract-b", Role::User).await,
    );
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    common::contract::store_contract_with(&store, a.id, b.id, AppContext::Admin).await;
    // Only the session the contract let expire (its 5-second one) is not revoked.
    let unrevoked: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM sessions WHERE NOT revoked",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        unrevoked,
        [5.0],
        "a deleted session is not revoked in PostgreSQL"
    );
}

// ---- 4. isolation through the layer ------------------------------------------------------

#[tokio::test]
async fn web_and_admin_sessions_are_isolated_in_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let admin = routes().layer(
        sessions
            .layer(AppContext::Admin)
            .cookie_name("admin_sid")
            .idle_timeout(IDLE),
    );
    let web_token = login(&web, root.id).await;
    let admin_token = login(&admin, root.id).await;
    let ok = (200, root.email.clone());
    assert_eq!(me_cookie(&web, "sessionId", &web_token).await, ok);
    assert_eq!(me_bearer(&admin, &admin_token).await, ok);

    for (router, cookie, foreign) in [
        (&admin, "admin_sid", &web_token),
        (&web, "sessionId", &admin_token),
    ] {
        assert_eq!(me_cookie(router, cookie, foreign).await, unauthorized());
        assert_eq!(me_bearer(router, foreign).await, unauthorized());
    }

    // Each session is in its own context in both stores, and the foreign lookups created
    // nothing in the other one.
    let mut redis = raw_redis().await;
    for (token, own, other) in [(&web_token, "web", "admin"), (&admin_token, "admin", "web")] {
        assert_eq!(
            row_state(&db.pool, token).await,
            Some((false, false, own.to_owned()))
        );
        assert!(exists(&mut redis, &format!("session:{own}:{token}")).await);
        assert!(!exists(&mut redis, &format!("session:{other}:{token}")).await);
    }
    assert_eq!(me_bearer(&web, &web_token).await, ok);
    assert_eq!(me_cookie(&admin, "admin_sid", &admin_token).await, ok);
    for token in [&web_token, &admin_token] {
        send(&web, post("/logout").bearer(token).empty()).await;
        send(&admin, post("/logout").bearer(token).empty()).await;
    }
}

// ---- 5. revocation through the database ---------------------------------------------------

#[tokio::test]
async fn a_session_revoked_in_postgres_stops_within_the_revalidation_interval() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let revalidate = Duration::from_secs(5);
    let store = tiered(redis_store(shared_url()).await, &db.pool, revalidate);
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store, users).clock(clock.clone());
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&web, alice.id).await;
    let key = format!("session:web:{token}");
    let mut redis = raw_redis().await;
    // Validated against PostgreSQL at the login: trusted until then + 5 s.
    let validated_at = clock.now_ms();
    assert_eq!(
        me_cookie(&web, "sessionId", &token).await,
        (200, alice.email.clone())
    );

    // What the TypeScript admin panel does.
    let done = sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    assert!(
        exists(&mut redis, &key).await,
        "the stale Redis copy must exist for this test to prove anything"
    );

    // The Redis copy is served for the rest of the interval, and not a millisecond longer.
    clock.set(validated_at + 4_999);
    assert_eq!(me_cookie(&web, "sessionId", &token).await.0, 200);
    clock.set(validated_at + 5_000);
    assert_eq!(me_cookie(&web, "sessionId", &token).await, unauthorized());
    assert!(
        !exists(&mut redis, &key).await,
        "the stale Redis copy was not deleted"
    );
    // And it stays out.
    assert_eq!(me_bearer(&web, &token).await, unauthorized());
}

#[tokio::test]
async fn logout_removes_the_redis_key_and_revokes_the_row_at_once() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let admin = routes().layer(
        sessions
            .layer(AppContext::Admin)
            .cookie_name("admin_sid")
            .idle_timeout(IDLE),
    );
    let token = login(&admin, alice.id).await;
    let key = format!("session:admin:{token}");
    let mut redis = raw_redis().await;
    assert!(exists(&mut redis, &key).await);
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((false, false, "admin".into()))
    );
    assert_eq!(me_cookie(&admin, "admin_sid", &token).await.0, 200);

    let reply = send(&admin, post("/logout").cookie("admin_sid", &token).empty()).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "bye"));
    assert!(
        !exists(&mut redis, &key).await,
        "Redis key left after logout"
    );
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "admin".into()))
    );
    assert_eq!(me_cookie(&admin, "admin_sid", &token).await, unauthorized());
    assert!(
        !exists(&mut redis, &key).await,
        "a rejected request refilled Redis"
    );
}

/// A Redis-only session of the TypeScript app keeps sliding in the tiered store: its first
/// extension must not be mistaken for a revocation (PostgreSQL has no row to extend).
#[tokio::test]
async fn a_redis_only_session_keeps_sliding_in_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(redis_store(shared_url()).await, &db.pool, Duration::ZERO);
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store, users).clock(clock.clone());
    let web = routes().layer(
        sessions
            .layer(AppContext::Web)
            .idle_timeout(IDLE)
            .touch_interval(Duration::from_secs(60)),
    );
    let id = tower_app_sessions::SessionId::generate().unwrap();
    let key = format!("session:web:{}", id.as_str());
    let now = clock.now_ms();
    // Written with a 60 s TTL: the first request finds the 600 s idle timeout due to slide.
    let json = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{}}}"#,
        alice.id,
        now + 60_000
    );
    let mut redis = raw_redis().await;
    let _: () = redis.set_ex(&key, json, 60).await.unwrap();
    let expires_at = |value: String| {
        serde_json::from_str::<Value>(&value).unwrap()["expires_at"]
            .as_i64()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(me_cookie(&web, "sessionId", id.as_str()).await.0, 200);
        let value: String = redis.get(&key).await.unwrap();
        assert_eq!(expires_at(value), clock.now_ms() + 600_000, "slid");
        clock.advance(Duration::from_secs(61));
    }
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    let _: () = redis.del(&key).await.unwrap();
    assert!(
        ttl > 500,
        "the Redis copy slid to the idle timeout (ttl {ttl})"
    );
    assert_eq!(
        row_state(&db.pool, id.as_str()).await,
        None,
        "no row was made up"
    );
}

/// The TypeScript apps' `ProductionUserManager.createSession` writes the session to Redis
/// only (`this.sessions.set(...)`, no `sessions` row). DESIGN.md: the crate must read the
/// sessions they write. In the tiered store (what `from_env` builds in production) such a
/// session must authenticate, and must certainly not be deleted from Redis under the
/// TypeScript app's feet.
#[tokio::test]
async fn a_redis_only_session_of_the_typescript_app_survives_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));

    let id = tower_app_sessions::SessionId::generate().unwrap();
    let key = format!("session:web:{}", id.as_str());
    let now = tower_app_sessions::record::now_ms();
    let json = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"ip":"203.0.113.7","user_agent":"Mozilla/5.0 (TypeScript app)"}}"#,
        alice.id,
        now + 600_000
    );
    let mut redis = raw_redis().await;
    let _: () = redis.set_ex(&key, json, 600).await.unwrap();

    let answer = me_cookie(&web, "sessionId", id.as_str()).await;
    let still_there = exists(&mut redis, &key).await;
    let _: () = redis.del(&key).await.unwrap();
    assert!(
        still_there,
        "the tiered store deleted the TypeScript app's session from Redis (answer {answer:?})"
    );
    assert_eq!(answer, (200, alice.email.clone()));
}

/// The other direction: a session the Rust app created (Redis + `sessions` row) is logged out
/// by the TypeScript app, whose `deleteSession` deletes the Redis key only. The logout must
/// hold (DESIGN.md: logout takes effect server-side at once); the tiered store must not bring
/// the session back from the still-live `sessions` row.
#[tokio::test]
async fn a_logout_by_the_typescript_app_holds_in_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&web, alice.id).await;
    let key = format!("session:web:{token}");
    assert_eq!(me_cookie(&web, "sessionId", &token).await.0, 200);

    // RedisSessionAdapter.delete(sessionId): DEL session:web:<id>.
    let mut redis = raw_redis().await;
    let deleted: i64 = redis.del(&key).await.unwrap();
    assert_eq!(deleted, 1);
    let answer = me_cookie(&web, "sessionId", &token).await;
    let refilled = exists(&mut redis, &key).await;
    assert_eq!(
        answer,
        unauthorized(),
        "logged out by the TypeScript app, still authenticated here (Redis key refilled: {refilled})"
    );
    assert!(!refilled, "the Redis copy was refilled from PostgreSQL");
    // The logout reached PostgreSQL: the row is revoked (with a time), so no other
    // instance, and no later Redis restart, can bring the session back.
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "web".into()))
    );
    assert_eq!(me_bearer(&web, &token).await, unauthorized());
}

// ---- 6. a Redis restart --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_session() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let mut server = RedisServer::start_plain();
    let store = tiered(
        redis_store(server.url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let web = routes().layer(sessions.layer(AppContext::Web));
    let token = login(&web, alice.id).await;
    let key = format!("session:web:{token}");
    let ok = (200, alice.email.clone());
    assert_eq!(me_cookie(&web, "sessionId", &token).await, ok);
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "1");

    // Down: PostgreSQL still answers, and so does the app (reads fall back to it).
    tokio::task::block_in_place(|| server.kill());
    let started = Instant::now();
    assert_eq!(me_cookie(&web, "sessionId", &token).await, ok);
    // A login while Redis is down is written to PostgreSQL.
    let during = login(&web, alice.id).await;
    eprintln!(
        "pg_tiered: Redis down: /me and a login answered in {:?}",
        started.elapsed()
    );

    // Back, empty (no persistence).
    tokio::task::block_in_place(|| server.start());
    assert_eq!(
        server.cli(&["DBSIZE"]).trim(),
        "0",
        "the restarted Redis is empty"
    );
    for token in [&token, &during] {
        let key = format!("session:web:{token}");
        let back = Instant::now();
        let mut requests = 0;
        loop {
            // Never a 401: PostgreSQL has the session.
            assert_eq!(me_cookie(&web, "sessionId", token).await, ok);
            requests += 1;
            if server.cli(&["EXISTS", &key]).trim() == "1" {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "Redis not refilled after {requests} requests"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "pg_tiered: after the restart, {key:.20}… refilled from PostgreSQL after {requests} \
             request(s), {:?}",
            back.elapsed()
        );
        let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
        assert!(ttl > 0, "refilled key has TTL {ttl}");
    }
}

// ---- 8. two databases from variables -----------------------------------------------------

fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |var| map.get(var).cloned()
}

/// Web-database routes: save and read preferences, theme, language and the user cache.
fn web_data_routes() -> Router {
    type Failure = (StatusCode, String);
    fn unavailable(e: impl std::fmt::Display) -> Failure {
        (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
    Router::new()
        .route(
            "/prefs",
            routing::post(|session: Session, Json(body): Json<Value>| async move {
                let Some(web) = session.web() else {
                    return Err((StatusCode::NOT_FOUND, "no web database".to_owned()));
                };
                let data = WebSessionData {
                    data: Some(body["data"].clone()),
                    preferences: Some(body["preferences"].clone()),
                    theme: body["theme"].as_str().map(str::to_owned),
                    language: body["language"].as_str().map(str::to_owned),
                };
                web.save(&data).await.map_err(unavailable)?;
                web.set_user_cache(&body["cache"])
                    .await
                    .map_err(unavailable)?;
                Ok::<_, Failure>("saved")
            })
            .get(|session: Session| async move {
                let Some(web) = session.web() else {
                    return Err((StatusCode::NOT_FOUND, "no web database".to_owned()));
                };
                let row = web.get().await.map_err(unavailable)?;
                let cache = web.user_cache().await.map_err(unavailable)?;
                Ok::<_, Failure>(Json(json!({
                    "theme": row.as_ref().and_then(|r| r.theme.clone()),
                    "language": row.as_ref().and_then(|r| r.language.clone()),
                    "preferences": row.as_ref().and_then(|r| r.preferences.clone()),
                    "data": row.as_ref().and_then(|r| r.data.clone()),
                    "cache": cache,
                })))
            }),
        )
        .route(
            "/has-web",
            routing::get(|_: CurrentUser<User>, session: Session| async move {
                session.web().is_some().to_string()
            }),
        )
}

#[tokio::test]
async fn two_databases_from_variables_web_data_lands_in_the_web_database() {
    let identity = TestDb::create().await;
    let webdb = TestDb::create().await;
    let sessions = Sessions::from_lookup(lookup(&[
        ("SESSION_ENV", "production".into()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_IDENTITY_URL", identity.url()),
        ("DATABASE_WEB_URL", webdb.url()),
    ]))
    .await
    .expect("production configuration");
    assert_eq!(sessions.environment(), Environment::Production);
    assert_eq!(sessions.strategy(), MigrationStrategy::ProductionOnly);

    // Nothing is created before migrate().
    assert!(public_tables(&identity.pool).await.is_empty());
    assert!(public_tables(&webdb.pool).await.is_empty());
    sessions.migrate().await.expect("migrate both databases");
    sessions.migrate().await.expect("migrate is rerunnable");
    let in_identity = public_tables(&identity.pool).await;
    let in_web = public_tables(&webdb.pool).await;
    for table in ["users", "sessions", "user_permissions"] {
        assert!(in_identity.iter().any(|t| t == table), "{in_identity:?}");
        assert!(!in_web.iter().any(|t| t == table), "{in_web:?}");
    }
    for table in ["web_sessions", "web_user_cache"] {
        assert!(in_web.iter().any(|t| t == table), "{in_web:?}");
        assert!(!in_identity.iter().any(|t| t == table), "{in_identity:?}");
    }

    let ada = new_user(sessions.users().as_ref(), "ada", Role::Admin).await;
    let web = routes()
        .merge(web_data_routes())
        .layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let admin = routes().merge(web_data_routes()).layer(
        sessions
            .layer(AppContext::Admin)
            .cookie_name("admin_sid")
            .idle_timeout(IDLE),
    );
    let token = login(&web, ada.id).await;
    let admin_token = login(&admin, ada.id).await;

    let body = json!({
        "theme": "dark",
        "language": "ru",
        "preferences": {"newsletter": false, "currency": "EUR"},
        "data": {"cart": [1, 2, 3]},
        "cache": {"display_name": "Ada", "orders": 7},
    });
    let reply = send(
        &web,
        post("/prefs")
            .cookie("sessionId", &token)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "saved"));
    let reply = send(&web, get("/prefs").bearer(&token).empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let read: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(read, body);

    // In the web database, keyed by the session id, expiring with the session.
    let (user_id, theme, language, preferences, expires_ms): (
        Uuid,
        Option<String>,
        Option<String>,
        Option<Value>,
        i64,
    ) = sqlx::query_as(
        "SELECT user_id, theme, language, preferences, \
                (extract(epoch FROM expires_at) * 1000)::bigint FROM web_sessions WHERE id = $1",
    )
    .bind(&token)
    .fetch_one(&webdb.pool)
    .await
    .expect("a web_sessions row keyed by the session id");
    assert_eq!(user_id, ada.id);
    assert_eq!(
        (theme.as_deref(), language.as_deref()),
        (Some("dark"), Some("ru"))
    );
    assert_eq!(preferences, Some(body["preferences"].clone()));
    let session_expires_ms: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM expires_at) * 1000)::bigint FROM sessions \
         WHERE id = $1 AND application_context = 'web'",
    )
    .bind(&token)
    .fetch_one(&identity.pool)
    .await
    .expect("the session itself is in the identity database");
    assert_eq!(expires_ms, session_expires_ms);
    let cache: Value = sqlx::query_scalar("SELECT data FROM web_user_cache WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(&webdb.pool)
        .await
        .unwrap();
    assert_eq!(cache, body["cache"]);

    // Another web session of the same user: its own (empty) row, the user's shared cache.
    let second = login(&web, ada.id).await;
    let reply = send(&web, get("/prefs").cookie("sessionId", &second).empty()).await;
    let read: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(read["theme"], Value::Null);
    assert_eq!(read["cache"], body["cache"]);

    // The admin layer has no web database; anonymous requests neither.
    assert_eq!(
        send(&web, get("/has-web").cookie("sessionId", &token).empty())
            .await
            .body,
        "true"
    );
    let reply = send(
        &admin,
        get("/has-web").cookie("admin_sid", &admin_token).empty(),
    )
    .await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "false"));
    let reply = send(
        &admin,
        get("/prefs").cookie("admin_sid", &admin_token).empty(),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(send(&web, get("/prefs").empty()).await.status, 404);
    let web_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(&webdb.pool)
        .await
        .unwrap();
    assert_eq!(web_rows, 1);

    for (router, cookie, t) in [
        (&web, "sessionId", &token),
        (&web, "sessionId", &second),
        (&admin, "admin_sid", &admin_token),
    ] {
        send(router, post("/logout").cookie(cookie, t).empty()).await;
    }
}

#[tokio::test]
async fn from_lookup_names_the_missing_or_unreachable_database() {
    let err = Sessions::from_lookup(lookup(&[
        ("SESSION_ENV", "production".into()),
        ("REDIS_URL", shared_url()),
    ]))
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Missing {
                var: "DATABASE_URL",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");

    let webdb = TestDb::create().await;
    let identity = TestDb::create().await;
    let started = Instant::now();
    let (unreachable, unreachable_web) = tokio::join!(
        Sessions::from_lookup(lookup(&[
            ("SESSION_ENV", "production".into()),
            ("REDIS_URL", shared_url()),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x".into()),
            ("DATABASE_WEB_URL", webdb.url()),
        ])),
        Sessions::from_lookup(lookup(&[
            ("SESSION_ENV", "production".into()),
            ("REDIS_URL", shared_url()),
            ("DATABASE_URL", identity.url()),
            (
                "DATABASE_WEB_URL",
                "postgres://web:s3cret@127.0.0.1:1/web".into()
            ),
        ])),
    );
    let err = unreachable.unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Unreachable {
                var: "DATABASE_URL",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("DATABASE_URL could not be reached"),
        "{err}"
    );
    let err = unreachable_web.unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Unreachable {
                var: "DATABASE_WEB_URL",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cret"), "credentials in {err}");
    eprintln!(
        "pg_tiered: unreachable databases reported after {:?}",
        started.elapsed()
    );
}
