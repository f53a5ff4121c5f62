//! The backends the environment names, connected the way `Sessions::from_env` connects them.

use std::sync::Arc;

use sqlx::PgPool;
use tower_app_sessions::config::{Backends, Plan};
use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
use tower_app_sessions::store::{PgSessionStore, SessionStore, TieredStore};
use tower_app_sessions::users::PgUsers;
use tower_app_sessions::{MemoryUsers, Sessions};

/// What the CLI works on.
pub struct Connected {
    pub plan: Plan,
    pub redis: RedisStore,
    /// `None` with `SESSION_ENV=development` and no database.
    pub postgres: Option<(PgPool, PgSessionStore, PgUsers)>,
    /// Set when `REDIS_URL` is a single server: ending sessions is published to the apps'
    /// caches through it.
    pub redis_url: Option<String>,
}

pub async fn connect(cluster: bool) -> Result<Connected, String> {
    let plan =
        Plan::from_lookup(|var| std::env::var(var).ok()).map_err(|error| error.to_string())?;
    let (redis_url, database) = match &plan.backends {
        Backends::Redis { url, .. } => (url.clone(), None),
        Backends::RedisAndPostgres {
            redis_url,
            database_var,
            database_url,
            ..
        } => (
            redis_url.clone(),
            Some((*database_var, database_url.clone())),
        ),
        _ => {
            return Err(format!(
                "SESSION_ENV={}: in-memory stores, nothing to operate (set SESSION_ENV=development \
                 or production, and REDIS_URL)",
                plan.environment
            ))
        }
    };
    let config = if cluster {
        RedisConfig::cluster(redis_url.split(',').map(str::trim))
    } else {
        RedisConfig::new(redis_url.clone())
    };
    let redis = RedisStore::connect(config)
        .await
        .map_err(|error| format!("REDIS_URL: {error}"))?;
    let postgres = match database {
        None => None,
        Some((var, url)) => {
            let pool = tower_app_sessions::store::postgres::connect(&url)
                .await
                .map_err(|error| format!("{var}: {error}"))?;
            Some((
                pool.clone(),
                PgSessionStore::new(pool.clone()),
                PgUsers::new(pool),
            ))
        }
    };
    Ok(Connected {
        plan,
        redis,
        postgres,
        redis_url: (!cluster).then_some(redis_url),
    })
}

impl Connected {
    /// The stores as the apps use them (Redis in front of PostgreSQL when there is one),
    /// publishing every deletion to the apps' caches when Redis is a single server.
    pub async fn sessions(&self) -> Result<Sessions, String> {
        let store: Arc<dyn SessionStore> = match &self.postgres {
            Some((_, pg, _)) => Arc::new(TieredStore::new(
                Arc::new(self.redis.clone()),
                Arc::new(pg.clone()),
            )),
            None => Arc::new(self.redis.clone()),
        };
        let sessions = match &self.postgres {
            Some((_, _, users)) => Sessions::new(store, users.clone()),
            // Development without a database: the apps keep users in memory; sessions are
            // still found by the user's UUID.
            None => Sessions::new(store, MemoryUsers::new()),
        };
        // Copies under the legacy keys, where the apps still read them, end too.
        let sessions = sessions.legacy_fallback_contexts(self.plan.legacy_contexts.clone());
        let Some(url) = &self.redis_url else {
            eprintln!(
                "warning: --cluster: no invalidation channel; the apps' session caches keep                  ended sessions until their entries expire (SESSION_REVALIDATE_SECS)"
            );
            return Ok(sessions);
        };
        let bus = tower_app_sessions::cache::InvalidationBus::redis(url)
            .await
            .map_err(|error| format!("REDIS_URL (invalidation channel): {error}"))?;
        Ok(sessions.cache(&bus, 1, std::time::Duration::from_secs(1)))
    }
}
