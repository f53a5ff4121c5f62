//! PostgreSQL notifications (opt-in): the triggers, what they send and what they do not, the
//! Prisma shape left as it is, and revocations by SQL reaching another instance at once with
//! notifications on — and within the short revalidation bound while their connection is cut
//! (the listening connection goes through a proxy; the app's own pool does not).
#![cfg(all(
    feature = "postgres",
    feature = "redis",
    feature = "axum",
    feature = "cache"
))]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use common::pg::{assert_same_shape, snapshot, target_snapshot, TestDb};
use common::pg_proxy::Proxy;
use common::redis_server::shared_url;
use common::{login, me_cookie, post, routes, send, Finish};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tower_app_sessions::cache::InvalidationBus;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::store::postgres::{
    install_notifications, uninstall_notifications, Notifications, PgSessionStore, NOTIFY_CHANNEL,
};
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::store::TieredStore;
use tower_app_sessions::users::{PermissionGrant, PgUsers};
use tower_app_sessions::{AppContext, Role, Sessions, User, UserRepository};

/// The bound asserted on a revocation with notifications on. The clocks are frozen
/// (`ManualClock`) and a deaf instance keeps serving, so only a notification can end the
/// session: the bound only keeps a lost notification from hanging the test, and it is seconds
/// because a shared 2-core machine can stall any process that long. The latency measured is
/// logged (milliseconds on a quiet machine).
const NOTIFIED_BOUND: Duration = Duration::from_secs(5);
/// The short bound (revalidation interval) and the long one (trusted while notified).
const SHORT: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(300);

const ROLLBACK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/migrations/rollback/0001_multi_app_identity.down.sql"
);

/// One app instance: its own Redis and PostgreSQL stores, caches and (if `listen`) its own
/// notification connection, opened with `listen`'s options.
struct Instance {
    router: Router,
    notifications: Option<Notifications>,
}

async fn instance(
    pool: &PgPool,
    listen: Option<&PgPool>,
    context: AppContext,
    clock: &ManualClock,
) -> Instance {
    let users = PgUsers::new(pool.clone());
    let redis = RedisStore::connect(RedisConfig::new(shared_url()))
        .await
        .expect("Redis answers (scripts/test starts one)");
    let pg = PgSessionStore::new(pool.clone()).users(&users);
    let mut store = TieredStore::new(Arc::new(redis), Arc::new(pg)).revalidate_after(SHORT);
    let bus = InvalidationBus::local();
    let mut notifications = None;
    if let Some(listen) = listen {
        let heard = Notifications::listen(listen).await.expect("listen");
        // The bound after the notifications: a builder that replaced what they follow
        // would leave the long trust with nobody to end it.
        store = store.notifications(&heard, LONG).max_validations(10_000);
        bus.follow(&heard);
        notifications = Some(heard);
    }
    // As the README advises: the session cache on the short bound (a bare Redis DEL
    // publishes nothing), the user cache on the long one (only the notifications keep it
    // honest).
    let layer = Sessions::new(store, users)
        .cache(&bus, 1_000, SHORT)
        .user_cache(&bus, 1_000, LONG)
        .clock(clock.clone())
        .layer(context)
        .idle_timeout(Duration::from_secs(600));
    Instance {
        router: routes().layer(layer),
        notifications,
    }
}

async fn new_user(pool: &PgPool, role: Role) -> Arc<User> {
    let email = format!("n-{}@example.com", uuid::Uuid::new_v4().simple());
    PgUsers::new(pool.clone())
        .create(User::new(email, role))
        .await
        .unwrap()
}

/// Sends `request` until it answers `status`; how long that took after `since`. Fails past
/// `bound`.
async fn until_status(
    app: &Router,
    request: impl Fn() -> http::Request<axum::body::Body>,
    status: u16,
    since: Instant,
    bound: Duration,
) -> Duration {
    loop {
        let reply = send(app, request()).await;
        let elapsed = since.elapsed();
        if reply.status.as_u16() == status {
            return elapsed;
        }
        assert!(
            elapsed < bound,
            "still {} after {elapsed:?} (bound {bound:?})",
            reply.status
        );
        tokio::task::yield_now().await;
    }
}

/// Waits (bounded) until `notifications` report `healthy`.
async fn until_health(notifications: &Notifications, healthy: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while notifications.is_healthy() != healthy {
        assert!(
            Instant::now() < deadline,
            "notifications never became healthy={healthy}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_revocation_by_sql_reaches_another_instance_by_notification() {
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    let clock = ManualClock::starting_now();
    let writer = instance(&db.pool, Some(&db.pool), AppContext::Web, &clock).await;
    let reader = instance(&db.pool, Some(&db.pool), AppContext::Web, &clock).await;
    // The contrast: the same long bounds without notifications keep serving.
    let deaf = instance(&db.pool, None, AppContext::Web, &clock).await;
    let user = new_user(&db.pool, Role::User).await;
    let token = login(&writer.router, user.id).await;
    for app in [&reader.router, &deaf.router] {
        assert_eq!(me_cookie(app, "sessionId", &token).await.0, 200);
        // Now served from the cache.
        assert_eq!(me_cookie(app, "sessionId", &token).await.0, 200);
    }
    // The TypeScript admin panel revokes it by SQL.
    sqlx::query("UPDATE sessions SET revoked = true, revoked_at = now() WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    let revoked = Instant::now();
    let me = || common::get("/me").cookie("sessionId", &token).empty();
    let seen = until_status(&reader.router, me, 401, revoked, NOTIFIED_BOUND).await;
    eprintln!("revocation by SQL seen by another instance after {seen:?}");
    assert_eq!(
        me_cookie(&deaf.router, "sessionId", &token).await.0,
        200,
        "without notifications the long bounds serve the revoked session: the test measures nothing"
    );
}

#[tokio::test]
async fn a_permission_revoked_by_sql_reaches_another_instances_user_cache_by_notification() {
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    let clock = ManualClock::starting_now();
    let writer = instance(&db.pool, Some(&db.pool), AppContext::Admin, &clock).await;
    let reader = instance(&db.pool, Some(&db.pool), AppContext::Admin, &clock).await;
    let admin = new_user(&db.pool, Role::Admin).await;
    PgUsers::new(db.pool.clone())
        .grant(PermissionGrant {
            user_id: &admin.id,
            context: &AppContext::Admin,
            permission: "orders:refund",
            granted_by: None,
            expires_at: None,
        })
        .await
        .unwrap();
    // Two sessions of one user: the second finds the user in the user cache.
    let first = login(&writer.router, admin.id).await;
    let second = login(&writer.router, admin.id).await;
    let refund = |token: &str| post("/refund").cookie("sessionId", token).empty();
    for token in [&first, &second] {
        assert_eq!(send(&reader.router, refund(token)).await.status, 200);
    }
    sqlx::query("DELETE FROM user_permissions WHERE user_id = $1")
        .bind(admin.id)
        .execute(&db.pool)
        .await
        .unwrap();
    let revoked = Instant::now();
    let seen = until_status(
        &reader.router,
        || refund(&second),
        403,
        revoked,
        NOTIFIED_BOUND,
    )
    .await;
    eprintln!("permission deleted by SQL seen by another instance's user cache after {seen:?}");
}

#[tokio::test]
async fn with_the_notification_connection_cut_the_short_revalidation_bound_applies() {
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    let mut proxy = Proxy::start().await;
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy(&proxy.url(&db.url()))
        .unwrap();
    let clock = ManualClock::starting_now();
    let writer = instance(&db.pool, None, AppContext::Web, &clock).await;
    let reader = instance(&db.pool, Some(&listen_pool), AppContext::Web, &clock).await;
    let notifications = reader.notifications.clone().unwrap();
    let user = new_user(&db.pool, Role::User).await;
    let token = login(&writer.router, user.id).await;
    assert_eq!(me_cookie(&reader.router, "sessionId", &token).await.0, 200);

    proxy.cut().await;
    until_health(&notifications, false).await;
    // Checked again now, and trusted for the short bound only.
    assert_eq!(me_cookie(&reader.router, "sessionId", &token).await.0, 200);
    sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    clock.advance(SHORT - Duration::from_millis(10));
    assert_eq!(
        me_cookie(&reader.router, "sessionId", &token).await.0,
        200,
        "within the short bound the checked copy may still be served"
    );
    clock.advance(Duration::from_millis(10));
    assert_eq!(
        me_cookie(&reader.router, "sessionId", &token).await.0,
        401,
        "past the short bound the revocation is seen without any notification"
    );

    // Listening again: revocations are notified at once again.
    proxy.restore().await;
    until_health(&notifications, true).await;
    let token = login(&writer.router, user.id).await;
    assert_eq!(me_cookie(&reader.router, "sessionId", &token).await.0, 200);
    sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(&token)
        .execute(&db.pool)
        .await
        .unwrap();
    let revoked = Instant::now();
    let me = || common::get("/me").cookie("sessionId", &token).empty();
    let seen = until_status(&reader.router, me, 401, revoked, NOTIFIED_BOUND).await;
    eprintln!("revocation seen after {seen:?}, listening again after a cut");
}

/// What the triggers send for `sql`, run after `LISTEN`: the payloads up to (not including)
/// the marker that a final `NOTIFY` sends, so "sends nothing" is seen, not waited for.
async fn payloads(db: &TestDb, sql: &str) -> Vec<String> {
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();
    sqlx::raw_sql(sql).execute(&db.pool).await.unwrap();
    sqlx::query("SELECT pg_notify($1, 'marker')")
        .bind(NOTIFY_CHANNEL)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut heard = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("the marker arrives")
            .unwrap();
        if n.payload() == "marker" {
            return heard;
        }
        heard.push(n.payload().to_owned());
    }
}

#[tokio::test]
async fn the_triggers_send_what_ends_a_trusted_copy_and_nothing_for_a_slide() {
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    // Twice: idempotent.
    install_notifications(&db.pool).await.unwrap();
    let user = new_user(&db.pool, Role::User).await;
    let u = user.id;
    let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let insert = format!(
        "INSERT INTO sessions (id, user_id, expires_at, application_context) \
         VALUES ('{id}', '{u}', now() + interval '1 hour', 'web')"
    );
    let s = format!("s:web:{id}");
    let who = format!("u:{u}");
    let cases: Vec<(String, Vec<String>)> = vec![
        (insert.clone(), vec![]),
        // A slide, and the last activity: nothing.
        (
            format!("UPDATE sessions SET expires_at = expires_at + interval '1 hour', last_activity = now() WHERE id = '{id}'"),
            vec![],
        ),
        (format!("UPDATE sessions SET data = '{{\"a\":1}}' WHERE id = '{id}'"), vec![s.clone()]),
        (format!("UPDATE sessions SET expires_at = now() + interval '1 minute' WHERE id = '{id}'"), vec![s.clone()]),
        (format!("UPDATE sessions SET revoked = true WHERE id = '{id}'"), vec![s.clone()]),
        // A purge of a revoked row: notified when it was revoked, nothing now.
        (format!("DELETE FROM sessions WHERE id = '{id}'"), vec![]),
        (insert.clone(), vec![]),
        // A live row deleted outright.
        (format!("DELETE FROM sessions WHERE id = '{id}'"), vec![s.clone()]),
        (format!("UPDATE users SET last_login_at = now() WHERE id = '{u}'"), vec![]),
        (format!("UPDATE users SET role = 'support' WHERE id = '{u}'"), vec![who.clone()]),
        (
            format!("INSERT INTO user_permissions (user_id, permission, application_context) VALUES ('{u}', 'x', 'admin')"),
            vec![who.clone()],
        ),
        (format!("DELETE FROM user_permissions WHERE user_id = '{u}'"), vec![who.clone()]),
        (insert, vec![]),
        ("TRUNCATE sessions".to_owned(), vec!["all".to_owned()]),
        (format!("DELETE FROM users WHERE id = '{u}'"), vec![who]),
    ];
    for (sql, expected) in cases {
        assert_eq!(payloads(&db, &sql).await, expected, "{sql}");
    }
}

#[tokio::test]
async fn the_triggers_leave_the_prisma_shape_alone_and_the_rollback_removes_them() {
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    assert_same_shape(
        &snapshot(&db.pool).await,
        &target_snapshot().await,
        "migrate + notifications",
    );
    let count = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tower_app_sessions_%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(count(&db).await, 8);
    uninstall_notifications(&db.pool).await.unwrap();
    assert_eq!(count(&db).await, 0);
    uninstall_notifications(&db.pool).await.unwrap();
    // The rollback script removes them too (with the function).
    install_notifications(&db.pool).await.unwrap();
    db.run_script(&std::fs::read_to_string(ROLLBACK).unwrap())
        .await;
    let function: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc WHERE proname = 'tower_app_sessions_notify'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((count(&db).await, function), (0, 0));
}

#[tokio::test]
async fn listening_without_the_triggers_is_not_healthy_until_they_are_installed() {
    let db = TestDb::migrated().await;
    // Without the triggers nothing would ever be notified: long bounds must not apply.
    let notifications = Notifications::listen(&db.pool).await.unwrap();
    assert!(!notifications.is_healthy());
    install_notifications(&db.pool).await.unwrap();
    until_health(&notifications, true).await;
    // One trigger disabled: that table's changes would go unheard.
    let toggle = |state: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::raw_sql(&format!(
                "ALTER TABLE sessions {state} TRIGGER tower_app_sessions_sessions_update"
            ))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    toggle("DISABLE").await;
    until_health(&notifications, false).await;
    toggle("ENABLE").await;
    until_health(&notifications, true).await;
    // A bus that follows them closes when the last handle goes.
    let bus = InvalidationBus::local();
    bus.follow(&notifications);
    assert!(bus.is_healthy());
    drop(notifications);
    assert!(
        !bus.is_healthy(),
        "nobody listens, yet the caches would trust"
    );
    let notifications = Notifications::listen(&db.pool).await.unwrap();
    uninstall_notifications(&db.pool).await.unwrap();
    until_health(&notifications, false).await;
}

#[tokio::test]
async fn session_notified_revalidate_secs_listens_and_migrate_installs_the_triggers() {
    let db = TestDb::create().await;
    let vars = [
        ("SESSION_ENV", "production".to_owned()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_URL", db.url()),
        ("SESSION_NOTIFIED_REVALIDATE_SECS", "300".to_owned()),
    ];
    let sessions =
        Sessions::from_lookup(|var| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone()))
            .await
            .unwrap();
    let notifications = sessions.notifications().expect("listening").clone();
    assert!(!notifications.is_healthy(), "no triggers before migrate");
    sessions.migrate().await.unwrap();
    until_health(&notifications, true).await;
    // Without the variable nothing listens, and migrate leaves the Prisma objects alone.
    let plain = TestDb::create().await;
    let vars = [
        ("SESSION_ENV", "production".to_owned()),
        ("REDIS_URL", shared_url()),
        ("DATABASE_URL", plain.url()),
    ];
    let sessions =
        Sessions::from_lookup(|var| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone()))
            .await
            .unwrap();
    assert!(sessions.notifications().is_none());
    sessions.migrate().await.unwrap();
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tower_app_sessions_%'",
    )
    .fetch_one(&plain.pool)
    .await
    .unwrap();
    assert_eq!(triggers, 0);
}

/// Waits (bounded) until the listening connection of `db` has started two health checks
/// after now: the first of them then ran on the catalog as it is now, and its answer was
/// applied (the listener handles one check before it starts the next). Read from the
/// server's `pg_stat_activity`, so nothing here depends on timing.
async fn after_two_heartbeats(db: &TestDb) {
    let started_after = |since: chrono::DateTime<chrono::Utc>| {
        let pool = db.pool.clone();
        let name = db.name.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let latest: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                    "SELECT max(query_start) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'tower-app-sessions notifications'",
                )
                .bind(&name)
                .fetch_one(&pool)
                .await
                .unwrap();
                if let Some(latest) = latest.filter(|latest| *latest > since) {
                    return latest;
                }
                assert!(Instant::now() < deadline, "no health check since {since}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let first = started_after(now).await;
    started_after(first).await;
}

/// What the health check counted before it checked the exact set: every trigger calling a
/// function of the crate's function's name, anywhere.
async fn triggers_by_function_name(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
         WHERE p.proname = 'tower_app_sessions_notify' AND NOT t.tgisinternal",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn forged_and_extra_triggers_of_a_temp_privileged_role_change_nothing() {
    use sqlx::{Connection, Executor};
    // Declared before the database: dropped after it (see `TestRole`).
    let role = common::pg::TestRole::create().await;
    let db = TestDb::migrated().await;
    install_notifications(&db.pool).await.unwrap();
    let notifications = Notifications::listen(&db.pool).await.unwrap();
    until_health(&notifications, true).await;

    // A migration that recreates a table drops its trigger: short bounds, rightly.
    sqlx::raw_sql("DROP TRIGGER tower_app_sessions_users_delete ON users")
        .execute(&db.pool)
        .await
        .unwrap();
    until_health(&notifications, false).await;

    // First forgery, by a role with nothing but the default TEMP privilege: a temporary
    // `users`, a `pg_temp` function named as the crate's, and the dropped trigger's name.
    let mut forger = role.connect(&db).await;
    forger
        .execute(
            "CREATE TEMP TABLE users (id uuid); \
             CREATE FUNCTION pg_temp.tower_app_sessions_notify() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; \
             CREATE TRIGGER tower_app_sessions_users_delete AFTER DELETE ON pg_temp.users \
                 FOR EACH ROW EXECUTE FUNCTION pg_temp.tower_app_sessions_notify();",
        )
        .await
        .expect("the default TEMP privilege is enough for the forgery");
    assert_eq!(
        triggers_by_function_name(&db).await,
        8,
        "the forgery restores the count a name-based check trusted"
    );
    after_two_heartbeats(&db).await;
    assert!(
        !notifications.is_healthy(),
        "a temporary trigger stood in for the dropped one: copies trusted for long again"
    );

    // The real trigger back: healthy, the forged one beside it notwithstanding.
    install_notifications(&db.pool).await.unwrap();
    until_health(&notifications, true).await;

    // Second forgery: a ninth trigger elsewhere, calling the crate's own function (EXECUTE
    // is PUBLIC's by default). Before, that made every instance fall to short bounds.
    forger
        .execute(
            "CREATE TEMP TABLE elsewhere (x int); \
             CREATE TRIGGER tower_app_sessions_users_update AFTER UPDATE ON elsewhere \
                 FOR EACH ROW EXECUTE FUNCTION public.tower_app_sessions_notify();",
        )
        .await
        .expect("EXECUTE on the function is PUBLIC's");
    assert_eq!(triggers_by_function_name(&db).await, 10);
    after_two_heartbeats(&db).await;
    assert!(
        notifications.is_healthy(),
        "an extra trigger elsewhere turned the notifications off"
    );
    forger.close().await.unwrap();
}
