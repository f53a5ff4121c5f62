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
    let store = tower_app_sessions::MemoryStore::new();
    let bus = InvalidationBus::local();
    let instance = || {
        let sessions =
            Sessions::new(store.clone(), users.clone()).cache(&bus, 100, Duration::from_secs(60));
        manage_routes().layer(sessions.layer(AppContext::Web))
    };
    let (a, b) = (instance(), instance());
    let (mine, stolen) = (login(&a, user).await, login(&a, user).await);
    for _ in 0..2 {
        let reply = send(&b, get("/me").bearer(&stolen).empty()).await;
        assert_eq!(reply.status, 200); // the second from B's cache
    }
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
