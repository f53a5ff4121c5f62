#![cfg(feature = "redis")]
//! [`RedisStore`] on a real Redis Cluster (three throwaway masters per test function): the
//! store contract, context isolation through the layer, keys spread over the slots, and the
//! legacy migration run across every primary.

use crate::common;

use axum::Router;
use common::redis_server::{free_port_from, RedisCluster, RedisServer};
use common::{get, routes, send, Finish};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::{MigrationMode, RedisConfig, RedisStore};
use tower_app_sessions::testing::check_store;
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, SessionId, SessionMetadata, SessionRecord, SessionStore,
    Sessions, User,
};
use uuid::Uuid;

async fn connect(cluster: &RedisCluster) -> RedisStore {
    RedisStore::connect(RedisConfig::cluster(cluster.urls()))
        .await
        .expect("the throwaway cluster is up")
}

/// `/web/…` and `/admin/…`, each the shared routes under its own layer on the one cluster
/// store. Legacy fallback is off (the default).
fn app(store: RedisStore, users: MemoryUsers) -> Router {
    let sessions = Sessions::new(store, users);
    let web = sessions.layer(AppContext::Web).cookie_name("web_sid");
    assert!(!web.legacy_fallback_enabled());
    Router::new().nest("/web", routes().layer(web)).nest(
        "/admin",
        routes().layer(
            sessions
                .layer(AppContext::Admin)
                .cookie_name("admin_sid")
                .admit_roles([Role::Admin, Role::Operator, Role::Support]),
        ),
    )
}

async fn login(app: &Router, context: &str, user: &User) -> String {
    common::login_at(app, &format!("/{context}"), user.id).await
}

async fn me_by_cookie(app: &Router, context: &str, cookie: &str, id: &str) -> u16 {
    common::me_cookie_at(app, &format!("/{context}"), cookie, id)
        .await
        .0
}

async fn me_by_bearer(app: &Router, context: &str, id: &str) -> u16 {
    common::me_bearer_at(app, &format!("/{context}"), id)
        .await
        .0
}

/// Keys matching `pattern` on one node (a throwaway server: `KEYS` is fine here).
fn keys_on(cluster: &RedisCluster, node: usize, pattern: &str) -> usize {
    cluster.nodes[node]
        .cli(&["KEYS", pattern])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn dbsize(cluster: &RedisCluster, node: usize) -> u64 {
    let out = cluster.nodes[node].cli(&["DBSIZE"]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("DBSIZE answered {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_on_a_cluster() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let store = connect(&cluster).await;

    // (1) keys are spread over the nodes: 50 sessions of 50 users, on a fresh cluster.
    let mut saved = Vec::new();
    for _ in 0..50 {
        let id = SessionId::generate().unwrap();
        let record = SessionRecord::new(
            Uuid::new_v4(),
            SessionMetadata::new()
                .ip("203.0.113.1")
                .user_agent("cluster/1"),
            now_ms(),
            std::time::Duration::from_secs(600),
        );
        store
            .save(&AppContext::Web, &id, &record, now_ms())
            .await
            .unwrap();
        saved.push((id, record));
    }
    let per_node: Vec<usize> = (0..cluster.nodes.len())
        .map(|n| keys_on(&cluster, n, "session:web:*"))
        .collect();
    let sizes: Vec<u64> = (0..cluster.nodes.len())
        .map(|n| dbsize(&cluster, n))
        .collect();
    eprintln!("redis_cluster: session:web:* keys per node {per_node:?}, DBSIZE per node {sizes:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 50, "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "all session keys in one node's slots: {per_node:?}"
    );
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 2, "{sizes:?}");
    assert_eq!(store.count_sessions(&AppContext::Web).await.unwrap(), 50);
    assert_eq!(store.count_sessions(&AppContext::Admin).await.unwrap(), 0);
    for (id, record) in &saved {
        assert_eq!(
            store
                .load(&AppContext::Web, id, now_ms())
                .await
                .unwrap()
                .as_ref(),
            Some(record)
        );
    }

    // (2) the store contract.
    check_store(|| async { store.clone() }).await.assert_ok();

    // (3) isolation through the layer, exactly as on one server.
    let users = MemoryUsers::new();
    let root = users
        .insert(User::new("root@example.com", Role::Admin))
        .unwrap();
    let app = app(store.clone(), users);
    let web = login(&app, "web", &root).await;
    let admin = login(&app, "admin", &root).await;
    assert_eq!(me_by_cookie(&app, "web", "web_sid", &web).await, 200);
    assert_eq!(me_by_bearer(&app, "web", &web).await, 200);
    assert_eq!(me_by_cookie(&app, "admin", "admin_sid", &admin).await, 200);
    assert_eq!(me_by_bearer(&app, "admin", &admin).await, 200);
    // the web id against admin, by cookie (under the admin name) and by bearer, and back
    assert_eq!(me_by_cookie(&app, "admin", "admin_sid", &web).await, 401);
    assert_eq!(me_by_bearer(&app, "admin", &web).await, 401);
    assert_eq!(me_by_cookie(&app, "web", "web_sid", &admin).await, 401);
    assert_eq!(me_by_bearer(&app, "web", &admin).await, 401);
    let body = send(&app, get("/admin/whoami").bearer(&admin).empty())
        .await
        .body;
    assert_eq!(body, "root@example.com in admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sessions_migrate_on_a_cluster() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let store = connect(&cluster).await;
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();

    // 200 legacy keys, written as the TypeScript apps did, through a cluster-aware client.
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let now = now_ms();
    let mut legacy = Vec::new();
    for n in 0..200 {
        let id = SessionId::generate().unwrap();
        // The first ten belong to a user the app knows.
        let user = if n < 10 { alice.id } else { Uuid::new_v4() };
        let json = format!(
            r#"{{"user_id":"{user}","created_at":{now},"expires_at":{},"ip":"198.51.100.{}","user_agent":"legacy/{n}"}}"#,
            now + 600_000,
            n % 250,
        );
        redis::cmd("SET")
            .arg(format!("session:{}", id.as_str()))
            .arg(json)
            .arg("EX")
            .arg(600)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        legacy.push(id);
    }
    let per_node: Vec<usize> = (0..cluster.nodes.len())
        .map(|n| keys_on(&cluster, n, "session:*"))
        .collect();
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "{per_node:?}"
    );
    assert_eq!(store.count_legacy_sessions().await.unwrap(), 200);

    let first = store.migrate_legacy(MigrationMode::Copy, 50).await.unwrap();
    eprintln!("redis_cluster: first migration {first:?}, legacy keys per node {per_node:?}");
    assert_eq!(
        (first.scanned, first.copied, first.skipped(), first.failed),
        (200, 200, 0, 0)
    );
    assert_eq!(store.count_sessions(&AppContext::Web).await.unwrap(), 200);
    assert_eq!(store.count_sessions(&AppContext::Admin).await.unwrap(), 0);
    // Copy mode: the legacy keys stay (old app versions may still read them).
    assert_eq!(store.count_legacy_sessions().await.unwrap(), 200);

    let again = store.migrate_legacy(MigrationMode::Copy, 50).await.unwrap();
    assert_eq!(
        (
            again.scanned,
            again.copied,
            again.already_present,
            again.failed
        ),
        (200, 0, 200, 0)
    );

    // The migrated records are the legacy bytes, under the new key, with a TTL.
    let moved = store
        .load(&AppContext::Web, &legacy[0], now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.user_id, alice.id);
    assert_eq!(moved.expires_at, now + 600_000);
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("session:web:{}", legacy[0].as_str()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=600).contains(&ttl), "TTL {ttl}");

    // A migrated id opens the web app with the legacy fallback off, not the admin panel.
    let app = app(store.clone(), users);
    for id in &legacy[..10] {
        assert_eq!(me_by_cookie(&app, "web", "web_sid", id.as_str()).await, 200);
        assert_eq!(me_by_bearer(&app, "admin", id.as_str()).await, 401);
    }
    let body = send(&app, get("/web/whoami").bearer(legacy[0].as_str()).empty())
        .await
        .body;
    assert_eq!(body, "alice@example.com in web");

    // Control: a legacy key written after the migration is not read (fallback off).
    let late = SessionId::generate().unwrap();
    redis::cmd("SET")
        .arg(format!("session:{}", late.as_str()))
        .arg(format!(
            r#"{{"user_id":"{}","created_at":{now},"expires_at":{}}}"#,
            alice.id,
            now + 600_000
        ))
        .arg("EX")
        .arg(600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert_eq!(me_by_bearer(&app, "web", late.as_str()).await, 401);

    // Move mode finishes the job: copies the late one, deletes every legacy key.
    let last = store.migrate_legacy(MigrationMode::Move, 50).await.unwrap();
    // The late one copied, the 200 copied before: all moved.
    assert_eq!(
        (
            last.scanned,
            last.moved,
            last.copied,
            last.skipped(),
            last.failed
        ),
        (201, 201, 0, 0, 0)
    );
    assert_eq!(store.count_legacy_sessions().await.unwrap(), 0);
    assert_eq!(me_by_bearer(&app, "web", late.as_str()).await, 200);
}

/// Redis puts a cluster node's bus on `port + 10000` unless told otherwise and then refuses a
/// port above 55535; on machines whose ephemeral range is 49152-65535 most ports the kernel
/// hands out are up there. The test servers give every node a bus port of its own, so a
/// cluster comes up on any ports: here, on ports above 55535 only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_comes_up_on_ports_above_55535() {
    // What the port picker avoids: a node above 55535 without a bus port of its own exits.
    let high = free_port_from(56_000);
    let dir = std::env::temp_dir().join(format!("tas-redis-refused-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut refused = RedisServer::command(high, &dir, &["--cluster-enabled", "yes"])
        .spawn()
        .expect("redis-server runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = refused.kill();
            panic!("a cluster node on port {high} without --cluster-port started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!exit.success(), "port {high}: {exit:?}");

    // With their own bus ports, three nodes above 55535 form a cluster that stores sessions.
    let mut next = 56_000;
    let mut take = || {
        let port = free_port_from(next);
        next = port + 1;
        port
    };
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            let (port, bus) = (take(), take());
            assert!(port > 55_535 && bus > 55_535);
            RedisServer::start_cluster_node_on(port, bus)
        })
        .collect();
    let cluster = tokio::task::block_in_place(|| RedisCluster::join(nodes));
    let store = connect(&cluster).await;
    let id = SessionId::generate().unwrap();
    let now = now_ms();
    let record = SessionRecord::new(
        Uuid::new_v4(),
        SessionMetadata::new(),
        now,
        std::time::Duration::from_secs(60),
    );
    store
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    assert_eq!(
        store.load(&AppContext::Web, &id, now).await.unwrap(),
        Some(record)
    );
}
