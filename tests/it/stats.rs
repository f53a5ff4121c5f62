//! `Sessions::stats()`: live sessions per context in the memory store, through the layers
//! as an application uses them; and against real servers: exact counts of 10,000 sessions
//! across three contexts and 1,000 legacy keys on a Redis of its own, the same on a Redis
//! Cluster, and PostgreSQL rows by state with the sessions indexes.

use std::time::Duration;

use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::{AppContext, MemoryUsers, Role, Sessions, User};

use crate::common::{login_at, post, routes, send, Finish};

#[tokio::test]
async fn the_memory_store_counts_live_sessions_per_context() {
    let users = MemoryUsers::new();
    let ada = users
        .insert(User::new("stats-ada@example.com", Role::Admin))
        .unwrap();
    let clock = ManualClock::starting_now();
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users).clock(clock.clock());
    let bot = AppContext::custom("telegram-bot").unwrap();
    let app = axum::Router::new()
        .nest("/web", routes().layer(sessions.layer(AppContext::Web)))
        .nest("/admin", routes().layer(sessions.layer(AppContext::Admin)))
        .nest(
            "/bot",
            routes().layer(
                sessions
                    .layer(bot.clone())
                    .idle_timeout(Duration::from_secs(60)),
            ),
        );
    let stats = sessions.stats().await.unwrap();
    assert!(stats.contexts.is_empty(), "{stats:?}");

    let mut web = Vec::new();
    for _ in 0..3 {
        web.push(login_at(&app, "/web", ada.id).await);
    }
    login_at(&app, "/admin", ada.id).await;
    login_at(&app, "/bot", ada.id).await;
    let counts = |stats: &tower_app_sessions::stats::SessionStats| {
        stats
            .contexts
            .iter()
            .map(|(context, figures)| (context.clone(), figures.memory_sessions))
            .collect::<Vec<_>>()
    };
    let stats = sessions.stats().await.unwrap();
    assert_eq!(
        counts(&stats),
        [
            ("admin".to_owned(), Some(1)),
            ("telegram-bot".to_owned(), Some(1)),
            ("web".to_owned(), Some(3)),
        ]
    );
    assert!(stats.redis.is_none() && stats.postgres.is_none());
    assert_eq!(
        serde_json::to_value(&stats).unwrap()["contexts"]["web"],
        serde_json::json!({"memory_sessions": 3})
    );

    // A logout leaves the count at once; the bot's session idles out (not yet swept: the
    // count is of live sessions, not of records held), and a context with none left is
    // not listed.
    let reply = send(&app, post("/web/logout").bearer(&web[0]).empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    clock.advance(Duration::from_secs(61));
    let stats = sessions.stats().await.unwrap();
    assert_eq!(
        counts(&stats),
        [("admin".to_owned(), Some(1)), ("web".to_owned(), Some(2)),]
    );
}

#[cfg(feature = "redis")]
mod servers {
    use std::time::Duration;

    use redis::AsyncCommands;
    use tower_app_sessions::record::now_ms;
    use tower_app_sessions::store::redis::{keys, RedisConfig, RedisStore};
    use tower_app_sessions::{
        AppContext, MemoryUsers, SessionId, SessionMetadata, SessionRecord, SessionStore, Sessions,
    };
    use uuid::Uuid;

    use crate::common::redis_server::{RedisCluster, RedisServer};

    const PER_CONTEXT: [(&str, usize); 3] =
        [("web", 6000), ("admin", 3000), ("telegram-bot", 1000)];

    fn record() -> SessionRecord {
        SessionRecord::new(
            Uuid::new_v4(),
            SessionMetadata::new().ip("203.0.113.9"),
            now_ms(),
            Duration::from_secs(3600),
        )
    }

    /// Writes `scale` of the sessions per context and `legacy` legacy keys with `conn`, plus
    /// keys that are not sessions.
    async fn fill(conn: &mut impl AsyncCommands, scale: usize, legacy: usize) {
        let json = serde_json::to_string(&record()).unwrap();
        for (context, n) in PER_CONTEXT {
            let context: AppContext = context.parse().unwrap();
            for _ in 0..n / scale {
                let key = keys::session(&context, &SessionId::generate().unwrap());
                let () = conn.set_ex(key, &json, 3600).await.unwrap();
            }
        }
        for _ in 0..legacy {
            let key = keys::legacy(&SessionId::generate().unwrap());
            let () = conn.set_ex(key, &json, 3600).await.unwrap();
        }
        // Not sessions: the per-user index, a stray key, a malformed session key.
        let () = conn
            .zadd(keys::user_index(&Uuid::new_v4()), "web:x", 1)
            .await
            .unwrap();
        let () = conn.set("other:key", "1").await.unwrap();
        let () = conn.set("session:web:bad!id", "1").await.unwrap();
    }

    fn check(stats: &tower_app_sessions::stats::SessionStats, scale: usize, legacy: u64) {
        for (context, n) in PER_CONTEXT {
            assert_eq!(
                stats.contexts[context].redis_sessions,
                Some((n / scale) as u64),
                "{context}: {stats:?}"
            );
        }
        assert_eq!(stats.contexts.len(), 3, "{stats:?}");
        let redis = stats.redis.as_ref().expect("Redis figures");
        assert_eq!(redis.legacy_keys, legacy);
        assert!(redis.used_memory_bytes > 0, "{redis:?}");
        assert_eq!(redis.sampled_keys, 64);
        let per_key = redis.bytes_per_session_key.expect("sampled");
        assert!((100..2000).contains(&per_key), "{per_key} bytes per key");
        assert!(stats.postgres.is_none());
        let json = serde_json::to_value(stats).unwrap();
        assert_eq!(
            json["contexts"]["web"]["redis_sessions"],
            (6000 / scale) as u64
        );
        assert_eq!(json["redis"]["legacy_keys"], legacy);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exact_counts_of_ten_thousand_sessions_and_a_thousand_legacy_keys() {
        let server = tokio::task::block_in_place(RedisServer::start_plain);
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        fill(&mut conn, 1, 1000).await;
        let store = RedisStore::connect(RedisConfig::new(server.url()))
            .await
            .unwrap();
        let sessions = Sessions::new(store, MemoryUsers::new());
        let stats = sessions.stats().await.unwrap();
        check(&stats, 1, 1000);
        // Asking again changes nothing (no key is written or touched by it).
        assert_eq!(sessions.stats().await.unwrap().contexts, stats.contexts);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exact_counts_on_a_redis_cluster() {
        let cluster = tokio::task::block_in_place(RedisCluster::start);
        let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
        let mut conn = client.get_async_connection().await.unwrap();
        fill(&mut conn, 5, 200).await;
        let store = RedisStore::connect(RedisConfig::cluster(cluster.urls()))
            .await
            .unwrap();
        let stats = Sessions::new(store, MemoryUsers::new())
            .stats()
            .await
            .unwrap();
        check(&stats, 5, 200);
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_rows_by_state_and_the_sessions_indexes() {
        use crate::common::pg::TestDb;
        use tower_app_sessions::store::{PgSessionStore, TieredStore};
        use tower_app_sessions::users::PgUsers;
        use tower_app_sessions::{Role, User, UserRepository};

        let db = TestDb::migrated().await;
        let users = PgUsers::new(db.pool.clone());
        let user = users
            .create(User::new(
                format!("stats-{}@example.com", Uuid::new_v4().simple()),
                Role::User,
            ))
            .await
            .unwrap();
        let server = tokio::task::block_in_place(RedisServer::start_plain);
        let redis = RedisStore::connect(RedisConfig::new(server.url()))
            .await
            .unwrap();
        let store = TieredStore::new(
            std::sync::Arc::new(redis),
            std::sync::Arc::new(PgSessionStore::new(db.pool.clone())),
        );
        let now = now_ms();
        let mut ids = Vec::new();
        for (context, n) in [(AppContext::Web, 5), (AppContext::Admin, 2)] {
            for _ in 0..n {
                let id = SessionId::generate().unwrap();
                let mut r = record();
                r.user_id = user.id;
                store.save(&context, &id, &r, now).await.unwrap();
                ids.push((context.clone(), id));
            }
        }
        // Two web sessions logged out (revoked), one expired.
        for (context, id) in &ids[..2] {
            assert!(store.delete(context, id, now).await.unwrap());
        }
        sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 hour' WHERE id = $1")
            .bind(ids[2].1.as_str())
            .execute(&db.pool)
            .await
            .unwrap();
        let stats = Sessions::new(store, users).stats().await.unwrap();
        let web = stats.contexts["web"].postgres_sessions.expect("web rows");
        assert_eq!((web.live, web.revoked, web.expired), (2, 2, 1), "{stats:?}");
        let admin = stats.contexts["admin"]
            .postgres_sessions
            .expect("admin rows");
        assert_eq!((admin.live, admin.revoked, admin.expired), (2, 0, 0));
        // Redis holds the live copies (the tiered store writes both; deleted ones are gone).
        assert_eq!(stats.contexts["web"].redis_sessions, Some(3));
        assert_eq!(stats.contexts["admin"].redis_sessions, Some(2));
        let indexes: Vec<&str> = stats
            .postgres
            .as_ref()
            .expect("PostgreSQL figures")
            .indexes
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert!(indexes.contains(&"sessions_pkey"), "{indexes:?}");
        assert!(
            indexes.iter().any(|i| i.contains("application_context")),
            "{indexes:?}"
        );
    }
}
