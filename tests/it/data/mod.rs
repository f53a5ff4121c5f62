//! Session data through the public API on every store: concurrent patches that must all
//! survive, concurrent writers that together stay within the limit, all-or-nothing saves, a
//! save that lost a race with a rotation, its lifecycle (login starts empty, rotation and
//! slides keep it, logout ends it), flash messages, bad input, the Redis wire format and the
//! TypeScript apps' adapter reading and extending records that carry data.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::{json, Value};
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::data::DEFAULT_MAX_DATA_BYTES;
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, Session, SessionId, SessionStore, Sessions, User,
};

use crate::common::data::{
    a_save_racing_a_rotation_keeps_the_new_cookie, all_or_nothing, concurrent_patches_all_survive,
    data_routes, hostile_data, patch, read, writers_stay_within_the_limit, Holds,
};
use crate::common::{get, login, post, routes, send, Finish};

/// Requests in the concurrency test, all loaded before any saves.
const CONCURRENT: usize = 50;

/// Writers of 16 KB each in the limit test, all loaded before any saves.
const WRITERS: usize = 200;

/// The shared routes and the data routes (holding on `holds`) under `layer`.
fn app(layer: tower_app_sessions::SessionLayer, holds: &Holds) -> Router {
    routes()
        .merge(data_routes(holds))
        .route(
            "/flash",
            axum::routing::post(|session: Session, body: String| async move {
                session.flash("notice", &body).map(|()| "kept")
            })
            .get(|session: Session| async move {
                session
                    .take_flash::<String>("notice")
                    .map(|n| n.unwrap_or_else(|| "none".to_owned()))
            }),
        )
        .layer(layer)
}

fn alice(users: &MemoryUsers) -> Arc<User> {
    users
        .insert(User::new(
            format!("alice-{}@example.com", uuid::Uuid::new_v4().simple()),
            Role::User,
        ))
        .unwrap()
}

/// A web app on `store` (writers' barrier of `parties`) with a fresh user signed in: the
/// app, the session's token and what the data routes hold on.
async fn signed_in(store: impl SessionStore, parties: usize) -> (Router, String, Holds) {
    let users = MemoryUsers::new();
    let user = alice(&users);
    let sessions = Sessions::new(store, users);
    let holds = Holds::new(parties);
    let web = app(sessions.layer(AppContext::Web), &holds);
    let token = login(&web, user.id).await;
    (web, token, holds)
}

/// The two rotations a request in flight can lose to: "sign out other devices" and a plain
/// rotation, each from another request of the same browser.
const ROTATIONS: [&str; 2] = ["/revoke-others", "/rotate"];

/// What a store holds for the session after the writers: the data's compact JSON, printed
/// for the record, checked against the limit.
fn within_the_limit(store: &str, compact: usize, as_stored: usize) {
    eprintln!(
        "{WRITERS} writers of 16 KB on {store}: {compact} bytes of data stored \
         ({as_stored} as the store writes it), limit {DEFAULT_MAX_DATA_BYTES}"
    );
    assert!(
        compact <= DEFAULT_MAX_DATA_BYTES,
        "{store}: {compact} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_all_survive_on_memory() {
    let (web, token, _) = signed_in(tower_app_sessions::MemoryStore::new(), CONCURRENT).await;
    concurrent_patches_all_survive(
        std::slice::from_ref(&web),
        std::slice::from_ref(&web),
        &token,
        CONCURRENT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_writers_store_no_more_than_the_limit_on_memory() {
    let store = tower_app_sessions::MemoryStore::new();
    let (web, token, _) = signed_in(store.clone(), WRITERS).await;
    writers_stay_within_the_limit(&web, &token, WRITERS).await;
    let id = SessionId::parse(&token).unwrap();
    let now = tower_app_sessions::record::now_ms();
    let data = store
        .load(&AppContext::Web, &id, now)
        .await
        .unwrap()
        .unwrap()
        .data;
    within_the_limit("memory", data.to_json().len(), data.size().bytes);
}

#[tokio::test]
async fn bad_keys_and_values_are_refused_and_lose_nothing_on_memory() {
    let (web, token, _) = signed_in(tower_app_sessions::MemoryStore::new(), 1).await;
    hostile_data(&web, &token).await;
}

#[tokio::test]
async fn an_error_answer_or_a_refused_change_stores_nothing_on_memory() {
    let (web, token, _) = signed_in(tower_app_sessions::MemoryStore::new(), 1).await;
    all_or_nothing(&web, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_lost_a_race_with_a_rotation_keeps_the_cookie_on_memory() {
    for rotation in ROTATIONS {
        let (web, token, holds) = signed_in(tower_app_sessions::MemoryStore::new(), 1).await;
        a_save_racing_a_rotation_keeps_the_new_cookie(&web, &holds, &token, rotation).await;
    }
}

#[tokio::test]
async fn login_starts_empty_rotation_and_slides_keep_data_logout_ends_it() {
    let users = MemoryUsers::new();
    let user = alice(&users);
    let clock = ManualClock::starting_now();
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users).clock(clock.clone());
    let web = app(
        sessions
            .layer(AppContext::Web)
            .touch_interval(Duration::from_secs(60)),
        &Holds::new(1),
    );
    let token = login(&web, user.id).await;
    assert_eq!(read(&web, &token).await.len(), 0, "a new session has data");
    let reply = send(
        &web,
        patch("/data", &token, &json!({"cart": [1, 2], "step": 3})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"cart": [1, 2], "step": 3})
    );
    // A slide (past the touch interval) keeps the data.
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        send(&web, get("/me").bearer(&token).empty()).await.status,
        200
    );
    assert_eq!(read(&web, &token).await["step"], json!(3));
    // Rotation keeps it, under the new id.
    let rotated = send(&web, post("/rotate").bearer(&token).empty())
        .await
        .body;
    assert_eq!(read(&web, &rotated).await["cart"], json!([1, 2]));
    // A login from an authenticated request starts a fresh session: no data carried over.
    let relogin = send(
        &web,
        post(&format!("/login/{}", user.id))
            .bearer(&rotated)
            .empty(),
    )
    .await
    .body;
    assert_eq!(read(&web, &relogin).await.len(), 0, "data survived a login");
    assert_eq!(
        send(&web, get("/data").bearer(&rotated).empty())
            .await
            .status,
        401
    );
    // Flash: read once.
    let kept = send(
        &web,
        post("/flash")
            .bearer(&relogin)
            .body("welcome back".into())
            .unwrap(),
    )
    .await;
    assert_eq!(kept.body, "kept");
    let first = send(&web, get("/flash").bearer(&relogin).empty()).await;
    assert_eq!(first.body, "welcome back");
    let second = send(&web, get("/flash").bearer(&relogin).empty()).await;
    assert_eq!(second.body, "none");
    // Logout: the data is gone with the session.
    assert_eq!(
        send(&web, post("/logout").bearer(&relogin).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&web, get("/data").bearer(&relogin).empty())
            .await
            .status,
        401
    );
}

#[cfg(feature = "redis")]
mod on_redis;

#[cfg(all(feature = "postgres", feature = "redis"))]
mod on_postgres;
