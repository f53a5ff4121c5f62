//! Session management on every store (the scenario is `common::manage`), and across two
//! instances sharing an invalidation bus: ending a session by handle on one reaches the
//! other's cache at once.

use std::time::Duration;

use tower_app_sessions::{AppContext, MemoryUsers, Role, Sessions, User};

use crate::common::manage::{manage_routes, session_management};
use crate::common::{get, login, send, Finish};

fn two_users(users: &MemoryUsers) -> (uuid::Uuid, uuid::Uuid) {
    let a = users.insert(User::new("manage-a@example.com", Role::User));
    let b = users.insert(User::new("manage-b@example.com", Role::User));
    (a.unwrap().id, b.unwrap().id)
}

#[tokio::test]
async fn session_management_on_memory() {
    let users = MemoryUsers::new();
    let (a, b) = two_users(&users);
    let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users);
    session_management(sessions, a, b).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn session_management_on_redis() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let store = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    let users = MemoryUsers::new();
    let (a, b) = two_users(&users);
    session_management(Sessions::new(store, users), a, b).await;
}

#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test]
async fn session_management_on_postgres_and_the_tiered_store() {
    use std::sync::Arc;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserRepository;

    let db = crate::common::pg::TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let mut ids = Vec::new();
    for tag in ["a", "b"] {
        let email = format!("manage-{tag}-{}@example.com", uuid::Uuid::new_v4().simple());
        ids.push(users.create(User::new(email, Role::User)).await.unwrap().id);
    }
    let pg = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    session_management(pg, ids[0], ids[1]).await;
    let redis = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    let tiered = TieredStore::new(
        Arc::new(redis),
        Arc::new(PgSessionStore::new(db.pool.clone())),
    )
    .revalidate_after(Duration::from_secs(5));
    session_management(Sessions::new(tiered, users), ids[0], ids[1]).await;
}

/// Two instances over one store and one bus, each caching: B serves a session from its
/// cache; A ends it by handle (the user's other device); B's next request is `401`.
#[cfg(feature = "cache")]
#[tokio::test]
async fn ending_a_session_by_handle_reaches_another_instances_cache() {
    use tower_app_sessions::cache::InvalidationBus;
    let users = MemoryUsers::new();
    let (user, _) = two_users(&users);
    // One memory store under both instances, counting its calls.
    let store = crate::common::CountingStore::default();
    let bus = InvalidationBus::local();
    let instance = || {
        let sessions =
            Sessions::new(store.clone(), users.clone()).cache(&bus, 100, Duration::from_secs(60));
        manage_routes().layer(sessions.layer(AppContext::Web))
    };
    let (a, b) = (instance(), instance());
    let (mine, stolen) = (login(&a, user).await, login(&a, user).await);
    let reply = send(&b, get("/me").bearer(&stolen).empty()).await;
    assert_eq!(reply.status, 200); // loaded by B, and cached
    let calls = store.calls();
    let reply = send(&b, get("/me").bearer(&stolen).empty()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        store.calls(),
        calls,
        "B's second request was served from its cache, without a store call"
    );
    let handle = tower_app_sessions::SessionId::parse(&stolen)
        .unwrap()
        .handle();
    let end = http::Request::delete(format!("/sessions/{}", handle.as_str()))
        .bearer(&mine)
        .empty();
    assert_eq!(send(&a, end).await.status, 204);
    assert_eq!(
        send(&b, get("/me").bearer(&stolen).empty()).await.status,
        401
    );
    assert_eq!(send(&b, get("/me").bearer(&mine).empty()).await.status, 200);
}

/// A tiered store lists (and so ends) the sessions of a custom context, which only Redis
/// holds, beside the durable store's.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test]
async fn the_tiered_store_lists_and_ends_custom_context_sessions() {
    use std::sync::Arc;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::{Scope, UserRepository};

    let db = crate::common::pg::TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let email = format!("custom-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = users.create(User::new(email, Role::User)).await.unwrap().id;
    let redis = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    let tiered = TieredStore::new(
        Arc::new(redis),
        Arc::new(PgSessionStore::new(db.pool.clone())),
    );
    let sessions = Sessions::new(tiered, users);
    let bot = AppContext::custom("telegram-bot").unwrap();
    let web = manage_routes().layer(sessions.layer(AppContext::Web));
    let bots = manage_routes().layer(sessions.layer(bot.clone()));
    let (mine, theirs) = (login(&web, user).await, login(&bots, user).await);
    let listed = sessions.list_user(&user, Scope::AllContexts).await.unwrap();
    let contexts: Vec<&str> = listed.iter().map(|s| s.context.as_str()).collect();
    assert_eq!(listed.len(), 2, "{contexts:?}");
    assert!(contexts.contains(&"telegram-bot"), "{contexts:?}");
    let reply = send(
        &web,
        crate::common::post("/revoke-others").bearer(&mine).empty(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("1 "), "{}", reply.body);
    assert_eq!(
        send(&bots, get("/me").bearer(&theirs).empty()).await.status,
        401
    );
}

/// A web session Redis alone holds (written by the TypeScript apps, or migrated from a
/// legacy key, so PostgreSQL has no row) is served by the tiered store, so it is listed and
/// ended like the others; one whose row PostgreSQL holds revoked is not listed.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiered_store_lists_and_ends_redis_only_sessions() {
    use std::sync::Arc;
    use tower_app_sessions::record::now_ms;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::{
        Scope, SessionId, SessionMetadata, SessionRecord, SessionStore, UserRepository,
    };

    let db = crate::common::pg::TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let email = format!("redis-only-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = users.create(User::new(email, Role::User)).await.unwrap().id;
    let server = tokio::task::block_in_place(crate::common::redis_server::RedisServer::start_plain);
    let redis = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let pg = PgSessionStore::new(db.pool.clone());
    let tiered = TieredStore::new(Arc::new(redis.clone()), Arc::new(pg.clone()));
    let sessions = Sessions::new(tiered, users);
    let web = manage_routes().layer(sessions.layer(AppContext::Web));
    let mine = login(&web, user).await;
    // Redis alone: a session PostgreSQL never saw, and one it holds revoked.
    let now = now_ms();
    let record = SessionRecord::new(user, SessionMetadata::new(), now, Duration::from_secs(3600));
    let (alone, ended) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    redis
        .save(&AppContext::Web, &alone, &record, now)
        .await
        .unwrap();
    pg.save(&AppContext::Web, &ended, &record, now)
        .await
        .unwrap();
    pg.delete(&AppContext::Web, &ended, now).await.unwrap();
    redis
        .save(&AppContext::Web, &ended, &record, now)
        .await
        .unwrap();
    // Listed before any request reads it (a read through the tiered store may give it a
    // row).
    let listed = sessions.list_user(&user, Scope::AllContexts).await.unwrap();
    let handles: Vec<String> = listed
        .iter()
        .map(|s| s.handle.as_str().to_owned())
        .collect();
    assert_eq!(listed.len(), 2, "{handles:?}");
    assert!(handles.contains(&alone.handle().as_str().to_owned()));
    assert!(
        !handles.contains(&ended.handle().as_str().to_owned()),
        "an ended session listed"
    );
    let mine_listed = send(&web, get("/sessions").bearer(&mine).empty()).await;
    assert!(
        mine_listed.body.contains(alone.handle().as_str()),
        "{}",
        mine_listed.body
    );
    let reply = send(
        &web,
        crate::common::post("/revoke-others").bearer(&mine).empty(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        send(&web, get("/me").bearer(alone.as_str()).empty())
            .await
            .status,
        401
    );
}

/// A session migrated in copy mode: under `session:web:<id>` and its legacy copy, on a
/// Redis of its own; `Sessions` of one user (`MemoryUsers`) that read the copy (fallback on
/// for web), the app on them, and a connection to look at the keys.
#[cfg(feature = "redis")]
struct Migrated {
    _server: crate::common::redis_server::RedisServer,
    conn: redis::aio::MultiplexedConnection,
    sessions: Sessions,
    app: axum::Router,
    user: uuid::Uuid,
    id: tower_app_sessions::SessionId,
}

#[cfg(feature = "redis")]
impl Migrated {
    async fn new() -> Self {
        use redis::AsyncCommands;
        use tower_app_sessions::record::now_ms;
        use tower_app_sessions::store::redis::{keys, MigrationMode, RedisConfig, RedisStore};
        use tower_app_sessions::{SessionId, SessionMetadata, SessionRecord};

        let server =
            tokio::task::block_in_place(crate::common::redis_server::RedisServer::start_plain);
        let store = RedisStore::connect(RedisConfig::new(server.url()))
            .await
            .unwrap();
        let users = MemoryUsers::new();
        let (user, _) = two_users(&users);
        let id = SessionId::generate().unwrap();
        let record = SessionRecord::new(
            user,
            SessionMetadata::new(),
            now_ms(),
            Duration::from_secs(3600),
        );
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let json = serde_json::to_string(&record).unwrap();
        let () = conn.set_ex(keys::legacy(&id), json, 3600).await.unwrap();
        store
            .migrate_legacy(MigrationMode::Copy, 100)
            .await
            .unwrap();
        let sessions = Sessions::new(store, users).legacy_fallback_contexts([AppContext::Web]);
        let app = manage_routes().layer(sessions.layer(AppContext::Web));
        Self {
            _server: server,
            conn,
            sessions,
            app,
            user,
            id,
        }
    }

    async fn legacy_copy_left(&mut self) -> bool {
        use redis::AsyncCommands;
        let key = tower_app_sessions::store::redis::keys::legacy(&self.id);
        self.conn.exists(key).await.unwrap()
    }

    async fn status(&self, token: &str) -> u16 {
        send(&self.app, get("/me").bearer(token).empty())
            .await
            .status
            .as_u16()
    }
}

/// With the legacy fallback on, a migrated session lives under both keys: an admin's
/// revoke-all ends the legacy copy too, so the fallback cannot bring it back.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_ends_legacy_copies_where_the_fallback_reads_them() {
    let mut m = Migrated::new().await;
    assert!(m.legacy_copy_left().await);
    assert_eq!(m.status(m.id.as_str()).await, 200);
    let ended = m
        .sessions
        .revoke_user(&m.user, tower_app_sessions::Scope::AllContexts)
        .await;
    assert_eq!(ended.unwrap(), 1);
    assert!(
        !m.legacy_copy_left().await,
        "the legacy copy outlived the revocation"
    );
    assert_eq!(m.status(m.id.as_str()).await, 401);
}

/// The same for a user's own revoke-all from another device: the migrated session's legacy
/// copy ends with it.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_ends_legacy_copies_of_the_other_sessions() {
    let mut m = Migrated::new().await;
    let other = login(&m.app, m.user).await;
    let reply = send(
        &m.app,
        crate::common::post("/revoke-all").bearer(&other).empty(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        !m.legacy_copy_left().await,
        "the legacy copy outlived revoke-all"
    );
    for token in [m.id.as_str(), other.as_str()] {
        assert_eq!(m.status(token).await, 401);
    }
}
