//! [`Sessions`]: one set of stores shared by every application context, built from code or
//! from the environment ([`Sessions::from_env`]).
//!
//! | variable | values | default |
//! |---|---|---|
//! | `SESSION_ENV` | `mock`, `development`, `production` | `mock` (in-memory stores) |
//! | `SESSION_MIGRATION_STRATEGY` | `mock-only`, `production-only`, `gradual`, `mock-with-write-through` | `mock-only` in mock, else `production-only` |
//! | `REDIS_URL`, `REDIS_MAX_RETRIES` | Redis connection | required outside mock |
//! | `DATABASE_URL` or `DATABASE_IDENTITY_URL` | the PostgreSQL user database | required in production |
//! | `DATABASE_WEB_URL` | the web app's own database | optional |
//! | `SESSION_REVALIDATE_SECS` | how long a Redis copy is trusted before PostgreSQL is asked | `5` |
//! | `SESSION_TRUSTED_ORIGINS` | comma-separated origins (`https://admin.example.com`) whose cookie-authenticated writes pass the [cross-origin check](crate::cross_origin) | none |
//! | `SESSION_MAX_PER_USER` | sessions a user may have per context; a login beyond it ends the least recently used ([`SessionLayer::max_sessions_per_user`]) | unset or `0`: no limit |
//!
//! Production without its backends is a startup error that names the missing variable;
//! there is never a silent fallback to memory.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::layer::Settings;
use crate::store::SessionStore;
use crate::users::{UserRepository, UserResolver};
use crate::{AppContext, SessionLayer, User};

/// `SESSION_ENV`: which backends the process runs on (the seed's `ENVIRONMENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `mock`: in-memory stores, nothing to set up.
    Mock,
    /// `development`: real backends, development defaults.
    Development,
    /// `production`: real backends, every variable required.
    Production,
}

/// `SESSION_MIGRATION_STRATEGY`: the seed's `MIGRATION_STRATEGIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStrategy {
    /// `mock-only`: memory only.
    MockOnly,
    /// `production-only`: Redis as the fast path, PostgreSQL as the durable record.
    ProductionOnly,
    /// `gradual`: production plus the legacy fallbacks, for the migration period.
    Gradual,
    /// `mock-with-write-through`: serve from memory, write through to the real backends.
    MockWithWriteThrough,
}

macro_rules! labels {
    ($ty:ty, $var:literal, $($variant:path => $label:literal),+ $(,)?) => {
        impl $ty {
            /// The label as written in the environment variable.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $label),+ }
            }
        }
        impl FromStr for $ty {
            type Err = ConfigError;
            fn from_str(s: &str) -> Result<Self, ConfigError> {
                match s.trim() {
                    $($label => Ok($variant),)+
                    other => Err(ConfigError::Invalid {
                        var: $var,
                        value: other.chars().take(64).collect(),
                        expected: concat!($($label, " "),+).trim_end(),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

labels!(Environment, "SESSION_ENV",
    Environment::Mock => "mock",
    Environment::Development => "development",
    Environment::Production => "production",
);
labels!(MigrationStrategy, "SESSION_MIGRATION_STRATEGY",
    MigrationStrategy::MockOnly => "mock-only",
    MigrationStrategy::ProductionOnly => "production-only",
    MigrationStrategy::Gradual => "gradual",
    MigrationStrategy::MockWithWriteThrough => "mock-with-write-through",
);

/// A configuration that cannot start. Every variant names the variable and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable has a value outside its set.
    #[error("{var}={value:?} is not valid: set {var} to one of: {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value (cut to 64 characters).
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A variable the chosen environment needs is not set.
    #[error("{var} is not set, but {needed_by} needs it: {fix}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What needs it (`SESSION_ENV=production`, …).
        needed_by: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A number-valued variable that is not a number.
    #[error("{var}={value:?} is not a whole number: set {var} to a number such as {example}")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// Its value (cut to 64 characters).
        value: String,
        /// A valid value.
        example: u64,
    },
    /// A backend named by a variable could not be reached at startup.
    #[error(
        "{var} could not be reached: {reason}; check that the server runs and that {var} is right"
    )]
    Unreachable {
        /// The variable.
        var: &'static str,
        /// The driver's error (no credentials: the URL is not repeated).
        reason: String,
    },
    /// The session store cannot hold sessions of this context (a custom context on a bare
    /// `PgSessionStore`, whose `"ApplicationType"` enum knows `web` and `admin`).
    #[error("the session store cannot hold sessions of the {context} context: PostgreSQL's \"ApplicationType\" knows web and admin only; put the context's sessions in Redis or memory, or in a TieredStore (which keeps them in its fast store)")]
    UnsupportedContext {
        /// The context.
        context: AppContext,
    },
    /// The configuration needs a backend this build of the crate does not have.
    #[error("{var}={value} needs the `{feature}` backend, which this build of tower-app-sessions does not include: {fix}")]
    BackendUnavailable {
        /// The variable that asked for it.
        var: &'static str,
        /// Its value.
        value: String,
        /// The cargo feature or backend.
        feature: &'static str,
        /// How to fix it.
        fix: &'static str,
    },
}

/// One set of stores shared by every application context.
///
/// Build one per process and derive a layer per app from it, so the web and admin layers
/// share connections while their sessions stay isolated:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{routing::get, Router};
/// use tower_app_sessions::{AppContext, Sessions};
///
/// let sessions = Sessions::from_env().await?; // SESSION_ENV unset: in-memory stores
/// let app: Router = Router::new()
///     .nest("/admin", Router::new().route("/", get(|| async { "admin" }))
///         .layer(sessions.layer(AppContext::Admin).cookie_name("admin_sid")))
///     .nest("/web", Router::new().route("/", get(|| async { "web" }))
///         .layer(sessions.layer(AppContext::Web)));
/// # Ok::<(), tower_app_sessions::config::ConfigError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    users: Arc<dyn UserRepository>,
    resolver: Arc<dyn UserResolver<User = User>>,
    settings: Settings,
    environment: Environment,
    strategy: MigrationStrategy,
    databases: Databases,
    #[cfg(feature = "cache")]
    cache: Option<CacheSettings>,
}

#[cfg(feature = "cache")]
#[derive(Clone)]
struct CacheSettings {
    bus: crate::cache::InvalidationBus,
    max_entries: u64,
    ttl: std::time::Duration,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("environment", &self.environment)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions on `store` with users from `users`.
    pub fn new<R: UserRepository>(store: impl SessionStore, users: R) -> Self {
        Self::from_parts(Arc::new(store), Arc::new(users))
    }

    /// Attaches the web app's own database (`DATABASE_WEB_URL`): web layers then give
    /// handlers [`Session::web`](crate::Session::web), and [`migrate`](Self::migrate) creates
    /// its tables.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn with_web_database(mut self, db: crate::webdb::WebDatabase) -> Self {
        self.settings.web_db = Some(db.clone());
        self.databases.web = Some(db);
        self
    }

    /// Has [`migrate`](Self::migrate) run the crate's migrations on this identity pool (for
    /// stores built by hand; `from_env` does it for you).
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn with_identity_database(mut self, pool: sqlx::PgPool) -> Self {
        self.databases.identity = Some(pool);
        self
    }

    /// In-memory sessions and users: the embedded default.
    #[cfg(feature = "memory")]
    #[must_use]
    pub fn memory() -> Self {
        Self::new(crate::MemoryStore::new(), crate::MemoryUsers::new())
    }

    /// Builds the stores the environment asks for (see the [module docs](self)).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable to set or fix.
    #[cfg(feature = "memory")]
    pub async fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok()).await
    }

    /// [`Sessions::from_env`] reading variables through `lookup` instead of the process
    /// environment (for tests and for configuration kept elsewhere).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use tower_app_sessions::{config::ConfigError, Sessions};
    ///
    /// let err = Sessions::from_lookup(|var| (var == "SESSION_ENV").then(|| "prod".to_string())).await.unwrap_err();
    /// assert!(err.to_string().contains("SESSION_ENV"));
    /// # });
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::from_env`].
    #[cfg(feature = "memory")]
    pub async fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let max_per_user = parse_number(&get, "SESSION_MAX_PER_USER", 0)?;
        let cross_origin = match get("SESSION_TRUSTED_ORIGINS") {
            None => crate::cross_origin::CrossOriginPolicy::default(),
            Some(list) => crate::cross_origin::CrossOriginPolicy::default()
                .trust_origins(list.split(',').map(str::trim).filter(|o| !o.is_empty()))
                .map_err(|e| ConfigError::Invalid {
                    var: "SESSION_TRUSTED_ORIGINS",
                    value: e.origin,
                    expected: "comma-separated origins such as https://admin.example.com,http://localhost:3000",
                })?,
        };
        let mut sessions = Self::from_variables(&get).await?;
        sessions.settings.session_limit.max = usize::try_from(max_per_user).unwrap_or(usize::MAX);
        sessions.settings.cross_origin = cross_origin;
        Ok(sessions)
    }

    #[cfg(feature = "memory")]
    async fn from_variables(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let environment: Environment = match get("SESSION_ENV") {
            Some(v) => v.parse()?,
            None => Environment::Mock,
        };
        let explicit_strategy = get("SESSION_MIGRATION_STRATEGY");
        let strategy: MigrationStrategy = match &explicit_strategy {
            Some(v) => v.parse()?,
            None if environment == Environment::Mock => MigrationStrategy::MockOnly,
            None => MigrationStrategy::ProductionOnly,
        };
        if strategy == MigrationStrategy::MockOnly {
            if environment == Environment::Mock {
                return Ok(Self::memory());
            }
            // Real backends but a memory-only strategy: one of the two is a mistake, and
            // guessing which could put production sessions in process memory.
            return Err(ConfigError::Invalid {
                var: "SESSION_MIGRATION_STRATEGY",
                value: strategy.to_string(),
                expected: "production-only, gradual or mock-with-write-through with SESSION_ENV=development|production (mock-only needs SESSION_ENV=mock)",
            });
        }
        let needed_by = if explicit_strategy.is_some() && environment == Environment::Mock {
            format!("SESSION_MIGRATION_STRATEGY={strategy}")
        } else {
            format!("SESSION_ENV={environment}")
        };
        let Some(redis_url) = get("REDIS_URL") else {
            return Err(ConfigError::Missing {
                var: "REDIS_URL",
                needed_by,
                fix: "set REDIS_URL=redis://host:6379 (or rediss://user:password@host:port), or use SESSION_ENV=mock for in-memory sessions",
            });
        };
        let max_retries = parse_number(get, "REDIS_MAX_RETRIES", 3)?;
        let revalidate = parse_number(get, "SESSION_REVALIDATE_SECS", 5)?;
        // DATABASE_IDENTITY_URL (the seed's multi-database setup) wins over DATABASE_URL.
        let identity = get("DATABASE_IDENTITY_URL")
            .map(|url| ("DATABASE_IDENTITY_URL", url))
            .or_else(|| get("DATABASE_URL").map(|url| ("DATABASE_URL", url)));
        let database_required = environment == Environment::Production
            || strategy == MigrationStrategy::MockWithWriteThrough
            || (environment == Environment::Mock && explicit_strategy.is_some());
        if identity.is_none() && database_required {
            return Err(ConfigError::Missing {
                var: "DATABASE_URL",
                needed_by,
                fix: "set DATABASE_URL (or DATABASE_IDENTITY_URL) to the PostgreSQL user database, e.g. postgres://user:password@host:5432/db",
            });
        }

        let redis = backends::redis(&redis_url, max_retries).await?;
        let mut sessions = match identity {
            None => {
                // Development without a database: Redis sessions, embedded users.
                tracing::info!(
                    "SESSION_ENV={environment}: Redis sessions, in-memory users (no DATABASE_URL)"
                );
                Self::from_parts(redis, Arc::new(crate::MemoryUsers::new()))
            }
            Some((var, url)) => {
                let pg = backends::postgres(var, &url).await?;
                let tiered: Arc<dyn SessionStore> = Arc::new(
                    crate::store::tiered::TieredStore::new(redis, pg.store)
                        .revalidate_after(std::time::Duration::from_secs(revalidate)),
                );
                let store: Arc<dyn SessionStore> =
                    if strategy == MigrationStrategy::MockWithWriteThrough {
                        Arc::new(crate::store::tiered::WriteThroughStore::new(
                            Arc::new(crate::MemoryStore::new()),
                            tiered,
                        ))
                    } else {
                        tiered
                    };
                let mut sessions = Self::from_shared(store, pg.users);
                sessions.databases = pg.databases;
                sessions
            }
        };
        if let Some(url) = get("DATABASE_WEB_URL") {
            backends::attach_web_database(&mut sessions, &url).await?;
        }
        sessions.environment = environment;
        sessions.strategy = strategy;
        if strategy == MigrationStrategy::Gradual {
            sessions.settings.legacy_contexts = vec![AppContext::Web];
        }
        Ok(sessions)
    }

    fn from_parts<R: UserRepository>(store: Arc<dyn SessionStore>, users: Arc<R>) -> Self {
        let resolver: Arc<dyn UserResolver<User = User>> = users.clone();
        Self::from_both(store, users, resolver)
    }

    #[cfg(feature = "memory")]
    fn from_shared(store: Arc<dyn SessionStore>, users: backends::Users) -> Self {
        Self::from_both(store, users.repository, users.resolver)
    }

    fn from_both(
        store: Arc<dyn SessionStore>,
        users: Arc<dyn UserRepository>,
        resolver: Arc<dyn UserResolver<User = User>>,
    ) -> Self {
        Self {
            store,
            users,
            resolver,
            settings: Settings::default(),
            environment: Environment::Mock,
            strategy: MigrationStrategy::MockOnly,
            databases: Databases::default(),
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// Gives every layer built from here on an in-process session cache (see
    /// [`cache`](crate::cache)): at most `max_entries` sessions per layer, each for at most
    /// `ttl` (use `SESSION_REVALIDATE_SECS`). Deletions through [`store`](Self::store) and
    /// user changes through [`users`](Self::users) are published on `bus`, so they reach
    /// every cache of every process on the bus before they return.
    #[cfg(feature = "cache")]
    #[must_use]
    pub fn with_cache(
        mut self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: std::time::Duration,
    ) -> Self {
        self.store = Arc::new(crate::cache::PublishingStore {
            inner: self.store,
            bus: bus.clone(),
        });
        self.users = Arc::new(crate::cache::PublishingUsers {
            inner: self.users,
            resolver: Arc::clone(&self.resolver),
            bus: bus.clone(),
        });
        self.cache = Some(CacheSettings {
            bus: bus.clone(),
            max_entries,
            ttl,
        });
        self
    }

    /// Reads the time from `clock` in every layer built from here on (default: the system
    /// clock); see [`clock`](crate::clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Into<crate::clock::Clock>) -> Self {
        self.settings.clock = clock.into();
        self
    }

    /// The clock the layers read (for store calls made outside a request, such as
    /// `sessions.store().list_user_sessions(&user, scope, sessions.now())`).
    pub fn now(&self) -> i64 {
        self.settings.clock.now_ms()
    }

    /// Runs the crate's PostgreSQL migrations on the identity database (and creates the web
    /// app's tables in `DATABASE_WEB_URL`, when set). Never called implicitly; a no-op without
    /// PostgreSQL. Safe to rerun.
    ///
    /// # Errors
    /// [`MigrateError`] naming the database that failed.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        self.databases.migrate().await
    }

    /// A layer for `context` on these stores, or [`ConfigError::UnsupportedContext`] when the
    /// store cannot hold that context's sessions.
    ///
    /// # Errors
    /// As above.
    pub fn try_layer(&self, context: AppContext) -> Result<SessionLayer<User>, ConfigError> {
        if !self.store.supports(&context) {
            return Err(ConfigError::UnsupportedContext { context });
        }
        Ok(self.layer(context))
    }

    /// A layer for `context` on these stores. Configure it further (cookie name, timeouts,
    /// admission policy) like any [`SessionLayer`].
    ///
    /// # Panics
    /// At startup, if the store cannot hold `context`'s sessions (a custom context on a bare
    /// `PgSessionStore`); [`try_layer`](Self::try_layer) returns that error instead.
    pub fn layer(&self, context: AppContext) -> SessionLayer<User> {
        let layer = SessionLayer::from_parts(
            context,
            Arc::clone(&self.store),
            Arc::clone(&self.resolver),
            self.settings.clone(),
        );
        #[cfg(feature = "cache")]
        if let Some(c) = &self.cache {
            // The store is already publishing (with_cache wrapped it once for every layer).
            let cache = crate::cache::SessionCache::new(&c.bus, c.max_entries, c.ttl);
            return layer.with_cache_instance(cache);
        }
        layer
    }

    /// The shared session store (for revoke-all, listing, maintenance).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The shared user repository (login, registration).
    pub fn users(&self) -> &Arc<dyn UserRepository> {
        &self.users
    }

    /// `SESSION_ENV` this was built for.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// `SESSION_MIGRATION_STRATEGY` this was built for.
    pub fn strategy(&self) -> MigrationStrategy {
        self.strategy
    }
}

#[cfg(feature = "memory")]
fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(var) {
        Some(v) => v.trim().parse().map_err(|_| ConfigError::NotANumber {
            var,
            value: v.chars().take(64).collect(),
            example: default,
        }),
        None => Ok(default),
    }
}

/// A migration of one of the databases failed.
#[derive(Debug, thiserror::Error)]
#[error("migrating the {database} database failed: {reason}")]
pub struct MigrateError {
    /// `identity` or `web`.
    pub database: &'static str,
    /// The migrator's message.
    pub reason: String,
}

/// The PostgreSQL databases a [`Sessions`] migrates: identity (users, sessions, permissions)
/// and the web app's own.
#[derive(Clone, Default)]
struct Databases {
    #[cfg(feature = "postgres")]
    identity: Option<sqlx::PgPool>,
    #[cfg(feature = "postgres")]
    web: Option<crate::webdb::WebDatabase>,
}

impl Databases {
    async fn migrate(&self) -> Result<(), MigrateError> {
        #[cfg(feature = "postgres")]
        {
            if let Some(pool) = &self.identity {
                crate::store::postgres::migrate(pool)
                    .await
                    .map_err(|e| MigrateError {
                        database: "identity",
                        reason: e.to_string(),
                    })?;
            }
            if let Some(web) = &self.web {
                web.migrate().await.map_err(|e| MigrateError {
                    database: "web",
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

/// Building the backends `from_env` asks for, whatever features this build has.
#[cfg(feature = "memory")]
mod backends {
    use std::sync::Arc;

    use super::{ConfigError, Databases, Sessions};
    use crate::store::SessionStore;
    use crate::users::{UserRepository, UserResolver};
    use crate::User;

    /// One user backend seen as both traits.
    pub(super) struct Users {
        pub(super) repository: Arc<dyn UserRepository>,
        pub(super) resolver: Arc<dyn UserResolver<User = User>>,
    }

    pub(super) struct Postgres {
        pub(super) store: Arc<dyn SessionStore>,
        pub(super) users: Users,
        pub(super) databases: Databases,
    }

    #[cfg(feature = "redis")]
    pub(super) async fn redis(
        url: &str,
        retries: u64,
    ) -> Result<Arc<dyn SessionStore>, ConfigError> {
        use crate::store::redis::{RedisConfig, RedisStore};
        let retries = usize::try_from(retries).unwrap_or(usize::MAX);
        let store = RedisStore::connect(RedisConfig::new(url).max_retries(retries))
            .await
            .map_err(|e| ConfigError::Unreachable {
                var: "REDIS_URL",
                reason: e.to_string(),
            })?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "redis"))]
    pub(super) async fn redis(
        _url: &str,
        _retries: u64,
    ) -> Result<Arc<dyn SessionStore>, ConfigError> {
        Err(ConfigError::BackendUnavailable {
            var: "REDIS_URL",
            value: "(set)".into(),
            feature: "redis",
            fix: "enable the `redis` cargo feature of tower-app-sessions, or use SESSION_ENV=mock",
        })
    }

    #[cfg(feature = "postgres")]
    async fn pool(var: &'static str, url: &str) -> Result<sqlx::PgPool, ConfigError> {
        crate::store::postgres::connect(url)
            .await
            .map_err(|e| ConfigError::Unreachable {
                var,
                reason: e.to_string(),
            })
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn postgres(var: &'static str, url: &str) -> Result<Postgres, ConfigError> {
        let pool = pool(var, url).await?;
        let users = Arc::new(crate::users::PgUsers::new(pool.clone()));
        Ok(Postgres {
            store: Arc::new(crate::store::postgres::PgSessionStore::new(pool.clone())),
            users: Users {
                repository: users.clone(),
                resolver: users,
            },
            databases: Databases {
                identity: Some(pool),
                web: None,
            },
        })
    }

    #[cfg(not(feature = "postgres"))]
    pub(super) async fn postgres(var: &'static str, _url: &str) -> Result<Postgres, ConfigError> {
        Err(ConfigError::BackendUnavailable {
            var,
            value: "(set)".into(),
            feature: "postgres",
            fix: "enable the `postgres` cargo feature of tower-app-sessions",
        })
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn attach_web_database(
        sessions: &mut Sessions,
        url: &str,
    ) -> Result<(), ConfigError> {
        let db = crate::webdb::WebDatabase::new(pool("DATABASE_WEB_URL", url).await?);
        sessions.settings.web_db = Some(db.clone());
        sessions.databases.web = Some(db);
        Ok(())
    }

    #[cfg(not(feature = "postgres"))]
    pub(super) async fn attach_web_database(
        _sessions: &mut Sessions,
        _url: &str,
    ) -> Result<(), ConfigError> {
        Err(ConfigError::BackendUnavailable {
            var: "DATABASE_WEB_URL",
            value: "(set)".into(),
            feature: "postgres",
            fix: "enable the `postgres` cargo feature of tower-app-sessions, or unset DATABASE_WEB_URL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    async fn build(vars: &[(&str, &str)]) -> Result<Sessions, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Sessions::from_lookup(move |k| map.get(k).cloned()).await
    }

    #[tokio::test]
    async fn mock_is_the_default() {
        let s = build(&[]).await.unwrap();
        assert_eq!(s.environment(), Environment::Mock);
        assert_eq!(s.strategy(), MigrationStrategy::MockOnly);
    }

    #[tokio::test]
    async fn errors_name_the_variable() {
        let err = build(&[("SESSION_ENV", "staging")]).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SESSION_ENV=\"staging\" is not valid"),
            "{err}"
        );
        let err = build(&[("SESSION_MIGRATION_STRATEGY", "fast")])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("SESSION_MIGRATION_STRATEGY"),
            "{err}"
        );
        let err = build(&[("SESSION_ENV", "production")]).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    var: "REDIS_URL",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("SESSION_ENV=production"), "{err}");
        let err = build(&[
            ("SESSION_ENV", "production"),
            ("REDIS_URL", "redis://127.0.0.1"),
        ])
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    var: "DATABASE_URL",
                    ..
                }
            ),
            "{err}"
        );
        let err = build(&[
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("REDIS_MAX_RETRIES", "many"),
        ])
        .await
        .unwrap_err();
        assert!(
            err.to_string().starts_with("REDIS_MAX_RETRIES=\"many\""),
            "{err}"
        );
        let err = build(&[
            ("SESSION_ENV", "production"),
            ("SESSION_MIGRATION_STRATEGY", "mock-only"),
        ])
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SESSION_MIGRATION_STRATEGY=\"mock-only\""),
            "{err}"
        );
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn an_unreachable_redis_is_named() {
        let err = build(&[
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ])
        .await
        .unwrap_err();
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
