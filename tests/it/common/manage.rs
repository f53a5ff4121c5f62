//! Session management through the public API, the same checks on every store: listing
//! (newest first, this one marked, no id anywhere), ending one session by handle, ending the
//! others, an admin's listing and revocations, and re-authentication.

use std::time::Duration;

use axum::extract::Path;
use axum::routing;
use axum::Router;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::manage::SessionInfo;
use tower_app_sessions::require::{RequireRecentLoginLayer, REAUTHENTICATION_REQUIRED_BODY};
use tower_app_sessions::{
    AppContext, CurrentUser, Scope, Session, SessionHandle, SessionId, Sessions, User,
};
use uuid::Uuid;

use super::{get, login, post, routes, send, Finish};

/// `routes()` plus `GET /sessions` (`list_mine` as JSON), `DELETE /sessions/{handle}`
/// (`204`, `404` not found, `400` not a handle), `POST /revoke-others` (how many ended, all
/// contexts) and `POST /sensitive` (behind `RequireRecentLoginLayer::within(10 min)`).
pub(crate) fn manage_routes() -> Router {
    let sensitive = routing::post(|| async { "done" })
        .layer(RequireRecentLoginLayer::within(Duration::from_secs(600)));
    routes()
        .route(
            "/sessions",
            routing::get(|_: CurrentUser<User>, session: Session| async move {
                session.list_mine().await.map(axum::Json)
            }),
        )
        .route(
            "/sessions/{handle}",
            routing::delete(
                |_: CurrentUser<User>, session: Session, Path(handle): Path<String>| async move {
                    let Ok(handle) = SessionHandle::parse(&handle) else {
                        return Ok(http::StatusCode::BAD_REQUEST);
                    };
                    Ok::<_, tower_app_sessions::SessionError>(if session.revoke(&handle).await? {
                        http::StatusCode::NO_CONTENT
                    } else {
                        http::StatusCode::NOT_FOUND
                    })
                },
            ),
        )
        .route(
            "/revoke-others",
            routing::post(|_: CurrentUser<User>, session: Session| async move {
                let done = session.revoke_others(Scope::AllContexts).await?;
                Ok::<_, tower_app_sessions::SessionError>(
                    done.map(|d| format!("{} {}", d.ended, d.id.as_str()))
                        .unwrap_or_default(),
                )
            }),
        )
        .route("/sensitive", sensitive)
}

async fn list(app: &Router, token: &str) -> Vec<serde_json::Value> {
    let reply = send(app, get("/sessions").bearer(token).empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

async fn status(app: &Router, token: &str) -> u16 {
    send(app, get("/me").bearer(token).empty())
        .await
        .status
        .as_u16()
}

fn handle(token: &str) -> String {
    SessionId::parse(token)
        .unwrap()
        .handle()
        .as_str()
        .to_owned()
}

/// The whole scenario on `sessions` (any store); `user` and `other` are users its resolver
/// knows.
pub(crate) async fn session_management(sessions: Sessions, user: Uuid, other: Uuid) {
    let clock = ManualClock::starting_now();
    let sessions = sessions.clock(clock.clone());
    let layer = || {
        sessions
            .layer(AppContext::Web)
            .idle_timeout(Duration::from_secs(3600))
            .touch_interval(Duration::from_secs(60))
    };
    let app = manage_routes().layer(layer());
    let admin_app = manage_routes().layer(sessions.layer(AppContext::Admin));

    // Three web sessions a second apart, one admin session, one of another user.
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(login(&app, user).await);
        clock.advance(Duration::from_secs(1));
    }
    let admin = login(&admin_app, user).await;
    let others = login(&app, other).await;
    // The first one is used two minutes later: its slide moves its last_seen.
    clock.advance(Duration::from_secs(120));
    assert_eq!(status(&app, &tokens[0]).await, 200);
    let slid_at = sessions.now();

    // Listing: this context only, newest first, this one marked, no id in the answer.
    let listed = list(&app, &tokens[2]).await;
    let handles: Vec<&str> = listed
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = tokens.iter().rev().map(|t| handle(t)).collect();
    assert_eq!(handles, expected);
    let current: Vec<bool> = listed
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, [true, false, false]);
    let text = serde_json::to_string(&listed).unwrap();
    for token in tokens.iter().chain([&admin, &others]) {
        assert!(!text.contains(token.as_str()), "an id in a listing: {text}");
    }
    for session in &listed {
        assert_eq!(session["context"], "web");
        assert_eq!(session["ip"], "198.51.100.4");
        assert_eq!(session["user_agent"], "rust-test");
    }
    // last_seen: the creation, or the last slide.
    assert_eq!(listed[2]["last_seen"].as_i64(), Some(slid_at));
    assert_eq!(listed[1]["last_seen"], listed[1]["created_at"]);

    // Ending one by handle: another user's handle and a wrong one are the same 404; a
    // malformed one is 400; the user's own other session ends at once.
    let delete = |token: &str, handle: &str| {
        http::Request::delete(format!("/sessions/{handle}"))
            .bearer(token)
            .empty()
    };
    let wrong = SessionId::generate().unwrap().handle();
    for not_mine in [handle(&others), handle(&admin), wrong.as_str().to_owned()] {
        let reply = send(&app, delete(&tokens[2], &not_mine)).await;
        assert_eq!(reply.status, 404, "{not_mine}");
        assert_eq!(reply.body, "");
    }
    for malformed in [
        "short",
        "AAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAA",
        "ÄAAAAAAAAAAAAAA",
    ] {
        let reply = send(&app, delete(&tokens[2], malformed)).await;
        assert_eq!(reply.status, 400, "{malformed}");
    }
    assert_eq!(
        status(&app, &others).await,
        200,
        "another user's session was touched"
    );
    assert_eq!(status(&admin_app, &admin).await, 200);
    let reply = send(&app, delete(&tokens[2], &handle(&tokens[1]))).await;
    assert_eq!(reply.status, 204);
    assert_eq!(status(&app, &tokens[1]).await, 401);
    let reply = send(&app, delete(&tokens[2], &handle(&tokens[1]))).await;
    assert_eq!(reply.status, 404, "ended twice");

    // Re-authentication: a login ten minutes old is recent enough, one older is not.
    let sensitive = |token: &str| post("/sensitive").bearer(token).empty();
    assert_eq!(send(&app, sensitive(&tokens[2])).await.status, 200);
    let anonymous = send(&app, post("/sensitive").empty()).await;
    assert_eq!(
        (
            anonymous.status.as_u16(),
            anonymous.body.contains("unauthorized")
        ),
        (401, true)
    );
    clock.advance(Duration::from_secs(600));
    let stale = send(&app, sensitive(&tokens[2])).await;
    assert_eq!(
        (stale.status.as_u16(), stale.body.as_str()),
        (401, REAUTHENTICATION_REQUIRED_BODY)
    );
    let fresh = login(&app, user).await;
    assert_eq!(send(&app, sensitive(&fresh)).await.status, 200);
    // A slide keeps the time of the login.
    assert_eq!(status(&app, &tokens[2]).await, 200);
    assert_eq!(send(&app, sensitive(&tokens[2])).await.status, 401);

    // Ending the others: every other session of the user in every context ends, this one
    // moves to a fresh id (the old one stops working), the other user's stays.
    let reply = send(&app, post("/revoke-others").bearer(&tokens[2]).empty()).await;
    assert_eq!(reply.status, 200);
    let (ended, kept) = reply.body.split_once(' ').unwrap();
    assert_eq!(ended, "3");
    assert!(reply.issued().is_none(), "a bearer client gets no cookie");
    assert_eq!(status(&app, kept).await, 200, "the new id of this session");
    for gone in [&tokens[0], &tokens[2], &fresh] {
        assert_eq!(status(&app, gone).await, 401);
    }
    assert_eq!(status(&admin_app, &admin).await, 401);
    assert_eq!(status(&app, &others).await, 200);
    let left = sessions.list_user(&user, Scope::AllContexts).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].handle.as_str(), handle(kept));
    assert!(!left[0].current);

    // An admin: lists across contexts, ends one session by handle, then all of them.
    let a = login(&app, user).await;
    let b = login(&admin_app, user).await;
    let all: Vec<SessionInfo> = sessions.list_user(&user, Scope::AllContexts).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter()
            .filter(|s| s.context == AppContext::Admin)
            .count(),
        1
    );
    let only_admin = sessions
        .list_user(&user, Scope::Context(&AppContext::Admin))
        .await
        .unwrap();
    assert_eq!(only_admin.len(), 1);
    assert_eq!(only_admin[0].handle.as_str(), handle(&b));
    let b_handle = SessionHandle::parse(&handle(&b)).unwrap();
    assert!(
        !sessions.revoke_session(&other, &b_handle).await.unwrap(),
        "not other's"
    );
    assert_eq!(status(&admin_app, &b).await, 200);
    assert!(sessions.revoke_session(&user, &b_handle).await.unwrap());
    assert_eq!(status(&admin_app, &b).await, 401);
    assert_eq!(
        sessions
            .revoke_user(&user, Scope::AllContexts)
            .await
            .unwrap(),
        2
    );
    assert_eq!(status(&app, &a).await, 401);
    assert_eq!(status(&app, kept).await, 401);
    assert!(sessions
        .list_user(&user, Scope::AllContexts)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&app, &others).await, 200);
}
