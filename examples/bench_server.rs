//! The server `scripts/bench-http` loads with wrk: one process per scenario, so scenarios
//! never share a runtime, a connection pool or a cache.
//!
//! ```text
//! BENCH_SCENARIO=tiered REDIS_URL=redis://127.0.0.1:6379 \
//!   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release --features redis,postgres --example bench_server
//! ```
//!
//! Every scenario serves `GET /web/me` and answers `200` with `{"id","email","role"}` for the
//! session it prints (`noauth`: a static body of the same shape, no lookup at all):
//!
//! | `BENCH_SCENARIO` | what `/web/me` does |
//! |---|---|
//! | `noauth` | nothing: a static JSON body |
//! | `memory`, `memory-cached` | our layer on `MemoryStore` + `MemoryUsers` (cache off / on) |
//! | `redis`, `redis-cached` | our layer on `RedisStore` + `MemoryUsers` |
//! | `redis-raw` | by hand: cookie, `GET session:web:<id>`, `serde_json`, a `HashMap` of users |
//! | `tiered`, `tiered-cached` | our layer on Redis in front of PostgreSQL, users from PostgreSQL |
//! | `tiered-raw` | by hand: cookie, `GET`, `serde_json`, prepared `SELECT … FROM users WHERE id = $1` |
//! | `ts-memory` | tower-sessions 0.15, its `MemoryStore`, the user id from the session, a `HashMap` of users |
//! | `ts-redis` | the same on tower-sessions' Redis store (fred) |
//!
//! Scenarios on PostgreSQL recreate the database `tas_bench_http` on the `DATABASE_URL`
//! server and migrate it. On start the server prints exactly two lines on stdout,
//! `listening on http://<addr>` and `token <session id>` (for `Cookie: sessionId=<id>`);
//! `BIND_ADDR` (default `127.0.0.1:0`) chooses the address and `BENCH_WORKERS` (default 2)
//! the runtime's worker threads. On SIGTERM or Ctrl-C it deletes its session and exits.
//! A scenario this build cannot serve prints `unavailable: <why>` and exits with status 3.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::postgres::{self, PgSessionStore};
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::store::TieredStore;
use tower_app_sessions::users::PgUsers;
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryStore, MemoryUsers, Role, SessionId, SessionLayer,
    SessionMetadata, SessionRecord, SessionStore, Sessions, User, UserRepository,
};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DATABASE: &str = "tas_bench_http";
const EMAIL: &str = "bench@example.com";
/// The layer's default idle timeout: a record this fresh needs no sliding write while loaded.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Cached scenarios: entries kept, and how long one may be served (the default revalidation
/// bound, `SESSION_REVALIDATE_SECS`).
const CACHE_ENTRIES: u64 = 10_000;
const CACHE_TTL: Duration = Duration::from_secs(5);

/// What every authenticated scenario answers.
#[derive(Serialize)]
struct Me<'a> {
    id: Uuid,
    email: &'a str,
    role: &'a str,
}

fn me(user: &User) -> Json<Me<'_>> {
    Json(Me {
        id: user.id,
        email: &user.email,
        role: user.role.as_str(),
    })
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// How the server cleans up on exit.
enum Cleanup {
    None,
    Ours(Arc<dyn SessionStore>, SessionId),
    TowerSessions(Box<dyn Fn() -> tokio::task::JoinHandle<()> + Send>),
}

/// A scenario the current build cannot serve: printed as `unavailable: …`, exit status 3.
#[cfg_attr(feature = "cache", allow(dead_code))]
#[derive(Debug)]
struct Unavailable(String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

fn main() {
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(run()) {
        if error.is::<Unavailable>() {
            println!("unavailable: {error}");
            std::process::exit(3);
        }
        eprintln!("bench_server: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let scenario = std::env::var("BENCH_SCENARIO").unwrap_or_default();
    let (app, token, cleanup) = match scenario.as_str() {
        "noauth" => noauth(),
        "memory" => ours(memory().await?, false).await?,
        "memory-cached" => ours(memory().await?, true).await?,
        "redis" => ours(redis().await?, false).await?,
        "redis-cached" => ours(redis().await?, true).await?,
        "redis-raw" => redis_raw().await?,
        "tiered" => ours(tiered().await?, false).await?,
        "tiered-cached" => ours(tiered().await?, true).await?,
        "tiered-raw" => tiered_raw().await?,
        "ts-memory" => peer::serve(tower_sessions::MemoryStore::default()).await?,
        "ts-redis" => peer::serve(peer::redis().await?).await?,
        other => {
            return Err(format!(
                "BENCH_SCENARIO={other:?}: expected one of noauth, memory, memory-cached, redis, \
                 redis-cached, redis-raw, tiered, tiered-cached, tiered-raw, ts-memory, ts-redis"
            )
            .into())
        }
    };

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", listener.local_addr()?)?;
        writeln!(out, "token {token}")?;
        out.flush()?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;

    match cleanup {
        Cleanup::None => {}
        Cleanup::Ours(store, id) => {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                store.delete(&AppContext::Web, &id, now_ms()),
            )
            .await;
        }
        Cleanup::TowerSessions(delete) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), delete()).await;
        }
    }
    Ok(())
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn noauth() -> (Router, String, Cleanup) {
    const BODY: &str = r#"{"id":"00000000-0000-0000-0000-000000000000","email":"bench@example.com","role":"user"}"#;
    let app = Router::new().route(
        "/web/me",
        get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                BODY,
            )
        }),
    );
    // wrk sends the cookie anyway: the route ignores it.
    let token = SessionId::generate().expect("OS randomness");
    (app, token.as_str().to_owned(), Cleanup::None)
}

/// A fresh session of a fresh user, saved in the scenario's store.
async fn session(sessions: &Sessions) -> Result<(SessionId, Arc<User>), BoxError> {
    let user = sessions
        .users()
        .create(User::new(EMAIL, Role::User))
        .await?;
    let id = SessionId::generate()?;
    let record = SessionRecord::new(user.id, SessionMetadata::new(), now_ms(), TTL);
    sessions
        .store()
        .save(&AppContext::Web, &id, &record, now_ms())
        .await?;
    Ok((id, user))
}

/// Our layer on `sessions`, with or without the session cache.
async fn ours(
    (sessions, bus): (Sessions, CacheBus),
    cached: bool,
) -> Result<(Router, String, Cleanup), BoxError> {
    let (id, _) = session(&sessions).await?;
    let mut layer = sessions.layer(AppContext::Web);
    if cached {
        layer = cache::apply(layer, bus).await?;
    }
    let app = Router::new().route(
        "/web/me",
        get(|user: CurrentUser<User>| async move { me(&user).into_response() }).layer(layer),
    );
    let token = id.as_str().to_owned();
    Ok((app, token, Cleanup::Ours(Arc::clone(sessions.store()), id)))
}

/// Where a cached scenario's invalidations travel.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
enum CacheBus {
    Local,
    Redis(String),
}

/// The session cache (`layer.cache(&bus, max_entries, ttl)`), when this build has it.
mod cache {
    use super::*;

    /// `layer` with the session cache on `bus`.
    #[cfg(feature = "cache")]
    pub(super) async fn apply(
        layer: SessionLayer<User>,
        bus: CacheBus,
    ) -> Result<SessionLayer<User>, BoxError> {
        use tower_app_sessions::cache::InvalidationBus;
        let bus = match bus {
            CacheBus::Local => InvalidationBus::local(),
            CacheBus::Redis(url) => InvalidationBus::redis(&url).await?,
        };
        Ok(layer.cache(&bus, CACHE_ENTRIES, CACHE_TTL))
    }

    /// Without the `cache` feature the cached scenarios are unavailable.
    #[cfg(not(feature = "cache"))]
    pub(super) async fn apply(
        layer: SessionLayer<User>,
        bus: CacheBus,
    ) -> Result<SessionLayer<User>, BoxError> {
        let _ = (layer, bus, CACHE_ENTRIES, CACHE_TTL);
        Err(Unavailable("built without the `cache` feature".into()).into())
    }
}

async fn memory() -> Result<(Sessions, CacheBus), BoxError> {
    Ok((
        Sessions::new(MemoryStore::new(), MemoryUsers::new()),
        CacheBus::Local,
    ))
}

async fn redis() -> Result<(Sessions, CacheBus), BoxError> {
    let store = RedisStore::connect(RedisConfig::new(redis_url())).await?;
    Ok((
        Sessions::new(store, MemoryUsers::new()),
        CacheBus::Redis(redis_url()),
    ))
}

/// What `Sessions::from_env` builds in production: Redis in front of PostgreSQL (revalidated
/// every 5 s, the default `SESSION_REVALIDATE_SECS`), users from PostgreSQL.
async fn tiered() -> Result<(Sessions, CacheBus), BoxError> {
    let pool = database().await?;
    let redis = RedisStore::connect(RedisConfig::new(redis_url())).await?;
    let store = TieredStore::new(Arc::new(redis), Arc::new(PgSessionStore::new(pool.clone())))
        .revalidate_after(Duration::from_secs(5));
    Ok((
        Sessions::new(store, PgUsers::new(pool)),
        CacheBus::Redis(redis_url()),
    ))
}

/// Recreates `tas_bench_http` on the `DATABASE_URL` server and migrates it.
async fn database() -> Result<PgPool, BoxError> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (server, query) = match url.split_once('?') {
        Some((server, query)) => (server, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let Some((server, _)) = server.rsplit_once('/') else {
        return Err(format!("DATABASE_URL has no database name: {server}").into());
    };
    {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .execute(&admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&admin)
            .await?;
        admin.close().await;
    }
    let pool = postgres::connect(&format!("{server}/{DATABASE}{query}")).await?;
    postgres::migrate(&pool).await?;
    Ok(pool)
}

/// The users of the scenarios that do not resolve them from PostgreSQL.
type Directory = Arc<HashMap<Uuid, Arc<User>>>;

/// The session cookie, found by hand.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    let header = headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
    cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == "sessionId")
        .map(|c| c.value().to_owned())
}

/// `GET session:web:<id>` and parse, by hand.
async fn raw_record(
    conn: &mut redis::aio::ConnectionManager,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, StatusCode> {
    let Some(id) = cookie_value(headers) else {
        return Ok(None);
    };
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("session:web:{id}"))
        .query_async(conn)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(value
        .and_then(|v| serde_json::from_slice::<SessionRecord>(&v).ok())
        .filter(|r| r.expires_at > now_ms()))
}

async fn raw_connection() -> Result<redis::aio::ConnectionManager, BoxError> {
    Ok(redis::Client::open(redis_url())?
        .get_connection_manager()
        .await?)
}

/// Raw Redis: the session from Redis by hand, the user from a `HashMap`.
async fn redis_raw() -> Result<(Router, String, Cleanup), BoxError> {
    let (sessions, _) = redis().await?;
    let (id, user) = session(&sessions).await?;
    let directory: Directory = Arc::new(HashMap::from([(user.id, user)]));
    let state = (raw_connection().await?, directory);
    async fn handler(
        State((mut conn, directory)): State<(redis::aio::ConnectionManager, Directory)>,
        headers: HeaderMap,
    ) -> Response {
        match raw_record(&mut conn, &headers).await {
            Ok(Some(record)) => match directory.get(&record.user_id) {
                Some(user) => me(user).into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            },
            Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
            Err(status) => status.into_response(),
        }
    }
    let app = Router::new()
        .route("/web/me", get(handler))
        .with_state(state);
    let token = id.as_str().to_owned();
    Ok((app, token, Cleanup::Ours(Arc::clone(sessions.store()), id)))
}

/// Raw Redis + PostgreSQL: the session from Redis by hand, the user by a prepared select on a
/// pool configured like the crate's (`store::postgres::connect`).
async fn tiered_raw() -> Result<(Router, String, Cleanup), BoxError> {
    let pool = database().await?;
    let user = PgUsers::new(pool.clone())
        .create(User::new(EMAIL, Role::User))
        .await?;
    let redis: Arc<dyn SessionStore> =
        Arc::new(RedisStore::connect(RedisConfig::new(redis_url())).await?);
    let id = SessionId::generate()?;
    let record = SessionRecord::new(user.id, SessionMetadata::new(), now_ms(), TTL);
    redis.save(&AppContext::Web, &id, &record, now_ms()).await?;
    let state = (raw_connection().await?, pool);
    async fn handler(
        State((mut conn, pool)): State<(redis::aio::ConnectionManager, PgPool)>,
        headers: HeaderMap,
    ) -> Response {
        let record = match raw_record(&mut conn, &headers).await {
            Ok(Some(record)) => record,
            Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
            Err(status) => return status.into_response(),
        };
        // sqlx prepares the statement once per connection and caches it.
        let row: Result<Option<(Uuid, String, String)>, _> =
            sqlx::query_as("SELECT id, email, role::text FROM users WHERE id = $1")
                .bind(record.user_id)
                .fetch_optional(&pool)
                .await;
        match row {
            Ok(Some((id, email, role))) => Json(Me {
                id,
                email: &email,
                role: &role,
            })
            .into_response(),
            Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let app = Router::new()
        .route("/web/me", get(handler))
        .with_state(state);
    let token = id.as_str().to_owned();
    Ok((app, token, Cleanup::Ours(redis, id)))
}

#[path = "../benches/support/ts_redis.rs"]
mod ts_redis;

/// The peer: tower-sessions 0.15 resolving a user id from its session.
mod peer {
    use super::*;
    use tower_sessions::{Session, SessionManagerLayer};

    /// tower-sessions' Redis store on a fred pool of `TS_REDIS_POOL` clients (default 2, one
    /// per worker thread; fred pipelines on each).
    pub(super) async fn redis() -> Result<ts_redis::Adapted, BoxError> {
        let size = std::env::var("TS_REDIS_POOL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2);
        ts_redis::connect(&redis_url(), size).await
    }

    /// The user of the session, from a `HashMap` as in our memory and Redis scenarios.
    async fn handler(State(directory): State<Directory>, session: Session) -> Response {
        match session.get::<Uuid>("user_id").await {
            Ok(Some(id)) => match directory.get(&id) {
                Some(user) => me(user).into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            },
            Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }

    pub(super) async fn serve<S>(store: S) -> Result<(Router, String, Cleanup), BoxError>
    where
        S: tower_sessions::SessionStore + Clone,
    {
        let store = Arc::new(store);
        let user = Arc::new(User::new(EMAIL, Role::User));
        // A session written through tower-sessions' own API, as a login handler would.
        let session = Session::new(None, Arc::clone(&store), None);
        session.insert("user_id", user.id).await?;
        session.save().await?;
        let id = session
            .id()
            .ok_or("tower-sessions gave the session no id")?;
        let directory: Directory = Arc::new(HashMap::from([(user.id, user)]));
        let layer = SessionManagerLayer::new((*store).clone()).with_name("sessionId");
        let app = Router::new()
            .route("/web/me", get(handler))
            .with_state(directory)
            .layer(layer);
        let cleanup = Cleanup::TowerSessions(Box::new(move || {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let _ = store.delete(&id).await;
            })
        }));
        Ok((app, id.to_string(), cleanup))
    }
}
