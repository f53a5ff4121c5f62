//! Connecting a [`Plan`]: the backends it names, with errors that name their variable.

use std::sync::Arc;

use super::{Backends, ConfigError, Plan};
use crate::store::SessionStore;
use crate::users::UserRepository;
use crate::Sessions;

impl Sessions {
    /// Connects what `plan` asks for (see [`Plan::from_lookup`]).
    ///
    /// # Errors
    /// [`ConfigError::Unreachable`] naming the variable whose server did not answer, or
    /// [`ConfigError::BackendUnavailable`] when this build lacks the backend's feature.
    pub(crate) async fn from_plan(plan: Plan) -> Result<Self, ConfigError> {
        let mut sessions = match &plan.backends {
            Backends::Memory => Sessions::memory(),
            Backends::Redis { url, max_retries } => {
                // Development without a database: Redis sessions, embedded users.
                tracing::info!(
                    "SESSION_ENV={}: Redis sessions, in-memory users (no DATABASE_URL)",
                    plan.environment
                );
                let users: Arc<dyn UserRepository> = Arc::new(crate::MemoryUsers::new());
                let (store, handle) = redis(url, *max_retries, plan.redis_cluster).await?;
                redis_store(Sessions::from_shared(store, users), handle)
            }
            Backends::RedisAndPostgres {
                redis_url,
                max_retries,
                database_var,
                database_url,
                write_through,
            } => {
                let (redis, redis_handle) =
                    redis(redis_url, *max_retries, plan.redis_cluster).await?;
                let (pg_store, users, pool, pg_handle) =
                    postgres(database_var, database_url).await?;
                let tiered = crate::store::TieredStore::new(redis, pg_store)
                    .revalidate_after(plan.revalidate);
                let (tiered, notifications) =
                    notified(tiered, &pool, plan.notified_revalidate).await?;
                let tiered: Arc<dyn SessionStore> = Arc::new(tiered);
                let store: Arc<dyn SessionStore> = if *write_through {
                    Arc::new(crate::store::WriteThroughStore::new(
                        Arc::new(crate::MemoryStore::new()),
                        tiered,
                    ))
                } else {
                    tiered
                };
                let mut sessions = Sessions::from_shared(store, users);
                #[cfg(feature = "postgres")]
                {
                    sessions.databases.notifications = notifications.is_some();
                    sessions.notifications = notifications;
                }
                #[cfg(not(feature = "postgres"))]
                let _ = (&mut sessions, notifications);
                redis_store(identity_database(sessions, pool, pg_handle), redis_handle)
            }
        };
        if let Some(url) = &plan.web_database {
            sessions = web_database(sessions, &url.0).await?;
        }
        sessions = caches(sessions, &plan).await?;
        sessions.environment = plan.environment;
        sessions.strategy = plan.strategy;
        sessions.settings.legacy_contexts = plan.legacy_contexts;
        sessions.settings.session_limit.max = plan.max_sessions_per_user;
        sessions.settings.cross_origin = plan.cross_origin;
        Ok(sessions)
    }
}

/// The caches the plan sizes, on one bus: Redis pub/sub on the plan's Redis (in-process
/// without one), following PostgreSQL's notifications when they are heard.
#[cfg(feature = "cache")]
async fn caches(mut sessions: Sessions, plan: &Plan) -> Result<Sessions, ConfigError> {
    use crate::cache::InvalidationBus;
    if plan.session_cache.is_none() && plan.user_cache.is_none() {
        return Ok(sessions);
    }
    let bus = match &plan.backends {
        Backends::Memory => InvalidationBus::local(),
        Backends::Redis { url, .. } | Backends::RedisAndPostgres { redis_url: url, .. } => {
            redis_bus(url).await?
        }
    };
    #[cfg(feature = "postgres")]
    if let Some(notifications) = sessions.notifications() {
        bus.follow(notifications);
    }
    if let Some(cache) = plan.session_cache {
        sessions = sessions.cache(&bus, cache.max_entries, cache.ttl);
    }
    if let Some(cache) = plan.user_cache {
        sessions = sessions.user_cache(&bus, cache.max_entries, cache.ttl);
    }
    Ok(sessions)
}

#[cfg(not(feature = "cache"))]
async fn caches(sessions: Sessions, plan: &Plan) -> Result<Sessions, ConfigError> {
    let var = match (plan.session_cache, plan.user_cache) {
        (None, None) => return Ok(sessions),
        (Some(_), _) => "SESSION_CACHE_ENTRIES",
        (None, Some(_)) => "SESSION_USER_CACHE_ENTRIES",
    };
    Err(ConfigError::BackendUnavailable {
        var,
        value: "(set)".into(),
        feature: "cache",
        fix: "enable the `cache` cargo feature of tower-app-sessions, or unset it",
    })
}

#[cfg(all(feature = "cache", feature = "redis"))]
async fn redis_bus(url: &str) -> Result<crate::cache::InvalidationBus, ConfigError> {
    crate::cache::InvalidationBus::redis(url)
        .await
        .map_err(unreachable("REDIS_URL"))
}

#[cfg(all(feature = "cache", not(feature = "redis")))]
async fn redis_bus(_url: &str) -> Result<crate::cache::InvalidationBus, ConfigError> {
    // Not reached: a plan with Redis backends fails to connect them first without `redis`.
    Err(ConfigError::BackendUnavailable {
        var: "REDIS_URL",
        value: "(set)".into(),
        feature: "redis",
        fix: "enable the `redis` cargo feature of tower-app-sessions, or use SESSION_ENV=mock",
    })
}

#[cfg(any(feature = "redis", feature = "postgres"))]
fn unreachable(var: &'static str) -> impl FnOnce(crate::StoreError) -> ConfigError {
    move |e| ConfigError::Unreachable {
        var,
        reason: e.to_string(),
    }
}

/// The Redis store itself, kept for operators' jobs ([`Sessions::redis_store`]).
#[cfg(feature = "redis")]
type RedisHandle = crate::store::RedisStore;
#[cfg(not(feature = "redis"))]
type RedisHandle = ();

/// The Redis store `url` names: one server, or (`cluster`) the nodes of a Redis Cluster,
/// comma-separated.
#[cfg(feature = "redis")]
async fn redis(
    url: &str,
    retries: usize,
    cluster: bool,
) -> Result<(Arc<dyn SessionStore>, RedisHandle), ConfigError> {
    use crate::store::redis::{RedisConfig, RedisStore};
    let config = if cluster {
        RedisConfig::cluster(url.split(',').map(str::trim).filter(|u| !u.is_empty()))
    } else {
        RedisConfig::new(url)
    };
    let store = RedisStore::connect(config.max_retries(retries))
        .await
        .map_err(unreachable("REDIS_URL"))?;
    Ok((Arc::new(store.clone()), store))
}

#[cfg(feature = "redis")]
fn redis_store(mut sessions: Sessions, store: RedisHandle) -> Sessions {
    sessions.redis = Some(store);
    sessions
}

#[cfg(not(feature = "redis"))]
fn redis_store(sessions: Sessions, _store: RedisHandle) -> Sessions {
    sessions
}

#[cfg(not(feature = "redis"))]
async fn redis(
    _url: &str,
    _retries: usize,
    _cluster: bool,
) -> Result<(Arc<dyn SessionStore>, RedisHandle), ConfigError> {
    Err(ConfigError::BackendUnavailable {
        var: "REDIS_URL",
        value: "(set)".into(),
        feature: "redis",
        fix: "enable the `redis` cargo feature of tower-app-sessions, or use SESSION_ENV=mock",
    })
}

#[cfg(feature = "postgres")]
type Pool = sqlx::PgPool;
#[cfg(not(feature = "postgres"))]
type Pool = ();
/// The PostgreSQL session store itself, kept for operators' jobs ([`Sessions::postgres_store`]).
#[cfg(feature = "postgres")]
type PgHandle = crate::store::PgSessionStore;
#[cfg(not(feature = "postgres"))]
type PgHandle = ();

#[cfg(feature = "postgres")]
async fn pool(var: &'static str, url: &str) -> Result<Pool, ConfigError> {
    crate::store::postgres::connect(url)
        .await
        .map_err(unreachable(var))
}

/// The session store and user repository on the identity database, and its pool.
#[cfg(feature = "postgres")]
async fn postgres(
    var: &'static str,
    url: &str,
) -> Result<
    (
        Arc<dyn SessionStore>,
        Arc<dyn UserRepository>,
        Pool,
        PgHandle,
    ),
    ConfigError,
> {
    let pool = pool(var, url).await?;
    let users = crate::users::PgUsers::new(pool.clone());
    // Paired: a session read from PostgreSQL brings its user in the same query.
    let store = crate::store::PgSessionStore::new(pool.clone()).users(&users);
    Ok((Arc::new(store.clone()), Arc::new(users), pool, store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(
    var: &'static str,
    _url: &str,
) -> Result<
    (
        Arc<dyn SessionStore>,
        Arc<dyn UserRepository>,
        Pool,
        PgHandle,
    ),
    ConfigError,
> {
    Err(no_postgres(var))
}

#[cfg(not(feature = "postgres"))]
fn no_postgres(var: &'static str) -> ConfigError {
    ConfigError::BackendUnavailable {
        var,
        value: "(set)".into(),
        feature: "postgres",
        fix: "enable the `postgres` cargo feature of tower-app-sessions, or unset it",
    }
}

/// The tiered store following PostgreSQL's notifications, when `trust` asks for them.
#[cfg(feature = "postgres")]
async fn notified(
    tiered: crate::store::TieredStore,
    pool: &Pool,
    trust: Option<std::time::Duration>,
) -> Result<
    (
        crate::store::TieredStore,
        Option<crate::store::postgres::Notifications>,
    ),
    ConfigError,
> {
    let Some(trust) = trust else {
        return Ok((tiered, None));
    };
    let notifications = crate::store::postgres::Notifications::listen(pool)
        .await
        .map_err(unreachable("SESSION_NOTIFIED_REVALIDATE_SECS"))?;
    Ok((
        tiered.notifications(&notifications, trust),
        Some(notifications),
    ))
}

#[cfg(not(feature = "postgres"))]
async fn notified(
    tiered: crate::store::TieredStore,
    _pool: &Pool,
    _trust: Option<std::time::Duration>,
) -> Result<(crate::store::TieredStore, Option<()>), ConfigError> {
    Ok((tiered, None))
}

#[cfg(feature = "postgres")]
fn identity_database(sessions: Sessions, pool: Pool, store: PgHandle) -> Sessions {
    let mut sessions = sessions.identity_database(pool);
    sessions.databases.sessions = Some(store);
    sessions
}

#[cfg(not(feature = "postgres"))]
fn identity_database(sessions: Sessions, _pool: Pool, _store: PgHandle) -> Sessions {
    sessions
}

#[cfg(feature = "postgres")]
async fn web_database(sessions: Sessions, url: &str) -> Result<Sessions, ConfigError> {
    let db = crate::webdb::WebDatabase::new(pool("DATABASE_WEB_URL", url).await?);
    Ok(sessions.web_database(db))
}

#[cfg(not(feature = "postgres"))]
async fn web_database(_sessions: Sessions, _url: &str) -> Result<Sessions, ConfigError> {
    Err(no_postgres("DATABASE_WEB_URL"))
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[cfg(feature = "cache")]
    #[tokio::test]
    async fn the_caches_the_plan_sizes_are_built() {
        let vars = [
            ("SESSION_CACHE_ENTRIES", "10"),
            ("SESSION_USER_CACHE_ENTRIES", "20"),
            ("SESSION_USER_CACHE_TTL_SECS", "60"),
        ];
        let sessions = Sessions::from_lookup(|k| {
            vars.iter()
                .find(|(v, _)| *v == k)
                .map(|(_, v)| v.to_string())
        })
        .await
        .unwrap();
        let debug = format!("{sessions:?}");
        assert!(debug.contains("max_entries: 10, ttl: 5s"), "{debug}");
        assert!(
            debug.contains("UserCache { entries: 0, ttl_ms: 60000"),
            "{debug}"
        );
        let debug = format!("{:?}", Sessions::from_lookup(|_| None).await.unwrap());
        assert!(debug.contains("cache: None, user_cache: None"), "{debug}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_named() {
        let vars = [
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ];
        let plan = Plan::from_lookup(|k| {
            vars.iter()
                .find(|(v, _)| *v == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let err = Sessions::from_plan(plan).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Unreachable {
                    var: "REDIS_URL",
                    ..
                }
            ),
            "{err}"
        );
    }
}
