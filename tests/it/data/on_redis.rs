//! Session data on Redis: the limits, all or nothing and the race with a rotation on a
//! real server, the wire format byte for byte, other writers' records, and the TypeScript
//! apps' adapter.

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

/// The `data` member of the record stored under `token`: its length in compact JSON
/// and as Redis holds it.
pub(super) async fn stored_data(token: &str) -> (usize, usize) {
    let key = keys::session(&AppContext::Web, &SessionId::parse(token).unwrap());
    let json: String = raw().await.get(&key).await.unwrap();
    #[derive(serde::Deserialize)]
    struct Record<'a> {
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    let record: Record<'_> = serde_json::from_str(&json).unwrap();
    let data = record.data.map_or("{}", |d| d.get());
    let compact = serde_json::from_str::<Value>(data).unwrap().to_string();
    (compact.len(), data.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_redis() {
    let (web, token, _) = signed_in(store().await, CONCURRENT).await;
    concurrent_patches_all_survive(
        std::slice::from_ref(&web),
        std::slice::from_ref(&web),
        &token,
        CONCURRENT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_writers_store_no_more_than_the_limit_on_redis() {
    let (web, token, _) = signed_in(store().await, WRITERS).await;
    writers_stay_within_the_limit(&web, &token, WRITERS).await;
    let (compact, as_stored) = stored_data(&token).await;
    within_the_limit("Redis", compact, as_stored);
    send(&web, post("/logout").bearer(&token).empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_a_redis_cluster() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let store = RedisStore::connect(RedisConfig::cluster(cluster.urls()))
        .await
        .expect("the throwaway cluster is up");
    let (web, token, _) = signed_in(store.clone(), CONCURRENT).await;
    concurrent_patches_all_survive(
        std::slice::from_ref(&web),
        std::slice::from_ref(&web),
        &token,
        CONCURRENT,
    )
    .await;
    tower_app_sessions::testing::check_store(|| async { store.clone() })
        .await
        .assert_ok();
}

#[tokio::test]
async fn bad_keys_and_values_are_refused_and_lose_nothing_on_redis() {
    let (web, token, _) = signed_in(store().await, 1).await;
    hostile_data(&web, &token).await;
}

#[tokio::test]
async fn an_error_answer_or_a_refused_change_stores_nothing_on_redis() {
    let (web, token, _) = signed_in(store().await, 1).await;
    all_or_nothing(&web, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_lost_a_race_with_a_rotation_keeps_the_cookie_on_redis() {
    for rotation in ROTATIONS {
        let (web, token, holds) = signed_in(store().await, 1).await;
        a_save_racing_a_rotation_keeps_the_new_cookie(&web, &holds, &token, rotation).await;
    }
}

/// Keys another writer stored escaped (`"th\u0065me"` is `theme`) are the same keys:
/// a patch removes or replaces them, and the data keeps a single copy.
#[tokio::test]
async fn keys_another_writer_escaped_are_removed_and_replaced() {
    let users = MemoryUsers::new();
    let user = alice(&users);
    let sessions = Sessions::new(store().await, users);
    let web = app(sessions.layer(AppContext::Web), &Holds::new(1));
    let id = SessionId::generate().unwrap();
    let now = tower_app_sessions::record::now_ms();
    let key = keys::session(&AppContext::Web, &id);
    let mut redis = raw().await;
    let record = |data: &str| {
        format!(
            r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"data":{data}}}"#,
            user.id,
            now + 600_000
        )
    };
    let table = [
        (
            r#"{"th\u0065me":"dark","kept":1}"#,
            json!({"theme": null}),
            json!({"kept": 1}),
        ),
        (
            r#"{"th\u0065me":"dark","kept":1}"#,
            json!({"theme": "light"}),
            json!({"kept": 1, "theme": "light"}),
        ),
        (
            r#"{"\u0074heme":1,"theme":2}"#,
            json!({"theme": null}),
            json!({}),
        ),
        (
            r#"{"c\u0061rt":[1]}"#,
            json!({"cart": [2]}),
            json!({"cart": [2]}),
        ),
    ];
    for (stored, change, expected) in table {
        let _: () = redis.set_ex(&key, record(stored), 600).await.unwrap();
        let reply = send(&web, patch("/data", id.as_str(), &change)).await;
        assert_eq!(reply.status, 200, "{stored} {change}: {}", reply.body);
        let now_stored: String = redis.get(&key).await.unwrap();
        let parsed: Value = serde_json::from_str(&now_stored).unwrap();
        assert_eq!(
            parsed.get("data").cloned().unwrap_or(json!({})),
            expected,
            "{stored} {change}: {now_stored}"
        );
        // Once only: no escaped copy of the key is left in the text either.
        assert!(
            !now_stored.contains("\\u00"),
            "{stored} {change}: {now_stored}"
        );
    }
    let _: () = redis.del(&key).await.unwrap();
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
        &Holds::new(1),
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
    let web = app(sessions.layer(AppContext::Web), &Holds::new(1));
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
    let web = app(sessions.layer(AppContext::Web), &Holds::new(1));
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
