//! The Redis backend against a real server (`REDIS_URL`, default `redis://127.0.0.1:6379`):
//! the store contract, the TypeScript apps' wire format in both directions, isolation, the
//! legacy fallback, per-user operations at scale.
#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::redis_server::shared_url;
use common::{get, post, routes, send, Finish};
use redis::AsyncCommands;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::require::UNAUTHORIZED_BODY;
use tower_app_sessions::store::redis::{keys, RedisConfig, RedisStore};
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, Scope, SessionId, SessionLayer, SessionMetadata, SessionStore,
    Sessions, User,
};
use uuid::Uuid;

async fn store() -> RedisStore {
    RedisStore::connect(RedisConfig::new(shared_url()))
        .await
        .expect("REDIS_URL answers (scripts/test starts one)")
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(shared_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

struct App {
    alice: Arc<User>,
    root: Arc<User>,
    users: MemoryUsers,
    web: Router,
    admin: Router,
    /// The layers' clock; it stands at the real time until a test moves it.
    clock: ManualClock,
}

async fn app(configure: impl Fn(SessionLayer) -> SessionLayer) -> App {
    let store = store().await;
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new(
            format!("alice-{}@example.com", Uuid::new_v4()),
            Role::User,
        ))
        .unwrap();
    let root = users
        .insert(User::new(
            format!("root-{}@example.com", Uuid::new_v4()),
            Role::Admin,
        ))
        .unwrap();
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store.clone(), users.clone()).clock(clock.clone());
    App {
        web: routes().layer(configure(sessions.layer(AppContext::Web))),
        admin: routes().layer(configure(
            sessions.layer(AppContext::Admin).cookie_name("admin_sid"),
        )),
        alice,
        root,
        users,
        clock,
    }
}

impl App {
    async fn login(&self, router: &Router, user: &User) -> String {
        common::login(router, user.id).await
    }
}

/// What `RedisSessionAdapter.set` stores: `JSON.stringify(sessionData)`.
fn seed_json(user_id: Uuid, created_at: i64, expires_at: i64) -> String {
    format!(
        r#"{{"user_id":"{user_id}","created_at":{created_at},"expires_at":{expires_at},"ip":"203.0.113.7","user_agent":"Mozilla/5.0 (TypeScript app)"}}"#
    )
}

#[tokio::test]
async fn the_store_keeps_the_contract() {
    tower_app_sessions::testing::check_store(store)
        .await
        .assert_ok();
}

/// `mock-with-write-through`: reads from memory, every write also to Redis.
#[tokio::test]
async fn write_through_to_redis_keeps_the_contract() {
    use std::sync::Arc;
    use tower_app_sessions::store::WriteThroughStore;
    tower_app_sessions::testing::Contract::new()
        .ready_loads()
        .check(|| async {
            WriteThroughStore::new(
                Arc::new(tower_app_sessions::MemoryStore::new()),
                Arc::new(store().await),
            )
        })
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_session_written_by_the_typescript_app_is_resolved() {
    let app = app(|l| l).await;
    let id = SessionId::generate().unwrap();
    let now = now_ms();
    let mut redis = raw().await;
    let _: () = redis
        .set_ex(
            format!("session:web:{}", id.as_str()),
            seed_json(app.alice.id, now, now + 3_600_000),
            3600,
        )
        .await
        .unwrap();
    let reply = send(
        &app.web,
        get("/me").cookie("sessionId", id.as_str()).empty(),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, app.alice.email.as_str())
    );
    let reply = send(&app.web, get("/me").bearer(id.as_str()).empty()).await;
    assert_eq!(reply.status, 200);
    // the TypeScript app's admin panel key space is separate
    assert_eq!(
        send(&app.admin, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_session_the_layer_creates_is_what_the_typescript_app_reads() {
    let app = app(|l| l.idle_timeout(Duration::from_secs(900))).await;
    let token = app.login(&app.web, &app.alice).await;
    let key = format!("session:web:{token}");
    let mut redis = raw().await;
    let value: String = redis.get(&key).await.unwrap();
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((899..=900).contains(&ttl), "EX ttl {ttl}");

    let json: serde_json::Value = serde_json::from_str(&value).unwrap();
    let object = json.as_object().unwrap();
    let names: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["created_at", "expires_at", "ip", "user_agent", "user_id"]
    );
    assert_eq!(object["user_id"], app.alice.id.to_string());
    assert_eq!(object["ip"], "198.51.100.4");
    let (created, expires) = (
        object["created_at"].as_i64().unwrap(),
        object["expires_at"].as_i64().unwrap(),
    );
    assert_eq!(expires - created, 900_000);
    // Field order as JSON.stringify writes the TypeScript apps' object literal.
    assert!(
        value.starts_with(&format!(
            r#"{{"user_id":"{}","created_at":{created},"expires_at":{expires},"#,
            app.alice.id
        )),
        "{value}"
    );
    // the TypeScript reader's check: parsed.expires_at < Date.now() is false
    assert!(expires > now_ms());
    assert!(!redis
        .exists::<_, bool>(format!("session:admin:{token}"))
        .await
        .unwrap());
}

#[tokio::test]
async fn isolation_web_admin_both_ways_by_cookie_and_bearer() {
    let app = app(|l| l).await;
    let web = app.login(&app.web, &app.root).await;
    let admin = app.login(&app.admin, &app.root).await;
    assert_eq!(
        send(&app.web, get("/me").cookie("sessionId", &web).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app.admin, get("/me").cookie("admin_sid", &admin).empty())
            .await
            .status,
        200
    );
    for (router, cookie, foreign) in [
        (&app.admin, "admin_sid", &web),
        (&app.web, "sessionId", &admin),
    ] {
        let reply = send(router, get("/me").cookie(cookie, foreign).empty()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (401, UNAUTHORIZED_BODY)
        );
        let reply = send(router, get("/me").bearer(foreign).empty()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (401, UNAUTHORIZED_BODY)
        );
    }
}

#[tokio::test]
async fn legacy_keys_open_web_only_while_the_fallback_is_on() {
    let with_fallback = app(|l| l.legacy_fallback(true)).await;
    let id = SessionId::generate().unwrap();
    let now = now_ms();
    let mut redis = raw().await;
    let legacy_key = format!("session:{}", id.as_str());
    let _: () = redis
        .set_ex(
            &legacy_key,
            seed_json(with_fallback.root.id, now, now + 600_000),
            600,
        )
        .await
        .unwrap();

    // The legacy (pre-migration) session opens the web app...
    let reply = send(&with_fallback.web, get("/me").bearer(id.as_str()).empty()).await;
    assert_eq!(reply.status, 200);
    // ...never the admin panel, even with the fallback switched on for that layer,
    assert_eq!(
        send(&with_fallback.admin, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401
    );
    // and nothing once the fallback is off (the migration plan's cleanup stage): the same store and
    // the same users, only the switch differs.
    let without = routes().layer(
        Sessions::new(store().await, with_fallback.users.clone())
            .layer(AppContext::Web)
            .legacy_fallback(false),
    );
    let reply = send(&without, get("/me").bearer(id.as_str()).empty()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (401, UNAUTHORIZED_BODY)
    );
    assert_eq!(
        send(&with_fallback.web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        200,
        "the session itself is still good"
    );

    // Explicitly naming another context enables it there (and only there).
    let store = store().await;
    let users = MemoryUsers::new();
    users.insert((*with_fallback.root).clone()).unwrap();
    let admin_opt_in = routes().layer(
        Sessions::new(store, users)
            .layer(AppContext::Admin)
            .legacy_fallback_contexts([AppContext::Admin]),
    );
    assert_eq!(
        send(&admin_opt_in, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        200
    );

    // Logging in from a legacy session writes the new one under the context key and
    // deletes the legacy key (fixation).
    let reply = send(
        &with_fallback.web,
        post(&format!("/login/{}", with_fallback.root.id))
            .cookie("sessionId", id.as_str())
            .empty(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(!redis.exists::<_, bool>(&legacy_key).await.unwrap());
    assert!(redis
        .exists::<_, bool>(format!("session:web:{}", reply.body))
        .await
        .unwrap());
}

#[tokio::test]
async fn sliding_rewrites_expires_at_and_the_ttl_keeping_the_writers_bytes() {
    let app = app(|l| {
        l.idle_timeout(Duration::from_secs(60))
            .touch_interval(Duration::from_secs(10))
    })
    .await;
    let id = SessionId::generate().unwrap();
    let now = app.clock.now_ms();
    let key = format!("session:web:{}", id.as_str());
    // A TypeScript-written record with a field we do not know, and a 30 s TTL: extended
    // 30 s before `now` as far as the layer can tell (expires_at - idle), so a slide is due.
    let original = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"ip":"203.0.113.7","user_agent":"TS","theme":"dark"}}"#,
        app.alice.id,
        now + 30_000
    );
    let mut redis = raw().await;
    let _: () = redis.set_ex(&key, &original, 30).await.unwrap();
    let reply = send(&app.web, get("/me").bearer(id.as_str()).empty()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.set_cookies.is_empty(), "a slide sets no cookie");

    let value: String = redis.get(&key).await.unwrap();
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((31..=60).contains(&ttl), "TTL moved with the slide: {ttl}");
    let expires = serde_json::from_str::<serde_json::Value>(&value).unwrap()["expires_at"]
        .as_i64()
        .unwrap();
    assert_eq!(expires, now + 60_000, "expires_at moved to now + idle");
    let expected = original.replace(
        &format!("\"expires_at\":{}", now + 30_000),
        &format!("\"expires_at\":{expires}"),
    );
    assert_eq!(value, expected, "every other byte is the writer's");
}

#[tokio::test]
async fn an_unparseable_value_is_a_miss_not_deleted_never_a_500() {
    let app = app(|l| l).await;
    let mut redis = raw().await;
    for (n, garbage) in ["not json", "{\"user_id\":42}", "[]", "\u{0}\u{1}binary"]
        .into_iter()
        .enumerate()
    {
        let id = SessionId::generate().unwrap();
        let key = format!("session:web:{}", id.as_str());
        let _: () = redis.set_ex(&key, garbage, 60).await.unwrap();
        let reply = send(&app.web, get("/me").bearer(id.as_str()).empty()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (401, UNAUTHORIZED_BODY),
            "case {n}"
        );
        assert!(
            redis.exists::<_, bool>(&key).await.unwrap(),
            "case {n}: deleted"
        );
    }
}

#[tokio::test]
async fn an_expired_record_whose_key_lives_on_is_rejected_and_deleted() {
    let app = app(|l| l).await;
    let id = SessionId::generate().unwrap();
    let key = format!("session:web:{}", id.as_str());
    let now = now_ms();
    let mut redis = raw().await;
    // The TypeScript apps' extend() moved only the TTL: the key lives, expires_at is past.
    let _: () = redis
        .set_ex(
            &key,
            seed_json(app.alice.id, now - 20_000, now - 1_000),
            600,
        )
        .await
        .unwrap();
    assert_eq!(
        send(&app.web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401
    );
    assert!(!redis.exists::<_, bool>(&key).await.unwrap());
}

#[tokio::test]
async fn logout_deletes_the_key_at_once() {
    let app = app(|l| l).await;
    let token = app.login(&app.web, &app.alice).await;
    let reply = send(
        &app.web,
        post("/logout").cookie("sessionId", &token).empty(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let mut redis = raw().await;
    assert!(!redis
        .exists::<_, bool>(format!("session:web:{token}"))
        .await
        .unwrap());
    assert_eq!(
        send(&app.web, get("/me").cookie("sessionId", &token).empty())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn revoke_all_and_list_with_a_thousand_sessions() {
    let store = store().await;
    let user = Uuid::new_v4();
    let now = now_ms();
    let record = tower_app_sessions::SessionRecord::new(
        user,
        SessionMetadata::new().ip("192.0.2.1"),
        now,
        Duration::from_secs(600),
    );
    let mut ids = Vec::new();
    for i in 0..1000 {
        let ctx = if i % 4 == 0 {
            AppContext::Admin
        } else {
            AppContext::Web
        };
        let id = SessionId::generate().unwrap();
        store.save(&ctx, &id, &record, now).await.unwrap();
        ids.push((ctx, id));
    }
    let index_key = keys::user_index(&user);
    assert!(!index_key.starts_with("session:"));
    let mut redis = raw().await;
    assert_eq!(redis.zcard::<_, u64>(&index_key).await.unwrap(), 1000);

    let listed = store
        .list_user_sessions(&user, Scope::AllContexts, now)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1000);
    assert!(listed
        .iter()
        .all(|s| s.record.ip.as_deref() == Some("192.0.2.1")));
    let web = store
        .list_user_sessions(&user, Scope::Context(&AppContext::Web), now)
        .await
        .unwrap();
    assert_eq!(web.len(), 750);

    assert_eq!(
        store
            .delete_user_sessions(&user, Scope::Context(&AppContext::Admin), now)
            .await
            .unwrap(),
        250
    );
    assert!(store
        .load(&AppContext::Admin, &ids[0].1, now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .load(&AppContext::Web, &ids[1].1, now)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .delete_user_sessions(&user, Scope::AllContexts, now)
            .await
            .unwrap(),
        750
    );
    for (ctx, id) in ids.iter().step_by(37) {
        assert!(store.load(ctx, id, now).await.unwrap().is_none());
    }
    assert!(store
        .list_user_sessions(&user, Scope::AllContexts, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        redis.zcard::<_, u64>(&index_key).await.unwrap(),
        0,
        "index emptied"
    );
}

#[tokio::test]
async fn the_user_index_prunes_dead_members_and_expires() {
    let store = store().await;
    let user = Uuid::new_v4();
    let t = now_ms();
    let minute = Duration::from_secs(60);
    let short = tower_app_sessions::SessionRecord::new(user, SessionMetadata::new(), t, minute);
    for _ in 0..5 {
        store
            .save(&AppContext::Web, &SessionId::generate().unwrap(), &short, t)
            .await
            .unwrap();
    }
    let index_key = keys::user_index(&user);
    let mut redis = raw().await;
    // PEXPIREAT the last session's expires_at: Redis drops the index with it.
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&index_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        expire_at, short.expires_at,
        "index expires with the last session"
    );

    // A write after those sessions expired (as its `now` says) prunes them from the index.
    let later = short.expires_at;
    let long = tower_app_sessions::SessionRecord::new(
        user,
        SessionMetadata::new(),
        later,
        Duration::from_secs(600),
    );
    store
        .save(
            &AppContext::Web,
            &SessionId::generate().unwrap(),
            &long,
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        redis.zcard::<_, u64>(&index_key).await.unwrap(),
        1,
        "dead members pruned on write"
    );
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&index_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        expire_at, long.expires_at,
        "the index lives as long as its last member"
    );
    let _: () = redis.del(&index_key).await.unwrap();
}

#[tokio::test]
async fn a_slid_session_stays_in_its_users_index() {
    // The index score follows the slide: after the session's original expiry, revoke-all and
    // listing still see it.
    let store = store().await;
    let user = Uuid::new_v4();
    let id = SessionId::generate().unwrap();
    let t = now_ms();
    let record = tower_app_sessions::SessionRecord::new(
        user,
        SessionMetadata::new(),
        t,
        Duration::from_secs(60),
    );
    store.save(&AppContext::Web, &id, &record, t).await.unwrap();
    assert!(store
        .extend(&AppContext::Web, &id, t + 600_000, t)
        .await
        .unwrap());
    // Past the original expiry, as the clock of the callers says.
    let after = record.expires_at + 1_000;
    assert!(store
        .load(&AppContext::Web, &id, after)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .list_user_sessions(&user, Scope::AllContexts, after)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .delete_user_sessions(&user, Scope::AllContexts, after)
            .await
            .unwrap(),
        1
    );
    assert!(store
        .load(&AppContext::Web, &id, after)
        .await
        .unwrap()
        .is_none());
    // An expired record is never extended, even while its key lives on.
    let stale = SessionId::generate().unwrap();
    let mut redis = raw().await;
    let _: () = redis
        .set_ex(
            format!("session:web:{}", stale.as_str()),
            seed_json(user, t - 10_000, t - 1),
            60,
        )
        .await
        .unwrap();
    assert!(!store
        .extend(&AppContext::Web, &stale, t + 60_000, t)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_logout_also_deletes_the_legacy_copy_while_the_fallback_is_on() {
    // After migrate_legacy(Copy), a session exists under both keys; logging out must kill
    // both, or the fallback would revive it.
    let app = app(|l| l.legacy_fallback(true)).await;
    let id = SessionId::generate().unwrap();
    let now = now_ms();
    let json = seed_json(app.alice.id, now, now + 600_000);
    let mut redis = raw().await;
    let _: () = redis
        .set_ex(format!("session:{}", id.as_str()), &json, 600)
        .await
        .unwrap();
    let _: () = redis
        .set_ex(format!("session:web:{}", id.as_str()), &json, 600)
        .await
        .unwrap();
    assert_eq!(
        send(&app.web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        200
    );
    let reply = send(&app.web, post("/logout").bearer(id.as_str()).empty()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        send(&app.web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401
    );
    assert!(!redis
        .exists::<_, bool>(format!("session:{}", id.as_str()))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_or_a_data_save_never_revives_a_session_ended_while_the_request_ran() {
    use common::races::{held_racing, routes as race_routes, Gate, ENDERS, HELD};
    let users = MemoryUsers::new();
    let sessions = Sessions::new(store().await, users.clone());
    let gate = Gate::new();
    let app = race_routes(gate.clone()).layer(sessions.layer(AppContext::Web));
    for ender in ENDERS {
        let user = users
            .insert(User::new(
                format!("{ender:?}-{}@example.com", Uuid::new_v4()),
                Role::User,
            ))
            .unwrap();
        for held in HELD {
            held_racing(&sessions, &app, &gate, user.id, ender, held).await;
        }
    }
}

/// The move's guard against a revoke-all that overlaps it: while the user's revocation
/// count is odd (a revocation is running), a rotation ends the session instead of moving it.
#[tokio::test]
async fn a_rotation_during_a_running_revocation_ends_the_session() {
    let store = store().await;
    let user = Uuid::new_v4();
    let id = SessionId::generate().unwrap();
    let now = now_ms();
    let record = tower_app_sessions::SessionRecord::new(
        user,
        SessionMetadata::new(),
        now,
        Duration::from_secs(60),
    );
    store
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    let mut redis = raw().await;
    let counter = keys::user_revocations(&user);
    let _: i64 = redis.incr(&counter, 1).await.unwrap();
    let new = SessionId::generate().unwrap();
    let moved = store
        .rotate(&AppContext::Web, &id, &new, &user, now)
        .await
        .unwrap();
    assert_eq!(moved, None);
    assert_eq!(store.load(&AppContext::Web, &id, now).await.unwrap(), None);
    assert_eq!(store.load(&AppContext::Web, &new, now).await.unwrap(), None);
    // Once it is over (even again), rotations move.
    let _: i64 = redis.incr(&counter, 1).await.unwrap();
    store
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    let moved = store
        .rotate(&AppContext::Web, &id, &new, &user, now)
        .await
        .unwrap();
    assert_eq!(moved, Some(record));
    assert!(store
        .load(&AppContext::Web, &new, now)
        .await
        .unwrap()
        .is_some());
    let _: () = redis.del(&counter).await.unwrap();
    store.delete(&AppContext::Web, &new, now).await.unwrap();
}

/// Rotating a session the TypeScript app wrote keeps its bytes (fields we do not know
/// included) under the new key, with its TTL.
#[tokio::test]
async fn a_rotated_typescript_session_keeps_its_bytes() {
    let app = app(|l| l).await;
    let id = SessionId::generate().unwrap();
    let now = app.clock.now_ms();
    let original = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"theme":"dark"}}"#,
        app.alice.id,
        now + 600_000
    );
    let mut redis = raw().await;
    let _: () = redis
        .set_ex(format!("session:web:{}", id.as_str()), &original, 600)
        .await
        .unwrap();
    let store = store().await;
    let new = SessionId::generate().unwrap();
    assert!(store
        .rotate(&AppContext::Web, &id, &new, &app.alice.id, now)
        .await
        .unwrap()
        .is_some());
    let moved: String = redis
        .get(format!("session:web:{}", new.as_str()))
        .await
        .unwrap();
    assert_eq!(moved, original);
    let ttl: i64 = redis
        .ttl(format!("session:web:{}", new.as_str()))
        .await
        .unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    assert!(!redis
        .exists::<_, bool>(format!("session:web:{}", id.as_str()))
        .await
        .unwrap());
    store.delete(&AppContext::Web, &new, now).await.unwrap();
}

#[tokio::test]
async fn the_per_user_session_limit_holds_on_redis() {
    let users = MemoryUsers::new();
    let a = users
        .insert(User::new(
            format!("a-{}@example.com", Uuid::new_v4()),
            Role::User,
        ))
        .unwrap();
    let b = users
        .insert(User::new(
            format!("b-{}@example.com", Uuid::new_v4()),
            Role::User,
        ))
        .unwrap();
    common::limits::per_user_limit(Sessions::new(store().await, users), a.id, b.id).await;
}
