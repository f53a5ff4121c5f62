//! [`SessionLayer`], [`SessionService`] and their [`ResponseFuture`]: the request path.
//!
//! 1. extract the credential (cookie, else bearer) and validate its shape: no I/O yet;
//! 2. refuse a write from another origin not authenticated by a bearer token ([`cross_origin`]);
//! 3. load a live record in the layer's context (the legacy key too, if enabled for the
//!    context), deleting an expired one; the absolute lifetime counts;
//! 4. slide the idle timeout, at most once per touch interval;
//! 5. resolve the user and check the context's admission policy;
//! 6. insert [`Session`] (always) and [`CurrentUser`] (when authenticated), call the inner
//!    service, and on the way out write `Set-Cookie` only if the handler changed the session.
//!
//! Requests without a credential take a fast path: no allocation beyond the [`Session`]
//! handle and no await before the inner service. So do sessions answered without I/O, from
//! the [cache](crate::cache) or from a store and resolver whose [`StoreFuture`]s are ready
//! (the in-process ones) when no slide is due: steps 3–5 then run in `call` itself and no
//! future is boxed. A miss on such a store is answered there too, after one lookup.
//!
//! A layer's build state ([`Ready`], [`NeedsUsers`]) says whether it can authenticate
//! anyone: only a ready one is a [`Layer`].
//!
//! [`cross_origin`]: crate::cross_origin
//! [`StoreFuture`]: crate::store::StoreFuture
//! [`CurrentUser`]: crate::CurrentUser
//! [`Session`]: crate::Session

mod authenticate;
mod future;
mod service;
mod span;
mod state;
mod unsupported;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

pub use future::ResponseFuture;
pub use service::SessionService;
pub use state::{LayerState, NeedsUsers, Ready};

use crate::clock::Clock;
use crate::cookie::{CookieConfig, SameSite};
use crate::cross_origin::CrossOriginPolicy;
use crate::policy::OverLimit;
use crate::policy::Settings;
use crate::session::Shared;
use crate::store::SessionStore;
use crate::users::UserResolver;
use crate::{AppContext, Role, User};

type Admit<U> = Arc<dyn Fn(&U) -> bool + Send + Sync>;

/// Authenticates requests from sessions of one [`AppContext`].
///
/// The context is fixed here, when the layer is built; no request data can choose it. Build
/// layers for several apps from one [`Sessions`](crate::Sessions) handle so they share the
/// store's connections, or directly. Every setting can be given in any order:
///
/// ```
/// use std::time::Duration;
/// use tower_app_sessions::{AppContext, MemoryStore, MemoryUsers, Role, SessionLayer};
///
/// let store = MemoryStore::new();
/// let users = MemoryUsers::new();
/// let admin = SessionLayer::for_context(AppContext::Admin)
///     .admit_roles([Role::Admin, Role::Operator, Role::Support])
///     .store(store.clone())
///     .users(users.clone())
///     .cookie_name("__Host-admin_sid")
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 60 * 60));
/// let web = SessionLayer::for_context(AppContext::Web).store(store).users(users);
/// # let _ = (admin, web);
/// ```
///
/// # Build states
/// `State` records whether the layer can authenticate anyone ([`LayerState`]).
/// [`for_context`](Self::for_context) starts in [`NeedsUsers`]; only [`users`](Self::users)
/// leads to [`Ready`], the one state that implements [`Layer`]: a layer that would issue
/// tokens and then answer every request `401` does not compile. [`SessionLayer::new`] and
/// [`Sessions::layer`](crate::Sessions::layer) are `Ready` from the start.
///
/// Without [`store`](Self::store), a `for_context` layer keeps its sessions in a
/// [`MemoryStore`](crate::MemoryStore) of its own. That layer authenticates the sessions it
/// issues, so it is allowed (a one-app, one-process service needs nothing more); give the
/// same store to every layer, to [`Sessions`](crate::Sessions) and to other processes that
/// must see those sessions.
///
/// For a user type of your own, start from [`SessionLayer::new`].
pub struct SessionLayer<U = User, State = Ready> {
    shared: Arc<Shared>,
    /// The store as given; `shared.store` is it, or it wrapped to publish on the cache's bus.
    base_store: Arc<dyn SessionStore>,
    /// Whether `base_store` publishes its deletions already (a [`Sessions`](crate::Sessions)
    /// store with a cache): then it is not wrapped again.
    base_publishes: bool,
    users: Arc<dyn UserResolver<User = U>>,
    admit: Option<Admit<U>>,
    #[cfg(feature = "cache")]
    cache: Option<Arc<crate::cache::SessionCache<U>>>,
    #[cfg(feature = "cache")]
    user_cache: Option<Arc<crate::cache::UserCache<U>>>,
    hints: Arc<Hints>,
    state: PhantomData<fn() -> State>,
}

/// What the layer learned about its backends: a store or resolver seen to answer with a
/// future that must be awaited is not asked first in `call` (it would be asked again on the
/// async path). Only ever a shortcut: every answer is correct without it.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    pub(crate) store_waits: AtomicBool,
    pub(crate) users_wait: AtomicBool,
}

impl<U, State> Clone for SessionLayer<U, State> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            base_store: Arc::clone(&self.base_store),
            base_publishes: self.base_publishes,
            users: Arc::clone(&self.users),
            admit: self.admit.clone(),
            #[cfg(feature = "cache")]
            cache: self.cache.clone(),
            #[cfg(feature = "cache")]
            user_cache: self.user_cache.clone(),
            hints: Arc::clone(&self.hints),
            state: PhantomData,
        }
    }
}

impl<U, State> fmt::Debug for SessionLayer<U, State> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("context", &self.shared.context)
            .field("settings", &self.shared.settings)
            .field("admission_policy", &self.admit.is_some())
            .field("state", &short_type_name::<State>())
            .finish_non_exhaustive()
    }
}

/// `Ready` for `tower_app_sessions::layer::Ready`: the build state as `Debug` shows it.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(feature = "memory")]
impl SessionLayer<User, NeedsUsers> {
    /// Starts a layer for `context`, on a [`MemoryStore`](crate::MemoryStore) of its own
    /// until [`store`](Self::store) gives it yours. It needs [`users`](Self::users) before
    /// it can be applied (see [Build states](SessionLayer#build-states)).
    pub fn for_context(context: AppContext) -> Self {
        SessionLayer::new(
            context,
            crate::MemoryStore::new(),
            // Never asked: a `NeedsUsers` layer serves no request, and `users` replaces it.
            crate::MemoryUsers::new(),
        )
        .into_state()
    }
}

impl<State> SessionLayer<User, State> {
    /// Admits only users with one of `roles` (checked on every request, not only at login:
    /// a session written by another system for a disallowed role is refused).
    pub fn admit_roles(self, roles: impl IntoIterator<Item = Role>) -> Self {
        let roles: Vec<Role> = roles.into_iter().collect();
        self.admit(move |user: &User| roles.contains(&user.role))
    }
}

impl<U: Send + Sync + 'static> SessionLayer<U> {
    /// A layer for `context` on `store`, resolving users of your own type with `users`.
    ///
    /// A `store` that cannot hold `context`'s sessions (a custom context on a bare
    /// `PgSessionStore`) is a configuration mistake: it is logged, and every request is
    /// answered as a store failure (anonymous; `503` where a user is required).
    /// [`try_new`](Self::try_new) returns it as an error instead.
    pub fn new<R>(context: AppContext, store: impl SessionStore, users: R) -> Self
    where
        R: UserResolver<User = U>,
    {
        Self::from_parts(
            context,
            Arc::new(store),
            false,
            Arc::new(users),
            Settings::default(),
        )
    }

    /// [`new`](Self::new), or [`ConfigError::UnsupportedContext`](crate::config::ConfigError)
    /// if `store` cannot hold `context`'s sessions.
    ///
    /// ```
    /// use tower_app_sessions::{AppContext, MemoryStore, MemoryUsers, SessionLayer};
    /// let layer = SessionLayer::try_new(AppContext::Web, MemoryStore::new(), MemoryUsers::new());
    /// assert!(layer.is_ok()); // memory holds every context
    /// ```
    ///
    /// # Errors
    /// As above.
    pub fn try_new<R>(
        context: AppContext,
        store: impl SessionStore,
        users: R,
    ) -> Result<Self, crate::config::ConfigError>
    where
        R: UserResolver<User = U>,
    {
        if !store.capabilities().supports(&context) {
            return Err(unsupported::unsupported(&context));
        }
        Ok(Self::new(context, store, users))
    }

    pub(crate) fn from_parts(
        context: AppContext,
        store: Arc<dyn SessionStore>,
        store_publishes: bool,
        users: Arc<dyn UserResolver<User = U>>,
        settings: Settings,
    ) -> Self {
        let store = unsupported::supported_or_refusing(store, &context);
        Self {
            shared: Arc::new(Shared {
                metrics: Arc::new(crate::telemetry::LayerMetrics::new(&context)),
                context,
                store: Arc::clone(&store),
                settings,
            }),
            base_store: store,
            base_publishes: store_publishes,
            users,
            admit: None,
            #[cfg(feature = "cache")]
            cache: None,
            #[cfg(feature = "cache")]
            user_cache: None,
            hints: Arc::default(),
            state: PhantomData,
        }
    }
}

impl<U, State> SessionLayer<U, State> {
    /// The same layer in another build state.
    fn into_state<To>(self) -> SessionLayer<U, To> {
        SessionLayer {
            shared: self.shared,
            base_store: self.base_store,
            base_publishes: self.base_publishes,
            users: self.users,
            admit: self.admit,
            #[cfg(feature = "cache")]
            cache: self.cache,
            #[cfg(feature = "cache")]
            user_cache: self.user_cache,
            hints: self.hints,
            state: PhantomData,
        }
    }
}

impl<U: Send + Sync + 'static, State> SessionLayer<U, State> {
    /// Whether the layer's store can hold its context's sessions: for an application that
    /// would rather not start than answer `503` (see [`new`](SessionLayer::new)).
    ///
    /// # Errors
    /// [`ConfigError::UnsupportedContext`](crate::config::ConfigError) if it cannot.
    pub fn check(&self) -> Result<(), crate::config::ConfigError> {
        if self
            .base_store
            .capabilities()
            .supports(&self.shared.context)
        {
            Ok(())
        } else {
            Err(unsupported::unsupported(&self.shared.context))
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    fn settings_mut(&mut self) -> &mut Settings {
        &mut self.shared_mut().settings
    }

    /// Puts `shared.store` back together from the base store and the cache, if any.
    fn rebuild_store(&mut self) {
        let store = Arc::clone(&self.base_store);
        #[cfg(feature = "cache")]
        let store: Arc<dyn SessionStore> = match &self.cache {
            Some(cache) if !self.base_publishes => Arc::new(crate::cache::PublishingStore {
                inner: store,
                bus: cache.bus().clone(),
            }),
            _ => store,
        };
        self.shared_mut().store = store;
        // A new backend: learn anew whether it answers at once.
        self.hints = Arc::default();
    }

    /// Caches each authenticated session's record and admitted user in process, for at most
    /// `ttl` (use the revalidation bound, `SESSION_REVALIDATE_SECS`), at most `max_entries`
    /// sessions: a cached request makes no store or database round trip. Deletions through
    /// this layer's store are published on `bus` first, so a logout or revoke anywhere drops
    /// the entry everywhere; while `bus` is down nothing is served from the cache. See
    /// [`cache`](crate::cache). The idle timeout still slides: an entry due for extension
    /// takes the store path.
    #[cfg(feature = "cache")]
    pub fn cache(
        mut self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: Duration,
    ) -> Self {
        self.cache = Some(crate::cache::SessionCache::new(
            bus,
            max_entries,
            ttl,
            &self.shared.context,
        ));
        self.rebuild_store();
        self
    }

    /// Caches resolved users by id for this layer's context, for at most `ttl` (use the
    /// revalidation bound, `SESSION_REVALIDATE_SECS`, or the notified trust of
    /// [`TieredStore::notifications`](crate::store::TieredStore::notifications)), at most
    /// `max_entries` users: users are far fewer than sessions, so a session the session cache
    /// does not hold still finds its user in memory. A user's change through this crate
    /// (role, permissions, revoke-all) is published on `bus` and drops them everywhere, as
    /// does one PostgreSQL notifies when the bus [follows](crate::cache::InvalidationBus::follow)
    /// its notifications; while `bus` is down nothing is served. A cached user keeps the
    /// `last_login_at` they were loaded with, and a permission that lapses by its
    /// `expires_at` (no row changes, so nothing is notified) stays with a cached user for up
    /// to `ttl`: pick the TTL with the shortest-lived grants in mind. Role and permission
    /// changes are rows, and rows are notified, so with notifications followed the user
    /// cache can keep a longer bound than the session cache, whose TTL should stay short
    /// (a bare Redis `DEL`, the TypeScript apps' logout, publishes nothing).
    #[cfg(feature = "cache")]
    pub fn user_cache(
        self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: Duration,
    ) -> Self {
        let settings = crate::cache::CacheSettings {
            bus: bus.clone(),
            max_entries,
            ttl,
        };
        self.with_user_cache_instance(crate::cache::UserCache::new(&settings))
    }

    #[cfg(feature = "cache")]
    pub(crate) fn with_user_cache_instance(
        mut self,
        cache: Arc<crate::cache::UserCache<U>>,
    ) -> Self {
        self.user_cache = Some(cache);
        self
    }

    #[cfg(feature = "cache")]
    pub(crate) fn with_cache_instance(mut self, cache: Arc<crate::cache::SessionCache<U>>) -> Self {
        self.cache = Some(cache);
        self.rebuild_store();
        self
    }

    /// Uses `store` for sessions (a shared `Arc<dyn SessionStore>` is a store too). With a
    /// [`cache`](Self::cache), its deletions are published on the cache's bus.
    ///
    /// A `store` that cannot hold the layer's context's sessions is logged, and every
    /// request answered as a store failure (`503` where a user is required);
    /// [`check`](Self::check) says so as an error.
    pub fn store(mut self, store: impl SessionStore) -> Self {
        let store = unsupported::supported_or_refusing(Arc::new(store), &self.shared.context);
        self.base_store = store;
        self.base_publishes = false;
        self.rebuild_store();
        self
    }

    /// Resolves users with `users` (a shared `Arc` of a resolver is a resolver too). The
    /// layer is then [`Ready`] to be applied.
    pub fn users(mut self, users: impl UserResolver<User = U>) -> SessionLayer<U, Ready> {
        self.users = Arc::new(users);
        self.hints = Arc::default();
        self.into_state()
    }

    /// Admits only users for which `policy` is true; others are anonymous on every request.
    pub fn admit(mut self, policy: impl Fn(&U) -> bool + Send + Sync + 'static) -> Self {
        self.admit = Some(Arc::new(policy));
        self
    }

    /// The layer's context.
    pub fn context(&self) -> &AppContext {
        &self.shared.context
    }

    /// The store the layer uses (publishing its deletions when the layer caches).
    pub fn session_store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.store
    }

    /// Replaces all cookie settings.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.settings_mut().cookie = cookie;
        self
    }

    fn map_cookie(mut self, f: impl FnOnce(CookieConfig) -> CookieConfig) -> Self {
        let settings = self.settings_mut();
        settings.cookie = f(std::mem::take(&mut settings.cookie));
        self
    }

    /// Sets the cookie name (default `sessionId`). Give each app its own name so a browser
    /// can be logged in to several on one host.
    ///
    /// # Panics
    /// If the name is not an HTTP token (see [`CookieConfig::name`]).
    pub fn cookie_name(self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.map_cookie(|c| c.name(name))
    }

    /// Sets the cookie's `Secure` attribute (default on).
    pub fn cookie_secure(self, secure: bool) -> Self {
        self.map_cookie(|c| c.secure(secure))
    }

    /// Sets the cookie's `HttpOnly` attribute (default on).
    pub fn cookie_http_only(self, http_only: bool) -> Self {
        self.map_cookie(|c| c.http_only(http_only))
    }

    /// Sets the cookie's `SameSite` attribute (default `Lax`).
    pub fn cookie_same_site(self, same_site: SameSite) -> Self {
        self.map_cookie(|c| c.same_site(same_site))
    }

    /// Sets the cookie's `Path` (default `/`).
    pub fn cookie_path(self, path: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.map_cookie(|c| c.path(path))
    }

    /// Sets the cookie's `Domain` (default none).
    pub fn cookie_domain(self, domain: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.map_cookie(|c| c.domain(domain))
    }

    /// Idle timeout: a session unused this long expires (default 24 h). Also the TTL of new
    /// records.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.settings_mut().idle = idle;
        self
    }

    /// Absolute lifetime: no session outlives this since login, however active (default
    /// 7 days). Sliding never passes it.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.settings_mut().absolute = absolute;
        self
    }

    /// Times one in `one_in` of the requests answered without waiting (cache hits, and
    /// in-process stores with nothing to write) for
    /// [`AUTH_DURATION_SECONDS`](crate::telemetry::AUTH_DURATION_SECONDS), counted per
    /// thread; default 8, `1` times every one. Those answers take a microsecond, and two
    /// clock reads and a histogram sample per request cost a tenth of that: a sample keeps
    /// the distribution at an eighth of the cost. Requests that wait on a backend are always
    /// timed; every request is counted in
    /// [`REQUESTS_TOTAL`](crate::telemetry::REQUESTS_TOTAL) either way.
    pub fn timing_sample(mut self, one_in: u32) -> Self {
        self.settings_mut().timing_sample = one_in.max(1);
        self
    }

    /// Extend the idle timeout at most this often per session (default 60 s, and never less
    /// often than every half idle timeout): one store write per interval, not per request.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.settings_mut().touch_interval = interval;
        self
    }

    /// Reads pre-migration, context-less records (Redis `session:<id>`, PostgreSQL
    /// `users.session_id`) when the context's own key misses, **for the `web` context only**:
    /// a legacy session must never open the admin panel. `false` is the migration's cleanup
    /// stage. New sessions are always written under the context's key. To allow other
    /// contexts, name them with [`legacy_fallback_contexts`](Self::legacy_fallback_contexts).
    pub fn legacy_fallback(self, enabled: bool) -> Self {
        self.legacy_fallback_contexts(enabled.then_some(AppContext::Web))
    }

    /// Enables the legacy fallback for exactly these contexts (an empty list disables it).
    pub fn legacy_fallback_contexts(
        mut self,
        contexts: impl IntoIterator<Item = AppContext>,
    ) -> Self {
        self.settings_mut().legacy_contexts = contexts.into_iter().collect();
        self
    }

    /// Whether this layer reads legacy keys.
    pub fn legacy_fallback_enabled(&self) -> bool {
        self.shared.reads_legacy()
    }

    /// Allows each user at most `max` sessions in this layer's context (`0`: no limit, the
    /// default). A login beyond it ends the user's least recently used sessions at once,
    /// unless [`over_limit`](Self::over_limit) says to refuse it. Sessions are counted
    /// through the store's per-user listing: in Redis, sessions the TypeScript apps wrote
    /// without the per-user index are not counted. `SESSION_MAX_PER_USER` sets it for every
    /// layer of [`Sessions::from_env`](crate::Sessions::from_env).
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.settings_mut().session_limit.max = max;
        self
    }

    /// The largest a session's [data](crate::data) may be, in bytes of its compact JSON
    /// object (default 16 KiB; [the measure](crate::data::size#the-measure)). A change that
    /// would make it larger is refused, never cut: when the handler makes it
    /// ([`DataError::TooLarge`](crate::data::DataError::TooLarge)), and again by the store,
    /// atomically with the write, against what concurrent requests stored meanwhile
    /// ([`DataError::NoRoom`](crate::data::DataError::NoRoom)); both `413`. No interleaving
    /// of requests stores more.
    pub fn max_data_bytes(mut self, max: usize) -> Self {
        self.settings_mut().data_limits.max_bytes = max;
        self
    }

    /// The most keys a session's [data](crate::data) may hold (default 256), enforced as
    /// [`max_data_bytes`](Self::max_data_bytes) is
    /// ([`DataError::TooManyKeys`](crate::data::DataError::TooManyKeys) or
    /// [`DataError::NoRoom`](crate::data::DataError::NoRoom): `413`). A request also
    /// removes at most this many keys.
    pub fn max_data_keys(mut self, max: usize) -> Self {
        self.settings_mut().data_limits.max_keys = max;
        self
    }

    /// Calls `hook` with every lifecycle event of this layer ([`events`](crate::events)),
    /// once per occurrence, on the request path: keep it cheap. Hooks add up; the audit
    /// trail (target `tower_app_sessions::audit`) is written whatever hooks there are.
    pub fn on_event(
        mut self,
        hook: impl Fn(&crate::events::SessionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.settings_mut().events.push(hook);
        self
    }

    /// What a login over [`max_sessions_per_user`](Self::max_sessions_per_user) does
    /// (default: [`OverLimit::EvictLeastRecentlyUsed`]).
    pub fn over_limit(mut self, over: OverLimit) -> Self {
        self.settings_mut().session_limit.over = over;
        self
    }

    /// How writes from other origins that no bearer token authenticates are treated (default: refused
    /// with `403`, see [`cross_origin`](crate::cross_origin)). `SESSION_TRUSTED_ORIGINS` sets
    /// the trusted origins of every layer of [`Sessions::from_env`](crate::Sessions::from_env).
    pub fn cross_origin(mut self, policy: CrossOriginPolicy) -> Self {
        self.settings_mut().cross_origin = policy;
        self
    }

    /// Reads the time from `clock` (default: the system clock). Every decision about a
    /// request (expiry, sliding, the cache's bound) and every timestamp the layer writes uses
    /// one reading of it; see [`clock`](crate::clock). For tests: pass a
    /// [`ManualClock`](crate::clock::ManualClock) and advance it.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.settings_mut().clock = clock.into();
        self
    }
}

/// Only a [`Ready`] layer is a layer; the bound (rather than an impl for `Ready` alone) is
/// what lets the compiler say what a [`NeedsUsers`] one lacks ([`LayerState`]'s message).
impl<S, U, State: LayerState> Layer<S> for SessionLayer<U, State> {
    type Service = SessionService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.clone().into_state())
    }
}
