//! The session-data pairs of `benches/layer.rs` (included with `#[path]`):
//!
//! | group | ours | baseline |
//! |---|---|---|
//! | `data-memory` | layer on `MemoryStore`, a session with data, the handler reads a key | the same layer and session without data, the handler reads none (`memory/layer`) |
//! | `data-redis` | the same on `RedisStore` | the same on `RedisStore` without data (`redis/layer`) |
//! | `data-write` | layer on `RedisStore`, the handler sets one key (saved after it as a patch) | by hand: `GET` + `serde_json` + user lookup, then an `EVAL` of a `cjson` merge of the key |

use super::*;
use tower_app_sessions::data::SessionData;
use tower_app_sessions::Session;

/// What a web app keeps: the preferences of the TypeScript apps' `web_sessions`, a cart.
const DATA: &str = r#"{"theme":"dark","language":"ru","timezone":"Europe/Moscow","cart":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}"#;

/// The handler of the data pairs: the user, and one key of the session's data.
async fn reads_theme(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let theme = req
        .extensions()
        .get::<Session>()
        .and_then(|s| s.get::<String>("theme").ok().flatten());
    let authenticated = req.extensions().get::<CurrentUser<User>>().is_some();
    Ok(Response::new(match (authenticated, theme) {
        (true, Some(_)) => "me".into(),
        (true, None) => "me, no theme".into(),
        _ => "anon".into(),
    }))
}

/// The handler of the write pair: sets one key (the layer saves it after the handler).
async fn sets_step(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let saved = req
        .extensions()
        .get::<Session>()
        .is_some_and(|s| s.insert("step", &3).is_ok());
    Ok(Response::new(if saved { "me" } else { "anon" }.into()))
}

fn with_data(record: &SessionRecord) -> SessionRecord {
    let mut record = record.clone();
    record.data = SessionData::from_json(DATA);
    assert_eq!(record.data.len(), 4, "the fixture's data");
    record
}

/// A layer on `store` serving `handler`, for the data pairs.
fn layered<S, H, F>(
    store: S,
    users: MemoryUsers,
    handler: H,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone
where
    S: SessionStore + 'static,
    H: FnMut(Request<Body>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    tower::ServiceBuilder::new()
        .layer(
            SessionLayer::for_context(AppContext::Web)
                .store(store)
                .users(users),
        )
        .service(service_fn(handler))
}

pub(crate) fn memory(c: &mut Criterion) {
    let rt = runtime();
    let (users, _, id, record) = fixture();
    let (plain, data) = (MemoryStore::new(), MemoryStore::new());
    rt.block_on(plain.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("memory save");
    rt.block_on(data.save(&AppContext::Web, &id, &with_data(&record), now_ms()))
        .expect("memory save");
    let without = layered(plain, users.clone(), inner);
    let with = layered(data, users, reads_theme);
    check(&rt, without.clone(), id.as_str());
    check(&rt, with.clone(), id.as_str());
    let mut group = c.benchmark_group("data-memory");
    group.bench_function("baseline", |b| {
        b.to_async(&rt)
            .iter(|| without.clone().oneshot(request(Some(id.as_str()))))
    });
    group.bench_function("layer", |b| {
        b.to_async(&rt)
            .iter(|| with.clone().oneshot(request(Some(id.as_str()))))
    });
    group.finish();
}

#[cfg(feature = "redis")]
pub(crate) use self::redis::{read as redis_read, write as redis_write};

#[cfg(not(feature = "redis"))]
pub fn redis_read(_: &mut Criterion) {}
#[cfg(not(feature = "redis"))]
pub fn redis_write(_: &mut Criterion) {}

#[cfg(feature = "redis")]
mod redis {
    use super::super::redis_pairs::{connection, raw_record, url};
    use super::*;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};

    /// A merge as one would write it by hand: decode, set, encode, keep the TTL.
    const HAND_MERGE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local record = cjson.decode(v)
if type(record.data) ~= 'table' then record.data = {} end
record.data[ARGV[1]] = cjson.decode(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 1
"#;

    fn store(rt: &tokio::runtime::Runtime) -> RedisStore {
        rt.block_on(RedisStore::connect(RedisConfig::new(url())))
            .expect("redis store")
    }

    pub(crate) fn read(c: &mut Criterion) {
        let rt = runtime();
        if rt.block_on(connection()).is_none() {
            eprintln!("data-redis skipped: REDIS_URL does not answer");
            return;
        }
        let (users, _, id, record) = fixture();
        let (plain_id, data_id) = (id, SessionId::generate().expect("OS randomness"));
        let store = store(&rt);
        rt.block_on(store.save(&AppContext::Web, &plain_id, &record, now_ms()))
            .expect("save");
        rt.block_on(store.save(&AppContext::Web, &data_id, &with_data(&record), now_ms()))
            .expect("save");
        let without = layered(store.clone(), users.clone(), inner);
        let with = layered(store, users, reads_theme);
        check(&rt, without.clone(), plain_id.as_str());
        check(&rt, with.clone(), data_id.as_str());
        let mut group = c.benchmark_group("data-redis");
        group.bench_function("baseline", |b| {
            b.to_async(&rt)
                .iter(|| without.clone().oneshot(request(Some(plain_id.as_str()))))
        });
        group.bench_function("layer", |b| {
            b.to_async(&rt)
                .iter(|| with.clone().oneshot(request(Some(data_id.as_str()))))
        });
        group.finish();
    }

    pub(crate) fn write(c: &mut Criterion) {
        let rt = runtime();
        let Some(conn) = rt.block_on(connection()) else {
            eprintln!("data-write skipped: REDIS_URL does not answer");
            return;
        };
        let (users, user, id, record) = fixture();
        let store = store(&rt);
        rt.block_on(store.save(&AppContext::Web, &id, &with_data(&record), now_ms()))
            .expect("save");
        let directory: Arc<HashMap<Uuid, Arc<User>>> =
            Arc::new(HashMap::from([(user.id, user.clone())]));
        let script = ::redis::Script::new(HAND_MERGE);
        let raw = service_fn(move |req: Request<Body>| {
            let (mut conn, directory, script) = (conn.clone(), directory.clone(), script.clone());
            async move {
                let Some(id) = cookie_value(&req) else {
                    return inner(req).await;
                };
                let found = raw_record(&mut conn, &req)
                    .await
                    .and_then(|r| directory.get(&r.user_id).cloned());
                if found.is_none() {
                    return inner(req).await;
                }
                let applied: i64 = script
                    .key(format!("session:web:{id}"))
                    .arg("step")
                    .arg("3")
                    .invoke_async(&mut conn)
                    .await
                    .unwrap_or(0);
                Ok(Response::new(
                    if applied == 1 { "me" } else { "anon" }.into(),
                ))
            }
        });
        let ours = layered(store, users, sets_step);
        check(&rt, raw.clone(), id.as_str());
        check(&rt, ours.clone(), id.as_str());
        let mut group = c.benchmark_group("data-write");
        group.bench_function("baseline", |b| {
            b.to_async(&rt)
                .iter(|| raw.clone().oneshot(request(Some(id.as_str()))))
        });
        group.bench_function("layer", |b| {
            b.to_async(&rt)
                .iter(|| ours.clone().oneshot(request(Some(id.as_str()))))
        });
        group.finish();
    }
}
