//! The per-user session limit through the layer, the same checks on every store.

use std::time::Duration;

use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::{AppContext, OverLimit, Scope, Sessions};
use uuid::Uuid;

use super::{get, login, post, routes, send, Finish};

async fn status(app: &axum::Router, token: &str) -> u16 {
    send(app, get("/me").bearer(token).empty())
        .await
        .status
        .as_u16()
}

/// At most 3 sessions per user: a fourth login ends the least recently used one at once (the
/// one closest to expiry: use slides the expiry), and with `OverLimit::RefuseLogin` a login
/// over the limit is refused (`409`) and writes nothing. `user` and `other` are two users the
/// store's backend knows.
pub(crate) async fn per_user_limit(sessions: Sessions, user: Uuid, other: Uuid) {
    let clock = ManualClock::starting_now();
    let sessions = sessions.clock(clock.clone());
    let app = routes().layer(
        sessions
            .layer(AppContext::Web)
            .idle_timeout(Duration::from_secs(3600))
            .touch_interval(Duration::from_secs(60))
            .max_sessions_per_user(3),
    );
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(login(&app, user).await);
        clock.advance(Duration::from_secs(1));
    }
    let others = login(&app, other).await;
    // Use the oldest: it slides and becomes the most recently used.
    clock.advance(Duration::from_secs(60));
    assert_eq!(status(&app, &tokens[0]).await, 200);
    let fourth = login(&app, user).await;
    // The least recently used is now the second one: ended at once.
    assert_eq!(
        status(&app, &tokens[1]).await,
        401,
        "the LRU session lives on"
    );
    for token in [&tokens[0], &tokens[2], &fourth, &others] {
        assert_eq!(status(&app, token).await, 200);
    }
    let live = sessions
        .session_store()
        .list_user_sessions(&user, Scope::Context(&AppContext::Web), sessions.now())
        .await
        .unwrap();
    assert_eq!(live.len(), 3, "over the limit");

    // Refusing instead: a fourth login is 409 and adds nothing; a login from one of the three
    // replaces it (it does not count), and after a logout there is room again.
    let refusing = routes().layer(
        sessions
            .layer(AppContext::Web)
            .over_limit(OverLimit::RefuseLogin)
            .max_sessions_per_user(3),
    );
    let reply = send(&refusing, post(&format!("/login/{user}")).empty()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (409, r#"{"error":"session_limit"}"#)
    );
    assert!(reply.set_cookies.is_empty());
    let relogin = send(
        &refusing,
        post(&format!("/login/{user}")).bearer(&fourth).empty(),
    )
    .await;
    assert_eq!(
        relogin.status, 200,
        "a login replacing one of the three was refused"
    );
    let reply = send(&refusing, post("/logout").bearer(&relogin.body).empty()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(login(&refusing, user).await.len(), 43);
    // Other users are never affected.
    assert_eq!(status(&refusing, &others).await, 200);
    sessions
        .session_store()
        .delete_user_sessions(&user, Scope::AllContexts, sessions.now())
        .await
        .unwrap();
    sessions
        .session_store()
        .delete_user_sessions(&other, Scope::AllContexts, sessions.now())
        .await
        .unwrap();
}
