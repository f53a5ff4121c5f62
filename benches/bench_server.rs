//! The server `scripts/bench-http` loads with wrk: one process per scenario, so scenarios
//! never share a runtime, a connection pool or a cache.
//!
//! ```text
//! BENCH_SCENARIO=tiered REDIS_URL=redis://127.0.0.1:6379 \
//!   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p tower-app-sessions-bench --features redis,postgres \
//!     --example bench_server
//! ```
//!
//! Every scenario serves `GET /web/me` and answers `200` with `{"id","email","role"}` for the
//! sessions it seeds (`noauth`: a static body of the same shape, no lookup at all):
//!
//! | `BENCH_SCENARIO` | what `/web/me` does |
//! |---|---|
//! | `noauth` | nothing: a static JSON body |
//! | `memory`, `memory-cached` | our layer on `MemoryStore` + `MemoryUsers` (cache off / on) |
//! | `redis`, `redis-cached` | our layer on `RedisStore` + `MemoryUsers` |
//! | `redis-raw` | by hand: cookie, `GET session:web:<id>`, `serde_json`, a `HashMap` of users |
//! | `tiered`, `tiered-cached` | our layer on Redis in front of PostgreSQL, users from PostgreSQL |
//! | `tiered-raw` | by hand: cookie, `GET`, `serde_json`, prepared `SELECT … FROM users WHERE id = $1` |
//! | `ideal-moka` | by hand: cookie, a `moka` cache of users by session id (10,000 entries, 5 s); a miss does what `tiered-raw` does |
//! | `ts-memory` | tower-sessions 0.15, its `MemoryStore`, the user id from the session, a `HashMap` of users |
//! | `ts-redis` | the same on tower-sessions' Redis store (fred) |
//! | `scale-tiered` | `tiered`: our production configuration, cache off ([`tiered`]) |
//! | `scale-tiered-notified` | the same following PostgreSQL's notifications (a checked copy trusted 300 s), no caches ([`notified`]) |
//! | `scale-tiered-cached` | our production configuration with its caches ([`cache::production_cached`]) |
//! | `scale-raw` | `tiered-raw` |
//!
//! (The `scale-*` scenarios are the same servers; the script runs them with many sessions.)
//!
//! `BENCH_SESSIONS` (default 1) is how many distinct valid sessions the server seeds. With 1
//! it prints exactly two lines on stdout, `listening on http://<addr>` and
//! `token <session id>` (for `Cookie: sessionId=<id>`). With N > 1 it seeds N sessions of
//! N/10 users (at least 1; session i belongs to user i % users), writes their ids to the file
//! `BENCH_TOKENS` names (one a line), and prints `seeded <N> sessions of <users> users in
//! <seconds> s`, `listening on http://<addr>` and `tokens <N>`. Seeding writes what the stores
//! would, in bulk: on PostgreSQL one `INSERT … SELECT … FROM UNNEST(…)` each into `users` and
//! `sessions` (on a connection of its own, closed afterwards), on Redis the exact value and
//! expiry `RedisStore::save` writes under `session:web:<id>` (`SET … EX 86400`, pipelined,
//! without the per-user index, which loads do not read); memory stores and tower-sessions
//! through their own API. Scenarios with a `HashMap` of users hold all of them.
//!
//! Scenarios on PostgreSQL recreate the database `tas_bench_http` on the `DATABASE_URL`
//! server and migrate it. `BIND_ADDR` (default `127.0.0.1:0`) chooses the address and
//! `BENCH_WORKERS` (default 2) the runtime's worker threads. On SIGTERM or Ctrl-C it deletes
//! the sessions it wrote to Redis or a memory store and exits (the database stays until the
//! next start recreates it). A scenario this build cannot serve prints
//! `unavailable: <why>` and exits with status 3.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// Redis commands per pipelined round trip while seeding and cleaning up.
const BATCH: usize = 1_000;

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
    /// Seeded Redis keys, unlinked in pipelined batches.
    RedisKeys(redis::aio::ConnectionManager, Vec<String>),
    TowerSessions(Box<dyn Fn() -> tokio::task::JoinHandle<()> + Send>),
}

/// A scenario ready to serve: its routes, the session ids to send, what to delete on exit.
struct Served {
    app: Router,
    tokens: Vec<String>,
    /// With more than one session: how many users they belong to, and how long seeding took.
    seeded: Option<(usize, Duration)>,
    cleanup: Cleanup,
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

/// `BENCH_SESSIONS`: how many sessions to seed (default 1).
fn session_count() -> Result<usize, BoxError> {
    match std::env::var("BENCH_SESSIONS") {
        Err(_) => Ok(1),
        Ok(raw) if raw.trim().is_empty() => Ok(1),
        Ok(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("BENCH_SESSIONS={raw:?}: expected a whole number >= 1").into()),
        },
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
    let n = session_count()?;
    let served = match scenario.as_str() {
        "noauth" => noauth(n)?,
        "memory" => ours(memory().await?, false, n).await?,
        "memory-cached" => ours(memory().await?, true, n).await?,
        "redis" => ours(redis().await?, false, n).await?,
        "redis-cached" => ours(redis().await?, true, n).await?,
        "redis-raw" => redis_raw(n).await?,
        "tiered" | "scale-tiered" => ours(tiered().await?, false, n).await?,
        "tiered-cached" => ours(tiered().await?, true, n).await?,
        "scale-tiered-notified" => ours(notified().await?, false, n).await?,
        "scale-tiered-cached" => ours(cache::production_cached().await?, false, n).await?,
        "tiered-raw" | "scale-raw" => tiered_raw(n).await?,
        "ideal-moka" => ideal_moka(n).await?,
        "ts-memory" => peer::serve(tower_sessions::MemoryStore::default(), n).await?,
        "ts-redis" => peer::serve(peer::redis().await?, n).await?,
        other => {
            return Err(format!(
                "BENCH_SCENARIO={other:?}: expected one of noauth, memory, memory-cached, redis, \
                 redis-cached, redis-raw, tiered, tiered-cached, tiered-raw, ideal-moka, \
                 ts-memory, ts-redis, scale-tiered, scale-tiered-notified, scale-tiered-cached, scale-raw"
            )
            .into())
        }
    };
    let Served {
        app,
        tokens,
        seeded,
        cleanup,
    } = served;

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    {
        let mut out = std::io::stdout().lock();
        if n == 1 {
            writeln!(out, "listening on http://{}", listener.local_addr()?)?;
            writeln!(out, "token {}", tokens[0])?;
        } else {
            let path = std::env::var("BENCH_TOKENS")
                .map_err(|_| "BENCH_SESSIONS > 1 needs BENCH_TOKENS, the file to write to")?;
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for token in &tokens {
                writeln!(file, "{token}")?;
            }
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            let (users, took) = seeded.unwrap_or_default();
            writeln!(
                out,
                "seeded {} sessions of {users} users in {:.2} s",
                tokens.len(),
                took.as_secs_f64()
            )?;
            writeln!(out, "listening on http://{}", listener.local_addr()?)?;
            writeln!(out, "tokens {}", tokens.len())?;
        }
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
        Cleanup::RedisKeys(mut conn, keys) => {
            // The script waits 5 s for the exit: 100,000 keys take well under a second.
            let _ = tokio::time::timeout(Duration::from_secs(4), async {
                for batch in keys.chunks(BATCH) {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(batch);
                    if unlink.query_async::<()>(&mut conn).await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        Cleanup::TowerSessions(delete) => {
            let _ = tokio::time::timeout(Duration::from_secs(4), delete()).await;
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

fn noauth(n: usize) -> Result<Served, BoxError> {
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
    // wrk sends the cookies anyway (cycling through them like everywhere else): the route
    // ignores them.
    let started = Instant::now();
    let tokens = seed::ids(n)?
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    Ok(Served {
        app,
        tokens,
        seeded: (n > 1).then(|| (0, started.elapsed())),
        cleanup: Cleanup::None,
    })
}

/// A fresh session of a fresh user, saved in the scenario's store.
async fn session(sessions: &Sessions) -> Result<(SessionId, Arc<User>), BoxError> {
    let user = sessions
        .user_repository()
        .create(User::new(EMAIL, Role::User))
        .await?;
    let id = SessionId::generate()?;
    let record = SessionRecord::new(user.id, SessionMetadata::new(), now_ms(), TTL);
    sessions
        .session_store()
        .save(&AppContext::Web, &id, &record, now_ms())
        .await?;
    Ok((id, user))
}

/// Where a scenario's sessions and users live, so many of them can be seeded in bulk.
enum Backing {
    /// In memory: seeded through the API.
    Memory,
    /// Sessions in Redis, users in the scenario's `MemoryUsers`.
    Redis,
    /// Sessions in Redis and PostgreSQL, users in PostgreSQL.
    RedisPg,
}

/// A scenario's stores, the bus its cache (if any) would use, and where its data lives.
struct Backend {
    sessions: Sessions,
    bus: CacheBus,
    backing: Backing,
}

/// Our layer on `sessions`, with or without the session cache, on `n` seeded sessions.
async fn ours(backend: Backend, cached: bool, n: usize) -> Result<Served, BoxError> {
    let Backend {
        sessions,
        bus,
        backing,
    } = backend;
    let started = Instant::now();
    let (tokens, seeded, cleanup) = if n == 1 {
        let (id, _) = session(&sessions).await?;
        let token = id.as_str().to_owned();
        (
            vec![token],
            None,
            Cleanup::Ours(Arc::clone(sessions.session_store()), id),
        )
    } else {
        let (seeded, cleanup) = match backing {
            Backing::Memory => (seed::api(&sessions, n).await?, Cleanup::None),
            Backing::Redis => {
                let users = seed::users_via(sessions.user_repository().as_ref(), n).await?;
                let seeded = seed::Seeded::new(seed::ids(n)?, users);
                let conn = raw_connection().await?;
                seed::redis(conn.clone(), &seeded).await?;
                let keys = seeded.keys();
                (seeded, Cleanup::RedisKeys(conn, keys))
            }
            Backing::RedisPg => seed::postgres_and_redis(n).await?,
        };
        let users = seeded.users.len();
        (seeded.tokens(), Some((users, started.elapsed())), cleanup)
    };
    // Slides are out of this benchmark: each session's idle timeout slides once per touch
    // interval (one PostgreSQL UPDATE and one Redis script, default every 60 s), a write per
    // session per interval, not per request, which the hand-written routes never make. With
    // 100,000 sessions a run outlasts 60 s after seeding, so the default would put a burst of
    // them in some runs and not others.
    let mut layer = sessions
        .layer(AppContext::Web)
        .touch_interval(Duration::from_secs(3600));
    if cached {
        layer = cache::apply(layer, bus).await?;
    }
    let app = Router::new().route(
        "/web/me",
        get(|user: CurrentUser<User>| async move { me(&user).into_response() }).layer(layer),
    );
    Ok(Served {
        app,
        tokens,
        seeded,
        cleanup,
    })
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

    /// Our production configuration with its caches (`scale-tiered-cached`): what [`tiered`]
    /// builds, following PostgreSQL's notifications (triggers installed, one listening
    /// connection), so a checked Redis copy is trusted for 300 s while they are heard (5 s
    /// while not), with the session cache (10,000 entries, 5 s) and the user cache (10,000
    /// users, 300 s) on the Redis invalidation bus, which follows the notifications too.
    #[cfg(feature = "cache")]
    pub(super) async fn production_cached() -> Result<Backend, BoxError> {
        use tower_app_sessions::cache::InvalidationBus;
        use tower_app_sessions::store::postgres::{install_notifications, Notifications};
        const TRUST: Duration = Duration::from_secs(300);
        let pool = database().await?;
        install_notifications(&pool).await?;
        let notifications = Notifications::listen(&pool).await?;
        let redis = Arc::new(RedisStore::connect(RedisConfig::new(redis_url())).await?);
        let bus = InvalidationBus::redis(&redis_url()).await?;
        bus.follow(&notifications);
        let users = PgUsers::new(pool.clone());
        let durable = PgSessionStore::new(pool.clone()).users(&users);
        let store = TieredStore::new(redis, Arc::new(durable))
            .revalidate_after(Duration::from_secs(5))
            .notifications(&notifications, TRUST);
        // The session cache keeps the short bound: a bare Redis DEL (the TypeScript apps'
        // logout) publishes nothing and PostgreSQL cannot notify it.
        let sessions = Sessions::new(store, users)
            .cache(&bus, CACHE_ENTRIES, CACHE_TTL)
            .user_cache(&bus, CACHE_ENTRIES, TRUST);
        Ok(Backend {
            sessions,
            // Unused: the cache is already in `sessions`.
            bus: CacheBus::Redis(redis_url()),
            backing: Backing::RedisPg,
        })
    }

    /// Without the `cache` feature the production configuration with caches is unavailable.
    #[cfg(not(feature = "cache"))]
    pub(super) async fn production_cached() -> Result<Backend, BoxError> {
        Err(Unavailable("built without the `cache` feature".into()).into())
    }
}

async fn memory() -> Result<Backend, BoxError> {
    Ok(Backend {
        sessions: Sessions::new(MemoryStore::new(), MemoryUsers::new()),
        bus: CacheBus::Local,
        backing: Backing::Memory,
    })
}

async fn redis() -> Result<Backend, BoxError> {
    let store = RedisStore::connect(RedisConfig::new(redis_url())).await?;
    Ok(Backend {
        sessions: Sessions::new(store, MemoryUsers::new()),
        bus: CacheBus::Redis(redis_url()),
        backing: Backing::Redis,
    })
}

/// [`tiered`] following PostgreSQL's notifications (`SESSION_NOTIFIED_REVALIDATE_SECS=300`):
/// triggers installed, one listening connection, a checked Redis copy trusted for 300 s while
/// they are heard; no in-process cache.
async fn notified() -> Result<Backend, BoxError> {
    use tower_app_sessions::store::postgres::{install_notifications, Notifications};
    let pool = database().await?;
    install_notifications(&pool).await?;
    let notifications = Notifications::listen(&pool).await?;
    let redis = RedisStore::connect(RedisConfig::new(redis_url())).await?;
    let users = PgUsers::new(pool.clone());
    let durable = PgSessionStore::new(pool.clone()).users(&users);
    let store = TieredStore::new(Arc::new(redis), Arc::new(durable))
        .revalidate_after(Duration::from_secs(5))
        .notifications(&notifications, Duration::from_secs(300));
    Ok(Backend {
        sessions: Sessions::new(store, users),
        bus: CacheBus::Redis(redis_url()),
        backing: Backing::RedisPg,
    })
}

/// What `Sessions::from_env` builds in production: Redis in front of PostgreSQL (revalidated
/// every 5 s, the default `SESSION_REVALIDATE_SECS`), users from PostgreSQL.
async fn tiered() -> Result<Backend, BoxError> {
    let pool = database().await?;
    let redis = RedisStore::connect(RedisConfig::new(redis_url())).await?;
    let users = PgUsers::new(pool.clone());
    // Paired, as `from_env` pairs them: a revalidation brings the user in the same query.
    let durable = PgSessionStore::new(pool.clone()).users(&users);
    let store = TieredStore::new(Arc::new(redis), Arc::new(durable))
        .revalidate_after(Duration::from_secs(5));
    Ok(Backend {
        sessions: Sessions::new(store, users),
        bus: CacheBus::Redis(redis_url()),
        backing: Backing::RedisPg,
    })
}

/// The `DATABASE_URL` server's URLs: of `DATABASE_URL` itself, and of `tas_bench_http`.
fn database_urls() -> Result<(String, String), BoxError> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (server, query) = match url.split_once('?') {
        Some((server, query)) => (server, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let Some((server, _)) = server.rsplit_once('/') else {
        return Err(format!("DATABASE_URL has no database name: {server}").into());
    };
    let bench = format!("{server}/{DATABASE}{query}");
    Ok((url, bench))
}

/// Recreates `tas_bench_http` on the `DATABASE_URL` server and migrates it.
async fn database() -> Result<PgPool, BoxError> {
    let (url, bench) = database_urls()?;
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
    let pool = postgres::connect(&bench).await?;
    postgres::migrate(&pool).await?;
    Ok(pool)
}

/// Many sessions at once, written the way the stores write them.
mod seed {
    use super::*;
    use sqlx::Connection as _;

    /// Seeded sessions: session `i` belongs to `users[i % users.len()]`.
    pub(super) struct Seeded {
        pub(super) ids: Vec<SessionId>,
        pub(super) users: Vec<Arc<User>>,
    }

    impl Seeded {
        pub(super) fn new(ids: Vec<SessionId>, users: Vec<Arc<User>>) -> Self {
            assert!(!users.is_empty(), "sessions need at least one user");
            Self { ids, users }
        }

        pub(super) fn user_of(&self, i: usize) -> &Arc<User> {
            &self.users[i % self.users.len()]
        }

        pub(super) fn tokens(&self) -> Vec<String> {
            self.ids.iter().map(|id| id.as_str().to_owned()).collect()
        }

        /// Their Redis keys, `session:web:<id>` (as `RedisStore` names them).
        pub(super) fn keys(&self) -> Vec<String> {
            self.ids.iter().map(|id| key(id.as_str())).collect()
        }

        /// The users, by id (for the scenarios that resolve users from a `HashMap`).
        pub(super) fn directory(&self) -> Directory {
            Arc::new(
                self.users
                    .iter()
                    .map(|user| (user.id, Arc::clone(user)))
                    .collect(),
            )
        }
    }

    /// How many users `n` sessions belong to: one for every ten sessions, at least one.
    pub(super) fn user_count(n: usize) -> usize {
        (n / 10).max(1)
    }

    /// Fresh users `bench-<i>@example.com`, not stored anywhere yet.
    pub(super) fn new_users(n: usize) -> Vec<User> {
        (0..user_count(n))
            .map(|i| User::new(format!("bench-{i}@example.com"), Role::User))
            .collect()
    }

    pub(super) fn ids(n: usize) -> Result<Vec<SessionId>, BoxError> {
        (0..n)
            .map(|_| SessionId::generate().map_err(Into::into))
            .collect()
    }

    /// The users of `n` sessions, created through `repository` (a `MemoryUsers`).
    pub(super) async fn users_via(
        repository: &dyn UserRepository,
        n: usize,
    ) -> Result<Vec<Arc<User>>, BoxError> {
        let mut users = Vec::with_capacity(user_count(n));
        for user in new_users(n) {
            users.push(repository.create(user).await?);
        }
        Ok(users)
    }

    /// Users and sessions through the scenario's own API (memory stores).
    pub(super) async fn api(sessions: &Sessions, n: usize) -> Result<Seeded, BoxError> {
        let seeded = Seeded::new(
            ids(n)?,
            users_via(sessions.user_repository().as_ref(), n).await?,
        );
        let now = now_ms();
        for (i, id) in seeded.ids.iter().enumerate() {
            let record = SessionRecord::new(seeded.user_of(i).id, SessionMetadata::new(), now, TTL);
            sessions
                .session_store()
                .save(&AppContext::Web, id, &record, now)
                .await?;
        }
        Ok(seeded)
    }

    /// Exactly what `RedisStore::save` writes for each session (`SET session:web:<id> <json>
    /// EX 86400`), pipelined; not the per-user index, which loads do not read.
    pub(super) async fn redis(
        mut conn: redis::aio::ConnectionManager,
        seeded: &Seeded,
    ) -> Result<(), BoxError> {
        let now = now_ms();
        let indices: Vec<usize> = (0..seeded.ids.len()).collect();
        for batch in indices.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for &i in batch {
                let record =
                    SessionRecord::new(seeded.user_of(i).id, SessionMetadata::new(), now, TTL);
                pipe.cmd("SET")
                    .arg(key(seeded.ids[i].as_str()))
                    .arg(serde_json::to_vec(&record)?)
                    .arg("EX")
                    .arg(TTL.as_secs())
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    /// The users and sessions in `tas_bench_http`, one bulk statement each, on a connection
    /// of its own that is closed afterwards (so the server's PostgreSQL statistics, which a
    /// backend reports when it ends, hold the seeding before the load starts).
    pub(super) async fn postgres(seeded: &Seeded) -> Result<(), BoxError> {
        let (_, url) = database_urls()?;
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await?;
        let user_ids: Vec<Uuid> = seeded.users.iter().map(|u| u.id).collect();
        let emails: Vec<&str> = seeded.users.iter().map(|u| u.email.as_str()).collect();
        sqlx::query(
            "INSERT INTO users (id, email, role, is_verified, created_at) \
             SELECT u.id, u.email, 'user'::\"UserRole\", false, now() \
             FROM UNNEST($1::uuid[], $2::text[]) AS u(id, email)",
        )
        .bind(&user_ids)
        .bind(&emails)
        .execute(&mut conn)
        .await?;
        let ids: Vec<&str> = seeded.ids.iter().map(SessionId::as_str).collect();
        let owners: Vec<Uuid> = (0..seeded.ids.len())
            .map(|i| seeded.user_of(i).id)
            .collect();
        // The columns `PgSessionStore::save` writes, for a record without client details.
        sqlx::query(
            "INSERT INTO sessions \
               (id, user_id, data, expires_at, created_at, last_activity, application_context) \
             SELECT s.id, s.user_id, '{}'::jsonb, now() + interval '24 hours', now(), now(), \
               'web'::\"ApplicationType\" \
             FROM UNNEST($1::text[], $2::uuid[]) AS s(id, user_id)",
        )
        .bind(&ids)
        .bind(&owners)
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }

    /// `n` sessions of fresh users in PostgreSQL and Redis at once (the tiered scenarios and
    /// the raw ones on the same data), and their cleanup.
    pub(super) async fn postgres_and_redis(n: usize) -> Result<(Seeded, Cleanup), BoxError> {
        let seeded = Seeded::new(ids(n)?, new_users(n).into_iter().map(Arc::new).collect());
        let conn = raw_connection().await?;
        tokio::try_join!(postgres(&seeded), redis(conn.clone(), &seeded))?;
        let keys = seeded.keys();
        Ok((seeded, Cleanup::RedisKeys(conn, keys)))
    }
}

/// The users of the scenarios that do not resolve them from PostgreSQL.
type Directory = Arc<HashMap<Uuid, Arc<User>>>;

/// A session's Redis key, `session:web:<id>`.
fn key(id: &str) -> String {
    format!("session:web:{id}")
}

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
    id: &str,
) -> Result<Option<SessionRecord>, StatusCode> {
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key(id))
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
async fn redis_raw(n: usize) -> Result<Served, BoxError> {
    let started = Instant::now();
    let (directory, tokens, seeded, cleanup) = if n == 1 {
        let Backend { sessions, .. } = redis().await?;
        let (id, user) = session(&sessions).await?;
        let directory: Directory = Arc::new(HashMap::from([(user.id, user)]));
        let token = id.as_str().to_owned();
        let cleanup = Cleanup::Ours(Arc::clone(sessions.session_store()), id);
        (directory, vec![token], None, cleanup)
    } else {
        let seeded = seed::Seeded::new(
            seed::ids(n)?,
            seed::new_users(n).into_iter().map(Arc::new).collect(),
        );
        let conn = raw_connection().await?;
        seed::redis(conn.clone(), &seeded).await?;
        let took = Some((seeded.users.len(), started.elapsed()));
        let cleanup = Cleanup::RedisKeys(conn, seeded.keys());
        (seeded.directory(), seeded.tokens(), took, cleanup)
    };
    let state = (raw_connection().await?, directory);
    async fn handler(
        State((mut conn, directory)): State<(redis::aio::ConnectionManager, Directory)>,
        headers: HeaderMap,
    ) -> Response {
        let Some(id) = cookie_value(&headers) else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        match raw_record(&mut conn, &id).await {
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
    Ok(Served {
        app,
        tokens,
        seeded,
        cleanup,
    })
}

/// The sessions of the raw Redis + PostgreSQL scenarios: `n == 1` as it always was (a user
/// through `PgUsers`, its session in Redis only), otherwise the seeding of the tiered ones.
async fn raw_sessions(
    pool: &PgPool,
    n: usize,
) -> Result<(Vec<String>, Option<(usize, Duration)>, Cleanup), BoxError> {
    let started = Instant::now();
    if n > 1 {
        let (seeded, cleanup) = seed::postgres_and_redis(n).await?;
        let took = Some((seeded.users.len(), started.elapsed()));
        return Ok((seeded.tokens(), took, cleanup));
    }
    let user = PgUsers::new(pool.clone())
        .create(User::new(EMAIL, Role::User))
        .await?;
    let redis: Arc<dyn SessionStore> =
        Arc::new(RedisStore::connect(RedisConfig::new(redis_url())).await?);
    let id = SessionId::generate()?;
    let record = SessionRecord::new(user.id, SessionMetadata::new(), now_ms(), TTL);
    redis.save(&AppContext::Web, &id, &record, now_ms()).await?;
    let token = id.as_str().to_owned();
    Ok((vec![token], None, Cleanup::Ours(redis, id)))
}

/// Raw Redis + PostgreSQL: the session from Redis by hand, the user by a prepared select on a
/// pool configured like the crate's (`store::postgres::connect`).
async fn tiered_raw(n: usize) -> Result<Served, BoxError> {
    let pool = database().await?;
    let (tokens, seeded, cleanup) = raw_sessions(&pool, n).await?;
    let state = (raw_connection().await?, pool);
    async fn handler(
        State((mut conn, pool)): State<(redis::aio::ConnectionManager, PgPool)>,
        headers: HeaderMap,
    ) -> Response {
        let Some(id) = cookie_value(&headers) else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        let record = match raw_record(&mut conn, &id).await {
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
    Ok(Served {
        app,
        tokens,
        seeded,
        cleanup,
    })
}

/// The best a hand-written cache does, no layer: the user by session id from a
/// `moka::sync::Cache` (10,000 entries, 5 s, like our session cache); a miss does what
/// `tiered-raw` does (Redis `GET`, `serde_json`, a prepared select of the user) and fills it.
async fn ideal_moka(n: usize) -> Result<Served, BoxError> {
    type Cache = moka::sync::Cache<String, Arc<User>>;
    type Row = (
        Uuid,
        String,
        Option<String>,
        bool,
        String,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let pool = database().await?;
    let (tokens, seeded, cleanup) = raw_sessions(&pool, n).await?;
    let cache: Cache = moka::sync::Cache::builder()
        .max_capacity(CACHE_ENTRIES)
        .time_to_live(CACHE_TTL)
        .build();
    let state = (raw_connection().await?, pool, cache);
    async fn handler(
        State((mut conn, pool, cache)): State<(redis::aio::ConnectionManager, PgPool, Cache)>,
        headers: HeaderMap,
    ) -> Response {
        let Some(id) = cookie_value(&headers) else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        if let Some(user) = cache.get(&id) {
            return me(&user).into_response();
        }
        let record = match raw_record(&mut conn, &id).await {
            Ok(Some(record)) => record,
            Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
            Err(status) => return status.into_response(),
        };
        let row: Result<Option<Row>, _> = sqlx::query_as(
            "SELECT id, email, hashed_password, is_verified, role::text, created_at, \
             last_login_at FROM users WHERE id = $1",
        )
        .bind(record.user_id)
        .fetch_optional(&pool)
        .await;
        let (id_, email, hashed_password, is_verified, role, created_at, last_login_at) = match row
        {
            Ok(Some(row)) => row,
            Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
            Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        };
        let Ok(role) = role.parse::<Role>() else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let user = Arc::new(User {
            id: id_,
            email,
            hashed_password,
            role,
            is_verified,
            created_at,
            last_login_at,
            permissions: Vec::new(),
        });
        cache.insert(id, Arc::clone(&user));
        me(&user).into_response()
    }
    let app = Router::new()
        .route("/web/me", get(handler))
        .with_state(state);
    Ok(Served {
        app,
        tokens,
        seeded,
        cleanup,
    })
}

#[path = "support/ts_redis.rs"]
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

    /// A session of `user_id` written through tower-sessions' own API, as a login handler
    /// would.
    async fn login<S>(store: Arc<S>, user_id: Uuid) -> Result<tower_sessions::session::Id, BoxError>
    where
        S: tower_sessions::SessionStore,
    {
        let session = Session::new(None, store, None);
        session.insert("user_id", user_id).await?;
        session.save().await?;
        Ok(session
            .id()
            .ok_or("tower-sessions gave the session no id")?)
    }

    pub(super) async fn serve<S>(store: S, n: usize) -> Result<Served, BoxError>
    where
        S: tower_sessions::SessionStore + Clone,
    {
        let store = Arc::new(store);
        let started = Instant::now();
        let users: Vec<Arc<User>> = if n == 1 {
            vec![Arc::new(User::new(EMAIL, Role::User))]
        } else {
            seed::new_users(n).into_iter().map(Arc::new).collect()
        };
        let mut ids = Vec::with_capacity(n);
        // A thousand logins at a time (tower-sessions has no bulk write).
        let owners: Vec<Uuid> = (0..n).map(|i| users[i % users.len()].id).collect();
        for batch in owners.chunks(BATCH) {
            let mut logins = tokio::task::JoinSet::new();
            for (j, &user_id) in batch.iter().enumerate() {
                let store = Arc::clone(&store);
                logins.spawn(async move { (j, login(store, user_id).await) });
            }
            let mut done = vec![None; batch.len()];
            while let Some(joined) = logins.join_next().await {
                let (j, id) = joined?;
                done[j] = Some(id?);
            }
            ids.extend(done.into_iter().flatten());
        }
        let seeded = (n > 1).then(|| (users.len(), started.elapsed()));
        let tokens = ids.iter().map(ToString::to_string).collect();
        let directory: Directory = Arc::new(users.iter().map(|u| (u.id, Arc::clone(u))).collect());
        let layer = SessionManagerLayer::new((*store).clone()).with_name("sessionId");
        let app = Router::new()
            .route("/web/me", get(handler))
            .with_state(directory)
            .layer(layer);
        let ids = Arc::new(ids);
        let cleanup = Cleanup::TowerSessions(Box::new(move || {
            let store = Arc::clone(&store);
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                let mut deletes = tokio::task::JoinSet::new();
                for &id in ids.iter() {
                    let store = Arc::clone(&store);
                    deletes.spawn(async move {
                        let _ = store.delete(&id).await;
                    });
                }
                while deletes.join_next().await.is_some() {}
            })
        }));
        Ok(Served {
            app,
            tokens,
            seeded,
            cleanup,
        })
    }
}
