//! PostgreSQL alone against a real server (`DATABASE_URL`), each test in a throwaway database
//! migrated with the crate's migrations: the store contract on `PgSessionStore`, what the
//! Prisma `sessions` table must show (revocation kept for audit, `last_activity`, `inet`,
//! contexts), `PgUsers` (users as the TypeScript apps write them, per-context permissions),
//! and isolation and permissions through the layer.
#![cfg(all(feature = "postgres", feature = "axum"))]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use axum::routing;
use axum::Router;
use chrono::{DateTime, Utc};
use common::pg::{row_state, TestDb};
use common::{get, login, me_bearer, me_cookie, post, routes, send, unauthorized, Finish};
use sqlx::PgPool;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::require::{RequirePermissionLayer, FORBIDDEN_BODY};
use tower_app_sessions::store::postgres::PgSessionStore;
use tower_app_sessions::users::{PermissionGrant, PgUsers, UserError};
use tower_app_sessions::{
    AppContext, Role, Scope, SessionId, SessionLayer, SessionMetadata, SessionRecord, SessionStore,
    Sessions, User, UserRepository, UserResolver,
};
use uuid::Uuid;

// ---- helpers -----------------------------------------------------------------------------

fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::new_v4().simple())
}

async fn new_user(users: &PgUsers, tag: &str, role: Role) -> Arc<User> {
    users
        .create(User::new(unique_email(tag), role))
        .await
        .expect("create user")
}

fn record(user: Uuid, ttl: Duration) -> SessionRecord {
    SessionRecord::new(
        user,
        SessionMetadata::new()
            .ip("203.0.113.9")
            .user_agent("pg-test/1"),
        now_ms(),
        ttl,
    )
}

const HOUR: Duration = Duration::from_secs(3600);

/// Grants `permission` to `user_id` in `context` through `users`.
async fn grant(
    users: &PgUsers,
    user_id: Uuid,
    context: &AppContext,
    permission: &str,
    granted_by: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
) {
    users
        .grant(PermissionGrant {
            user_id: &user_id,
            context,
            permission,
            granted_by: granted_by.as_ref(),
            expires_at,
        })
        .await
        .expect("grant");
}

/// The permissions `user_id` resolves with in `context`.
async fn permissions(users: &PgUsers, context: &AppContext, user_id: Uuid) -> Vec<String> {
    users
        .resolve(context, &user_id)
        .await
        .expect("resolve")
        .expect("user exists")
        .permissions
        .clone()
}

async fn last_activity(pool: &PgPool, id: &str) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT last_activity FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("read last_activity")
}

// ---- 1. the store contract ---------------------------------------------------------------

#[tokio::test]
async fn the_pg_store_keeps_the_contract() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let (a, b) = (
        new_user(&users, "contract-a", Role::User).await,
        new_user(&users, "contract-b", Role::User).await,
    );
    tower_app_sessions::testing::Contract::new()
        .users(a.id, b.id)
        .third_context(AppContext::Admin)
        .check(|| async { PgSessionStore::new(db.pool.clone()) })
        .await
        .assert_ok();
    // Paired with its user repository (as `Sessions::from_env` builds it): the joined query
    // is the layer's read, which the check runs every rule through as well.
    tower_app_sessions::testing::Contract::new()
        .users(a.id, b.id)
        .third_context(AppContext::Admin)
        .check(|| async { PgSessionStore::new(db.pool.clone()).users(&users) })
        .await
        .assert_ok();

    // Every session the contract wrote is still there, revoked (audit): each rule ends by
    // deleting what it wrote, the sessions it let expire too.
    let (total, revoked, unrevoked): (i64, i64, Vec<f64>) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE revoked AND revoked_at IS NOT NULL), \
                coalesce(array_agg(extract(epoch FROM expires_at - created_at)::float8) \
                  FILTER (WHERE NOT revoked), '{}') FROM sessions",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        unrevoked.is_empty(),
        "deleted sessions are not revoked (lifetimes in seconds): {unrevoked:?}"
    );
    assert!(
        revoked >= 6,
        "{revoked} revoked rows of {total}: rows were deleted, not revoked"
    );
}

// ---- 2. what the sessions table shows ----------------------------------------------------

#[tokio::test]
async fn logout_revokes_the_row_and_keeps_it_for_audit() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
    let web = routes().layer(sessions.layer(AppContext::Web));

    let token = login(&web, alice.id).await;
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((false, false, "web".into()))
    );
    assert_eq!(
        me_cookie(&web, "sessionId", &token).await,
        (200, alice.email.clone())
    );

    let reply = send(&web, post("/logout").cookie("sessionId", &token).empty()).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "bye"));
    assert!(
        reply.set_cookies[0].starts_with("sessionId=;"),
        "{:?}",
        reply.set_cookies
    );
    // Kept, marked revoked with a time.
    assert_eq!(
        row_state(&db.pool, &token).await,
        Some((true, true, "web".into()))
    );
    assert_eq!(me_cookie(&web, "sessionId", &token).await, unauthorized());
    assert_eq!(me_bearer(&web, &token).await, unauthorized());

    // The store's own delete does the same, once.
    let store = PgSessionStore::new(db.pool.clone());
    let id = SessionId::generate().unwrap();
    store
        .save(&AppContext::Admin, &id, &record(alice.id, HOUR), now_ms())
        .await
        .unwrap();
    assert!(store
        .delete(&AppContext::Admin, &id, now_ms())
        .await
        .unwrap());
    assert!(!store
        .delete(&AppContext::Admin, &id, now_ms())
        .await
        .unwrap());
    assert_eq!(
        row_state(&db.pool, id.as_str()).await,
        Some((true, true, "admin".into()))
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(alice.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 2, "revoked rows are kept");
}

#[tokio::test]
async fn a_revoked_row_never_loads() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let web = AppContext::Web;
    let id = SessionId::generate().unwrap();
    let rec = record(alice.id, HOUR);
    store.save(&web, &id, &rec, now_ms()).await.unwrap();
    assert_eq!(
        store.load(&web, &id, now_ms()).await.unwrap(),
        Some(rec.clone())
    );

    // Revoked by another app, without revoked_at: the flag alone decides.
    sqlx::query("UPDATE sessions SET revoked = true WHERE id = $1")
        .bind(id.as_str())
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(store.load(&web, &id, now_ms()).await.unwrap(), None);
    assert!(!store
        .extend(&web, &id, now_ms() + 7_200_000, now_ms())
        .await
        .unwrap());
    assert!(store
        .list_user_sessions(&alice.id, Scope::AllContexts, now_ms())
        .await
        .unwrap()
        .is_empty());
    // Not revived by a save under the same id, and the row is unchanged.
    assert!(store.save(&web, &id, &rec, now_ms()).await.is_err());
    assert_eq!(store.load(&web, &id, now_ms()).await.unwrap(), None);
    assert_eq!(
        row_state(&db.pool, id.as_str()).await,
        Some((true, false, "web".into()))
    );

    // Through the layer: anonymous, the same 401 as any unknown id.
    let sessions = Sessions::new(store, users);
    let app = routes().layer(sessions.layer(AppContext::Web));
    assert_eq!(me_bearer(&app, id.as_str()).await, unauthorized());
    let maybe = send(&app, get("/maybe").cookie("sessionId", id.as_str()).empty()).await;
    assert_eq!(
        (maybe.status.as_u16(), maybe.body.as_str()),
        (200, "anonymous")
    );
}

#[tokio::test]
async fn last_activity_moves_on_extend_only() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let web = AppContext::Web;
    let id = SessionId::generate().unwrap();
    let rec = record(alice.id, HOUR);
    store.save(&web, &id, &rec, now_ms()).await.unwrap();
    let saved = last_activity(&db.pool, id.as_str()).await;

    // (`last_activity` is PostgreSQL's `now()`: each statement below runs later than the
    // last, so a write shows as a later value; no waiting needed.)
    for _ in 0..3 {
        assert!(store.load(&web, &id, now_ms()).await.unwrap().is_some());
    }
    assert_eq!(
        last_activity(&db.pool, id.as_str()).await,
        saved,
        "a load wrote"
    );

    let later = rec.expires_at + 60_000;
    assert!(store.extend(&web, &id, later, now_ms()).await.unwrap());
    let extended = last_activity(&db.pool, id.as_str()).await;
    assert!(extended > saved, "{extended} !> {saved}");
    assert_eq!(
        store
            .load(&web, &id, now_ms())
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        later
    );

    // Through the layer: requests inside the touch interval write nothing; one after it
    // slides the idle timeout and moves last_activity with it.
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store, users).clock(clock.clone());
    let app = routes().layer(
        sessions
            .layer(AppContext::Web)
            .idle_timeout(Duration::from_secs(600))
            .touch_interval(Duration::from_secs(60)),
    );
    let token = login(&app, alice.id).await;
    let at_login = last_activity(&db.pool, &token).await;
    let expires_at_login: DateTime<Utc> =
        sqlx::query_scalar("SELECT expires_at FROM sessions WHERE id = $1")
            .bind(&token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(19));
        assert_eq!(me_cookie(&app, "sessionId", &token).await.0, 200);
    }
    assert_eq!(last_activity(&db.pool, &token).await, at_login);
    clock.advance(Duration::from_secs(3));
    assert_eq!(me_cookie(&app, "sessionId", &token).await.0, 200);
    let (touched, expires): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT last_activity, expires_at FROM sessions WHERE id = $1")
            .bind(&token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(touched > at_login, "the slide did not move last_activity");
    assert_eq!(
        expires.timestamp_millis(),
        clock.now_ms() + 600_000,
        "the slide moved expires_at to now + idle"
    );
    assert!(expires > expires_at_login);
}

#[tokio::test]
async fn ip_addresses_are_stored_as_inet() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let web = AppContext::Web;

    for ip in ["203.0.113.7", "2001:db8::7", "::1", "10.0.0.1"] {
        let id = SessionId::generate().unwrap();
        let rec = SessionRecord::new(alice.id, SessionMetadata::new().ip(ip), now_ms(), HOUR);
        store.save(&web, &id, &rec, now_ms()).await.unwrap();
        let (host, family): (Option<String>, Option<i32>) = sqlx::query_as(
            "SELECT host(ip_address), family(ip_address) FROM sessions WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(host.as_deref(), Some(ip));
        assert_eq!(family, Some(if ip.contains(':') { 6 } else { 4 }));
        assert_eq!(
            store
                .load(&web, &id, now_ms())
                .await
                .unwrap()
                .unwrap()
                .ip
                .as_deref(),
            Some(ip)
        );
    }

    // Not an address: the login still works, the column is NULL.
    for junk in [
        "not an ip",
        "999.1.1.1",
        "1.2.3.4'; DROP TABLE users; --",
        "",
    ] {
        let id = SessionId::generate().unwrap();
        let rec = SessionRecord::new(
            alice.id,
            SessionMetadata::new().ip(junk).user_agent("ua"),
            now_ms(),
            HOUR,
        );
        store
            .save(&web, &id, &rec, now_ms())
            .await
            .unwrap_or_else(|e| panic!("save with ip {junk:?}: {e}"));
        let null: bool =
            sqlx::query_scalar("SELECT ip_address IS NULL FROM sessions WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(null, "{junk:?} was stored");
        let loaded = store.load(&web, &id, now_ms()).await.unwrap().unwrap();
        assert_eq!(loaded.ip, None);
        assert_eq!(loaded.user_agent.as_deref(), Some("ua"));
    }
    let users_left: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(users_left, 1);
}

#[tokio::test]
async fn a_custom_context_is_a_store_error_not_a_panic() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let bot = AppContext::custom("telegram-bot").unwrap();
    let id = SessionId::generate().unwrap();
    let rec = record(alice.id, HOUR);

    let named = |e: tower_app_sessions::StoreError| {
        let text = e.to_string();
        assert!(text.contains("telegram-bot"), "{text}");
    };
    named(store.save(&bot, &id, &rec, now_ms()).await.unwrap_err());
    named(store.load(&bot, &id, now_ms()).await.unwrap_err());
    named(store.delete(&bot, &id, now_ms()).await.unwrap_err());
    named(
        store
            .extend(&bot, &id, rec.expires_at, now_ms())
            .await
            .unwrap_err(),
    );
    named(
        store
            .list_user_sessions(&alice.id, Scope::Context(&bot), now_ms())
            .await
            .unwrap_err(),
    );
    named(
        store
            .delete_user_sessions(&alice.id, Scope::Context(&bot), now_ms())
            .await
            .unwrap_err(),
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // The user resolves there, without permissions (none can be stored for it).
    let resolved = users.resolve(&bot, &alice.id).await.unwrap().unwrap();
    assert!(resolved.permissions.is_empty());

    // A layer for that context is a configuration error: `try_layer` returns it, and a layer
    // built all the same never panics; it says so through `check` (and answers 503, see
    // tests/it/unsupported.rs).
    let sessions = Sessions::new(store.clone(), users.clone());
    let err = sessions.try_layer(bot.clone()).unwrap_err();
    assert!(
        matches!(&err, tower_app_sessions::config::ConfigError::UnsupportedContext { context } if *context == bot),
        "{err:?}"
    );
    assert!(err.to_string().contains("telegram-bot"), "{err}");
    let built = [
        sessions.layer(bot.clone()).check(),
        SessionLayer::new(bot.clone(), store.clone(), users.clone()).check(),
        SessionLayer::for_context(bot.clone())
            .store(store.clone())
            .check(),
    ];
    for checked in built {
        let err = checked.unwrap_err();
        assert!(err.to_string().contains("telegram-bot"), "{err}");
    }
    assert!(sessions.try_layer(AppContext::Web).is_ok());
}

#[tokio::test]
async fn listing_and_revoke_all_filter_by_context() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::Admin).await;
    let bob = new_user(&users, "bob", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, admin) = (AppContext::Web, AppContext::Admin);

    let mut saved = Vec::new();
    for ctx in [&web, &web, &admin] {
        let id = SessionId::generate().unwrap();
        store
            .save(ctx, &id, &record(alice.id, HOUR), now_ms())
            .await
            .unwrap();
        saved.push((ctx.clone(), id));
    }
    let bobs = SessionId::generate().unwrap();
    store
        .save(&admin, &bobs, &record(bob.id, HOUR), now_ms())
        .await
        .unwrap();

    let ids = |list: &[tower_app_sessions::store::ListedSession]| {
        let mut v: Vec<String> = list.iter().map(|s| s.id.as_str().to_owned()).collect();
        v.sort();
        v
    };
    let expected = |ctx: Option<&AppContext>| {
        let mut v: Vec<String> = saved
            .iter()
            .filter(|(c, _)| ctx.is_none_or(|ctx| c == ctx))
            .map(|(_, id)| id.as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    let listed_web = store
        .list_user_sessions(&alice.id, Scope::Context(&web), now_ms())
        .await
        .unwrap();
    assert_eq!(ids(&listed_web), expected(Some(&web)));
    assert!(listed_web.iter().all(|s| s.context == web));
    let listed_admin = store
        .list_user_sessions(&alice.id, Scope::Context(&admin), now_ms())
        .await
        .unwrap();
    assert_eq!(ids(&listed_admin), expected(Some(&admin)));
    assert_eq!(listed_admin[0].context, admin);
    assert_eq!(listed_admin[0].record.ip.as_deref(), Some("203.0.113.9"));
    let all = store
        .list_user_sessions(&alice.id, Scope::AllContexts, now_ms())
        .await
        .unwrap();
    assert_eq!(ids(&all), expected(None));

    // Revoke the admin sessions only: the web rows and bob's are untouched.
    assert_eq!(
        store
            .delete_user_sessions(&alice.id, Scope::Context(&admin), now_ms())
            .await
            .unwrap(),
        1
    );
    for (ctx, id) in &saved {
        let revoked = *ctx == admin;
        assert_eq!(
            row_state(&db.pool, id.as_str()).await.map(|r| (r.0, r.1)),
            Some((revoked, revoked)),
            "{ctx} session"
        );
    }
    assert_eq!(
        row_state(&db.pool, bobs.as_str()).await,
        Some((false, false, "admin".into()))
    );
    assert!(store
        .list_user_sessions(&alice.id, Scope::Context(&admin), now_ms())
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        store
            .delete_user_sessions(&alice.id, Scope::AllContexts, now_ms())
            .await
            .unwrap(),
        2
    );
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1 AND NOT revoked")
            .bind(alice.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(live, 0);
    assert!(store.load(&admin, &bobs, now_ms()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_users_session_id_older_than_the_absolute_lifetime_is_refused() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let legacy = SessionId::generate().unwrap();
    sqlx::query(
        "UPDATE users SET session_id = $1, last_login_at = now() - interval '8 days' WHERE id = $2",
    )
    .bind(legacy.as_str())
    .bind(root.id)
    .execute(&db.pool)
    .await
    .unwrap();
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    // Default absolute lifetime: 7 days since the (last) login.
    let web = routes().layer(sessions.layer(AppContext::Web).legacy_fallback(true));
    assert_eq!(me_bearer(&web, legacy.as_str()).await, unauthorized());
    // Refused and cleared, like any expired session.
    let column: Option<String> = sqlx::query_scalar("SELECT session_id FROM users WHERE id = $1")
        .bind(root.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(column, None);
    // Without a last login nothing tells the token's age: refused, not trusted forever.
    sqlx::query("UPDATE users SET session_id = $1, last_login_at = NULL WHERE id = $2")
        .bind(legacy.as_str())
        .bind(root.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(me_bearer(&web, legacy.as_str()).await, unauthorized());
    // A recent login with the same column works, until the absolute lifetime from that
    // login is over (as the layer's clock says).
    sqlx::query("UPDATE users SET session_id = $1, last_login_at = now() WHERE id = $2")
        .bind(legacy.as_str())
        .bind(root.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(me_bearer(&web, legacy.as_str()).await.0, 200);
    let last_login: DateTime<Utc> =
        sqlx::query_scalar("SELECT last_login_at FROM users WHERE id = $1")
            .bind(root.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let clock = ManualClock::at(last_login.timestamp_millis());
    let timed = routes().layer(
        sessions
            .clone()
            .clock(clock.clone())
            .layer(AppContext::Web)
            .legacy_fallback(true)
            .absolute_timeout(Duration::from_secs(3600)),
    );
    clock.advance(Duration::from_millis(3_599_999));
    assert_eq!(me_bearer(&timed, legacy.as_str()).await.0, 200);
    clock.advance(Duration::from_millis(1));
    assert_eq!(me_bearer(&timed, legacy.as_str()).await, unauthorized());
}

#[tokio::test]
async fn users_session_id_opens_the_web_layer_only_with_the_fallback() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let legacy = SessionId::generate().unwrap();
    sqlx::query("UPDATE users SET session_id = $1, last_login_at = now() WHERE id = $2")
        .bind(legacy.as_str())
        .bind(root.id)
        .execute(&db.pool)
        .await
        .unwrap();
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    let web_on = routes().layer(sessions.layer(AppContext::Web).legacy_fallback(true));
    let web_off = routes().layer(sessions.layer(AppContext::Web).legacy_fallback(false));
    let web_default = routes().layer(sessions.layer(AppContext::Web));
    let admin_on = routes().layer(
        sessions
            .layer(AppContext::Admin)
            .cookie_name("admin_sid")
            .legacy_fallback(true),
    );

    let ok = (200, root.email.clone());
    assert_eq!(me_bearer(&web_on, legacy.as_str()).await, ok);
    assert_eq!(me_cookie(&web_on, "sessionId", legacy.as_str()).await, ok);
    // Never the admin panel, even with the fallback switched on in that layer.
    assert_eq!(me_bearer(&admin_on, legacy.as_str()).await, unauthorized());
    assert_eq!(
        me_cookie(&admin_on, "admin_sid", legacy.as_str()).await,
        unauthorized()
    );
    // Not with the fallback off (the migration plan's cleanup stage), nor by default.
    assert_eq!(me_bearer(&web_off, legacy.as_str()).await, unauthorized());
    assert_eq!(
        me_bearer(&web_default, legacy.as_str()).await,
        unauthorized()
    );

    // An id two users share is ambiguous: neither is chosen.
    let twin = new_user(&users, "twin", Role::User).await;
    let shared = SessionId::generate().unwrap();
    sqlx::query("UPDATE users SET session_id = $1, last_login_at = now() WHERE id = ANY($2)")
        .bind(shared.as_str())
        .bind(vec![
            twin.id,
            new_user(&users, "twin2", Role::User).await.id,
        ])
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(me_bearer(&web_on, shared.as_str()).await, unauthorized());

    // Logging out of the legacy session clears users.session_id: it is dead everywhere.
    let reply = send(&web_on, post("/logout").bearer(legacy.as_str()).empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let column: Option<String> = sqlx::query_scalar("SELECT session_id FROM users WHERE id = $1")
        .bind(root.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(column, None);
    assert_eq!(me_bearer(&web_on, legacy.as_str()).await, unauthorized());
    // ... and wrote no sessions row.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

// ---- 3. PgUsers --------------------------------------------------------------------------

#[tokio::test]
async fn users_are_created_found_updated_and_logged_in() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let hex = Uuid::new_v4().simple().to_string();
    let typed = format!("Ada.Lovelace.{hex}@Example.COM");
    let ada = users
        .create(User::new(typed.clone(), Role::User).hashed_password("$argon2id$v=19$x"))
        .await
        .unwrap();
    assert_eq!(ada.email, typed.to_lowercase(), "stored normalized");
    assert_eq!(ada.last_login_at, None);

    // Case-insensitive lookups.
    for query in [
        typed.clone(),
        typed.to_lowercase(),
        typed.to_uppercase(),
        format!("  {typed} "),
    ] {
        let found = users.find_by_email(&query).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(ada.id), "{query:?}");
    }
    assert!(users
        .find_by_email(&unique_email("nobody"))
        .await
        .unwrap()
        .is_none());
    // A row another app wrote with the case the user typed is found too.
    let grace_typed = format!("Grace.Hopper.{hex}@Example.com");
    let grace_id: Uuid = sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(&grace_typed)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let grace = users
        .find_by_email(&grace_typed.to_lowercase())
        .await
        .unwrap()
        .expect("mixed-case row found");
    assert_eq!(
        (grace.id, grace.email.as_str()),
        (grace_id, grace_typed.as_str())
    );

    // A duplicate email, in any case, is EmailTaken.
    for dup in [typed.clone(), typed.to_uppercase()] {
        let err = users
            .create(User::new(dup.clone(), Role::Admin))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::EmailTaken), "{dup}: {err:?}");
    }

    // update
    let mut changed = (*ada).clone();
    changed.role = Role::Operator;
    changed.is_verified = true;
    changed.email = format!("ada.{hex}@example.org");
    let updated = users.update(changed.clone()).await.unwrap().unwrap();
    assert_eq!(
        (updated.role, updated.is_verified, updated.email.as_str()),
        (Role::Operator, true, changed.email.as_str())
    );
    assert_eq!(updated.hashed_password.as_deref(), Some("$argon2id$v=19$x"));
    assert!(users.find_by_email(&typed).await.unwrap().is_none());
    let (role, verified): (String, bool) =
        sqlx::query_as("SELECT role::text, is_verified FROM users WHERE id = $1")
            .bind(ada.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((role.as_str(), verified), ("operator", true));
    // Updating to another user's email is EmailTaken; an unknown id is None.
    let other = new_user(&users, "other", Role::User).await;
    let mut clash = (*updated).clone();
    clash.email = other.email.to_uppercase();
    assert!(matches!(
        users.update(clash).await.unwrap_err(),
        UserError::EmailTaken
    ));
    assert!(users
        .update(User::new(unique_email("ghost"), Role::User))
        .await
        .unwrap()
        .is_none());

    // record_login sets last_login_at to now.
    users.record_login(&ada.id).await.unwrap();
    let resolved = users
        .resolve(&AppContext::Web, &ada.id)
        .await
        .unwrap()
        .unwrap();
    let at = resolved.last_login_at.expect("last_login_at set");
    let skew = (Utc::now() - at).num_seconds().abs();
    assert!(skew < 60, "last_login_at {at} is {skew} s from now");
    let stored: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT last_login_at FROM users WHERE id = $1")
            .bind(ada.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored, Some(at));
}

/// Emails are compared case-insensitively (`UserRepository`), but `users_email_key` is
/// case-sensitive and rows written by the TypeScript apps may keep the case the user typed:
/// a new account (or an update) with such an email in another case must be refused, or two
/// accounts share one address and `find_by_email` silently switches to the newer one.
#[tokio::test]
async fn an_email_differing_only_in_case_from_another_apps_row_is_taken() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let typed = format!("Grace.Hopper.{}@Example.com", Uuid::new_v4().simple());
    let grace: Uuid = sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(&typed)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let created = users
        .create(User::new(typed.to_lowercase(), Role::User))
        .await;
    assert!(
        matches!(created, Err(UserError::EmailTaken)),
        "a second account for {typed}: {created:?}"
    );
    let mut other = (*new_user(&users, "other", Role::User).await).clone();
    other.email = typed.to_lowercase();
    let updated = users.update(other).await;
    assert!(
        matches!(updated, Err(UserError::EmailTaken)),
        "an update took {typed}: {updated:?}"
    );
    assert_eq!(
        users.find_by_email(&typed).await.unwrap().map(|u| u.id),
        Some(grace)
    );
}

#[tokio::test]
async fn a_user_the_typescript_app_wrote_resolves() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let phc = Argon2::default()
        .hash_password(b"ts-password", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
    let email = unique_email("support");
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO users (email, hashed_password, role, is_verified) \
         VALUES ($1, $2, 'support', true) RETURNING id",
    )
    .bind(&email)
    .bind(&phc)
    .fetch_one(&db.pool)
    .await
    .unwrap();

    let user = users
        .resolve(&AppContext::Admin, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role, Role::Support);
    assert_eq!(user.email, email);
    assert!(user.is_verified);
    assert!(user.permissions.is_empty());
    let stored = user.hashed_password.as_deref().expect("hash kept");
    assert_eq!(stored, phc);
    let parsed = PasswordHash::new(stored).unwrap();
    assert!(Argon2::default()
        .verify_password(b"ts-password", &parsed)
        .is_ok());
    assert!(Argon2::default()
        .verify_password(b"wrong", &parsed)
        .is_err());
    assert_eq!(
        users.find_by_email(&email).await.unwrap().map(|u| u.id),
        Some(id)
    );

    // An admin session the TypeScript admin panel wrote opens the admin layer for a support
    // user; the same kind of session of a plain user is refused by the admin policy.
    let plain: Uuid = sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(unique_email("plain"))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let (support_session, plain_session) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    for (sid, uid) in [(&support_session, id), (&plain_session, plain)] {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, expires_at, ip_address, user_agent, application_context) \
             VALUES ($1, $2, now() + interval '1 hour', '192.0.2.1', 'Mozilla/5.0', 'admin')",
        )
        .bind(sid.as_str())
        .bind(uid)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
    let admin = routes().layer(sessions.layer(AppContext::Admin).admit_roles([
        Role::Admin,
        Role::Operator,
        Role::Support,
    ]));
    assert_eq!(
        me_bearer(&admin, support_session.as_str()).await,
        (200, email.clone())
    );
    assert_eq!(
        me_bearer(&admin, plain_session.as_str()).await,
        unauthorized()
    );
}

#[tokio::test]
async fn permissions_are_per_context_and_unexpired() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let ops = new_user(&users, "ops", Role::Operator).await;
    let (web, admin) = (AppContext::Web, AppContext::Admin);
    let grant = |context: &'static AppContext, permission: &'static str, expires_at| {
        grant(
            &users,
            ops.id,
            context,
            permission,
            Some(root.id),
            expires_at,
        )
    };
    static ADMIN: AppContext = AppContext::Admin;
    static WEB: AppContext = AppContext::Web;
    grant(&ADMIN, "orders:refund", None).await;
    grant(&WEB, "profile:edit", None).await;
    sqlx::query(
        "INSERT INTO user_permissions (user_id, permission, application_context, expires_at) \
         VALUES ($1, 'orders:export', 'admin', now() - interval '1 hour')",
    )
    .bind(ops.id)
    .execute(&db.pool)
    .await
    .unwrap();

    let perms = |ctx: &'static AppContext| permissions(&users, ctx, ops.id);
    assert_eq!(perms(&ADMIN).await, ["orders:refund"]);
    assert_eq!(perms(&WEB).await, ["profile:edit"]);
    let granted_by: Option<Uuid> = sqlx::query_scalar(
        "SELECT granted_by FROM user_permissions WHERE user_id = $1 AND permission = 'orders:refund'",
    )
    .bind(ops.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(granted_by, Some(root.id));

    // A future expiry counts; granting again with a past one replaces it.
    grant(
        &ADMIN,
        "reports:read",
        Some(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    assert_eq!(perms(&ADMIN).await, ["orders:refund", "reports:read"]);
    grant(
        &ADMIN,
        "reports:read",
        Some(Utc::now() - chrono::Duration::seconds(1)),
    )
    .await;
    assert_eq!(perms(&ADMIN).await, ["orders:refund"]);

    // Revoking in one context leaves the other.
    assert!(!users
        .revoke_permission(&ops.id, &web, "orders:refund")
        .await
        .unwrap());
    assert!(users
        .revoke_permission(&ops.id, &admin, "orders:refund")
        .await
        .unwrap());
    assert!(!users
        .revoke_permission(&ops.id, &admin, "orders:refund")
        .await
        .unwrap());
    assert!(perms(&ADMIN).await.is_empty());
    assert_eq!(perms(&WEB).await, ["profile:edit"]);
}

/// `PgUsers` skips the permission subquery while a context holds no permission rows at all:
/// a first grant made behind its back shows up within the probe interval (a delay that only
/// ever denies), grants made through it or a clone at once, and revocations always at once.
#[tokio::test]
async fn an_empty_context_is_probed_and_revocations_are_never_late() {
    let db = TestDb::migrated().await;
    let interval = Duration::from_millis(1500);
    let clock = ManualClock::starting_now();
    let users = PgUsers::new(db.pool.clone())
        .permissions_probe_interval(interval)
        .clock(clock.clone());
    let ops = new_user(&users, "ops", Role::Operator).await;
    let admin = AppContext::Admin;
    let perms = |users: &PgUsers, context: &AppContext| {
        let (users, context, id) = (users.clone(), context.clone(), ops.id);
        async move { permissions(&users, &context, id).await }
    };
    let sql_grant = |permission: &'static str| {
        let pool = db.pool.clone();
        let id = ops.id;
        async move {
            sqlx::query(
                "INSERT INTO user_permissions (user_id, permission, application_context) \
                 VALUES ($1, $2, 'admin')",
            )
            .bind(id)
            .bind(permission)
            .execute(&pool)
            .await
            .expect("grant by SQL");
        }
    };

    // The probe finds the admin context empty; grants by SQL right after are not seen for
    // the whole interval (the delay only ever denies)...
    assert!(perms(&users, &admin).await.is_empty());
    sql_grant("orders:refund").await;
    sql_grant("orders:export").await;
    assert!(
        perms(&users, &admin).await.is_empty(),
        "the probe was not trusted"
    );
    clock.advance(interval - Duration::from_millis(1));
    assert!(
        perms(&users, &admin).await.is_empty(),
        "probed again within the interval"
    );
    // ...and from its end on, the next request sees both.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        perms(&users, &admin).await,
        ["orders:export", "orders:refund"]
    );

    // A revocation by SQL is seen by the very next request.
    sqlx::query("DELETE FROM user_permissions WHERE user_id = $1 AND permission = 'orders:refund'")
        .bind(ops.id)
        .execute(&db.pool)
        .await
        .expect("revoke by SQL");
    assert_eq!(perms(&users, &admin).await, ["orders:export"]);

    // The web context is empty too; a grant through a clone is seen at once (the clock
    // moved on, so the grant is later than the probe).
    assert!(perms(&users, &AppContext::Web).await.is_empty());
    clock.advance(Duration::from_millis(1));
    grant(
        &users.clone(),
        ops.id,
        &AppContext::Web,
        "profile:edit",
        None,
        None,
    )
    .await;
    assert_eq!(perms(&users, &AppContext::Web).await, ["profile:edit"]);

    // With the probe off, every resolve loads permissions: a SQL grant is seen at once.
    let strict = PgUsers::new(db.pool.clone()).permissions_probe_interval(Duration::ZERO);
    let other = new_user(&strict, "other", Role::Operator).await;
    let strict_perms = || permissions(&strict, &AppContext::Admin, other.id);
    sqlx::query("DELETE FROM user_permissions")
        .execute(&db.pool)
        .await
        .expect("empty the table");
    assert!(strict_perms().await.is_empty());
    sqlx::query(
        "INSERT INTO user_permissions (user_id, permission, application_context) \
         VALUES ($1, 'reports:read', 'admin')",
    )
    .bind(other.id)
    .execute(&db.pool)
    .await
    .expect("grant by SQL");
    assert_eq!(strict_perms().await, ["reports:read"]);
}

#[tokio::test]
async fn require_permission_answers_403_401_and_200_from_the_database() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let ops = new_user(&users, "ops", Role::Operator).await;
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    let protected = Router::new()
        .route("/layer-refund", routing::post(|| async { "refunded" }))
        .route_layer(RequirePermissionLayer::<User>::new("orders:refund"));
    let admin = routes()
        .merge(protected)
        .layer(sessions.layer(AppContext::Admin).cookie_name("admin_sid"));

    let refund = |token: Option<&str>| {
        let admin = admin.clone();
        let token = token.map(str::to_owned);
        async move {
            let req = match &token {
                Some(t) => post("/layer-refund").cookie("admin_sid", t),
                None => post("/layer-refund"),
            };
            let reply = send(&admin, req.empty()).await;
            (reply.status.as_u16(), reply.body)
        }
    };
    assert_eq!(refund(None).await, unauthorized());
    assert_eq!(
        refund(Some("not-a-session-id-at-all")).await,
        unauthorized()
    );

    let token = login(&admin, ops.id).await;
    assert_eq!(refund(Some(&token)).await, (403, FORBIDDEN_BODY.to_owned()));
    // Granted in the web app only: still forbidden in the admin panel.
    grant(
        &users,
        ops.id,
        &AppContext::Web,
        "orders:refund",
        Some(root.id),
        None,
    )
    .await;
    assert_eq!(refund(Some(&token)).await, (403, FORBIDDEN_BODY.to_owned()));
    // Granted in admin: the next request has it, same session.
    grant(
        &users,
        ops.id,
        &AppContext::Admin,
        "orders:refund",
        Some(root.id),
        None,
    )
    .await;
    assert_eq!(refund(Some(&token)).await, (200, "refunded".to_owned()));
    // Revoked: forbidden again at once.
    users
        .revoke_permission(&ops.id, &AppContext::Admin, "orders:refund")
        .await
        .unwrap();
    assert_eq!(refund(Some(&token)).await, (403, FORBIDDEN_BODY.to_owned()));
    // Unprotected routes of the same router are not affected.
    assert_eq!(
        me_cookie(&admin, "admin_sid", &token).await,
        (200, ops.email.clone())
    );
}

// ---- 4. isolation through the layer, PostgreSQL alone ------------------------------------

#[tokio::test]
async fn web_and_admin_sessions_are_isolated_on_postgres_alone() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let root = new_user(&users, "root", Role::Admin).await;
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users);
    let web = routes().layer(sessions.layer(AppContext::Web));
    let admin = routes().layer(sessions.layer(AppContext::Admin).cookie_name("admin_sid"));

    let web_token = login(&web, root.id).await;
    let admin_token = login(&admin, root.id).await;
    let ok = (200, root.email.clone());
    assert_eq!(me_cookie(&web, "sessionId", &web_token).await, ok);
    assert_eq!(me_bearer(&web, &web_token).await, ok);
    assert_eq!(me_cookie(&admin, "admin_sid", &admin_token).await, ok);
    assert_eq!(me_bearer(&admin, &admin_token).await, ok);

    for (router, cookie, foreign) in [
        (&admin, "admin_sid", &web_token),
        (&web, "sessionId", &admin_token),
    ] {
        assert_eq!(me_cookie(router, cookie, foreign).await, unauthorized());
        assert_eq!(me_bearer(router, foreign).await, unauthorized());
        // A foreign session cannot be logged out (revoked) from the other app either.
        let reply = send(router, post("/logout").bearer(foreign).empty()).await;
        assert_eq!(reply.status, 401);
    }
    assert_eq!(
        row_state(&db.pool, &web_token).await,
        Some((false, false, "web".into()))
    );
    assert_eq!(
        row_state(&db.pool, &admin_token).await,
        Some((false, false, "admin".into()))
    );
    // Still valid in their own apps.
    assert_eq!(me_bearer(&web, &web_token).await, ok);
    assert_eq!(me_bearer(&admin, &admin_token).await, ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_or_a_data_save_never_revives_a_session_ended_while_the_request_ran() {
    use common::races::{held_racing, routes as race_routes, Gate, ENDERS, HELD};
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let sessions = Sessions::new(PgSessionStore::new(db.pool.clone()), users.clone());
    let gate = Gate::new();
    let app = race_routes(gate.clone()).layer(sessions.layer(AppContext::Web));
    for ender in ENDERS {
        let user = new_user(&users, "racer", Role::User).await;
        for held in HELD {
            held_racing(&sessions, &app, &gate, user.id, ender, held).await;
        }
    }
}

#[tokio::test]
async fn a_rotation_revokes_the_old_row_and_copies_it_under_the_new_id() {
    let db = TestDb::migrated().await;
    let users = PgUsers::new(db.pool.clone());
    let alice = new_user(&users, "alice", Role::User).await;
    let store = PgSessionStore::new(db.pool.clone());
    let (web, old, new) = (
        AppContext::Web,
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let now = now_ms();
    let rec = record(alice.id, HOUR);
    store.save(&web, &old, &rec, now).await.unwrap();
    let moved = store
        .rotate(&web, &old, &new, &alice.id, now)
        .await
        .unwrap();
    assert_eq!(moved.as_ref(), Some(&rec));
    assert_eq!(
        store.load(&web, &new, now).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.load(&web, &old, now).await.unwrap(), None);
    assert_eq!(
        row_state(&db.pool, old.as_str()).await,
        Some((true, true, "web".into()))
    );
    assert_eq!(
        row_state(&db.pool, new.as_str()).await,
        Some((false, false, "web".into()))
    );
    // Not in another context, not twice, not for another user.
    let third = SessionId::generate().unwrap();
    assert_eq!(
        store
            .rotate(&AppContext::Admin, &new, &third, &alice.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .rotate(&web, &old, &third, &alice.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .rotate(&web, &new, &third, &Uuid::new_v4(), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        row_state(&db.pool, third.as_str()).await,
        None,
        "nothing written"
    );
    // Nor once expired, as `now` says.
    assert_eq!(
        store
            .rotate(&web, &new, &third, &alice.id, rec.expires_at)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn hostile_emails_never_shadow_an_account_on_postgres() {
    let db = TestDb::migrated().await;
    common::emails::hostile_emails(&PgUsers::new(db.pool.clone())).await;
    // A row the TypeScript app wrote with mixed ASCII case still logs in, and a Kelvin-sign
    // look-alike of it can neither register nor find it.
    let users = PgUsers::new(db.pool.clone());
    let typed = format!("Kate.{}@Example.com", Uuid::new_v4().simple());
    let id: Uuid = sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(&typed)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let lower = typed.to_ascii_lowercase();
    assert_eq!(
        users.find_by_email(&lower).await.unwrap().map(|u| u.id),
        Some(id)
    );
    let kelvin = lower.replacen('k', "\u{212A}", 1);
    assert!(users.find_by_email(&kelvin).await.unwrap().is_none());
    assert!(matches!(
        users.create(User::new(kelvin, Role::User)).await,
        Err(UserError::InvalidEmail(_))
    ));
    // lower() would have folded a stored Kelvin sign (written by another app) onto `k`; the
    // ASCII-only folding does not, so such a row shadows nobody.
    let stored_kelvin = format!("\u{212A}im.{}@example.com", Uuid::new_v4().simple());
    sqlx::query("INSERT INTO users (email) VALUES ($1)")
        .bind(&stored_kelvin)
        .execute(&db.pool)
        .await
        .unwrap();
    let kim = stored_kelvin.replacen('\u{212A}', "k", 1);
    assert!(users.find_by_email(&kim).await.unwrap().is_none());
    let created = users
        .create(User::new(kim.clone(), Role::User))
        .await
        .unwrap();
    assert_eq!(
        users.find_by_email(&kim).await.unwrap().map(|u| u.id),
        Some(created.id)
    );
}
