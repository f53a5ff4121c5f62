//! Metrics through the public API: a scripted sequence (logins in both apps, a
//! foreign-context replay, a malformed cookie, a logout, an expiry, a refused user, a
//! backend outage) leaves exactly the expected counters, read from `metrics-util`'s
//! debugging recorder; the cache counts its hits, misses and invalidations; every backend
//! times each operation it runs under its own `backend` and `op` labels.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_app_sessions::cache::InvalidationBus;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::telemetry::{
    AUTH_DURATION_SECONDS, CACHE_TOTAL, EVENTS_TOTAL, REQUESTS_TOTAL, STORE_DURATION_SECONDS,
};
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, SessionId, SessionMetadata, SessionRecord, SessionStore,
    Sessions, User,
};

use crate::common::{get, login_at, post, routes, send, CountingStore, Finish};

/// `(name, label values joined by ",")` → counter value; histograms → sample count.
fn values(snapshotter: &Snapshotter) -> BTreeMap<(String, String), u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => return None,
            };
            (n > 0).then(|| ((key.name().to_owned(), labels.join(",")), n))
        })
        .collect()
}

/// Both apps, timing every request (the default samples the answers made without waiting).
fn apps(sessions: &Sessions) -> Router {
    let web = sessions.layer(AppContext::Web).timing_sample(1);
    let admin = sessions
        .layer(AppContext::Admin)
        .admit_roles([Role::Admin])
        .timing_sample(1);
    Router::new()
        .nest("/web", routes().layer(web))
        .nest("/admin", routes().layer(admin))
}

#[tokio::test]
async fn a_scripted_sequence_leaves_exactly_the_expected_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("metrics@example.com", Role::User))
        .unwrap()
        .id;
    let store = CountingStore::default();
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store.clone(), users).clock(clock.clone());
    // Layers register their handles when built: with the recorder in place.
    let app = metrics::with_local_recorder(&recorder, || apps(&sessions));

    let anonymous = send(&app, get("/web/me").empty()).await;
    assert_eq!(anonymous.status, 401);
    let web = login_at(&app, "/web", user).await;
    let admin = login_at(&app, "/admin", user).await;
    assert_eq!(
        send(&app, get("/web/me").bearer(&web).empty()).await.status,
        200
    );
    // Refused by the admin policy; the web session replayed on admin; a malformed cookie.
    assert_eq!(
        send(&app, get("/admin/me").bearer(&admin).empty())
            .await
            .status,
        401
    );
    assert_eq!(
        send(&app, get("/admin/me").bearer(&web).empty())
            .await
            .status,
        401
    );
    let malformed = get("/web/me").cookie("sessionId", "bad!value").empty();
    assert_eq!(send(&app, malformed).await.status, 401);
    // A logout, then the old token.
    assert_eq!(
        send(&app, post("/web/logout").bearer(&web).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app, get("/web/me").bearer(&web).empty()).await.status,
        401
    );
    // A session the store kept past the absolute lifetime.
    let old = SessionId::generate().unwrap();
    let now = sessions.now();
    let mut record = SessionRecord::new(
        user,
        SessionMetadata::new(),
        now - 8 * 24 * 3_600_000,
        Duration::from_secs(3600),
    );
    record.expires_at = now + 3_600_000;
    store
        .save(&AppContext::Web, &old, &record, now)
        .await
        .unwrap();
    assert_eq!(
        send(&app, get("/web/me").bearer(old.as_str()).empty())
            .await
            .status,
        401
    );
    // The store down.
    let again = login_at(&app, "/web", user).await;
    store.set_failing(true);
    assert_eq!(
        send(&app, get("/web/me").bearer(&again).empty())
            .await
            .status,
        503
    );
    store.set_failing(false);
    // A cross-site write with the session cookie: refused before any lookup.
    let cross_site = post("/web/logout")
        .cookie("sessionId", &again)
        .header("sec-fetch-site", "cross-site")
        .empty();
    assert_eq!(send(&app, cross_site).await.status, 403);

    let got = values(&snapshotter);
    let expected: BTreeMap<(String, String), u64> = [
        (REQUESTS_TOTAL, "context=web,outcome=none", 3),
        (REQUESTS_TOTAL, "context=web,outcome=authenticated", 2),
        (REQUESTS_TOTAL, "context=web,outcome=malformed", 1),
        (REQUESTS_TOTAL, "context=web,outcome=unknown", 1),
        (REQUESTS_TOTAL, "context=web,outcome=expired", 1),
        (REQUESTS_TOTAL, "context=web,outcome=error", 1),
        (REQUESTS_TOTAL, "context=web,outcome=refused", 1),
        (REQUESTS_TOTAL, "context=admin,outcome=none", 1),
        (REQUESTS_TOTAL, "context=admin,outcome=refused", 1),
        (REQUESTS_TOTAL, "context=admin,outcome=unknown", 1),
        (EVENTS_TOTAL, "context=web,event=created", 2),
        (EVENTS_TOTAL, "context=web,event=logged_out", 1),
        (EVENTS_TOTAL, "context=web,event=unknown_credential", 2),
        (EVENTS_TOTAL, "context=web,event=expired", 1),
        (EVENTS_TOTAL, "context=web,event=backend_error", 1),
        (EVENTS_TOTAL, "context=admin,event=created", 1),
        (EVENTS_TOTAL, "context=admin,event=refused", 1),
        (EVENTS_TOTAL, "context=admin,event=unknown_credential", 1),
        // Every request with a well-formed credential is timed (source store: no cache);
        // a malformed one is never looked up.
        (AUTH_DURATION_SECONDS, "context=web,source=store", 5),
        (AUTH_DURATION_SECONDS, "context=admin,source=store", 2),
    ]
    .into_iter()
    .map(|(name, labels, n)| ((name.to_owned(), labels.to_owned()), n))
    .collect();
    assert_eq!(got, expected);
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn the_cache_counts_hits_and_misses() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("cached@example.com", Role::User))
        .unwrap()
        .id;
    let bus = InvalidationBus::local();
    let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users).cache(
        &bus,
        1000,
        Duration::from_secs(60),
    );
    let app = metrics::with_local_recorder(&recorder, || apps(&sessions));
    let token = login_at(&app, "/web", user).await;
    for _ in 0..3 {
        assert_eq!(
            send(&app, get("/web/me").bearer(&token).empty())
                .await
                .status,
            200
        );
    }
    let got = values(&snapshotter);
    let count = |labels: &str| {
        got.get(&(CACHE_TOTAL.to_owned(), labels.to_owned()))
            .copied()
    };
    // The first request misses (and fills the cache), the next two hit.
    assert_eq!(count("context=web,result=miss"), Some(1), "{got:?}");
    assert_eq!(count("context=web,result=hit"), Some(2), "{got:?}");
    let timed = |source: &str| {
        got.get(&(
            AUTH_DURATION_SECONDS.to_owned(),
            format!("context=web,source={source}"),
        ))
        .copied()
    };
    assert_eq!(timed("cache"), Some(2), "{got:?}");
    assert_eq!(timed("store"), Some(1), "{got:?}");
    assert_eq!(count("context=web,result=invalidated"), None, "{got:?}");

    // A logout drops the web entry: one invalidation in the web cache, none in admin's,
    // which never held it.
    let logout = send(&app, post("/web/logout").bearer(&token).empty()).await;
    assert_eq!(logout.status, 200);
    let got = values(&snapshotter);
    let count = |labels: &str| {
        got.get(&(CACHE_TOTAL.to_owned(), labels.to_owned()))
            .copied()
    };
    assert_eq!(count("context=web,result=invalidated"), Some(1), "{got:?}");
    assert_eq!(count("context=admin,result=invalidated"), None, "{got:?}");
    // A user-wide change (another instance revoked every session of a user) empties every
    // cache of the bus. (A snapshot drains what it reads: these counts are since the last.)
    bus.user_changed(&user).await;
    let got = values(&snapshotter);
    let count = |labels: &str| {
        got.get(&(CACHE_TOTAL.to_owned(), labels.to_owned()))
            .copied()
    };
    assert_eq!(count("context=web,result=invalidated"), Some(1), "{got:?}");
    assert_eq!(
        count("context=admin,result=invalidated"),
        Some(1),
        "{got:?}"
    );
}

/// By default one in 8 answers made without waiting is timed (per thread, the first one
/// included); every request is counted.
#[tokio::test]
async fn answers_made_without_waiting_are_timed_one_in_eight() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("sampled@example.com", Role::User))
        .unwrap()
        .id;
    let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users);
    let app = metrics::with_local_recorder(&recorder, || {
        routes().layer(sessions.layer(AppContext::Web))
    });
    let token = crate::common::login(&app, user).await;
    for _ in 0..16 {
        assert_eq!(
            send(&app, get("/me").bearer(&token).empty()).await.status,
            200
        );
    }
    let got = values(&snapshotter);
    let timed = got
        .get(&(
            AUTH_DURATION_SECONDS.to_owned(),
            "context=web,source=store".to_owned(),
        ))
        .copied();
    assert_eq!(timed, Some(2), "{got:?}");
    let counted = got
        .get(&(
            REQUESTS_TOTAL.to_owned(),
            "context=web,outcome=authenticated".to_owned(),
        ))
        .copied();
    assert_eq!(counted, Some(16), "{got:?}");
}

/// `op` → samples of `STORE_DURATION_SECONDS` with `backend`.
fn store_timings(snapshotter: &Snapshotter, backend: &str) -> BTreeMap<String, u64> {
    let prefix = format!("backend={backend},op=");
    values(snapshotter)
        .into_iter()
        .filter(|((name, _), _)| name == STORE_DURATION_SECONDS)
        .filter_map(|((_, labels), n)| Some((labels.strip_prefix(&prefix)?.to_owned(), n)))
        .collect()
}

/// Runs each core operation once on `store`.
async fn one_of_each(store: &dyn SessionStore, user: uuid::Uuid) {
    let context = AppContext::Web;
    let (id, new) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let now = tower_app_sessions::record::now_ms();
    let record = SessionRecord::new(user, SessionMetadata::new(), now, Duration::from_secs(60));
    store.save(&context, &id, &record, now).await.unwrap();
    assert!(store.load(&context, &id, now).await.unwrap().is_some());
    assert!(store
        .extend(&context, &id, now + 90_000, now)
        .await
        .unwrap());
    assert!(store
        .rotate(&context, &id, &new, &user, now)
        .await
        .unwrap()
        .is_some());
    let sessions = tower_app_sessions::Scope::AllContexts;
    assert_eq!(
        store
            .list_user_sessions(&user, sessions, now)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.delete(&context, &new, now).await.unwrap());
    assert_eq!(
        store
            .delete_user_sessions(&user, sessions, now)
            .await
            .unwrap(),
        0
    );
}

fn once_each() -> BTreeMap<String, u64> {
    [
        "save",
        "load",
        "extend",
        "rotate",
        "list_user_sessions",
        "delete",
        "delete_user_sessions",
    ]
    .into_iter()
    .map(|op| (op.to_owned(), 1))
    .collect()
}

#[tokio::test]
async fn the_memory_store_times_each_operation() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let store = metrics::with_local_recorder(&recorder, tower_app_sessions::MemoryStore::new);
    one_of_each(&store, uuid::Uuid::new_v4()).await;
    assert_eq!(store_timings(&snapshotter, "memory"), once_each());
    // Built without a recorder: nothing is timed. (A snapshot drains what it reads.)
    let untimed = tower_app_sessions::MemoryStore::new();
    one_of_each(&untimed, uuid::Uuid::new_v4()).await;
    assert_eq!(store_timings(&snapshotter, "memory"), BTreeMap::new());
    one_of_each(&store, uuid::Uuid::new_v4()).await;
    assert_eq!(store_timings(&snapshotter, "memory"), once_each());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_store_times_each_operation_and_the_legacy_reads() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let store = {
        // The store registers its timers in `connect`, polled on this thread.
        let _local = metrics::set_default_local_recorder(&recorder);
        RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
            .await
            .expect("REDIS_URL answers (scripts/test starts one)")
    };
    one_of_each(&store, uuid::Uuid::new_v4()).await;
    let legacy = store
        .capabilities()
        .legacy
        .expect("Redis holds legacy keys");
    let id = SessionId::generate().unwrap();
    let now = tower_app_sessions::record::now_ms();
    assert_eq!(legacy.load_legacy(&id, now).await.unwrap(), None);
    assert!(!legacy.delete_legacy(&id).await.unwrap());
    let mut expected = once_each();
    expected.insert("load_legacy".to_owned(), 1);
    expected.insert("delete_legacy".to_owned(), 1);
    assert_eq!(store_timings(&snapshotter, "redis"), expected);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_store_and_users_time_each_operation() {
    use tower_app_sessions::store::postgres::PgSessionStore;
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserResolver;
    let db = crate::common::pg::TestDb::migrated().await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (store, users) = metrics::with_local_recorder(&recorder, || {
        (
            PgSessionStore::new(db.pool.clone()),
            PgUsers::new(db.pool.clone()),
        )
    });
    let user = tower_app_sessions::UserRepository::create(
        &users,
        User::new("timed@example.com", Role::User),
    )
    .await
    .unwrap();
    let _ = snapshotter.snapshot(); // the insert is not a store operation
    one_of_each(&store, user.id).await;
    let unknown = uuid::Uuid::new_v4();
    assert!(users
        .resolve(&AppContext::Web, &unknown)
        .await
        .unwrap()
        .is_none());
    let mut expected = once_each();
    expected.insert("resolve_user".to_owned(), 1);
    assert_eq!(store_timings(&snapshotter, "postgres"), expected);
}
