//! Keys of another Redis type than the crate writes there, met by requests through the
//! layer: a session key stored as a hash (or a legacy key as a list) is "no session" (401,
//! logged by handle, the same on every request: never a 500, never a 503 loop), a user's
//! index stored as a string lists nothing and is replaced by the user's next sign-in, a
//! revocation count that holds no count is replaced by the next revocation. Each test on a
//! private `redis-server` (the keys it plants stay there by design).
#![cfg(feature = "redis")]

use std::sync::{Arc, Mutex};

use axum::Router;
use redis::AsyncCommands;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::{keys, RedisConfig, RedisStore};
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, Scope, SessionId, SessionStore, Sessions, User,
};
use uuid::Uuid;

use crate::common::redis_server::RedisServer;
use crate::common::{get, login, post, routes, send, Finish};

struct App {
    _server: RedisServer,
    store: RedisStore,
    sessions: Sessions,
    web: Router,
    user: Uuid,
    conn: redis::aio::MultiplexedConnection,
}

async fn app() -> App {
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let store = RedisStore::connect(RedisConfig::new(url.clone()))
        .await
        .unwrap();
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new(
            format!("types-{}@example.com", Uuid::new_v4()),
            Role::User,
        ))
        .unwrap()
        .id;
    let sessions = Sessions::new(store.clone(), users).legacy_fallback_contexts([AppContext::Web]);
    let conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    App {
        _server: server,
        web: routes().layer(sessions.layer(AppContext::Web)),
        store,
        sessions,
        user,
        conn,
    }
}

/// What is logged while `f` runs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_of_another_type_is_no_session_and_is_logged_by_handle() {
    let mut app = app().await;
    let (hash, list) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let () = app
        .conn
        .hset(
            keys::session(&AppContext::Web, &hash),
            "user_id",
            app.user.to_string(),
        )
        .await
        .unwrap();
    let () = app.conn.rpush(keys::legacy(&list), "x").await.unwrap();
    let () = app
        .conn
        .zadd(
            keys::user_index(&app.user),
            keys::index_member(&AppContext::Web, &hash),
            now_ms() + 60_000,
        )
        .await
        .unwrap();
    let (logs, guard) = capture();
    // Every request, not just the first: 401, as for an unknown session.
    for id in [&hash, &hash, &list, &list] {
        let reply = send(
            &app.web,
            get("/me").cookie("sessionId", id.as_str()).empty(),
        )
        .await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        let reply = send(
            &app.web,
            get("/maybe").cookie("sessionId", id.as_str()).empty(),
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "anonymous")
        );
    }
    // The store's own answers: nothing to load, extend, move or list; no error.
    let now = now_ms();
    let web = AppContext::Web;
    assert_eq!(app.store.load(&web, &hash, now).await.unwrap(), None);
    assert!(!app
        .store
        .extend(&web, &hash, now + 60_000, now)
        .await
        .unwrap());
    let fresh = SessionId::generate().unwrap();
    assert_eq!(
        app.store
            .rotate(&web, &hash, &fresh, &app.user, now)
            .await
            .unwrap(),
        None
    );
    assert!(app
        .sessions
        .list_user(&app.user, Scope::AllContexts)
        .await
        .unwrap()
        .is_empty());
    drop(guard);
    let logs = logs.text();
    assert!(
        logs.contains("session key holds another Redis type than a string: treated as missing")
            && logs.contains(&hash.handle().to_string())
            && logs.contains(&list.handle().to_string()),
        "{logs}"
    );
    assert!(
        !logs.contains(hash.as_str()) && !logs.contains(list.as_str()),
        "an id in the logs: {logs}"
    );
    // Left where they are for an operator (the crate never deletes what it did not write),
    // but rotate took nothing.
    let kind: String = redis::cmd("TYPE")
        .arg(keys::session(&web, &hash))
        .query_async(&mut app.conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_index_of_another_type_lists_nothing_until_the_next_sign_in_replaces_it() {
    let mut app = app().await;
    let index = keys::user_index(&app.user);
    let () = app.conn.set_ex(&index, "not an index", 600).await.unwrap();
    // Listing and revoke-all answer (nothing), never an error.
    assert!(app
        .sessions
        .list_user(&app.user, Scope::AllContexts)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.sessions
            .revoke_user(&app.user, Scope::AllContexts)
            .await
            .unwrap(),
        0
    );
    // Signing in works, and replaces the index with one that lists the session.
    let token = login(&app.web, app.user).await;
    let kind: String = redis::cmd("TYPE")
        .arg(&index)
        .query_async(&mut app.conn)
        .await
        .unwrap();
    assert_eq!(kind, "zset");
    let listed = app
        .sessions
        .list_user(&app.user, Scope::AllContexts)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let reply = send(&app.web, get("/me").cookie("sessionId", &token).empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // So revoke-all finds it again.
    assert_eq!(
        app.sessions
            .revoke_user(&app.user, Scope::AllContexts)
            .await
            .unwrap(),
        1
    );
    let reply = send(&app.web, get("/me").cookie("sessionId", &token).empty()).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_count_that_holds_no_count_is_replaced() {
    let mut app = app().await;
    let count = keys::user_revocations(&app.user);
    // A hash: rotations read it as 0 and go on; the revocation replaces it, then counts.
    let () = app.conn.hset(&count, "n", "1").await.unwrap();
    let token = login(&app.web, app.user).await;
    let rotated = send(
        &app.web,
        post("/rotate").cookie("sessionId", &token).empty(),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let token = rotated.body;
    let ended = send(
        &app.web,
        post("/revoke-all").cookie("sessionId", &token).empty(),
    )
    .await;
    assert_eq!((ended.status.as_u16(), ended.body.as_str()), (200, "1"));
    let n: i64 = app.conn.get(&count).await.unwrap();
    assert_eq!(n, 2, "replaced, then counted at the start and the end");
    // A string that is no integer: the same.
    let () = app.conn.set_ex(&count, "many", 600).await.unwrap();
    let token = login(&app.web, app.user).await;
    let ended = send(
        &app.web,
        post("/revoke-all").cookie("sessionId", &token).empty(),
    )
    .await;
    assert_eq!((ended.status.as_u16(), ended.body.as_str()), (200, "1"));
    let n: i64 = app.conn.get(&count).await.unwrap();
    assert_eq!(n, 2);
}

/// Redis in front of PostgreSQL: a Redis copy clobbered by a hash, whose user's index was
/// clobbered by a string, is a Redis miss; PostgreSQL, the authority, still holds the
/// session, so it is served and Redis refilled with a record and an index.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiered_store_reads_past_a_clobbered_copy() {
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserRepository;

    let db = crate::common::pg::TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let user = users
        .create(User::new(
            format!("tiered-{}@example.com", Uuid::new_v4()),
            Role::User,
        ))
        .await
        .unwrap()
        .id;
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let redis = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let tiered = TieredStore::new(
        Arc::new(redis),
        Arc::new(PgSessionStore::new(db.pool.clone()).users(&users)),
    );
    let web = routes().layer(Sessions::new(tiered, users).layer(AppContext::Web));
    let token = login(&web, user).await;
    let id = SessionId::parse(&token).unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (key, index) = (
        keys::session(&AppContext::Web, &id),
        keys::user_index(&user),
    );
    let () = conn.del(&key).await.unwrap();
    let () = conn.hset(&key, "user_id", user.to_string()).await.unwrap();
    let () = conn.set_ex(&index, "not an index", 600).await.unwrap();
    for _ in 0..2 {
        let reply = send(&web, get("/me").cookie("sessionId", &token).empty()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let kinds: (String, String) = (
        redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap(),
        redis::cmd("TYPE")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .unwrap(),
    );
    assert_eq!(kinds, ("string".to_owned(), "zset".to_owned()));
}
