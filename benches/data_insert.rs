//! The cost of `Session::insert` against the size of what is inserted, measured in the same
//! run (criterion): a request whose handler inserts the 2,300 keys of
//! `{"AA":0,"AB":0,…}` (16,101 bytes of JSON) against one that inserts a single key of the
//! same total size (`{"k":"xxx…"}`, 16,101 bytes). Both go through the layer on a memory
//! store, the handler's changes saved after it; from the second request on, the session
//! already holds what the request sets (the expensive case when each insert re-measures the
//! data).
//!
//! | group | ours | baseline |
//! |---|---|---|
//! | `data-insert` | `many-keys`: 2,300 inserts (the layer's key cap raised to 10,000 so all are made) | `one-key`: 1 insert of the same bytes |
//! | `data-insert-capped` | `many-keys`: the same body under the default cap of 256 keys (refused at key 257, `413`, nothing saved) | `one-key` as above |
//!
//! With a constant cost per insert, `many-keys / one-key` stays near the ratio of the work
//! each does with its input (2,300 small map inserts against one copy of 16 KB), far from
//! the 2,300× of a quadratic one. `cargo bench --bench data_insert`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tower::{service_fn, ServiceExt};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::{
    AppContext, MemoryStore, MemoryUsers, Role, Session, SessionId, SessionLayer, SessionMetadata,
    SessionRecord, SessionStore, User,
};

type Body = String;

/// The 2,300 keys `AA`, `AB`, … (two letters of `A-Za-z`), each set to `0`.
fn many_keys() -> Vec<(String, Value)> {
    let letters: Vec<char> = ('A'..='Z').chain('a'..='z').collect();
    letters
        .iter()
        .flat_map(|a| letters.iter().map(move |b| format!("{a}{b}")))
        .take(2_300)
        .map(|key| (key, Value::from(0)))
        .collect()
}

/// One key whose body has the same bytes as `many`'s.
fn one_key(many: &[(String, Value)]) -> Vec<(String, Value)> {
    let body_len = body_len(many);
    // {"k":"…"} is 8 bytes around the value's characters.
    vec![("k".to_owned(), Value::from("x".repeat(body_len - 8)))]
}

fn body_len(pairs: &[(String, Value)]) -> usize {
    let map: serde_json::Map<String, Value> = pairs.iter().cloned().collect();
    Value::Object(map).to_string().len()
}

/// A layer on a memory store with a signed-in session; the handler inserts `pairs` and
/// answers `204` (its changes then saved), or the refusal's status.
fn scenario(
    rt: &tokio::runtime::Runtime,
    pairs: Vec<(String, Value)>,
    max_keys: Option<usize>,
) -> (
    impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    SessionId,
) {
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("bench@example.com", Role::User))
        .expect("fresh directory");
    let store = MemoryStore::new();
    let id = SessionId::generate().expect("OS randomness");
    let record = SessionRecord::new(
        user.id,
        SessionMetadata::new(),
        now_ms(),
        Duration::from_secs(24 * 3600),
    );
    rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("memory save");
    let pairs = Arc::new(pairs);
    let handler = service_fn(move |req: Request<Body>| {
        let pairs = Arc::clone(&pairs);
        async move {
            let session = req.extensions().get::<Session>().cloned();
            let mut status = StatusCode::NO_CONTENT;
            if let Some(session) = session {
                for (key, value) in pairs.iter() {
                    if session.insert(key, value).is_err() {
                        status = StatusCode::PAYLOAD_TOO_LARGE;
                        break;
                    }
                }
            }
            let mut response = Response::new(Body::new());
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let mut layer = SessionLayer::for_context(AppContext::Web)
        .store(store)
        .users(users);
    if let Some(max) = max_keys {
        layer = layer.max_data_keys(max);
    }
    let service = tower::ServiceBuilder::new().layer(layer).service(handler);
    (service, id)
}

fn request(id: &SessionId) -> Request<Body> {
    Request::patch("/data")
        .header("cookie", format!("sessionId={}", id.as_str()))
        .body(Body::new())
        .expect("static request")
}

/// Runs `service` once and checks its answer: a scenario that does not do what it says
/// measures nothing.
fn check<S>(rt: &tokio::runtime::Runtime, service: &S, id: &SessionId, want: StatusCode)
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let response = rt
        .block_on(service.clone().oneshot(request(id)))
        .expect("infallible");
    assert_eq!(
        response.status(),
        want,
        "the scenario does not do what it says"
    );
}

fn data_insert(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let many = many_keys();
    let one = one_key(&many);
    assert_eq!(body_len(&many), 16_101);
    assert_eq!(body_len(&one), 16_101);

    let (many_keys, many_id) = scenario(&rt, many.clone(), Some(10_000));
    let (one_key, one_id) = scenario(&rt, one, None);
    let (capped, capped_id) = scenario(&rt, many, None);
    check(&rt, &many_keys, &many_id, StatusCode::NO_CONTENT);
    check(&rt, &one_key, &one_id, StatusCode::NO_CONTENT);
    check(&rt, &capped, &capped_id, StatusCode::PAYLOAD_TOO_LARGE);

    let mut group = c.benchmark_group("data-insert");
    group.sample_size(20);
    group.bench_function("one-key", |b| {
        b.to_async(&rt)
            .iter(|| one_key.clone().oneshot(request(&one_id)))
    });
    group.bench_function("many-keys", |b| {
        b.to_async(&rt)
            .iter(|| many_keys.clone().oneshot(request(&many_id)))
    });
    group.finish();

    let mut group = c.benchmark_group("data-insert-capped");
    group.bench_function("one-key", |b| {
        b.to_async(&rt)
            .iter(|| one_key.clone().oneshot(request(&one_id)))
    });
    group.bench_function("many-keys", |b| {
        b.to_async(&rt)
            .iter(|| capped.clone().oneshot(request(&capped_id)))
    });
    group.finish();
}

criterion_group!(benches, data_insert);
criterion_main!(benches);
