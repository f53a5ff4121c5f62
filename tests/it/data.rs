//! Session data through the public API on every store: concurrent patches that must all
//! survive, its lifecycle (login starts empty, rotation and slides keep it, logout ends it),
//! flash messages, bad input, the Redis wire format and the TypeScript apps' adapter reading
//! and extending records that carry data.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::{AppContext, MemoryUsers, Role, Session, SessionStore, Sessions, User};

use crate::common::data::{concurrent_patches_all_survive, data_routes, hostile_data, patch, read};
use crate::common::{get, login, post, routes, send, Finish};

/// Requests in the concurrency test, all loaded before any saves.
const CONCURRENT: usize = 50;

/// The shared routes and the data routes (barrier of [`CONCURRENT`]) under `layer`.
fn app(layer: tower_app_sessions::SessionLayer, barrier: &Arc<Barrier>) -> Router {
    routes()
        .merge(data_routes(Arc::clone(barrier)))
        .route(
            "/flash",
            axum::routing::post(|session: Session, body: String| async move {
                session.flash("notice", &body).map(|()| "kept")
            })
            .get(|session: Session| async move {
                session
                    .take_flash::<String>("notice")
                    .map(|n| n.unwrap_or_else(|| "none".to_owned()))
            }),
        )
        .layer(layer)
}

fn alice(users: &MemoryUsers) -> Arc<User> {
    users
        .insert(User::new(
            format!("alice-{}@example.com", uuid::Uuid::new_v4().simple()),
            Role::User,
        ))
        .unwrap()
}

/// A web app on `store` (data barrier of `parties`) with a fresh user signed in: the app
/// and the session's token.
async fn signed_in(store: impl SessionStore, parties: usize) -> (Router, String) {
    let users = MemoryUsers::new();
    let user = alice(&users);
    let sessions = Sessions::new(store, users);
    let web = app(
        sessions.layer(AppContext::Web),
        &Arc::new(Barrier::new(parties)),
    );
    let token = login(&web, user.id).await;
    (web, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_memory() {
    let (web, token) = signed_in(tower_app_sessions::MemoryStore::new(), CONCURRENT).await;
    concurrent_patches_all_survive(&[web], &token, CONCURRENT).await;
}

#[tokio::test]
async fn bad_keys_and_values_are_refused_and_lose_nothing_on_memory() {
    let (web, token) = signed_in(tower_app_sessions::MemoryStore::new(), 1).await;
    hostile_data(&web, &token).await;
}

#[tokio::test]
async fn login_starts_empty_rotation_and_slides_keep_data_logout_ends_it() {
    let users = MemoryUsers::new();
    let user = alice(&users);
    let clock = ManualClock::starting_now();
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users).clock(clock.clone());
    let web = app(
        sessions
            .layer(AppContext::Web)
            .touch_interval(Duration::from_secs(60)),
        &Arc::new(Barrier::new(1)),
    );
    let token = login(&web, user.id).await;
    assert_eq!(read(&web, &token).await.len(), 0, "a new session has data");
    let reply = send(
        &web,
        patch("/data", &token, &json!({"cart": [1, 2], "step": 3})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"cart": [1, 2], "step": 3})
    );
    // A slide (past the touch interval) keeps the data.
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        send(&web, get("/me").bearer(&token).empty()).await.status,
        200
    );
    assert_eq!(read(&web, &token).await["step"], json!(3));
    // Rotation keeps it, under the new id.
    let rotated = send(&web, post("/rotate").bearer(&token).empty())
        .await
        .body;
    assert_eq!(read(&web, &rotated).await["cart"], json!([1, 2]));
    // A login from an authenticated request starts a fresh session: no data carried over.
    let relogin = send(
        &web,
        post(&format!("/login/{}", user.id))
            .bearer(&rotated)
            .empty(),
    )
    .await
    .body;
    assert_eq!(read(&web, &relogin).await.len(), 0, "data survived a login");
    assert_eq!(
        send(&web, get("/data").bearer(&rotated).empty())
            .await
            .status,
        401
    );
    // Flash: read once.
    let kept = send(
        &web,
        post("/flash")
            .bearer(&relogin)
            .body("welcome back".into())
            .unwrap(),
    )
    .await;
    assert_eq!(kept.body, "kept");
    let first = send(&web, get("/flash").bearer(&relogin).empty()).await;
    assert_eq!(first.body, "welcome back");
    let second = send(&web, get("/flash").bearer(&relogin).empty()).await;
    assert_eq!(second.body, "none");
    // Logout: the data is gone with the session.
    assert_eq!(
        send(&web, post("/logout").bearer(&relogin).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&web, get("/data").bearer(&relogin).empty())
            .await
            .status,
        401
    );
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use crate::common::redis_server::{shared_url, RedisCluster};
    use ::redis::AsyncCommands;
    use tower_app_sessions::store::redis::{keys, RedisConfig, RedisStore};
    use tower_app_sessions::SessionId;

    async fn store() -> RedisStore {
        RedisStore::connect(RedisConfig::new(shared_url()))
            .await
            .expect("REDIS_URL answers (scripts/test starts one)")
    }

    async fn raw() -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(shared_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_patches_all_survive_on_redis() {
        let (web, token) = signed_in(store().await, CONCURRENT).await;
        concurrent_patches_all_survive(&[web], &token, CONCURRENT).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_patches_all_survive_on_a_redis_cluster() {
        let cluster = tokio::task::block_in_place(RedisCluster::start);
        let store = RedisStore::connect(RedisConfig::cluster(cluster.urls()))
            .await
            .expect("the throwaway cluster is up");
        let (web, token) = signed_in(store.clone(), CONCURRENT).await;
        concurrent_patches_all_survive(&[web], &token, CONCURRENT).await;
        crate::common::contract::store_contract(&store).await;
    }

    #[tokio::test]
    async fn bad_keys_and_values_are_refused_and_lose_nothing_on_redis() {
        let (web, token) = signed_in(store().await, 1).await;
        hostile_data(&web, &token).await;
    }

    /// The bytes in Redis: the five fields as the TypeScript apps write them, then `data`;
    /// a patch rewrites only the data member; the slide (`extend.lua`) keeps it byte for
    /// byte; no data, no field.
    #[tokio::test]
    async fn the_record_gains_one_field_last_and_the_rest_stays_byte_for_byte() {
        let users = MemoryUsers::new();
        let user = alice(&users);
        let clock = ManualClock::starting_now();
        let sessions = Sessions::new(store().await, users).clock(clock.clone());
        let web = app(
            sessions
                .layer(AppContext::Web)
                .touch_interval(Duration::from_secs(60)),
            &Arc::new(Barrier::new(1)),
        );
        let token = login(&web, user.id).await;
        let key = keys::session(&AppContext::Web, &SessionId::parse(&token).unwrap());
        let mut redis = raw().await;
        let plain: String = redis.get(&key).await.unwrap();
        assert!(!plain.contains("data"), "{plain}");
        let reply = send(
            &web,
            patch(
                "/data",
                &token,
                &json!({"theme": "dark", "pi": 1.2345678901234567}),
            ),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let with_data: String = redis.get(&key).await.unwrap();
        assert_eq!(
            with_data,
            format!(
                r#"{},"data":{{"pi":1.2345678901234567,"theme":"dark"}}}}"#,
                &plain[..plain.len() - 1]
            )
        );
        // Another patch: the untouched value keeps its text, the record's fields theirs.
        send(
            &web,
            patch("/data", &token, &json!({"theme": null, "lang": "ru"})),
        )
        .await;
        let patched: String = redis.get(&key).await.unwrap();
        assert_eq!(
            patched,
            format!(
                r#"{},"data":{{"pi":1.2345678901234567,"lang":"ru"}}}}"#,
                &plain[..plain.len() - 1]
            )
        );
        // The slide moves expires_at and the TTL, nothing else.
        clock.advance(Duration::from_secs(120));
        assert_eq!(
            send(&web, get("/me").bearer(&token).empty()).await.status,
            200
        );
        let slid: String = redis.get(&key).await.unwrap();
        let data_part = |s: &str| s[s.find(r#","data":"#).unwrap()..].to_owned();
        assert_eq!(data_part(&slid), data_part(&patched));
        assert_ne!(slid, patched, "the slide did not move expires_at");
        // Emptied: the field goes, and the record is the TypeScript apps' shape again.
        send(
            &web,
            patch("/data", &token, &json!({"pi": null, "lang": null})),
        )
        .await;
        let emptied: String = redis.get(&key).await.unwrap();
        assert!(!emptied.contains("data"), "{emptied}");
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!(ttl > 0, "the patch lost the TTL: {ttl}");
        send(&web, post("/logout").bearer(&token).empty()).await;
    }

    /// A record whose `data` is not an object (written by hand, or by another app) reads as
    /// no data: the request authenticates, `GET /data` is `{}`, and a patch replaces it.
    #[tokio::test]
    async fn malformed_data_is_no_data_not_a_failure() {
        let users = MemoryUsers::new();
        let user = alice(&users);
        let sessions = Sessions::new(store().await, users);
        let web = app(sessions.layer(AppContext::Web), &Arc::new(Barrier::new(1)));
        let id = SessionId::generate().unwrap();
        let now = tower_app_sessions::record::now_ms();
        let key = keys::session(&AppContext::Web, &id);
        let mut redis = raw().await;
        for malformed in [r#""oops""#, "[1,2]", "null", "42"] {
            let json = format!(
                r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"data":{malformed}}}"#,
                user.id,
                now + 600_000
            );
            let _: () = redis.set_ex(&key, &json, 600).await.unwrap();
            assert_eq!(
                send(&web, get("/me").bearer(id.as_str()).empty())
                    .await
                    .status,
                200,
                "{malformed}"
            );
            assert_eq!(read(&web, id.as_str()).await.len(), 0, "{malformed}");
            let reply = send(&web, patch("/data", id.as_str(), &json!({"k": 1}))).await;
            assert_eq!(reply.status, 200, "{malformed}: {}", reply.body);
            let stored: String = redis.get(&key).await.unwrap();
            assert!(
                stored.ends_with(r#","data":{"k":1}}"#),
                "{malformed}: {stored}"
            );
        }
        let _: () = redis.del(&key).await.unwrap();
    }

    /// The TypeScript apps' `RedisSessionAdapter` (its `get`, `set` and `extend`, run on
    /// node with ioredis) against records that carry data: `get` finds the user and the
    /// expiry, `extend` (a bare `EXPIRE`) keeps the data, and a record it writes back with
    /// `set` (`JSON.stringify` of what it read) keeps the data for us.
    #[tokio::test]
    async fn the_typescript_adapter_reads_and_extends_records_with_data() {
        let Some(node) = crate::common::node::with_ioredis() else {
            return;
        };
        let users = MemoryUsers::new();
        let user = alice(&users);
        let sessions = Sessions::new(store().await, users);
        let web = app(sessions.layer(AppContext::Web), &Arc::new(Barrier::new(1)));
        let token = login(&web, user.id).await;
        let reply = send(
            &web,
            patch("/data", &token, &json!({"cart": [1, 2], "theme": "dark"})),
        )
        .await;
        assert_eq!(reply.status, 200);
        let out = node.run_adapter(&shared_url(), "web", &token);
        let seen: Value = serde_json::from_str(out.trim()).expect("the adapter's JSON");
        assert_eq!(seen["get"]["user_id"], json!(user.id.to_string()));
        assert!(seen["get"]["expires_at"].as_i64().unwrap() > tower_app_sessions::record::now_ms());
        assert_eq!(
            seen["get"]["data"],
            json!({"cart": [1, 2], "theme": "dark"})
        );
        assert_eq!(seen["ttl_after_extend"], json!(3600));
        // After its extend and its set, the data is ours as before, and still patchable.
        assert_eq!(
            Value::Object(read(&web, &token).await),
            json!({"cart": [1, 2], "theme": "dark"})
        );
        let reply = send(&web, patch("/data", &token, &json!({"theme": "light"}))).await;
        assert_eq!(reply.status, 200);
        let again = node.run_adapter(&shared_url(), "web", &token);
        let seen: Value = serde_json::from_str(again.trim()).unwrap();
        assert_eq!(seen["get"]["data"]["theme"], json!("light"));
    }
}

#[cfg(all(feature = "postgres", feature = "redis"))]
mod on_postgres {
    use super::*;
    use crate::common::pg::TestDb;
    use crate::common::redis_server::shared_url;
    use tower_app_sessions::cache::InvalidationBus;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserRepository;

    async fn user(users: &PgUsers) -> Arc<User> {
        users
            .create(User::new(
                format!("data-{}@example.com", uuid::Uuid::new_v4().simple()),
                Role::User,
            ))
            .await
            .unwrap()
    }

    async fn tiered(db: &TestDb) -> TieredStore {
        let redis = RedisStore::connect(RedisConfig::new(shared_url()))
            .await
            .unwrap();
        TieredStore::new(
            Arc::new(redis),
            Arc::new(PgSessionStore::new(db.pool.clone())),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_patches_all_survive_on_postgres() {
        let db = TestDb::migrated().await;
        let users = PgUsers::new(db.pool.clone());
        let ada = user(&users).await;
        let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
        let barrier = Arc::new(Barrier::new(CONCURRENT));
        let web = app(sessions.layer(AppContext::Web), &barrier);
        let token = login(&web, ada.id).await;
        concurrent_patches_all_survive(std::slice::from_ref(&web), &token, CONCURRENT).await;
        let fresh = login(&web, ada.id).await;
        hostile_data(&web, &fresh).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_patches_all_survive_on_the_tiered_store() {
        let db = TestDb::migrated().await;
        let users = PgUsers::new(db.pool.clone());
        let ada = user(&users).await;
        let sessions = Sessions::new(tiered(&db).await, users);
        let barrier = Arc::new(Barrier::new(CONCURRENT));
        let web = app(sessions.layer(AppContext::Web), &barrier);
        let token = login(&web, ada.id).await;
        concurrent_patches_all_survive(&[web], &token, CONCURRENT).await;
        // Both tiers hold every key.
        let row: String = sqlx::query_scalar("SELECT data::text FROM sessions WHERE id = $1")
            .bind(&token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let in_pg: serde_json::Map<String, Value> = serde_json::from_str(&row).unwrap();
        assert_eq!(in_pg.len(), CONCURRENT, "{row}");
    }

    /// Two instances (two `Sessions`, each with its cache, on one Redis and one database,
    /// invalidating through Redis pub/sub): patches spread over both all survive, and each
    /// instance then reads every key, not a cached copy from before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_patches_on_two_cached_instances_all_survive() {
        let db = TestDb::migrated().await;
        let users = PgUsers::new(db.pool.clone());
        let ada = user(&users).await;
        let barrier = Arc::new(Barrier::new(CONCURRENT));
        let mut apps = Vec::new();
        // The bus on a Redis of its own: pub/sub is not scoped to the suite's database.
        let bus_server =
            tokio::task::block_in_place(crate::common::redis_server::RedisServer::start_plain);
        for _ in 0..2 {
            let bus = InvalidationBus::redis(&bus_server.url()).await.unwrap();
            let sessions = Sessions::new(tiered(&db).await, PgUsers::new(db.pool.clone())).cache(
                &bus,
                1000,
                Duration::from_secs(60),
            );
            apps.push(app(sessions.layer(AppContext::Web), &barrier));
        }
        let token = login(&apps[0], ada.id).await;
        // Fill both caches with the empty data first.
        for app in &apps {
            assert_eq!(read(app, &token).await.len(), 0);
        }
        concurrent_patches_all_survive(&apps, &token, CONCURRENT).await;
    }

    /// A row written before the migration, with the Prisma column's data (`{"theme":"dark"}`),
    /// reads as session data.
    #[tokio::test]
    async fn data_written_in_the_prisma_column_is_readable() {
        let db = TestDb::migrated().await;
        let users = PgUsers::new(db.pool.clone());
        let ada = user(&users).await;
        let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
        let web = app(sessions.layer(AppContext::Web), &Arc::new(Barrier::new(1)));
        let id = tower_app_sessions::SessionId::generate().unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, data, expires_at) \
             VALUES ($1, $2, '{\"theme\":\"dark\"}', now() + interval '1 hour')",
        )
        .bind(id.as_str())
        .bind(ada.id)
        .execute(&db.pool)
        .await
        .unwrap();
        let reply = send(&web, get("/data/theme").bearer(id.as_str()).empty()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "\"dark\"")
        );
        // A data column that is not an object is no data, and a patch replaces it.
        sqlx::query("UPDATE sessions SET data = '[1,2]' WHERE id = $1")
            .bind(id.as_str())
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(read(&web, id.as_str()).await.len(), 0);
        let reply = send(
            &web,
            patch("/data", id.as_str(), &json!({"theme": "light"})),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let stored: Value = sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(stored, json!({"theme": "light"}));
    }
}
