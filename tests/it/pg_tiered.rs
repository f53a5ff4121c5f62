//! Redis in front of PostgreSQL (`TieredStore`), the production setup, against real servers
//! (`REDIS_URL`, `DATABASE_URL`; throwaway databases, and a throwaway `redis-server` where
//! one is restarted): the store contract, isolation, revocation by another app through the
//! database, logout, a Redis restart, the multi-database configuration from variables, and a
//! rough latency figure.
#![cfg(all(feature = "postgres", feature = "redis", feature = "axum"))]

use crate::common;

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
use tower_app_sessions::store::TieredStore;
use tower_app_sessions::users::PgUsers;
use tower_app_sessions::webdb::{WebDatabase, WebSession, WebSessionData};
use tower_app_sessions::{AppContext, CurrentUser, Role, Scope, Sessions, User, UserRepository};
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

/// The contract against `store` made from a tiered store on a fresh database, then: every
/// session the contract wrote (and, rule by rule, deleted) is revoked in PostgreSQL, so every
/// deletion reached it. Returns the store.
async fn contract_over_tiered<S: tower_app_sessions::SessionStore>(
    wrap: impl FnOnce(TieredStore) -> S,
    ready_loads: bool,
) -> Arc<S> {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let (a, b) = (
        new_user(&users, "contract-a", Role::User).await,
        new_user(&users, "contract-b", Role::User).await,
    );
    let store = wrap(tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    ));
    // One store for every rule (the check's factory hands out clones of the one handle).
    let store = Arc::new(store);
    let shared = Arc::clone(&store);
    let mut contract = tower_app_sessions::testing::Contract::new()
        .users(a.id, b.id)
        .third_context(AppContext::Admin);
    if ready_loads {
        contract = contract.ready_loads();
    }
    contract
        .check(move || {
            let store = Arc::clone(&shared);
            async move { store }
        })
        .await
        .assert_ok();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(rows > 5, "{rows} rows: the writes did not reach PostgreSQL");
    let unrevoked: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM sessions WHERE NOT revoked",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        unrevoked.is_empty(),
        "deleted sessions are not revoked in PostgreSQL (lifetimes in seconds): {unrevoked:?}"
    );
    store
}

#[tokio::test]
async fn the_tiered_store_keeps_the_contract() {
    contract_over_tiered(|tiered| tiered, false).await;
}

/// `mock-with-write-through` in production: reads from memory (at once: the fast path holds),
/// every write also through the tiered store to Redis and PostgreSQL.
#[tokio::test]
async fn write_through_to_the_tiered_store_keeps_the_contract() {
    contract_over_tiered(
        |tiered| {
            let memory = Arc::new(tower_app_sessions::MemoryStore::new());
            tower_app_sessions::store::WriteThroughStore::new(memory, Arc::new(tiered))
        },
        true,
    )
    .await;
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

/// PostgreSQL is the authority: a row revoked (what the TypeScript admin panel does) or
/// expired there wins over the live Redis copy within the revalidation interval, exactly.
#[tokio::test]
async fn a_row_revoked_or_expired_in_postgres_beats_the_redis_copy_within_the_interval() {
    let cases = [
        (
            "revoked",
            "UPDATE sessions SET revoked = true WHERE id = $1",
        ),
        (
            "expired",
            "UPDATE sessions SET expires_at = created_at + interval '1 second' WHERE id = $1",
        ),
    ];
    for (what, sql) in cases {
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
            (200, alice.email.clone()),
            "{what}"
        );

        let done = sqlx::query(sql)
            .bind(&token)
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "{what}");
        assert!(
            exists(&mut redis, &key).await,
            "{what}: the stale Redis copy must exist for this test to prove anything"
        );

        // The Redis copy is served for the rest of the interval, and not a millisecond longer.
        clock.set(validated_at + 4_999);
        assert_eq!(me_cookie(&web, "sessionId", &token).await.0, 200, "{what}");
        clock.set(validated_at + 5_000);
        assert_eq!(
            me_cookie(&web, "sessionId", &token).await,
            unauthorized(),
            "{what}"
        );
        assert!(
            !exists(&mut redis, &key).await,
            "{what}: the stale Redis copy was not deleted"
        );
        // And it stays out.
        assert_eq!(me_bearer(&web, &token).await, unauthorized(), "{what}");
    }
}

#[tokio::test]
async fn a_user_deleted_after_login_is_anonymous_at_once() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let bob = new_user(&users, "bob", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&web, alice.id).await;
    let other = login(&web, bob.id).await;
    assert_eq!(me_cookie(&web, "sessionId", &token).await.0, 200);
    // Deleted by another app (the row cascades to its sessions; the Redis copy stays).
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(alice.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(me_cookie(&web, "sessionId", &token).await, unauthorized());
    let maybe = send(&web, get("/maybe").cookie("sessionId", &token).empty()).await;
    assert_eq!(maybe.body, "anonymous");
    assert_eq!(me_bearer(&web, &other).await, (200, bob.email.clone()));
    let _: () = raw_redis()
        .await
        .del(format!("session:web:{token}"))
        .await
        .unwrap();
}

/// Contexts the `"ApplicationType"` enum lacks live in Redis alone in the tiered store.
#[tokio::test]
async fn custom_contexts_live_in_redis_alone_in_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let bot = AppContext::custom("telegram-bot").unwrap();
    let app = routes().layer(sessions.layer(bot).idle_timeout(IDLE));
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&app, alice.id).await;
    let key = format!("session:telegram-bot:{token}");
    let mut redis = raw_redis().await;
    assert!(exists(&mut redis, &key).await);
    assert_eq!(
        row_state(&db.pool, &token).await,
        None,
        "no row for a custom context"
    );
    assert_eq!(
        me_cookie(&app, "sessionId", &token).await,
        (200, alice.email.clone())
    );
    assert_eq!(
        me_bearer(&web, &token).await,
        unauthorized(),
        "isolated from web"
    );
    let reply = send(&app, post("/logout").bearer(&token).empty()).await;
    assert_eq!(reply.status, 200);
    assert!(!exists(&mut redis, &key).await);
    assert_eq!(me_bearer(&app, &token).await, unauthorized());
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
/// only (`this.sessions.set(...)`, no `sessions` row). The crate must read the sessions
/// they write. In the tiered store (what `from_env` builds in production) such a
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
/// hold (logout takes effect server-side at once); the tiered store must not bring
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

/// Web-database routes: save and read preferences, theme, language and the user cache,
/// through the `WebSession` extractor (the database is the router's state).
fn web_data_routes(db: WebDatabase) -> Router {
    type Failure = (StatusCode, String);
    fn unavailable(e: impl std::fmt::Display) -> Failure {
        (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
    Router::new()
        .route(
            "/prefs",
            routing::post(|web: WebSession, Json(body): Json<Value>| async move {
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
            .get(|web: Option<WebSession>| async move {
                let Some(web) = web else {
                    return Err((StatusCode::NOT_FOUND, "no web session".to_owned()));
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
            routing::get(|_: CurrentUser<User>, web: Option<WebSession>| async move {
                web.is_some().to_string()
            }),
        )
        .with_state(db)
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

    let ada = new_user(sessions.user_repository().as_ref(), "ada", Role::Admin).await;
    let web_db = sessions
        .attached_web_database()
        .expect("DATABASE_WEB_URL gives a web database")
        .clone();
    let web = routes()
        .merge(web_data_routes(web_db.clone()))
        .layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let admin = routes().merge(web_data_routes(web_db)).layer(
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
    // The required extractor: 401, as for any route that needs a web session, and no row.
    let reply = send(
        &admin,
        post("/prefs")
            .cookie("admin_sid", &admin_token)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 401);
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

// ---- 9. every strategy from variables ------------------------------------------------------

/// `production-only` with `SESSION_REVALIDATE_SECS`: the bound on trusting a Redis copy is
/// the variable's, to the millisecond.
#[tokio::test]
async fn session_revalidate_secs_from_the_environment_bounds_the_redis_copy() {
    let db = TestDb::migrated().await;
    let clock = ManualClock::starting_now();
    let sessions = Sessions::from_lookup(lookup(&[
        ("SESSION_ENV", "production".into()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_URL", db.url()),
        ("SESSION_REVALIDATE_SECS", "2".into()),
    ]))
    .await
    .expect("production configuration")
    .clock(clock.clone());
    assert_eq!(sessions.strategy(), MigrationStrategy::ProductionOnly);
    let alice = new_user(sessions.user_repository().as_ref(), "alice", Role::User).await;
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&web, alice.id).await;
    let validated_at = clock.now_ms();
    sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    clock.set(validated_at + 1_999);
    assert_eq!(me_bearer(&web, &token).await.0, 200);
    clock.set(validated_at + 2_000);
    assert_eq!(me_bearer(&web, &token).await, unauthorized());
}

/// `gradual`: the legacy fallbacks (Redis `session:<id>` and `users.session_id`) are on for
/// the web layer and off for admin, without any code.
#[tokio::test]
async fn gradual_from_the_environment_reads_legacy_sessions_in_web_only() {
    let db = TestDb::migrated().await;
    let sessions = Sessions::from_lookup(lookup(&[
        ("SESSION_ENV", "production".into()),
        ("SESSION_MIGRATION_STRATEGY", "gradual".into()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_URL", db.url()),
    ]))
    .await
    .expect("gradual configuration");
    assert_eq!(sessions.strategy(), MigrationStrategy::Gradual);
    let alice = new_user(sessions.user_repository().as_ref(), "alice", Role::Admin).await;
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let admin = routes().layer(sessions.layer(AppContext::Admin).idle_timeout(IDLE));
    assert!(sessions.layer(AppContext::Web).legacy_fallback_enabled());
    assert!(!sessions.layer(AppContext::Admin).legacy_fallback_enabled());

    // A pre-migration Redis key, as the TypeScript apps wrote it.
    let redis_legacy = tower_app_sessions::SessionId::generate().unwrap();
    let now = tower_app_sessions::record::now_ms();
    let key = format!("session:{}", redis_legacy.as_str());
    let json = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{}}}"#,
        alice.id,
        now + 600_000
    );
    let mut redis = raw_redis().await;
    let _: () = redis.set_ex(&key, json, 600).await.unwrap();
    // A pre-migration users.session_id.
    let column_legacy = tower_app_sessions::SessionId::generate().unwrap();
    sqlx::query("UPDATE users SET session_id = $1, last_login_at = now() WHERE id = $2")
        .bind(column_legacy.as_str())
        .bind(alice.id)
        .execute(&db.pool)
        .await
        .unwrap();

    for legacy in [&redis_legacy, &column_legacy] {
        assert_eq!(
            me_bearer(&web, legacy.as_str()).await,
            (200, alice.email.clone())
        );
        assert_eq!(me_bearer(&admin, legacy.as_str()).await, unauthorized());
    }
    let _: () = redis.del(&key).await.unwrap();
}

/// `mock-with-write-through`: sessions are served from memory and every write also reaches
/// Redis and PostgreSQL (to warm them before the switch).
#[tokio::test]
async fn mock_with_write_through_from_the_environment_serves_memory_and_warms_both() {
    let db = TestDb::migrated().await;
    let sessions = Sessions::from_lookup(lookup(&[
        (
            "SESSION_MIGRATION_STRATEGY",
            "mock-with-write-through".into(),
        ),
        ("SESSION_ENV", "development".into()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_URL", db.url()),
    ]))
    .await
    .expect("write-through configuration");
    assert_eq!(sessions.strategy(), MigrationStrategy::MockWithWriteThrough);
    let alice = new_user(sessions.user_repository().as_ref(), "alice", Role::User).await;
    let web = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&web, alice.id).await;
    let key = format!("session:web:{token}");
    let mut redis = raw_redis().await;
    assert!(exists(&mut redis, &key).await, "written through to Redis");
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((false, false, "web".into())),
        "written through to PostgreSQL"
    );

    // Reads come from memory: the real backends losing the session changes nothing yet.
    let _: () = redis.del(&key).await.unwrap();
    sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(me_bearer(&web, &token).await, (200, alice.email.clone()));

    // A logout ends it in memory (and is written through).
    let second = login(&web, alice.id).await;
    let reply = send(&web, post("/logout").bearer(&second).empty()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(me_bearer(&web, &second).await, unauthorized());
    assert!(!exists(&mut redis, &format!("session:web:{second}")).await);
    assert_eq!(
        row_state(&db.pool, &second).await,
        Some((true, true, "web".into()))
    );
    send(&web, post("/logout").bearer(&token).empty()).await;
}

// ---- 10. the known limitations, and the bounds README gives for them ------------------------

/// README "Known limitations": a Redis copy PostgreSQL has no row of at all is trusted (the
/// TypeScript apps' Redis-only sessions), so a row revoked by SQL and then deleted before the
/// session's next use leaves the copy authenticating; the bound is the copy's own expiry.
#[tokio::test]
async fn limitation_a_row_deleted_behind_the_stores_back_lives_until_its_redis_copy_expires() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store, users).clock(clock.clone());
    let web = routes().layer(
        sessions
            .layer(AppContext::Web)
            .idle_timeout(IDLE)
            .touch_interval(Duration::from_secs(300)),
    );
    let token = login(&web, alice.id).await;
    let expires_at = clock.now_ms() + IDLE.as_millis() as i64;
    for sql in [
        "UPDATE sessions SET revoked = true WHERE id = $1",
        "DELETE FROM sessions WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(&token)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    // Past the revalidation interval: PostgreSQL has no row, so the copy is trusted.
    clock.advance(Duration::from_secs(6));
    assert_eq!(me_bearer(&web, &token).await.0, 200, "the limitation");
    // The bound: not past the copy's expires_at.
    clock.set(expires_at);
    assert_eq!(me_bearer(&web, &token).await, unauthorized(), "the bound");
}

/// A durable store that stops its next `load` after reading, until the test lets it go: the
/// interleaving of "read the live row" and "the row is revoked meanwhile" is forced, not hoped
/// for. Everything else is the real `PgSessionStore`.
struct PausedLoad {
    inner: PgSessionStore,
    pause: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

mod paused_load {
    use super::PausedLoad;
    use tower_app_sessions::store::{Capabilities, ListedSession, StoreFuture};
    use tower_app_sessions::{
        AppContext, Scope, SessionId, SessionRecord, SessionStore, StoreError,
    };
    use uuid::Uuid;

    impl SessionStore for PausedLoad {
        fn load<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            now: i64,
        ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
            StoreFuture::new(async move {
                let found = self.inner.load(c, id, now).await;
                let pause = self.pause.lock().unwrap().take();
                if let Some((reached, release)) = pause {
                    let _ = reached.send(());
                    let _ = release.await;
                }
                found
            })
        }
        fn save<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            r: &'a SessionRecord,
            now: i64,
        ) -> StoreFuture<'a, Result<(), StoreError>> {
            self.inner.save(c, id, r, now)
        }
        fn delete<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            now: i64,
        ) -> StoreFuture<'a, Result<bool, StoreError>> {
            self.inner.delete(c, id, now)
        }
        fn extend<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            at: i64,
            now: i64,
        ) -> StoreFuture<'a, Result<bool, StoreError>> {
            self.inner.extend(c, id, at, now)
        }
        fn update_data<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            patch: &'a tower_app_sessions::data::DataPatch,
            limits: tower_app_sessions::data::DataLimits,
            now: i64,
        ) -> StoreFuture<'a, Result<tower_app_sessions::store::DataUpdate, StoreError>> {
            self.inner.update_data(c, id, patch, limits, now)
        }
        fn rotate<'a>(
            &'a self,
            c: &'a AppContext,
            old: &'a SessionId,
            new: &'a SessionId,
            u: &'a Uuid,
            now: i64,
        ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
            self.inner.rotate(c, old, new, u, now)
        }
        fn delete_user_sessions<'a>(
            &'a self,
            u: &'a Uuid,
            s: Scope<'a>,
            now: i64,
        ) -> StoreFuture<'a, Result<u64, StoreError>> {
            self.inner.delete_user_sessions(u, s, now)
        }
        fn list_user_sessions<'a>(
            &'a self,
            u: &'a Uuid,
            s: Scope<'a>,
            now: i64,
        ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
            self.inner.list_user_sessions(u, s, now)
        }
        fn capabilities(&self) -> Capabilities<'_> {
            self.inner.capabilities()
        }
    }
}

/// README "Known limitations": a Redis miss refilled from PostgreSQL while another instance
/// ends the session can serve it for up to `SESSION_REVALIDATE_SECS`. Forced here: instance A
/// reads the live row after Redis lost its data, instance B ends the user's sessions (an
/// admin's revoke-all: it never read the session, so Redis keeps no trace of it), then A
/// refills Redis. The session is served until A's revalidation interval ends, then never.
/// (A logout *request* on B does not open this window: authenticating it refills Redis and
/// the user's index, and the index then tells A that the key was deleted on purpose.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limitation_a_refill_racing_a_logout_is_served_for_at_most_the_revalidation_interval() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let server = RedisServer::start_plain();
    let revalidate = Duration::from_secs(5);
    let clock = ManualClock::starting_now();
    let paused = Arc::new(PausedLoad {
        inner: PgSessionStore::new(db.pool.clone()),
        pause: std::sync::Mutex::new(None),
    });
    let a_store = TieredStore::new(Arc::new(redis_store(server.url()).await), paused.clone())
        .revalidate_after(revalidate);
    let a = routes().layer(
        Sessions::new(a_store, users.clone())
            .clock(clock.clone())
            .layer(AppContext::Web)
            .idle_timeout(IDLE),
    );
    let b_sessions = Sessions::new(
        tiered(redis_store(server.url()).await, &db.pool, revalidate),
        users,
    )
    .clock(clock.clone());
    let b = routes().layer(b_sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let token = login(&b, alice.id).await;
    // Redis loses its data (a restart without persistence).
    assert_eq!(server.cli(&["FLUSHALL"]).trim(), "OK");

    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    *paused.pause.lock().unwrap() = Some((reached_tx, release_rx));
    let request = {
        let (a, token) = (a.clone(), token.clone());
        tokio::spawn(async move { me_bearer(&a, &token).await })
    };
    crate::common::races::within("A to read the live row", reached)
        .await
        .expect("A read the live row");
    // B ends the user's sessions while A holds the row it read.
    let ended = b_sessions
        .session_store()
        .delete_user_sessions(&alice.id, Scope::AllContexts, b_sessions.now())
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "web".into()))
    );
    release.send(()).unwrap();
    let refilled_at = clock.now_ms();
    assert_eq!(
        crate::common::races::within("A's held request to answer", request)
            .await
            .unwrap()
            .0,
        200,
        "the race: A served what it read"
    );
    assert_eq!(
        server
            .cli(&["EXISTS", &format!("session:web:{token}")])
            .trim(),
        "1"
    );

    // The bound: A serves its refilled copy until the interval is over, then never again.
    clock.set(refilled_at + 4_999);
    assert_eq!(me_bearer(&a, &token).await.0, 200);
    clock.set(refilled_at + 5_000);
    assert_eq!(me_bearer(&a, &token).await, unauthorized());
    assert_eq!(me_bearer(&b, &token).await, unauthorized());
}

/// A login whose Redis write failed half-way is not taken for a logout. Found by the soak
/// (`scripts/soak`): while Redis restarted, a login's `SET` of the key was refused while
/// the index entry, sent beside it, landed once Redis was back; an entry without its key
/// reads as a deliberate deletion, so the next read, on another instance, revoked the
/// session just logged in. Forced here with a Redis user that may not `SET`: instance A's
/// key writes all fail, its index writes do not.
#[tokio::test]
async fn a_login_whose_redis_key_write_failed_is_not_taken_for_a_logout() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let server = RedisServer::start_plain();
    let acl = [
        "ACL", "SETUSER", "noset", "on", ">secret", "~*", "&*", "+@all", "-set",
    ];
    assert_eq!(server.cli(&acl).trim(), "OK");
    let no_set = server.url().replace("redis://", "redis://noset:secret@");
    let revalidate = Duration::from_secs(5);
    let a = routes().layer(
        Sessions::new(
            tiered(redis_store(no_set).await, &db.pool, revalidate),
            users.clone(),
        )
        .layer(AppContext::Web)
        .idle_timeout(IDLE),
    );
    let b = routes().layer(
        Sessions::new(
            tiered(redis_store(server.url()).await, &db.pool, revalidate),
            users,
        )
        .layer(AppContext::Web)
        .idle_timeout(IDLE),
    );
    // The row is written; Redis is not (logged, the durable store is authoritative).
    let token = login(&a, alice.id).await;
    assert_eq!(
        server
            .cli(&["EXISTS", &format!("session:web:{token}")])
            .trim(),
        "0"
    );
    assert_eq!(
        me_bearer(&b, &token).await.0,
        200,
        "B refills it from the row"
    );
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((false, false, "web".into())),
        "the row is not revoked"
    );
}

/// A TypeScript logout (a bare `DEL` of the Redis key) holds when the user's sessions are
/// listed before the session is next read. Found by the soak (`scripts/soak`): listing
/// pruned the index entry of the deleted key — the entry that remembers the deletion — so
/// the next read took the miss for lost data and refilled the session from its row: logged
/// out, it was served again, for as long as it was used.
#[tokio::test]
async fn a_typescript_logout_holds_when_the_sessions_are_listed_before_the_next_read() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users);
    let app = routes().layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    let (token, other) = (login(&app, alice.id).await, login(&app, alice.id).await);
    assert_eq!(me_bearer(&app, &token).await.0, 200);
    // The TypeScript apps' logout: the key deleted, nothing else.
    let mut redis = raw_redis().await;
    let deleted: u64 = redis.del(format!("session:web:{token}")).await.unwrap();
    assert_eq!(deleted, 1);
    // Their devices page lists the user's sessions before the session is read again.
    sessions
        .list_user(&alice.id, Scope::AllContexts)
        .await
        .unwrap();
    assert_eq!(me_bearer(&app, &token).await, unauthorized());
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "web".into())),
        "the logout reached PostgreSQL"
    );
    assert!(
        !exists(&mut redis, &format!("session:web:{token}")).await,
        "not refilled"
    );
    assert_eq!(
        me_bearer(&app, &other).await.0,
        200,
        "the other session lives"
    );
}

/// A refill landing while another instance handles the same miss is not a logout. Found by
/// the soak (`scripts/soak`): after a Redis restart, instance B refilled a session (its key,
/// then its index entry) while instance A, which had seen the key missing, was reading the
/// row; A then found the index entry, took the missing key for a deliberate deletion and
/// revoked a live session. Forced here: A stops after reading the row, B serves the session
/// (refilling Redis), then A goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_landing_while_another_instance_reads_the_miss_is_not_a_logout() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let server = RedisServer::start_plain();
    let revalidate = Duration::from_secs(5);
    let paused = Arc::new(PausedLoad {
        inner: PgSessionStore::new(db.pool.clone()),
        pause: std::sync::Mutex::new(None),
    });
    let a_store = TieredStore::new(Arc::new(redis_store(server.url()).await), paused.clone())
        .revalidate_after(revalidate);
    let a = routes().layer(
        Sessions::new(a_store, users.clone())
            .layer(AppContext::Web)
            .idle_timeout(IDLE),
    );
    let b_store = tiered(redis_store(server.url()).await, &db.pool, revalidate);
    let b = routes().layer(
        Sessions::new(b_store, users)
            .layer(AppContext::Web)
            .idle_timeout(IDLE),
    );
    let token = login(&b, alice.id).await;
    // Redis loses its data (a restart without persistence): every instance refills it.
    assert_eq!(server.cli(&["FLUSHALL"]).trim(), "OK");

    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    *paused.pause.lock().unwrap() = Some((reached_tx, release_rx));
    let request = {
        let (a, token) = (a.clone(), token.clone());
        tokio::spawn(async move { me_bearer(&a, &token).await })
    };
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .expect("A reads the row after its Redis miss within 10 s")
        .unwrap();
    // Meanwhile B serves the session: its own miss, the row, the refill (key and index entry).
    assert_eq!(me_bearer(&b, &token).await.0, 200);
    release.send(()).unwrap();
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("A answers within 10 s")
        .unwrap();
    assert_eq!(status, 200, "A serves the live session it read");
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((false, false, "web".into())),
        "the row is not revoked"
    );
    assert_eq!(me_bearer(&a, &token).await.0, 200);
    assert_eq!(me_bearer(&b, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_or_a_data_save_never_revives_a_session_ended_while_the_request_ran() {
    use common::races::{held_racing, routes as race_routes, Gate, ENDERS, HELD};
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    let sessions = Sessions::new(store, users.clone());
    let gate = Gate::new();
    let app = race_routes(gate.clone()).layer(sessions.layer(AppContext::Web).idle_timeout(IDLE));
    for ender in ENDERS {
        let user = new_user(&users, "racer", Role::User).await;
        for held in HELD {
            held_racing(&sessions, &app, &gate, user.id, ender, held).await;
        }
    }
    // And a rotation that nothing races moves both copies: the new id has a row and a key,
    // the old one a revoked row and no key.
    let user = new_user(&users, "rotated", Role::User).await;
    let token = login(&app, user.id).await;
    let new = tower_app_sessions::SessionId::generate().unwrap();
    let old = tower_app_sessions::SessionId::parse(&token).unwrap();
    let moved = sessions
        .session_store()
        .rotate(&AppContext::Web, &old, &new, &user.id, sessions.now())
        .await
        .unwrap();
    assert!(moved.is_some());
    let mut redis = raw_redis().await;
    assert!(!exists(&mut redis, &format!("session:web:{token}")).await);
    assert!(exists(&mut redis, &format!("session:web:{}", new.as_str())).await);
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "web".into()))
    );
    assert_eq!(
        row_state(&db.pool, new.as_str()).await,
        Some((false, false, "web".into()))
    );
    assert_eq!(
        me_bearer(&app, new.as_str()).await,
        (200, user.email.clone())
    );
    send(&app, post("/logout").bearer(new.as_str()).empty()).await;
}

#[tokio::test]
async fn the_per_user_session_limit_holds_on_postgres_and_the_tiered_store() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let (a, b) = (
        new_user(&users, "a", Role::User).await,
        new_user(&users, "b", Role::User).await,
    );
    let pg_only = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    common::limits::per_user_limit(pg_only, a.id, b.id).await;
    let store = tiered(
        redis_store(shared_url()).await,
        &db.pool,
        Duration::from_secs(5),
    );
    common::limits::per_user_limit(Sessions::new(store, users), a.id, b.id).await;
}
