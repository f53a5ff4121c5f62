//! Per-request cost of `SessionLayer` against the lookup a user would otherwise hand-write,
//! measured in the same run (criterion). Each group holds one pair:
//!
//! | group | ours | baseline |
//! |---|---|---|
//! | `anonymous` | layer, no credential | the inner service alone |
//! | `memory` | layer on `MemoryStore` + `MemoryUsers` | cookie parse + `HashMap` session and user lookups |
//! | `redis` | layer on `RedisStore` + `MemoryUsers` | cookie parse + `GET session:web:<id>` + `serde_json` + `HashMap` user |
//! | `tiered` | layer on Redis + PostgreSQL, user from PostgreSQL | cookie parse + `GET` + parse + prepared `SELECT … FROM users WHERE id = $1` |
//!
//! | `data-memory`, `data-redis`, `data-write` | session data: see `support/data_pairs.rs` | |
//! | `observability-cached`, `observability-redis` | metrics recorder + one hook: see `support/observability_pairs.rs` | the same, observability off |
//! | `tower-sessions` | (`memory/layer`, `redis/layer`) | tower-sessions 0.15 with its memory and Redis stores, user id from its session |
//!
//! `cargo bench` runs the memory pairs without services; the Redis and PostgreSQL pairs run
//! when `REDIS_URL` / `DATABASE_URL` answer (features `redis`, `postgres`). Ratios:
//! `scripts/bench-ratios` after a run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{service_fn, Service, ServiceExt};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryStore, MemoryUsers, Role, SessionId, SessionLayer,
    SessionMetadata, SessionRecord, SessionStore, User,
};
use uuid::Uuid;

type Body = String;

/// The trivial handler behind every scenario: it reads the user the way a real one would.
async fn inner(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let authenticated = req.extensions().get::<CurrentUser<User>>().is_some();
    Ok(Response::new(if authenticated {
        "me".into()
    } else {
        "anon".into()
    }))
}

fn request(cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/me");
    if let Some(id) = cookie {
        builder = builder.header("cookie", format!("theme=dark; sessionId={id}"));
    }
    builder.body(Body::new()).expect("static request")
}

/// The session cookie, as a hand-written handler would find it.
fn cookie_value(req: &Request<Body>) -> Option<String> {
    let header = req.headers().get(http::header::COOKIE)?.to_str().ok()?;
    cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == "sessionId")
        .map(|c| c.value().to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn fixture() -> (MemoryUsers, Arc<User>, SessionId, SessionRecord) {
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("bench@example.com", Role::User))
        .expect("fresh directory");
    let id = SessionId::generate().expect("OS randomness");
    let record = SessionRecord::new(
        user.id,
        SessionMetadata::new().ip("127.0.0.1"),
        now_ms(),
        Duration::from_secs(3600),
    );
    (users, user, id, record)
}

fn anonymous(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("anonymous");
    let bare = service_fn(inner);
    group.bench_function("baseline", |b| {
        b.to_async(&rt).iter(|| bare.oneshot(request(None)))
    });
    let layered = tower::ServiceBuilder::new()
        .layer(SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()))
        .service(service_fn(inner));
    group.bench_function("layer", |b| {
        b.to_async(&rt)
            .iter(|| layered.clone().oneshot(request(None)))
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let (users, user, id, record) = fixture();
    let mut group = c.benchmark_group("memory");

    // Hand-written: a map of sessions and a map of users.
    let sessions: Arc<HashMap<String, SessionRecord>> =
        Arc::new(HashMap::from([(id.as_str().to_owned(), record.clone())]));
    let directory: Arc<HashMap<Uuid, Arc<User>>> =
        Arc::new(HashMap::from([(user.id, user.clone())]));
    let raw = service_fn(move |mut req: Request<Body>| {
        let (sessions, directory) = (sessions.clone(), directory.clone());
        async move {
            let found = cookie_value(&req)
                .and_then(|id| sessions.get(&id).cloned())
                .filter(|r| r.expires_at > now_ms())
                .and_then(|r| directory.get(&r.user_id).cloned());
            if let Some(user) = found {
                req.extensions_mut().insert(CurrentUser::new(user));
            }
            inner(req).await
        }
    });
    group.bench_function("baseline", |b| {
        b.to_async(&rt)
            .iter(|| raw.clone().oneshot(request(Some(id.as_str()))))
    });

    let store = MemoryStore::new();
    rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("memory save");
    let layered = tower::ServiceBuilder::new()
        .layer(
            SessionLayer::for_context(AppContext::Web)
                .store(store)
                .users(users),
        )
        .service(service_fn(inner));
    check(&rt, layered.clone(), id.as_str());
    group.bench_function("layer", |b| {
        b.to_async(&rt)
            .iter(|| layered.clone().oneshot(request(Some(id.as_str()))))
    });
    group.finish();
}

/// Fails the benchmark run if a scenario does not authenticate: a fast 401 measures nothing.
fn check<S>(rt: &tokio::runtime::Runtime, service: S, id: &str)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let response = rt
        .block_on(service.oneshot(request(Some(id))))
        .expect("infallible");
    assert_eq!(response.body(), "me", "the scenario does not authenticate");
}

#[cfg(feature = "redis")]
mod redis_pairs {
    use super::*;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};

    pub(crate) fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    pub(crate) async fn connection() -> Option<redis::aio::ConnectionManager> {
        let client = redis::Client::open(url()).ok()?;
        tokio::time::timeout(Duration::from_secs(2), client.get_connection_manager())
            .await
            .ok()?
            .ok()
    }

    /// The session by hand: cookie, `GET session:web:<id>`, `serde_json`, expiry.
    pub(crate) async fn raw_record(
        conn: &mut redis::aio::ConnectionManager,
        req: &Request<Body>,
    ) -> Option<SessionRecord> {
        let id = cookie_value(req)?;
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("session:web:{id}"))
            .query_async(conn)
            .await
            .ok()
            .flatten();
        value
            .and_then(|v| serde_json::from_slice::<SessionRecord>(&v).ok())
            .filter(|r| r.expires_at > now_ms())
    }

    pub(crate) fn redis(c: &mut Criterion) {
        let rt = runtime();
        let Some(conn) = rt.block_on(connection()) else {
            eprintln!("redis pairs skipped: REDIS_URL does not answer");
            return;
        };
        let (users, user, id, record) = fixture();
        let store = rt
            .block_on(RedisStore::connect(RedisConfig::new(url())))
            .expect("redis store");
        rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
            .expect("save");
        let mut group = c.benchmark_group("redis");

        let directory: Arc<HashMap<Uuid, Arc<User>>> =
            Arc::new(HashMap::from([(user.id, user.clone())]));
        let raw = service_fn(move |mut req: Request<Body>| {
            let (mut conn, directory) = (conn.clone(), directory.clone());
            async move {
                let user = raw_record(&mut conn, &req)
                    .await
                    .and_then(|r| directory.get(&r.user_id).cloned());
                if let Some(user) = user {
                    req.extensions_mut().insert(CurrentUser::new(user));
                }
                inner(req).await
            }
        });
        check(&rt, raw.clone(), id.as_str());
        group.bench_function("baseline", |b| {
            b.to_async(&rt)
                .iter(|| raw.clone().oneshot(request(Some(id.as_str()))))
        });

        let layered = tower::ServiceBuilder::new()
            .layer(
                SessionLayer::for_context(AppContext::Web)
                    .store(store)
                    .users(users),
            )
            .service(service_fn(inner));
        check(&rt, layered.clone(), id.as_str());
        group.bench_function("layer", |b| {
            b.to_async(&rt)
                .iter(|| layered.clone().oneshot(request(Some(id.as_str()))))
        });
        let cached = cached(layered_layer_redis(&rt, &id, &record));
        check(&rt, cached.clone(), id.as_str());
        group.bench_function("layer-cached", |b| {
            b.to_async(&rt)
                .iter(|| cached.clone().oneshot(request(Some(id.as_str()))))
        });
        group.finish();
    }

    fn layered_layer_redis(
        rt: &tokio::runtime::Runtime,
        id: &SessionId,
        record: &SessionRecord,
    ) -> SessionLayer {
        let store = rt
            .block_on(RedisStore::connect(RedisConfig::new(url())))
            .expect("redis store");
        rt.block_on(store.save(&AppContext::Web, id, record, now_ms()))
            .expect("save");
        let users = MemoryUsers::new();
        let mut user = User::new("bench@example.com", Role::User);
        user.id = record.user_id;
        users.insert(user).expect("fresh directory");
        SessionLayer::for_context(AppContext::Web)
            .store(store)
            .users(users)
    }
}

/// The same layer with the in-process session cache on.
#[cfg(feature = "redis")]
fn cached(
    layer: SessionLayer,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
{
    let bus = tower_app_sessions::cache::InvalidationBus::local();
    tower::ServiceBuilder::new()
        .layer(layer.cache(&bus, 10_000, Duration::from_secs(5)))
        .service(service_fn(inner))
}

#[cfg(all(feature = "redis", feature = "postgres"))]
mod tiered_pairs {
    use super::*;
    use tower_app_sessions::store::postgres::{migrate, PgSessionStore};
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::TieredStore;
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserRepository;

    async fn database() -> Option<sqlx::PgPool> {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let admin = tokio::time::timeout(Duration::from_secs(2), sqlx::PgPool::connect(&url))
            .await
            .ok()?
            .ok()?;
        // A database of the benchmark's own, recreated each run.
        let name = "tas_bench";
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .ok()?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .ok()?;
        let url = match url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => return None,
        };
        let pool = tower_app_sessions::store::postgres::connect(&url)
            .await
            .ok()?;
        migrate(&pool).await.ok()?;
        Some(pool)
    }

    pub(crate) fn tiered(c: &mut Criterion) {
        let rt = runtime();
        let (Some(conn), Some(pool)) = (
            rt.block_on(redis_pairs::connection()),
            rt.block_on(database()),
        ) else {
            eprintln!("tiered pairs skipped: REDIS_URL or DATABASE_URL does not answer");
            return;
        };
        let users = PgUsers::new(pool.clone());
        let user = rt
            .block_on(users.create(User::new("bench@example.com", Role::User)))
            .expect("create user");
        let id = SessionId::generate().expect("OS randomness");
        let record = SessionRecord::new(
            user.id,
            SessionMetadata::new(),
            now_ms(),
            Duration::from_secs(3600),
        );
        let redis = rt
            .block_on(RedisStore::connect(RedisConfig::new(redis_pairs::url())))
            .expect("redis store");
        let store = TieredStore::new(Arc::new(redis), Arc::new(PgSessionStore::new(pool.clone())));
        rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
            .expect("save");
        let mut group = c.benchmark_group("tiered");

        let raw = service_fn(move |mut req: Request<Body>| {
            let (mut conn, pool) = (conn.clone(), pool.clone());
            async move {
                if let Some(record) = redis_pairs::raw_record(&mut conn, &req).await {
                    // A prepared statement (sqlx caches it per connection).
                    let row: Option<(Uuid, String, String)> =
                        sqlx::query_as("SELECT id, email, role::text FROM users WHERE id = $1")
                            .bind(record.user_id)
                            .fetch_optional(&pool)
                            .await
                            .ok()
                            .flatten();
                    if let Some((_, email, _)) = row {
                        let user = Arc::new(User::new(email, Role::User));
                        req.extensions_mut().insert(CurrentUser::new(user));
                    }
                }
                inner(req).await
            }
        });
        check(&rt, raw.clone(), id.as_str());
        group.bench_function("baseline", |b| {
            b.to_async(&rt)
                .iter(|| raw.clone().oneshot(request(Some(id.as_str()))))
        });

        let layer = SessionLayer::for_context(AppContext::Web)
            .store(store)
            .users(users);
        let layered = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(service_fn(inner));
        check(&rt, layered.clone(), id.as_str());
        group.bench_function("layer", |b| {
            b.to_async(&rt)
                .iter(|| layered.clone().oneshot(request(Some(id.as_str()))))
        });
        let cached = super::cached(layer);
        check(&rt, cached.clone(), id.as_str());
        group.bench_function("layer-cached", |b| {
            b.to_async(&rt)
                .iter(|| cached.clone().oneshot(request(Some(id.as_str()))))
        });
        group.finish();
    }
}

#[cfg(not(feature = "redis"))]
mod redis_pairs {
    pub fn redis(_: &mut criterion::Criterion) {
        eprintln!("redis pairs skipped: built without the `redis` feature");
    }
}

#[cfg(not(all(feature = "redis", feature = "postgres")))]
mod tiered_pairs {
    pub fn tiered(_: &mut criterion::Criterion) {
        eprintln!("tiered pairs skipped: built without the `redis` and `postgres` features");
    }
}

/// The peer: tower-sessions 0.15 resolving the same user from a user id kept in its session,
/// with its memory store (compare with `memory/layer`) and, when Redis answers, its Redis
/// store (compare with `redis/layer`). `scripts/bench-ratios` prints both.
fn peer(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tower-sessions");
    peer_with(
        &rt,
        &mut group,
        "memory",
        tower_sessions::MemoryStore::default(),
    );
    #[cfg(feature = "redis")]
    match rt.block_on(ts_redis::connect(&redis_pairs::url(), 1)) {
        Ok(store) => peer_with(&rt, &mut group, "redis", store),
        Err(error) => eprintln!("tower-sessions redis peer skipped: {error}"),
    }
    group.finish();
}

fn peer_with<S: tower_sessions::SessionStore + Clone>(
    rt: &tokio::runtime::Runtime,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    store: S,
) {
    use tower_sessions::{Session as TsSession, SessionManagerLayer};

    let (_, user, _, _) = fixture();
    let uid = user.id;
    let directory: Arc<HashMap<Uuid, Arc<User>>> = Arc::new(HashMap::from([(user.id, user)]));
    let service = tower::ServiceBuilder::new()
        .layer(SessionManagerLayer::new(store).with_secure(false))
        .service(service_fn(move |mut req: Request<Body>| {
            let directory = directory.clone();
            async move {
                if let Some(session) = req.extensions().get::<TsSession>().cloned() {
                    if req.uri().path() == "/login" {
                        session.insert("user_id", uid).await.expect("peer insert");
                    } else if let Ok(Some(id)) = session.get::<Uuid>("user_id").await {
                        if let Some(user) = directory.get(&id).cloned() {
                            req.extensions_mut().insert(CurrentUser::new(user));
                        }
                    }
                }
                inner(req).await
            }
        }));
    let login = Request::post("/login")
        .body(Body::new())
        .expect("static request");
    let response = rt
        .block_on(service.clone().oneshot(login))
        .expect("infallible");
    let cookie = response
        .headers()
        .get(http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("tower-sessions issued a cookie")
        .to_owned();
    let request = || {
        Request::get("/me")
            .header("cookie", format!("theme=dark; {cookie}"))
            .body(Body::new())
            .expect("static request")
    };
    let probe = rt
        .block_on(service.clone().oneshot(request()))
        .expect("infallible");
    assert_eq!(
        probe.body(),
        "me",
        "the peer scenario does not authenticate"
    );
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| service.clone().oneshot(request()))
    });
}

#[cfg(feature = "redis")]
#[path = "support/ts_redis.rs"]
mod ts_redis;

#[path = "support/data_pairs.rs"]
mod data_pairs;

#[cfg(feature = "cache")]
#[path = "support/observability_pairs.rs"]
mod observability_pairs;
#[cfg(not(feature = "cache"))]
mod observability_pairs {
    pub fn cached(_: &mut criterion::Criterion) {}
    pub fn redis(_: &mut criterion::Criterion) {}
}

fn config() -> Criterion {
    // Shared, noisy 2-core machines: more samples, medians in the report.
    Criterion::default()
        .sample_size(60)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = anonymous, memory, peer, redis_pairs::redis, tiered_pairs::tiered,
        data_pairs::memory, data_pairs::redis_read, data_pairs::redis_write,
        observability_pairs::cached, observability_pairs::redis
}
criterion_main!(benches);
