//! [`Sessions`]: one set of stores shared by every application context, built from code or
//! from the environment ([`Sessions::from_env`]).

use std::fmt;
use std::sync::Arc;

use crate::config::{ConfigError, Environment, MigrateError, MigrationStrategy, PendingMigration};
use crate::policy::Settings;
use uuid::Uuid;

use crate::events::{RevokedScope, SessionEvent, SessionEventKind};
use crate::manage::SessionInfo;
use crate::store::{Scope, SessionStore};
use crate::users::{UserRepository, UserResolver};
use crate::{AppContext, SessionLayer, User};
use crate::{SessionHandle, StoreError};

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
    /// Publishing its deletions on the cache's bus when [`cache`](Self::cache) is set.
    store: Arc<dyn SessionStore>,
    /// Publishing user changes likewise.
    users: Arc<dyn UserRepository>,
    pub(crate) settings: Settings,
    pub(crate) environment: Environment,
    pub(crate) strategy: MigrationStrategy,
    pub(crate) databases: Databases,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::CacheSettings>,
    /// The store and users as given, before [`cache`](Self::cache) wrapped them to publish:
    /// a second `cache` call wraps these again, for its own bus.
    #[cfg(feature = "cache")]
    unpublished: Option<(Arc<dyn SessionStore>, Arc<dyn UserRepository>)>,
    /// Shared by every layer: keyed by context and user.
    #[cfg(feature = "cache")]
    user_cache: Option<Arc<crate::cache::UserCache<User>>>,
    /// What `SESSION_NOTIFIED_REVALIDATE_SECS` listens to.
    #[cfg(feature = "postgres")]
    pub(crate) notifications: Option<crate::store::postgres::Notifications>,
    /// The Redis store `from_env` connected, for operators' jobs (see `operators.rs`).
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::store::RedisStore>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Sessions");
        f.field("environment", &self.environment)
            .field("strategy", &self.strategy)
            .field("settings", &self.settings);
        #[cfg(feature = "cache")]
        f.field("cache", &self.cache)
            .field("user_cache", &self.user_cache);
        f.finish_non_exhaustive()
    }
}

/// The PostgreSQL databases a [`Sessions`] migrates: identity (users, sessions, permissions)
/// and the web app's own.
#[derive(Clone, Default)]
pub(crate) struct Databases {
    #[cfg(feature = "postgres")]
    pub(crate) identity: Option<sqlx::PgPool>,
    /// Whether migrating the identity database installs the notification triggers.
    #[cfg(feature = "postgres")]
    pub(crate) notifications: bool,
    #[cfg(feature = "postgres")]
    pub(crate) web: Option<crate::webdb::WebDatabase>,
    /// The session store on `identity` that `from_env` connected, for operators' jobs.
    #[cfg(feature = "postgres")]
    pub(crate) sessions: Option<crate::store::PgSessionStore>,
}

impl Databases {
    /// The schema migrations [`migrate`](Self::migrate) would apply, per database.
    pub(crate) async fn pending(&self) -> Result<Vec<PendingMigration>, MigrateError> {
        #[allow(unused_mut)]
        let mut pending = Vec::new();
        #[cfg(feature = "postgres")]
        {
            let schema = |database: &'static str| {
                move |m: crate::store::postgres::SchemaMigration| PendingMigration::Schema {
                    database,
                    version: m.version,
                    description: m.description,
                }
            };
            let failed = |database: &'static str| {
                move |e: StoreError| MigrateError {
                    database,
                    reason: e.to_string(),
                }
            };
            if let Some(pool) = &self.identity {
                let identity = crate::store::postgres::pending_migrations(pool)
                    .await
                    .map_err(failed("identity"))?;
                pending.extend(identity.into_iter().map(schema("identity")));
            }
            if let Some(web) = &self.web {
                let own = web.pending_migrations().await.map_err(failed("web"))?;
                pending.extend(own.into_iter().map(schema("web")));
            }
        }
        Ok(pending)
    }

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
                if self.notifications {
                    crate::store::postgres::install_notifications(pool)
                        .await
                        .map_err(|e| MigrateError {
                            database: "identity",
                            reason: e.to_string(),
                        })?;
                }
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

impl Sessions {
    /// Sessions on `store` with users from `users`.
    pub fn new<R: UserRepository>(store: impl SessionStore, users: R) -> Self {
        Self::from_shared(Arc::new(store), Arc::new(users))
    }

    pub(crate) fn from_shared(
        store: Arc<dyn SessionStore>,
        users: Arc<dyn UserRepository>,
    ) -> Self {
        Self {
            store,
            users,
            settings: Settings::default(),
            environment: Environment::Mock,
            strategy: MigrationStrategy::MockOnly,
            databases: Databases::default(),
            #[cfg(feature = "cache")]
            cache: None,
            #[cfg(feature = "cache")]
            unpublished: None,
            #[cfg(feature = "cache")]
            user_cache: None,
            #[cfg(feature = "postgres")]
            notifications: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// In-memory sessions and users: the embedded default.
    #[cfg(feature = "memory")]
    #[must_use]
    pub fn memory() -> Self {
        Self::new(crate::MemoryStore::new(), crate::MemoryUsers::new())
    }

    /// Builds the stores the environment asks for (see [`config`](crate::config)).
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
    /// use tower_app_sessions::Sessions;
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
        Self::from_plan(crate::config::Plan::from_lookup(lookup)?).await
    }

    /// Attaches the web app's own database (`DATABASE_WEB_URL`): [`migrate`](Self::migrate)
    /// creates its tables, and [`attached_web_database`](Self::attached_web_database) hands it to the
    /// web app's routes.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn web_database(mut self, db: crate::webdb::WebDatabase) -> Self {
        self.databases.web = Some(db);
        self
    }

    /// The web app's own database, when one is attached: make it the state of the web app's
    /// routes (`.with_state(db.clone())`) and take [`WebSession`](crate::webdb::WebSession)
    /// in handlers (see [`webdb`](crate::webdb)).
    #[cfg(feature = "postgres")]
    pub fn attached_web_database(&self) -> Option<&crate::webdb::WebDatabase> {
        self.databases.web.as_ref()
    }

    /// Has [`migrate`](Self::migrate) run the crate's migrations on this identity pool (for
    /// stores built by hand; `from_env` does it for you).
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn identity_database(mut self, pool: sqlx::PgPool) -> Self {
        self.databases.identity = Some(pool);
        self
    }

    /// Gives every layer built from here on an in-process session cache (see
    /// [`cache`](crate::cache)): at most `max_entries` sessions per layer, each for at most
    /// `ttl` (use `SESSION_REVALIDATE_SECS`). Deletions through [`session_store`](Self::session_store) and
    /// user changes through [`user_repository`](Self::user_repository) are published on `bus`, so they reach
    /// every cache of every process on the bus before they return.
    #[cfg(feature = "cache")]
    #[must_use]
    pub fn cache(
        mut self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: std::time::Duration,
    ) -> Self {
        let (store, users) = self.unpublished();
        self.store = Arc::new(crate::cache::PublishingStore {
            inner: store,
            bus: bus.clone(),
        });
        self.publish_users(users, bus);
        self.cache = Some(crate::cache::CacheSettings {
            bus: bus.clone(),
            max_entries,
            ttl,
        });
        self
    }

    /// Publishes deletions through [`session_store`](Self::session_store) and user changes through
    /// [`user_repository`](Self::user_repository) on `bus`, without caching anything here: for a process that
    /// ends sessions or changes users for the apps but serves no requests itself (an admin
    /// job, the operator CLI), so that the apps' caches on `bus` drop what it ended before
    /// the call returns. [`cache`](Self::cache) does this too, and caches.
    #[cfg(feature = "cache")]
    #[must_use]
    pub fn publish(mut self, bus: &crate::cache::InvalidationBus) -> Self {
        let (store, users) = self.unpublished();
        self.store = Arc::new(crate::cache::PublishingStore {
            inner: store,
            bus: bus.clone(),
        });
        self.publish_users(users, bus);
        self
    }

    /// Gives every layer built from here on the one user cache of this handle (see
    /// [`SessionLayer::user_cache`]): at most `max_entries` users (all contexts together),
    /// each for at most `ttl`. User changes through [`user_repository`](Self::user_repository) are published on
    /// the bus of [`cache`](Self::cache) when there is one; give both the same bus.
    #[cfg(feature = "cache")]
    #[must_use]
    pub fn user_cache(
        mut self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: std::time::Duration,
    ) -> Self {
        let settings = crate::cache::CacheSettings {
            bus: bus.clone(),
            max_entries,
            ttl,
        };
        if self.cache.is_none() {
            // User changes through `users` must reach the cache all the same.
            let (_, users) = self.unpublished();
            self.publish_users(users, bus);
        }
        self.user_cache = Some(crate::cache::UserCache::new(&settings));
        self
    }

    /// The store and users as given, before any bus wrapped them.
    #[cfg(feature = "cache")]
    fn unpublished(&mut self) -> (Arc<dyn SessionStore>, Arc<dyn UserRepository>) {
        self.unpublished
            .get_or_insert_with(|| (Arc::clone(&self.store), Arc::clone(&self.users)))
            .clone()
    }

    /// Makes `users` (unwrapped) publish its changes on `bus`.
    #[cfg(feature = "cache")]
    fn publish_users(
        &mut self,
        users: Arc<dyn UserRepository>,
        bus: &crate::cache::InvalidationBus,
    ) {
        self.users = Arc::new(crate::cache::PublishingUsers {
            inner: users,
            bus: bus.clone(),
        });
    }

    /// Reads the time from `clock` in every layer built from here on (default: the system
    /// clock); see [`clock`](crate::clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Into<crate::clock::Clock>) -> Self {
        self.settings.clock = clock.into();
        self
    }

    /// Figures for operating the stores ([`stats`](crate::stats)): sessions per context in
    /// memory, Redis and PostgreSQL, legacy keys left, Redis memory per session key, the use
    /// of the `sessions` indexes. SCAN-based (never `KEYS`) and never on the request path:
    /// call it from an operator's endpoint or a job, not per request. A store of your own
    /// without figures contributes none.
    ///
    /// # Errors
    /// [`StoreError`](crate::StoreError) if a backend fails.
    pub async fn stats(&self) -> Result<crate::stats::SessionStats, crate::StoreError> {
        match self.store.capabilities().stats {
            Some(stats) => stats.stats(self.now()).await,
            None => Ok(crate::stats::SessionStats::default()),
        }
    }

    /// The live sessions of `user_id` in `scope`, newest first, as an admin or the user
    /// sees them (see [`manage`](crate::manage)); none is [`current`](SessionInfo::current).
    /// Liveness and `last_seen` are judged with this value's idle timeout and absolute
    /// lifetime (the defaults: 24 h and 7 days), not those a layer may override: a context
    /// whose layer uses others ([`Session::list_mine`](crate::Session::list_mine) uses the
    /// layer's) shows `last_seen` to that difference.
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn list_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.now();
        let listed = self.store.list_user_sessions(user_id, scope, now).await?;
        Ok(crate::manage::infos(listed, &self.settings, now, None))
    }

    /// Ends the session named `handle` of `user_id`, in whatever context it lives, at once on
    /// every instance: an admin's "end this session". `Ok(false)` when the user has no such
    /// session. Reported as [`Revoked`](crate::events::SessionEventKind::Revoked) with
    /// scope [`Session`](RevokedScope::Session).
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn revoke_session(
        &self,
        user_id: &Uuid,
        handle: &SessionHandle,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let listed = self
            .store
            .list_user_sessions(user_id, Scope::AllContexts, now)
            .await?;
        let Some(found) = crate::manage::find(listed, handle) else {
            return Ok(false);
        };
        let store = self.store.as_ref();
        let ended =
            crate::manage::end_session(store, &self.settings, &found.context, &found.id, now)
                .await?;
        if ended {
            let kind = SessionEventKind::Revoked {
                scope: RevokedScope::Session,
                count: 1,
            };
            crate::telemetry::count_event(&found.context, &kind);
            self.settings.events.emit(|| {
                SessionEvent::new(kind, &found.context, now)
                    .about(found.id.handle(), Some(&found.record))
            });
        }
        Ok(ended)
    }

    /// Ends every session of `user_id` in `scope` at once, on every instance (the cache's
    /// bus hears it, as for a logout): an admin's "end all sessions of this user", or a
    /// password reset. Returns how many were live. Reported as one
    /// [`Revoked`](crate::events::SessionEventKind::Revoked) event per context that held
    /// any, counted from a listing taken just before.
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn revoke_user(&self, user_id: &Uuid, scope: Scope<'_>) -> Result<u64, StoreError> {
        let now = self.now();
        let listed = self.store.list_user_sessions(user_id, scope, now).await?;
        // Legacy copies first, as in a logout.
        crate::manage::end_legacy_copies(self.store.as_ref(), &self.settings, &listed).await?;
        let ended = self.store.delete_user_sessions(user_id, scope, now).await?;
        let mut per_context: Vec<(AppContext, u64)> = Vec::new();
        for session in listed {
            match per_context.iter_mut().find(|(c, _)| *c == session.context) {
                Some((_, n)) => *n += 1,
                None => per_context.push((session.context, 1)),
            }
        }
        let revoked_scope = match scope {
            Scope::Context(_) => RevokedScope::Context,
            Scope::AllContexts => RevokedScope::AllContexts,
        };
        for (context, count) in per_context {
            let kind = SessionEventKind::Revoked {
                scope: revoked_scope,
                count,
            };
            crate::telemetry::count_event(&context, &kind);
            let user = *user_id;
            self.settings
                .events
                .emit(|| SessionEvent::new(kind, &context, now).user(user));
        }
        Ok(ended)
    }

    /// Reads pre-migration, context-less sessions for exactly these contexts in every layer
    /// built from here on (see [`SessionLayer::legacy_fallback_contexts`]), and has the
    /// admin operations end those copies too. `Sessions::from_env` sets it from
    /// `SESSION_MIGRATION_STRATEGY`.
    #[must_use]
    pub fn legacy_fallback_contexts(
        mut self,
        contexts: impl IntoIterator<Item = AppContext>,
    ) -> Self {
        self.settings.legacy_contexts = contexts.into_iter().collect();
        self
    }

    /// Calls `hook` with every lifecycle event of every layer built from here on
    /// ([`SessionLayer::on_event`]).
    pub fn on_event(
        mut self,
        hook: impl Fn(&crate::events::SessionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.settings.events.push(hook);
        self
    }

    /// The clock the layers read (for store calls made outside a request, such as
    /// `sessions.session_store().list_user_sessions(&user, scope, sessions.now())`).
    pub fn now(&self) -> i64 {
        self.settings.clock.now_ms()
    }

    /// Runs the crate's PostgreSQL migrations on the identity database (and creates the web
    /// app's tables in `DATABASE_WEB_URL`, when set), and installs the notification
    /// triggers when `SESSION_NOTIFIED_REVALIDATE_SECS` asked for them. Never called
    /// implicitly; a no-op without PostgreSQL. Safe to rerun.
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
        if !self.store.capabilities().supports(&context) {
            return Err(ConfigError::UnsupportedContext { context });
        }
        Ok(self.layer(context))
    }

    /// A layer for `context` on these stores. Configure it further (cookie name, timeouts,
    /// admission policy) like any [`SessionLayer`].
    ///
    /// A store that cannot hold `context`'s sessions (a custom context on a bare
    /// `PgSessionStore`) is logged and every request of the layer answered as a store failure
    /// (`503` where a user is required), never a panic; [`try_layer`](Self::try_layer)
    /// returns that error instead.
    pub fn layer(&self, context: AppContext) -> SessionLayer<User> {
        let users: Arc<dyn UserResolver<User = User>> = self.users.clone();
        #[cfg(feature = "cache")]
        let publishes = self.cache.is_some();
        #[cfg(not(feature = "cache"))]
        let publishes = false;
        #[cfg(feature = "cache")]
        let cache = self.cache.as_ref().map(|cache| cache.build(&context));
        let layer = SessionLayer::from_parts(
            context,
            Arc::clone(&self.store),
            publishes,
            users,
            self.settings.clone(),
        );
        #[cfg(feature = "cache")]
        let layer = match &self.user_cache {
            Some(users) => layer.with_user_cache_instance(Arc::clone(users)),
            None => layer,
        };
        #[cfg(feature = "cache")]
        if let Some(cache) = cache {
            return layer.with_cache_instance(cache);
        }
        layer
    }

    /// The PostgreSQL notifications `SESSION_NOTIFIED_REVALIDATE_SECS` listens to: have a
    /// cache's bus [follow](crate::cache::InvalidationBus::follow) them to give the caches
    /// the same long bound.
    #[cfg(feature = "postgres")]
    pub fn notifications(&self) -> Option<&crate::store::postgres::Notifications> {
        self.notifications.as_ref()
    }

    /// The shared session store (for revoke-all, listing, maintenance).
    pub fn session_store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The shared user repository (login, registration).
    pub fn user_repository(&self) -> &Arc<dyn UserRepository> {
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
