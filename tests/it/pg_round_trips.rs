//! PostgreSQL round trips per request, counted on the wire: the app's pool reaches the real
//! server through a proxy that counts the queries it forwards. A request whose session must
//! be read from (or checked in) PostgreSQL gets its user from the same query; one that need
//! not check it reads only the user; none makes two sequential queries.
#![cfg(all(feature = "postgres", feature = "redis", feature = "axum"))]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::pg::TestDb;
use common::pg_proxy::Proxy;
use common::redis_server::shared_url;
use common::{login, me_cookie, post, routes, send, Finish};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::store::postgres::PgSessionStore;
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::store::TieredStore;
use tower_app_sessions::users::{PermissionGrant, PgUsers};
use tower_app_sessions::{AppContext, Role, SessionStore, Sessions, User, UserRepository};

/// The app's pool through `proxy`, without TLS so the proxy can read the messages.
async fn counted_pool(db: &TestDb, proxy: &Proxy) -> PgPool {
    let url = proxy.url(&db.url());
    let sep = if url.contains('?') { '&' } else { '?' };
    PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{url}{sep}sslmode=disable"))
        .await
        .expect("connect through the proxy")
}

/// How the app is put together.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// Redis in front of PostgreSQL, the session store paired with the users.
    Tiered,
    /// The same, unpaired: the store and the users each query on their own.
    TieredUnpaired,
    /// PostgreSQL alone, paired.
    Postgres,
}

struct App {
    router: Router,
    users: PgUsers,
}

async fn app(setup: Setup, pool: &PgPool, context: AppContext, clock: &ManualClock) -> App {
    let users = PgUsers::new(pool.clone()).clock(clock.clone());
    let pg = PgSessionStore::new(pool.clone());
    let pg = match setup {
        Setup::TieredUnpaired => pg,
        Setup::Tiered | Setup::Postgres => pg.users(&users),
    };
    let store: Arc<dyn SessionStore> = match setup {
        Setup::Postgres => Arc::new(pg),
        Setup::Tiered | Setup::TieredUnpaired => {
            let redis = RedisStore::connect(RedisConfig::new(shared_url()))
                .await
                .expect("Redis answers (scripts/test starts one)");
            Arc::new(
                TieredStore::new(Arc::new(redis), Arc::new(pg))
                    .revalidate_after(Duration::from_secs(5)),
            )
        }
    };
    let layer = Sessions::new(store, users.clone())
        .clock(clock.clone())
        .layer(context)
        .idle_timeout(Duration::from_secs(600));
    App {
        router: routes().layer(layer),
        users,
    }
}

/// Queries one authenticated `GET /me` sent to PostgreSQL.
async fn queries_of_me(proxy: &Proxy, app: &App, token: &str, email: &str) -> usize {
    let before = proxy.queries();
    assert_eq!(
        me_cookie(&app.router, "sessionId", token).await,
        (200, email.to_owned())
    );
    proxy.queries() - before
}

#[tokio::test]
async fn a_request_checking_its_session_in_postgres_makes_one_query_for_session_and_user() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start().await;
    let pool = counted_pool(&db, &proxy).await;
    for (setup, checked, fresh) in [
        // Cold (a new instance) and past the revalidation bound: one query, the user in it.
        (Setup::Tiered, 1, 1),
        (Setup::Postgres, 1, 1),
        // The contrast the pairing removes: the session's query, then the user's.
        (Setup::TieredUnpaired, 2, 1),
    ] {
        let clock = ManualClock::starting_now();
        let writer = app(setup, &pool, AppContext::Web, &clock).await;
        let user = writer
            .users
            .create(User::new(
                format!("{setup:?}@example.com").to_lowercase(),
                Role::User,
            ))
            .await
            .unwrap();
        let token = login(&writer.router, user.id).await;
        // Another instance: nothing validated, nothing known about the context's grants.
        let reader = app(setup, &pool, AppContext::Web, &clock).await;
        let email = user.email.as_str();
        assert_eq!(
            queries_of_me(&proxy, &reader, &token, email).await,
            checked,
            "{setup:?}: a cold request"
        );
        // Within the revalidation bound the Redis copy is trusted: only the user is read.
        // (PostgreSQL alone reads the session again: it is the only copy.)
        clock.advance(Duration::from_secs(1));
        let within = queries_of_me(&proxy, &reader, &token, email).await;
        match setup {
            Setup::Postgres => assert_eq!(within, 1, "{setup:?}: a warm request"),
            _ => assert_eq!(within, fresh, "{setup:?}: a request within the bound"),
        }
        // Past it the copy is checked again, with the user in the same query.
        clock.advance(Duration::from_secs(5));
        assert_eq!(
            queries_of_me(&proxy, &reader, &token, email).await,
            checked,
            "{setup:?}: a request past the revalidation bound"
        );
    }
    drop(proxy);
}

#[tokio::test]
async fn the_joined_query_brings_the_contexts_permissions_and_sees_a_revocation() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start().await;
    let pool = counted_pool(&db, &proxy).await;
    let clock = ManualClock::starting_now();
    let writer = app(Setup::Tiered, &pool, AppContext::Admin, &clock).await;
    let admin = writer
        .users
        .create(User::new("ops@example.com", Role::Admin))
        .await
        .unwrap();
    writer
        .users
        .grant(PermissionGrant {
            user_id: &admin.id,
            context: &AppContext::Admin,
            permission: "orders:refund",
            granted_by: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let token = login(&writer.router, admin.id).await;
    let reader = app(Setup::Tiered, &pool, AppContext::Admin, &clock).await;
    let refund = || post("/refund").cookie("sessionId", &token).empty();
    let before = proxy.queries();
    let reply = send(&reader.router, refund()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "refunded")
    );
    assert_eq!(
        proxy.queries() - before,
        1,
        "session, user and permissions in one query"
    );
    // A revocation by SQL, past the bound: the joined query finds no live row, and no user.
    sqlx::query("UPDATE sessions SET revoked = true")
        .execute(&db.pool)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(6));
    let reply = send(&reader.router, refund()).await;
    assert_eq!(reply.status.as_u16(), 401, "{}", reply.body);
    drop(proxy);
}
