//! Session data through the public API, the same checks on every store: concurrent patches
//! that must all survive (forced to overlap by a barrier), a save racing the session's end,
//! and a table of bad keys and values.

use std::sync::Arc;

use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::{get as route_get, patch as route_patch};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::Barrier;
use tower_app_sessions::{Session, SessionError};

use super::{get, send, Finish};

/// `PATCH /data` (a JSON object: each key set, `null` removes it; answers the merged data),
/// `GET /data`, `GET /data/{key}` (the value as JSON, `404` if none) and `PATCH /data-held`
/// (as `PATCH /data`, but the handler waits at `barrier` after its change, so every request
/// holding there has loaded the session before any saves).
pub fn data_routes(barrier: Arc<Barrier>) -> Router {
    Router::new()
        .route("/data", route_patch(patch_data).get(read_data))
        .route(
            "/data-held",
            route_patch(move |session: Session, body: Json<Map<String, Value>>| {
                let barrier = Arc::clone(&barrier);
                async move {
                    apply(&session, &body)?;
                    barrier.wait().await;
                    Ok::<_, SessionError>(StatusCode::NO_CONTENT)
                }
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
pub fn patch(path: &str, token: &str, body: &Value) -> http::Request<axum::body::Body> {
    http::Request::patch(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// The session's data, read through `GET /data` on `app`.
pub async fn read(app: &Router, token: &str) -> Map<String, Value> {
    let reply = send(app, get("/data").bearer(token).empty()).await;
    assert_eq!(reply.status, 200, "GET /data: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// `n` concurrent `PATCH /data-held` requests on one session, each setting its own key, all
/// loaded before any is saved (the barrier holds every handler until all have made their
/// change), spread over `apps` (instances sharing the store) in turn. Then every key must be
/// there, read through each app. `data_routes` of each app must share one barrier of `n`.
pub async fn concurrent_patches_all_survive(apps: &[Router], token: &str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            let req = patch("/data-held", token, &json!({ format!("key{i}"): i }));
            tokio::spawn(async move { send(&app, req).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    for app in apps {
        let data = read(app, token).await;
        let missing: Vec<usize> = (0..n)
            .filter(|i| data.get(&format!("key{i}")) != Some(&json!(i)))
            .collect();
        assert!(missing.is_empty(), "lost updates: {missing:?} of {n}");
    }
}

/// Bad keys and values: each is a clear 4xx and leaves the data as it was.
pub async fn hostile_data(app: &Router, token: &str) {
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
