//! Session data on PostgreSQL and the tiered store: the limits, all or nothing, the race
//! with a rotation, two cached instances, and the Prisma column.

use super::*;
use crate::common::pg::TestDb;
use crate::common::redis_server::{shared_url, RedisServer};
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

/// A web app on `store` over the test database (writers' barrier of `parties`) with a
/// fresh user signed in: the app, the token and what the data routes hold on.
async fn pg_signed_in(
    db: &TestDb,
    store: impl SessionStore,
    parties: usize,
) -> (Router, String, Holds) {
    let users = PgUsers::new(db.pool.clone());
    let ada = user(&users).await;
    let sessions = Sessions::new(store, users);
    let holds = Holds::new(parties);
    let web = app(sessions.layer(AppContext::Web), &holds);
    let token = login(&web, ada.id).await;
    (web, token, holds)
}

/// The session's `data` in its row: its length in compact JSON and as `data::text`.
async fn row_data(db: &TestDb, token: &str) -> (usize, usize) {
    let text: Option<String> = sqlx::query_scalar("SELECT data::text FROM sessions WHERE id = $1")
        .bind(token)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let text = text.unwrap_or_else(|| "{}".to_owned());
    let compact = serde_json::from_str::<Value>(&text).unwrap().to_string();
    (compact.len(), text.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_postgres() {
    let db = TestDb::migrated().await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, token, _) = pg_signed_in(&db, store, CONCURRENT).await;
    concurrent_patches_all_survive(
        std::slice::from_ref(&web),
        std::slice::from_ref(&web),
        &token,
        CONCURRENT,
    )
    .await;
}

#[tokio::test]
async fn bad_input_and_error_answers_store_nothing_on_postgres() {
    let db = TestDb::migrated().await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, token, _) = pg_signed_in(&db, store, 1).await;
    hostile_data(&web, &token).await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, token, _) = pg_signed_in(&db, store, 1).await;
    all_or_nothing(&web, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_writers_store_no_more_than_the_limit_on_postgres() {
    let db = TestDb::migrated().await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, token, _) = pg_signed_in(&db, store, WRITERS).await;
    writers_stay_within_the_limit(&web, &token, WRITERS).await;
    let (compact, as_stored) = row_data(&db, &token).await;
    within_the_limit("PostgreSQL", compact, as_stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_the_tiered_store() {
    let db = TestDb::migrated().await;
    let (web, token, _) = pg_signed_in(&db, tiered(&db).await, CONCURRENT).await;
    concurrent_patches_all_survive(
        std::slice::from_ref(&web),
        std::slice::from_ref(&web),
        &token,
        CONCURRENT,
    )
    .await;
    // Both tiers hold every key.
    let row: String = sqlx::query_scalar("SELECT data::text FROM sessions WHERE id = $1")
        .bind(&token)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let in_pg: serde_json::Map<String, Value> = serde_json::from_str(&row).unwrap();
    assert_eq!(in_pg.len(), CONCURRENT, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_writers_store_no_more_than_the_limit_on_the_tiered_store() {
    let db = TestDb::migrated().await;
    let (web, token, _) = pg_signed_in(&db, tiered(&db).await, WRITERS).await;
    let stored = writers_stay_within_the_limit(&web, &token, WRITERS).await;
    let (compact, as_stored) = row_data(&db, &token).await;
    within_the_limit("the tiered store's PostgreSQL", compact, as_stored);
    let (compact, as_stored) = super::on_redis::stored_data(&token).await;
    within_the_limit("the tiered store's Redis", compact, as_stored);
    // Both tiers hold the same one key.
    assert_eq!(
        read(&web, &token).await.keys().collect::<Vec<_>>(),
        [&stored]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_and_a_save_racing_a_rotation_on_the_tiered_store() {
    let db = TestDb::migrated().await;
    let (web, token, _) = pg_signed_in(&db, tiered(&db).await, 1).await;
    all_or_nothing(&web, &token).await;
    for rotation in ROTATIONS {
        let (web, token, holds) = pg_signed_in(&db, tiered(&db).await, 1).await;
        a_save_racing_a_rotation_keeps_the_new_cookie(&web, &holds, &token, rotation).await;
    }
}

/// Two instances (two `Sessions`, each with its cache, on one Redis and one database,
/// invalidating through pub/sub on a Redis of their own, so no other test's message
/// touches their caches): every patch goes through A, and B, which cached the session
/// before, then reads every key. B's cache keeps entries for 60 s: only A's
/// invalidations can show it the keys within the 10 s the check waits, so a bus that
/// never delivers fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_through_one_cached_instance_are_read_through_the_other() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let ada = user(&users).await;
    let bus_server = tokio::task::block_in_place(RedisServer::start_plain);
    let holds = Holds::new(CONCURRENT);
    let mut apps = Vec::new();
    for _ in 0..2 {
        let bus = InvalidationBus::redis(&bus_server.url()).await.unwrap();
        let sessions = Sessions::new(tiered(&db).await, PgUsers::new(db.pool.clone())).cache(
            &bus,
            1000,
            Duration::from_secs(60),
        );
        apps.push(app(sessions.layer(AppContext::Web), &holds));
    }
    let token = login(&apps[0], ada.id).await;
    // B caches the session with its empty data first (twice: the second from its cache).
    for _ in 0..2 {
        assert_eq!(read(&apps[1], &token).await.len(), 0);
    }
    concurrent_patches_all_survive(&apps[..1], &apps[1..], &token, CONCURRENT).await;
}

/// A row written before the migration, with the Prisma column's data (`{"theme":"dark"}`),
/// reads as session data.
#[tokio::test]
async fn data_written_in_the_prisma_column_is_readable() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let ada = user(&users).await;
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
    let web = app(sessions.layer(AppContext::Web), &Holds::new(1));
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
