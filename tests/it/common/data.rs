//! Session data through the public API, the same checks on every store: concurrent patches
//! that must all survive (forced to overlap by a barrier), concurrent writers that together
//! must not pass the limit, all-or-nothing saves, a save racing a rotation of its session,
//! and a table of bad keys and values. Every wait on a barrier is bounded: a party that never
//! arrives fails the test instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get as route_get, patch as route_patch, post as route_post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::Barrier;
use tower_app_sessions::data::DEFAULT_MAX_DATA_BYTES;
use tower_app_sessions::{CurrentUser, Scope, Session, SessionError, User};

use super::{get, post, send, Finish, Reply};

/// The longest any party waits at a barrier or for a request: far beyond what the slowest
/// run needs, short enough that a lost party fails the run instead of hanging it.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Waits at `barrier`, or fails (`what` timed out) after [`WAIT`].
pub(crate) async fn wait(barrier: &Barrier, what: &str) -> Result<(), String> {
    tokio::time::timeout(WAIT, barrier.wait())
        .await
        .map(drop)
        .map_err(|_| format!("{what}: a party never reached the barrier in {WAIT:?}"))
}

/// What the data routes hold their handlers on: `writers`, a barrier every `PATCH
/// /data-held` waits at after its change, and `gate`, where `PATCH /data-gated` waits.
#[derive(Clone)]
pub(crate) struct Holds {
    pub writers: Arc<Barrier>,
    pub gate: Gate,
}

impl Holds {
    /// `writers` of `parties`.
    pub(crate) fn new(parties: usize) -> Self {
        Self {
            writers: Arc::new(Barrier::new(parties)),
            gate: Gate::new(),
        }
    }
}

/// Two barriers of two: the handler waits at the first once it has made its change (the
/// test then knows it is in flight), and at the second until the test lets it go on.
#[derive(Clone)]
pub(crate) struct Gate {
    reached: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Gate {
    fn new() -> Self {
        Self {
            reached: Arc::new(Barrier::new(2)),
            release: Arc::new(Barrier::new(2)),
        }
    }

    /// In the handler: announce, then wait to be released.
    async fn hold(&self) -> Result<(), String> {
        wait(&self.reached, "gate (handler side)").await?;
        wait(&self.release, "gate release (handler side)").await
    }

    /// In the test: wait until the handler holds.
    pub(crate) async fn reached(&self) {
        wait(&self.reached, "gate (test side)").await.unwrap();
    }

    /// In the test: let the handler go on.
    pub(crate) async fn release(&self) {
        wait(&self.release, "gate release (test side)")
            .await
            .unwrap();
    }
}

/// A handler's answer when a barrier timed out: `504` with the reason, which no test
/// expects.
fn timed_out(reason: String) -> Response {
    (StatusCode::GATEWAY_TIMEOUT, reason).into_response()
}

/// `PATCH /data` (a JSON object: each key set, `null` removes it; answers the merged data),
/// `GET /data`, `GET /data/{key}` (the value as JSON, `404` if none), and the held ones:
/// - `PATCH /data-held`: as `PATCH /data`, but the handler waits at `holds.writers` after
///   its change (so every request holding there has loaded the session before any saves),
///   then answers `204`;
/// - `PATCH /data-gated`: as `PATCH /data`, then holds at `holds.gate`, then `204`;
/// - `PATCH /data-failing/{status}`: as `PATCH /data`, then answers `status` (the changes
///   were made, the answer is an error);
/// - `PATCH /data-swallowing`: sets `a`, ignores the refusal of the bad key `b b`, then sets
///   `c` and answers `200` with what that `insert` and an explicit `save` returned;
/// - `POST /revoke-others`: ends the user's other sessions and rotates this one (the new
///   id).
pub(crate) fn data_routes(holds: &Holds) -> Router {
    let writers = Arc::clone(&holds.writers);
    let gate = holds.gate.clone();
    Router::new()
        .route("/data", route_patch(patch_data).get(read_data))
        .route(
            "/data-held",
            route_patch(move |session: Session, body: Json<Map<String, Value>>| {
                let writers = Arc::clone(&writers);
                async move {
                    if let Err(error) = apply(&session, &body) {
                        return error.into_response();
                    }
                    match wait(&writers, "writers").await {
                        Ok(()) => StatusCode::NO_CONTENT.into_response(),
                        Err(reason) => timed_out(reason),
                    }
                }
            }),
        )
        .route(
            "/data-gated",
            route_patch(move |session: Session, body: Json<Map<String, Value>>| {
                let gate = gate.clone();
                async move {
                    if let Err(error) = apply(&session, &body) {
                        return error.into_response();
                    }
                    match gate.hold().await {
                        Ok(()) => StatusCode::NO_CONTENT.into_response(),
                        Err(reason) => timed_out(reason),
                    }
                }
            }),
        )
        .route(
            "/data-failing/{status}",
            route_patch(
                |session: Session, Path(status): Path<u16>, body: Json<Map<String, Value>>| async move {
                    apply(&session, &body)?;
                    Ok::<_, SessionError>(StatusCode::from_u16(status).unwrap())
                },
            ),
        )
        .route(
            "/data-swallowing",
            route_patch(|session: Session| async move {
                session.insert("a", "first")?;
                let refused = session.insert("b b", &1).is_err();
                let after = session.insert("c", "after");
                let saved = session.save().await;
                Ok::<_, SessionError>(format!("{refused} {after:?} {saved:?}"))
            }),
        )
        .route(
            "/revoke-others",
            route_post(|_: CurrentUser<User>, session: Session| async move {
                let done = session.revoke_others(Scope::AllContexts).await?;
                Ok::<_, SessionError>(done.map(|d| d.id.as_str().to_owned()).unwrap_or_default())
            }),
        )
        .route(
            "/data/{key}",
            route_get(|session: Session, Path(key): Path<String>| async move {
                Ok::<_, SessionError>(match session.get::<Value>(&key)? {
                    Some(value) => Json(value).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                })
            }),
        )
        .route(
            "/number/{key}",
            route_get(|session: Session, Path(key): Path<String>| async move {
                session
                    .get::<i64>(&key)
                    .map(|n| n.map_or_else(|| "none".to_owned(), |n| n.to_string()))
            }),
        )
}

fn apply(session: &Session, body: &Map<String, Value>) -> Result<(), SessionError> {
    for (key, value) in body {
        if value.is_null() {
            session.remove(key)?;
        } else {
            session.insert(key, value)?;
        }
    }
    Ok(())
}

async fn patch_data(
    session: Session,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Value>, SessionError> {
    apply(&session, &body)?;
    read_data(session).await
}

async fn read_data(session: Session) -> Result<Json<Value>, SessionError> {
    let data = session.data()?;
    Ok(Json(
        serde_json::from_str(&data.to_json()).unwrap_or(Value::Null),
    ))
}

/// A `PATCH` with a JSON body, the session as a bearer token.
pub(crate) fn patch(path: &str, token: &str, body: &Value) -> http::Request<axum::body::Body> {
    http::Request::patch(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// The session's data, read through `GET /data` on `app`.
pub(crate) async fn read(app: &Router, token: &str) -> Map<String, Value> {
    let reply = send(app, get("/data").bearer(token).empty()).await;
    assert_eq!(reply.status, 200, "GET /data: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// Sends every request at once (one task each) and waits for all answers, at most [`WAIT`].
async fn send_all(requests: Vec<(Router, http::Request<axum::body::Body>)>) -> Vec<Reply> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(app, req)| tokio::spawn(async move { send(&app, req).await }))
        .collect();
    let all = futures_join(tasks);
    tokio::time::timeout(WAIT, all)
        .await
        .expect("every request answers in time")
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.expect("the request task did not panic"));
    }
    replies
}

/// `n` concurrent `PATCH /data-held` requests on one session, each setting its own key, all
/// loaded before any is saved (the barrier holds every handler until all have made their
/// change), sent through `writers` (instances sharing the store) in turn. Then every key
/// must be there, read through each of `readers` (waiting, at most 10 s, for an
/// invalidation that travels between instances asynchronously). `data_routes` of each
/// writer must share one barrier of `n`.
pub(crate) async fn concurrent_patches_all_survive(
    writers: &[Router],
    readers: &[Router],
    token: &str,
    n: usize,
) {
    let requests = (0..n)
        .map(|i| {
            let app = writers[i % writers.len()].clone();
            (
                app,
                patch("/data-held", token, &json!({ format!("key{i}"): i })),
            )
        })
        .collect();
    for reply in send_all(requests).await {
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    for app in readers {
        let started = std::time::Instant::now();
        loop {
            let data = read(app, token).await;
            let missing: Vec<usize> = (0..n)
                .filter(|i| data.get(&format!("key{i}")) != Some(&json!(i)))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "lost updates (or a stale copy never invalidated): {missing:?} of {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The value each writer of [`writers_stay_within_the_limit`] sets: 16,000 bytes, so two
/// never fit in the default 16 KiB.
pub(crate) fn writer_value() -> String {
    "x".repeat(16_000)
}

/// `n` concurrent `PATCH /data-held` requests on one empty session, each adding its own key
/// of [`writer_value`] (each fits alone, no two together), all loaded before any is saved.
/// Exactly one is stored (`204`); every other answers `413` and stores nothing; the data
/// read back is within the limit. `data_routes` must hold a barrier of `n`. Returns the
/// key that was stored.
pub(crate) async fn writers_stay_within_the_limit(app: &Router, token: &str, n: usize) -> String {
    let value = writer_value();
    let requests = (0..n)
        .map(|i| {
            let body = json!({ format!("k{i}"): value });
            (app.clone(), patch("/data-held", token, &body))
        })
        .collect();
    let replies = send_all(requests).await;
    let mut stored = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        match reply.status.as_u16() {
            204 => stored.push(format!("k{i}")),
            413 => assert_eq!(reply.body, r#"{"error":"session_data_too_large"}"#),
            other => panic!("writer {i}: {other} {}", reply.body),
        }
    }
    assert_eq!(stored.len(), 1, "writers stored: {stored:?}");
    let data = read(app, token).await;
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(
        keys,
        vec![&stored[0]],
        "the data holds what was answered 204"
    );
    let bytes = Value::Object(data).to_string().len();
    assert!(bytes <= DEFAULT_MAX_DATA_BYTES, "{bytes} bytes stored");
    stored.remove(0)
}

/// All or nothing: a request whose handler answers an error, or made a change that was
/// refused, stores none of its changes, on the data it loaded or any other.
pub(crate) async fn all_or_nothing(app: &Router, token: &str) {
    let kept = send(app, patch("/data", token, &json!({"kept": "yes"}))).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let table: Vec<(&str, &str, Value, u16)> = vec![
        (
            "a good key, then a bad one",
            "/data",
            json!({"a": "kept?", "b b": 1}),
            422,
        ),
        (
            "a good key, then a NUL value",
            "/data",
            json!({"a": "ok", "b": "x\u{0000}y"}),
            422,
        ),
        (
            "a good key, then one over the limit",
            "/data",
            json!({"a": "small", "b": "y".repeat(DEFAULT_MAX_DATA_BYTES)}),
            413,
        ),
        (
            "a 409 after the change",
            "/data-failing/409",
            json!({"a": 1}),
            409,
        ),
        (
            "a 500 after the change",
            "/data-failing/500",
            json!({"a": 1}),
            500,
        ),
        (
            "a 404 after removing",
            "/data-failing/404",
            json!({"kept": null}),
            404,
        ),
    ];
    for (what, path, body, status) in table {
        let reply = send(app, patch(path, token, &body)).await;
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.body);
        assert_eq!(
            Value::Object(read(app, token).await),
            json!({"kept": "yes"}),
            "{what}: part of the request was stored"
        );
    }
    // A handler that swallows the refusal: the later change is refused too, nothing is saved.
    let reply = send(app, patch("/data-swallowing", token, &json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .body
            .starts_with("true Err(Data(Abandoned)) Err(Data(Abandoned))"),
        "{}",
        reply.body
    );
    assert_eq!(
        Value::Object(read(app, token).await),
        json!({"kept": "yes"})
    );
    // A session holding 10 KB: a request adding past the limit keeps nothing of itself.
    let ten = send(
        app,
        patch("/data", token, &json!({"ten": "t".repeat(10_000)})),
    )
    .await;
    assert_eq!(ten.status, 200, "{}", ten.body);
    let over = json!({"a": "first", "b": "b".repeat(7_000)});
    let reply = send(app, patch("/data", token, &over)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let data = read(app, token).await;
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["kept", "ten"],
        "the refused request kept a key"
    );
    let cleared = send(app, patch("/data", token, &json!({"ten": null}))).await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
}

/// A `PATCH` in flight on the session's old id while another request of the same browser
/// rotates it (`POST /revoke-others`, or `POST /rotate`): the `PATCH` answers `401` without
/// any `Set-Cookie` (a removal would delete the new cookie the rotation just issued), and the
/// browser's new cookie keeps working. `app` has `data_routes(holds)` under a layer with the
/// default cookie name; `token` is a fresh session.
pub(crate) async fn a_save_racing_a_rotation_keeps_the_new_cookie(
    app: &Router,
    holds: &Holds,
    token: &str,
    rotation: &str,
) {
    let in_flight = {
        let (app, token) = (app.clone(), token.to_owned());
        tokio::spawn(async move {
            let req = http::Request::patch("/data-gated")
                .header("cookie", format!("sessionId={token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(r#"{"lost":"in the race"}"#))
                .unwrap();
            send(&app, req).await
        })
    };
    holds.gate.reached().await;
    let rotated = send(app, post(rotation).cookie("sessionId", token).empty()).await;
    assert_eq!(rotated.status, 200, "{rotation}: {}", rotated.body);
    let fresh = rotated.issued().expect("the rotation issues a new cookie");
    assert_ne!(fresh, token);
    holds.gate.release().await;
    let reply = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the held request answers")
        .unwrap();
    assert_eq!(reply.status, 401, "{rotation}: {}", reply.body);
    assert!(
        reply.set_cookies.is_empty(),
        "{rotation}: the request that lost the race sent {:?}",
        reply.set_cookies
    );
    // The browser holds the new cookie: it works, and the lost change is not there.
    let me = send(app, get("/me").cookie("sessionId", &fresh).empty()).await;
    assert_eq!(me.status, 200, "{rotation}: {}", me.body);
    let data = send(app, get("/data").cookie("sessionId", &fresh).empty()).await;
    assert_eq!(data.status, 200, "{}", data.body);
    assert_eq!(
        data.body, "{}",
        "{rotation}: the change of the lost request was stored"
    );
    let old = send(app, get("/me").cookie("sessionId", token).empty()).await;
    assert_eq!(old.status, 401, "{rotation}: the old id still works");
}

/// Bad keys and values: each is a clear 4xx and leaves the data as it was.
pub(crate) async fn hostile_data(app: &Router, token: &str) {
    let before = send(app, patch("/data", token, &json!({"kept": "yes"}))).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let big = "x".repeat(17 * 1024);
    let long_key = "k".repeat(129);
    let table: Vec<(&str, Value, u16)> = vec![
        ("empty key", json!({"": 1}), 422),
        ("key too long", json!({ long_key.as_str(): 1 }), 422),
        ("space in key", json!({"a b": 1}), 422),
        ("control character", json!({"a\u{0007}": 1}), 422),
        ("NUL", json!({"a\u{0000}b": 1}), 422),
        ("NUL in a value", json!({"theme": "a\u{0000}b"}), 422),
        (
            "NUL deep in a value",
            json!({"theme": {"x": ["\u{0000}"]}}),
            422,
        ),
        ("Cyrillic look-alike", json!({"thеme": 1}), 422),
        ("fullwidth letter", json!({"ｔheme": 1}), 422),
        ("zero-width space", json!({"the\u{200B}me": 1}), 422),
        ("quote", json!({"a\"b": 1}), 422),
        ("over the size limit", json!({"blob": big}), 413),
    ];
    for (what, body, status) in table {
        let reply = send(app, patch("/data", token, &body)).await;
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.body);
    }
    // Not JSON, not an object, not UTF-8: axum's own 4xx, nothing reaches the session.
    for (what, body) in [
        ("not JSON", b"{".to_vec()),
        ("an array", b"[1]".to_vec()),
        ("not UTF-8", b"{\"k\":\"\xff\"}".to_vec()),
    ] {
        let req = http::Request::patch("/data")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let status = send(app, req).await.status;
        assert!(status.is_client_error(), "{what}: {status}");
    }
    // A value of another type than asked for: 422, not a panic or a 500.
    let wrong = send(app, get("/number/kept").bearer(token).empty()).await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    let bad_key = send(app, get("/number/th%D0%B5me").bearer(token).empty()).await;
    assert_eq!(bad_key.status, 422, "{}", bad_key.body);
    let data = read(app, token).await;
    assert_eq!(
        Value::Object(data),
        json!({"kept": "yes"}),
        "a refused change was kept"
    );
    // Without a session: 401.
    let anonymous = http::Request::patch("/data")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"k":1}"#))
        .unwrap();
    assert_eq!(send(app, anonymous).await.status, 401);
}
