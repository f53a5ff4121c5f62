//! The legacy-key migration (`session:<id>` → `session:web:<id>`) on a throwaway Redis, so the
//! SCAN sees exactly the keys this test wrote. The servers have no `KEYS` command (renamed
//! away): the migration and the counts must SCAN.
#![cfg(feature = "redis")]

use crate::common;

use std::time::{Duration, Instant};

use axum::routing;
use axum::Router;
use common::redis_server::RedisServer;
use common::{get, send, Finish};
use redis::AsyncCommands;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::{MigrationMode, RedisConfig, RedisStore};
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryUsers, Role, Scope, SessionId, SessionStore, Sessions, User,
};
use uuid::Uuid;

const KEYS: usize = 10_000;

#[tokio::test]
async fn ten_thousand_legacy_keys_move_with_their_ttls_and_the_run_is_repeatable() {
    let server = RedisServer::start_without_keys();
    assert!(server.cli(&["KEYS", "*"]).contains("unknown command"));
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let store = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let user = Uuid::new_v4();
    let now = now_ms();

    // Legacy keys with TTLs spread from 100 s to ~10 000 s, as the TypeScript app wrote them.
    let mut ids = Vec::with_capacity(KEYS);
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        let id = SessionId::generate().unwrap();
        let ttl = 100 + i as i64;
        let json = format!(
            r#"{{"user_id":"{user}","created_at":{now},"expires_at":{},"ip":"203.0.113.{}","user_agent":"TS"}}"#,
            now + ttl * 1000,
            i % 250
        );
        pipe.cmd("SET")
            .arg(format!("session:{}", id.as_str()))
            .arg(json)
            .arg("EX")
            .arg(ttl)
            .ignore();
        ids.push((id, ttl));
    }
    // Keys that are not legacy sessions must be left alone.
    pipe.cmd("SET")
        .arg("session:too:many:colons")
        .arg("x")
        .ignore();
    pipe.cmd("SET")
        .arg(format!("session:{}", "b".repeat(20)))
        .arg("not json")
        .arg("EX")
        .arg(600)
        .ignore();
    let _: () = pipe.query_async(&mut raw).await.unwrap();
    assert_eq!(
        store.count_legacy_sessions().await.unwrap(),
        KEYS as u64 + 1
    );

    let started = Instant::now();
    let report = store
        .migrate_legacy(MigrationMode::Copy, 500)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "migrated {} legacy keys in {:.2} s: {:.0} keys/s",
        report.copied,
        elapsed.as_secs_f64(),
        report.copied as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(report.scanned, KEYS as u64 + 1);
    assert_eq!(report.copied, KEYS as u64);
    assert_eq!(report.failed, 1);
    assert_eq!(report.moved, 0);
    assert!(report.adds_up(), "{report:?}");
    assert_eq!(
        store.count_sessions(&AppContext::Web).await.unwrap(),
        KEYS as u64
    );

    // TTLs kept (±1 s), values byte-identical.
    for (id, ttl) in ids.iter().step_by(97) {
        let new_key = format!("session:web:{}", id.as_str());
        let got: i64 = raw.ttl(&new_key).await.unwrap();
        assert!(
            (got - ttl).abs() <= 1 + started.elapsed().as_secs() as i64,
            "ttl {got} vs {ttl}"
        );
        let old: String = raw.get(format!("session:{}", id.as_str())).await.unwrap();
        let new: String = raw.get(&new_key).await.unwrap();
        assert_eq!(old, new);
    }
    // Migrated sessions are in the user's index: revoke-all will reach them.
    let listed = store
        .list_user_sessions(&user, Scope::Context(&AppContext::Web), now_ms())
        .await
        .unwrap();
    assert_eq!(listed.len(), KEYS);

    // Rerun: nothing copied twice, nothing overwritten.
    let again = store
        .migrate_legacy(MigrationMode::Copy, 500)
        .await
        .unwrap();
    assert_eq!((again.copied, again.already_present), (0, KEYS as u64));

    // A session rotated after the copy is not clobbered by a later run.
    let (first, _) = &ids[0];
    let _: () = raw
        .set_ex(
            format!("session:web:{}", first.as_str()),
            "{\"kept\":true}",
            600,
        )
        .await
        .unwrap();

    // Move: legacy keys deleted once their copy exists; rerunnable to completion.
    let moved = store
        .migrate_legacy(MigrationMode::Move, 1000)
        .await
        .unwrap();
    // Copied now or before (the rotated one), each legacy key deleted: all moved.
    assert_eq!(
        (moved.moved, moved.copied, moved.failed),
        (KEYS as u64, 0, 1)
    );
    assert_eq!(
        store.count_legacy_sessions().await.unwrap(),
        1,
        "only the invalid one is left"
    );
    let kept: String = raw
        .get(format!("session:web:{}", first.as_str()))
        .await
        .unwrap();
    assert_eq!(kept, "{\"kept\":true}");
    let last = store
        .migrate_legacy(MigrationMode::Move, 1000)
        .await
        .unwrap();
    assert_eq!((last.copied, last.moved, last.failed), (0, 0, 1));
    assert_eq!(
        raw.get::<_, Option<String>>("session:too:many:colons")
            .await
            .unwrap()
            .as_deref(),
        Some("x")
    );
}

#[tokio::test]
async fn migrated_sessions_open_web_with_the_fallback_off() {
    let server = RedisServer::start_without_keys();
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let store = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();
    let now = now_ms();
    let id = SessionId::generate().unwrap();
    let json = format!(
        r#"{{"user_id":"{}","created_at":{now},"expires_at":{}}}"#,
        alice.id,
        now + 60_000
    );
    let _: () = raw
        .set_ex(format!("session:{}", id.as_str()), json, 60)
        .await
        .unwrap();

    let sessions = Sessions::new(store.clone(), users);
    let me = || routing::get(|u: CurrentUser<User>| async move { u.email.clone() });
    let web = Router::new()
        .route("/me", me())
        .layer(sessions.layer(AppContext::Web));
    let admin = Router::new()
        .route("/me", me())
        .layer(sessions.layer(AppContext::Admin));
    assert_eq!(
        send(&web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401,
        "fallback is off"
    );

    store
        .migrate_legacy(MigrationMode::Move, 100)
        .await
        .unwrap();
    assert_eq!(
        send(&web, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&admin, get("/me").bearer(id.as_str()).empty())
            .await
            .status,
        401
    );
    assert!(store
        .load(&AppContext::Web, &id, now_ms())
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A migration killed midway (its task aborted at whatever await it was in: between a copy and
/// the deletion of its legacy key, say) loses nothing: rerun, every session is under its new
/// key with the bytes the TypeScript app wrote, and no legacy key is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_loses_nothing_and_the_rerun_finishes_it() {
    const N: usize = 5_000;
    let server = RedisServer::start_without_keys();
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let store = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let now = now_ms();
    let mut written = Vec::with_capacity(N);
    let mut pipe = redis::pipe();
    for i in 0..N {
        let id = SessionId::generate().unwrap();
        let json = format!(
            r#"{{"user_id":"{}","created_at":{now},"expires_at":{},"ip":"203.0.113.{}"}}"#,
            Uuid::new_v4(),
            now + 3_600_000,
            i % 250
        );
        pipe.cmd("SET")
            .arg(format!("session:{}", id.as_str()))
            .arg(&json)
            .arg("EX")
            .arg(3600)
            .ignore();
        written.push((id, json));
    }
    let _: () = pipe.query_async(&mut raw).await.unwrap();
    let sets_before = server.calls("set");

    // Move, in small pages; abort the task once a fifth of the keys are copied.
    let migrating = {
        let store = store.clone();
        tokio::spawn(async move { store.migrate_legacy(MigrationMode::Move, 20).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.calls("set") - sets_before < (N / 5) as u64 {
        assert!(
            !migrating.is_finished(),
            "the migration finished before it could be cut"
        );
        assert!(Instant::now() < deadline, "the migration made no progress");
        tokio::task::yield_now().await;
    }
    migrating.abort();
    assert!(migrating.await.unwrap_err().is_cancelled());
    let copied = server.calls("set") - sets_before;
    let legacy_left = store.count_legacy_sessions().await.unwrap();
    eprintln!("cut after {copied} copies; {legacy_left} legacy keys left");
    assert!(
        (copied as usize) < N && legacy_left > 0,
        "the cut came after the end: {copied} copies, {legacy_left} legacy keys left"
    );

    // Every session is still somewhere: under its legacy key, its new key, or both.
    for (id, json) in &written {
        let old: Option<String> = raw.get(format!("session:{}", id.as_str())).await.unwrap();
        let new: Option<String> = raw
            .get(format!("session:web:{}", id.as_str()))
            .await
            .unwrap();
        assert!(
            old.as_ref() == Some(json) || new.as_ref() == Some(json),
            "a session was lost by the cut"
        );
    }

    // The rerun finishes the job: all moved, bytes and TTLs kept, nothing legacy left.
    let rerun = store
        .migrate_legacy(MigrationMode::Move, 500)
        .await
        .unwrap();
    assert_eq!(rerun.moved, legacy_left);
    assert_eq!(store.count_legacy_sessions().await.unwrap(), 0);
    assert_eq!(
        store.count_sessions(&AppContext::Web).await.unwrap(),
        N as u64
    );
    for (id, json) in &written {
        let key = format!("session:web:{}", id.as_str());
        let new: Option<String> = raw.get(&key).await.unwrap();
        assert_eq!(new.as_ref(), Some(json));
        let ttl: i64 = raw.ttl(&key).await.unwrap();
        assert!((3000..=3600).contains(&ttl), "ttl {ttl}");
    }
}
