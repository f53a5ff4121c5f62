//! Races forced through the public API: a handler that stops on a barrier until the test has
//! done what it races with, then goes on. No sleeps: the interleaving is fixed. Every wait is
//! bounded ([`within`]): a regression that stops one party fails the test instead of hanging
//! the run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use tokio::sync::Barrier;
use tower_app_sessions::require::UNAUTHORIZED_BODY;
use tower_app_sessions::{CurrentUser, Scope, Session, Sessions, User};
use uuid::Uuid;

use super::{get, login, post as post_req, send, Finish};

/// How long a party of a forced interleaving may wait for the other: far beyond any honest
/// wait (they take microseconds), short enough that a stuck party fails the run in seconds.
pub(crate) const PARTY_WAIT: Duration = Duration::from_secs(30);

/// `wait`, failing the test if it takes longer than [`PARTY_WAIT`]; `what` names what was
/// awaited in the failure.
#[track_caller]
pub(crate) fn within<T>(
    what: &'static str,
    wait: impl Future<Output = T>,
) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(PARTY_WAIT, wait).await {
            Ok(value) => value,
            Err(_) => {
                panic!("{caller}: waited {PARTY_WAIT:?} for {what}: the other party is stuck")
            }
        }
    }
}

/// Two barriers of two: the handler waits at the first when it has its session (so the test
/// knows it is in flight), and at the second until the test lets it go on.
#[derive(Clone)]
pub(crate) struct Gate {
    reached: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            reached: Arc::new(Barrier::new(2)),
            release: Arc::new(Barrier::new(2)),
        }
    }

    /// In the handler: announce, then wait to be released.
    pub(crate) async fn hold(&self) {
        within("the test to see the handler held", self.reached.wait()).await;
        within("the test to release the handler", self.release.wait()).await;
    }

    /// In the test: wait until the handler holds.
    pub(crate) async fn reached(&self) {
        within("the handler to reach the gate", self.reached.wait()).await;
    }

    /// In the test: let the handler go on.
    pub(crate) async fn release(&self) {
        within("the handler to take its release", self.release.wait()).await;
    }
}

/// `routes()` (with `POST /revoke-all`: the current user's sessions in every context) plus
/// `POST /rotate-held` (rotates once the gate releases it, answering the new id) and
/// `POST /save-held` (sets a data key, then holds; the layer saves it after the handler).
pub(crate) fn routes(gate: Gate) -> Router {
    let save_gate = gate.clone();
    super::routes()
        .route(
            "/rotate-held",
            post(move |_: CurrentUser<User>, session: Session| {
                let gate = gate.clone();
                async move {
                    gate.hold().await;
                    session
                        .rotate()
                        .await
                        .map(|id| id.map(|id| id.as_str().to_owned()).unwrap_or_default())
                }
            }),
        )
        .route(
            "/save-held",
            post(move |_: CurrentUser<User>, session: Session| {
                let gate = save_gate.clone();
                async move {
                    session.insert("cart", &[1, 2, 3])?;
                    gate.hold().await;
                    Ok::<_, tower_app_sessions::SessionError>("saved")
                }
            }),
        )
}

/// How the session is ended while the rotation is held.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ender {
    /// `POST /logout` with the same session (another tab).
    Logout,
    /// `POST /revoke-all` from another session of the user (another device).
    RevokeAllElsewhere,
    /// `Sessions::store().delete_user_sessions` (an admin).
    Admin,
}

pub(crate) const ENDERS: [Ender; 3] = [Ender::Logout, Ender::RevokeAllElsewhere, Ender::Admin];

/// What the held request does once released.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Held {
    /// `POST /rotate-held`: rotates the session.
    Rotate,
    /// `POST /save-held`: its data change is saved after the handler.
    Save,
}

pub(crate) const HELD: [Held; 2] = [Held::Rotate, Held::Save];

/// A rotation held while `ender` ends the session writes nothing: see [`held_racing`].
pub(crate) async fn rotation_racing(
    sessions: &Sessions,
    app: &Router,
    gate: &Gate,
    user: Uuid,
    ender: Ender,
) {
    held_racing(sessions, app, gate, user, ender, Held::Rotate).await;
}

/// A rotation or a data save held while `ender` ends the session writes nothing: the held
/// request gets `401` without a cookie removal, neither the old nor any new id authenticates,
/// the old id is not revived, and the user has no live session in the store. `app` is
/// `routes(gate)` under a layer of `sessions`' web context (default cookie name).
pub(crate) async fn held_racing(
    sessions: &Sessions,
    app: &Router,
    gate: &Gate,
    user: Uuid,
    ender: Ender,
    held: Held,
) {
    let token = login(app, user).await;
    let other = login(app, user).await;
    let path = match held {
        Held::Rotate => "/rotate-held",
        Held::Save => "/save-held",
    };
    let rotating = {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(
            async move { send(&app, post_req(path).cookie("sessionId", &token).empty()).await },
        )
    };
    gate.reached().await;
    match ender {
        Ender::Logout => {
            let reply = send(app, post_req("/logout").cookie("sessionId", &token).empty()).await;
            assert_eq!(reply.status, 200, "{ender:?}: {}", reply.body);
        }
        Ender::RevokeAllElsewhere => {
            let reply = send(app, post_req("/revoke-all").bearer(&other).empty()).await;
            assert_eq!(reply.status, 200, "{ender:?}: {}", reply.body);
        }
        Ender::Admin => {
            let ended = sessions
                .session_store()
                .delete_user_sessions(&user, Scope::AllContexts, sessions.now())
                .await
                .unwrap();
            assert!(ended >= 2, "{ender:?}: {ended} sessions ended");
        }
    }
    gate.release().await;
    let reply = within("the held request to answer", rotating)
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (401, UNAUTHORIZED_BODY),
        "{ender:?}: {held:?} of an ended session succeeded"
    );
    // No cookie removal: the request cannot tell an ended session from one rotated by
    // another request, whose new cookie a removal would delete.
    assert!(
        reply.set_cookies.is_empty(),
        "{ender:?}: {:?}",
        reply.set_cookies
    );
    assert_eq!(
        send(app, get("/me").bearer(&token).empty()).await.status,
        401,
        "{ender:?}"
    );
    // Nothing of the user lives on under any id (the other session is gone too, except after
    // a plain logout of this one).
    let live = sessions
        .session_store()
        .list_user_sessions(&user, Scope::AllContexts, sessions.now())
        .await
        .unwrap();
    let expected: Vec<&str> = match ender {
        Ender::Logout => vec![other.as_str()],
        _ => vec![],
    };
    let live: Vec<&str> = live.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(live, expected, "{ender:?} {held:?}: a session survived");
    // Not revived under its own id either.
    let id = tower_app_sessions::SessionId::parse(&token).unwrap();
    let web = tower_app_sessions::AppContext::Web;
    assert_eq!(
        sessions
            .session_store()
            .load(&web, &id, sessions.now())
            .await
            .unwrap(),
        None,
        "{ender:?} {held:?}: the ended session came back"
    );
    if let Ender::Logout = ender {
        send(app, post_req("/logout").bearer(&other).empty()).await;
    }
}
