//! [`SessionLayer`], [`SessionService`] and their [`ResponseFuture`]: the request path.
//!
//! 1. extract the credential (cookie, else bearer) and validate its shape: no I/O yet;
//! 2. load the record in the layer's context (and, if enabled for this context, the legacy
//!    key);
//! 3. reject expired records (deleting them) and enforce the absolute lifetime;
//! 4. slide the idle timeout, at most once per touch interval;
//! 5. resolve the user and check the context's admission policy;
//! 6. insert [`Session`] (always) and [`CurrentUser`] (when authenticated), call the inner
//!    service, and on the way out write `Set-Cookie` only if the handler changed the session.
//!
//! Requests without a credential take a fast path: no allocation beyond the [`Session`]
//! handle and no await before the inner service. So do sessions that are answered without
//! I/O, from the [cache](crate::cache) or an in-process store and resolver
//! ([`SessionStore::load_now`], [`UserResolver::resolve_now`]) when no slide is due: steps
//! 2–5 then run in `call` itself and no future is boxed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Clock;
use crate::cookie::{CookieConfig, SameSite};
use crate::cross_origin::{self, CrossOriginPolicy};
use crate::extract::{self, Credential, CredentialSource};
use crate::record::{duration_ms as ms, remaining};
use crate::session::SessionStatus;
use crate::store::{BoxFuture, SessionStore};
use crate::users::UserResolver;
use crate::{AppContext, CurrentUser, Role, Session, SessionId, SessionRecord, User};

/// Session timing, cookie and migration settings, shared by every layer of a
/// [`Sessions`](crate::Sessions) handle.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) cookie: CookieConfig,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) legacy_contexts: Vec<AppContext>,
    pub(crate) clock: Clock,
    pub(crate) session_limit: crate::session::SessionLimit,
    pub(crate) cross_origin: CrossOriginPolicy,
    /// The web app's database, reachable through [`Session::web`] in the `web` context.
    #[cfg(feature = "postgres")]
    pub(crate) web_db: Option<crate::webdb::WebDatabase>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            idle: Duration::from_secs(24 * 60 * 60),
            absolute: Duration::from_secs(7 * 24 * 60 * 60),
            touch_interval: Duration::from_secs(60),
            legacy_contexts: Vec::new(),
            clock: Clock::system(),
            session_limit: crate::session::SessionLimit::default(),
            cross_origin: CrossOriginPolicy::default(),
            #[cfg(feature = "postgres")]
            web_db: None,
        }
    }
}

impl Settings {
    /// Lifetime of a new record: the idle timeout, never past the absolute limit.
    pub(crate) fn first_ttl(&self) -> Duration {
        self.idle.min(self.absolute)
    }

    /// Cookie `Max-Age`: what is left of the absolute lifetime. The server enforces the idle
    /// timeout from the record; a cookie that expired on idle would log out active users.
    pub(crate) fn cookie_max_age(&self, record: &SessionRecord, now: i64) -> Duration {
        remaining(record.created_at.saturating_add(ms(self.absolute)), now)
    }

    fn absolute_deadline(&self, record: &SessionRecord) -> i64 {
        record.created_at.saturating_add(ms(self.absolute))
    }

    /// The new `expires_at` if the idle timeout is due for extension at `now`.
    ///
    /// The time of the last extension is derived from the record itself
    /// (`expires_at - idle`), so throttling needs no extra field and no extra write.
    fn extension_due(&self, record: &SessionRecord, now: i64) -> Option<i64> {
        let idle = ms(self.idle);
        let interval = ms(self.touch_interval).min(idle / 2);
        let target = now.saturating_add(idle).min(self.absolute_deadline(record));
        let last_touch = record.expires_at.saturating_sub(idle);
        (target > record.expires_at && now.saturating_sub(last_touch) >= interval).then_some(target)
    }
}

/// Everything a layer's services share: context, store and settings.
pub(crate) struct Shared {
    pub(crate) context: AppContext,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) settings: Settings,
}

impl Clone for Shared {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
            store: Arc::clone(&self.store),
            settings: self.settings.clone(),
        }
    }
}

impl Shared {
    pub(crate) fn legacy_active(&self) -> bool {
        self.settings.legacy_contexts.contains(&self.context)
    }
}

type Admit<U> = Arc<dyn Fn(&U) -> bool + Send + Sync>;

/// A layer whose store cannot hold its context's sessions (a custom context on a bare
/// `PgSessionStore`: the `"ApplicationType"` enum knows `web` and `admin`) is a configuration
/// mistake: it is refused when the layer is built, not answered `503` on every request.
fn assert_supported(store: &dyn SessionStore, context: &AppContext) {
    if !store.supports(context) {
        panic!(
            "{}",
            crate::config::ConfigError::UnsupportedContext {
                context: context.clone()
            }
        );
    }
}

/// Authenticates requests from sessions of one [`AppContext`].
///
/// The context is fixed here, when the layer is built; no request data can choose it. Build
/// layers for several apps from one [`Sessions`](crate::Sessions) handle so they share the
/// store's connections, or directly:
///
/// ```
/// use std::time::Duration;
/// use tower_app_sessions::{AppContext, MemoryStore, MemoryUsers, Role, SessionLayer};
///
/// let store = MemoryStore::new();
/// let users = MemoryUsers::new();
/// let admin = SessionLayer::for_context(AppContext::Admin)
///     .with_store(store.clone())
///     .with_users(users.clone())
///     .cookie_name("admin_sid")
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 60 * 60))
///     .admit_roles([Role::Admin, Role::Operator, Role::Support]);
/// let web = SessionLayer::for_context(AppContext::Web).with_store(store).with_users(users);
/// # let _ = (admin, web);
/// ```
#[must_use]
pub struct SessionLayer<U = User> {
    shared: Arc<Shared>,
    users: Arc<dyn UserResolver<User = U>>,
    admit: Option<Admit<U>>,
    #[cfg(feature = "cache")]
    cache: Option<Arc<crate::cache::SessionCache<U>>>,
}

impl<U> Clone for SessionLayer<U> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            users: Arc::clone(&self.users),
            admit: self.admit.clone(),
            #[cfg(feature = "cache")]
            cache: self.cache.clone(),
        }
    }
}

impl<U> fmt::Debug for SessionLayer<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("context", &self.shared.context)
            .field("settings", &self.shared.settings)
            .field("admission_policy", &self.admit.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "memory")]
impl SessionLayer<User> {
    /// A layer for `context` on a fresh [`MemoryStore`](crate::MemoryStore) with an empty
    /// [`MemoryUsers`](crate::MemoryUsers); replace them with [`with_store`](Self::with_store)
    /// and [`with_users`](Self::with_users).
    pub fn for_context(context: AppContext) -> Self {
        SessionLayer::new(
            context,
            crate::MemoryStore::new(),
            crate::MemoryUsers::new(),
        )
    }
}

impl SessionLayer<User> {
    /// Admits only users with one of `roles` (checked on every request, not only at login:
    /// a session written by another system for a disallowed role is refused).
    pub fn admit_roles(self, roles: impl IntoIterator<Item = Role>) -> Self {
        let roles: Vec<Role> = roles.into_iter().collect();
        self.admit(move |user: &User| roles.contains(&user.role))
    }
}

impl<U: Send + Sync + 'static> SessionLayer<U> {
    /// A layer for `context` with the given store and user resolver.
    pub fn new<R>(context: AppContext, store: impl SessionStore, users: R) -> Self
    where
        R: UserResolver<User = U>,
    {
        Self::from_parts(
            context,
            Arc::new(store),
            Arc::new(users),
            Settings::default(),
        )
    }

    pub(crate) fn from_parts(
        context: AppContext,
        store: Arc<dyn SessionStore>,
        users: Arc<dyn UserResolver<User = U>>,
        settings: Settings,
    ) -> Self {
        assert_supported(store.as_ref(), &context);
        Self {
            shared: Arc::new(Shared {
                context,
                store,
                settings,
            }),
            users,
            admit: None,
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// Caches each authenticated session's record and admitted user in process, for at most
    /// `ttl` (use the revalidation bound, `SESSION_REVALIDATE_SECS`), at most `max_entries`
    /// sessions: a cached request makes no store or database round trip. Deletions through
    /// this layer's store are published on `bus` first, so a logout or revoke anywhere drops
    /// the entry everywhere; while `bus` is down nothing is served from the cache. See
    /// [`cache`](crate::cache). The idle timeout still slides: an entry due for extension
    /// takes the store path. Set it after [`with_users`](Self::with_users).
    #[cfg(feature = "cache")]
    pub fn cache(
        mut self,
        bus: &crate::cache::InvalidationBus,
        max_entries: u64,
        ttl: Duration,
    ) -> Self {
        let store = Arc::clone(&self.shared.store);
        self.shared_mut().store = Arc::new(crate::cache::PublishingStore {
            inner: store,
            bus: bus.clone(),
        });
        self.with_cache_instance(crate::cache::SessionCache::new(bus, max_entries, ttl))
    }

    #[cfg(feature = "cache")]
    pub(crate) fn with_cache_instance(mut self, cache: Arc<crate::cache::SessionCache<U>>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The layer's context.
    pub fn context(&self) -> &AppContext {
        &self.shared.context
    }

    /// The layer's store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.store
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Uses `store` for sessions.
    pub fn with_store(self, store: impl SessionStore) -> Self {
        self.with_shared_store(Arc::new(store))
    }

    /// Uses an already shared store. With a [`cache`](Self::cache) set, deletions through
    /// it are published on the cache's bus, as with the store it replaces.
    pub fn with_shared_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        assert_supported(store.as_ref(), &self.shared.context);
        #[cfg(feature = "cache")]
        let store: Arc<dyn SessionStore> = match &self.cache {
            Some(cache) => Arc::new(crate::cache::PublishingStore {
                inner: store,
                bus: cache.bus().clone(),
            }),
            None => store,
        };
        self.shared_mut().store = store;
        self
    }

    /// Resolves users with `users`. This may change the user type, so it drops any
    /// admission policy: set the policy after the resolver.
    pub fn with_users<R: UserResolver>(self, users: R) -> SessionLayer<R::User> {
        self.with_shared_users(Arc::new(users))
    }

    /// Resolves users with an already shared resolver (see [`with_users`](Self::with_users)).
    pub fn with_shared_users<V>(self, users: Arc<dyn UserResolver<User = V>>) -> SessionLayer<V> {
        SessionLayer {
            shared: self.shared,
            users,
            admit: None,
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// Admits only users for which `policy` is true; others are anonymous on every request.
    pub fn admit(mut self, policy: impl Fn(&U) -> bool + Send + Sync + 'static) -> Self {
        self.admit = Some(Arc::new(policy));
        self
    }

    /// Replaces all cookie settings.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.shared_mut().settings.cookie = cookie;
        self
    }

    fn map_cookie(mut self, f: impl FnOnce(CookieConfig) -> CookieConfig) -> Self {
        let settings = &mut self.shared_mut().settings;
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
        self.shared_mut().settings.idle = idle;
        self
    }

    /// Absolute lifetime: no session outlives this since login, however active (default
    /// 7 days). Sliding never passes it.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.shared_mut().settings.absolute = absolute;
        self
    }

    /// Extend the idle timeout at most this often per session (default 60 s, and never less
    /// often than every half idle timeout): one store write per interval, not per request.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.shared_mut().settings.touch_interval = interval;
        self
    }

    /// Reads pre-migration, context-less records (Redis `session:<id>`) when the context's
    /// own key misses, **for the `web` context only**: a legacy session must never open the
    /// admin panel. `false` is the seed's cleanup stage. New sessions are always written under
    /// the context's key. To allow other contexts, name them with
    /// [`legacy_fallback_contexts`](Self::legacy_fallback_contexts).
    pub fn legacy_fallback(self, enabled: bool) -> Self {
        self.legacy_fallback_contexts(enabled.then_some(AppContext::Web))
    }

    /// Enables the legacy fallback for exactly these contexts (an empty list disables it).
    pub fn legacy_fallback_contexts(
        mut self,
        contexts: impl IntoIterator<Item = AppContext>,
    ) -> Self {
        self.shared_mut().settings.legacy_contexts = contexts.into_iter().collect();
        self
    }

    /// Whether this layer reads legacy keys.
    pub fn legacy_fallback_enabled(&self) -> bool {
        self.shared.legacy_active()
    }

    /// Allows each user at most `max` sessions in this layer's context (`0`: no limit, the
    /// default). A login beyond it ends the user's least recently used sessions at once,
    /// unless [`over_limit`](Self::over_limit) says to refuse it. Sessions are counted
    /// through the store's per-user listing: in Redis, sessions the TypeScript apps wrote
    /// without the per-user index are not counted. `SESSION_MAX_PER_USER` sets it for every
    /// layer of [`Sessions::from_env`](crate::Sessions::from_env).
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.shared_mut().settings.session_limit.max = max;
        self
    }

    /// What a login over [`max_sessions_per_user`](Self::max_sessions_per_user) does
    /// (default: [`OverLimit::EvictLeastRecentlyUsed`](crate::OverLimit)).
    pub fn over_limit(mut self, over: crate::session::OverLimit) -> Self {
        self.shared_mut().settings.session_limit.over = over;
        self
    }

    /// How cookie-authenticated writes from other origins are treated (default: refused
    /// with `403`, see [`cross_origin`](crate::cross_origin)). `SESSION_TRUSTED_ORIGINS` sets
    /// the trusted origins of every layer of [`Sessions::from_env`](crate::Sessions::from_env).
    pub fn cross_origin(mut self, policy: CrossOriginPolicy) -> Self {
        self.shared_mut().settings.cross_origin = policy;
        self
    }

    /// Reads the time from `clock` (default: the system clock). Every decision about a
    /// request (expiry, sliding, the cache's bound) and every timestamp the layer writes uses
    /// one reading of it; see [`clock`](crate::clock). For tests: pass a
    /// [`ManualClock`](crate::clock::ManualClock)'s clock and advance it.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.shared_mut().settings.clock = clock.into();
        self
    }
}

impl<U: Send + Sync + 'static> SessionLayer<U> {
    /// The session's record and admitted user when they are known without awaiting (from the
    /// cache, or from an in-process store and resolver) and the request needs no store write
    /// (no slide due). Misses, expiry, errors and refusals return `None` and take
    /// [`authenticate`], which handles and logs them: this path only ever says yes.
    fn lookup_now(&self, id: &SessionId) -> Option<(SessionRecord, Arc<U>)> {
        let (context, settings) = (&self.shared.context, &self.shared.settings);
        // One clock reading decides everything about this request.
        let now = settings.clock.now_ms();
        let (record, user) = self.cached(id, now).or_else(|| {
            let record = self.shared.store.load_now(context, id, now)?.ok()??;
            let user = self.users.resolve_now(context, &record.user_id)?.ok()??;
            let admitted = self.admit.as_ref().is_none_or(|admit| admit(&user));
            admitted.then_some((record, user))
        })?;
        let current = !record.is_expired(now)
            && settings.absolute_deadline(&record) > now
            && settings.extension_due(&record, now).is_none();
        current.then_some((record, user))
    }

    #[cfg(feature = "cache")]
    fn cached(&self, id: &SessionId, now: i64) -> Option<(SessionRecord, Arc<U>)> {
        let entry = self.cache.as_ref()?.get(&self.shared.context, id, now)?;
        Some((entry.record, entry.user))
    }

    #[cfg(not(feature = "cache"))]
    fn cached(&self, _: &SessionId, _: i64) -> Option<(SessionRecord, Arc<U>)> {
        None
    }
}

impl<S, U> Layer<S> for SessionLayer<U> {
    type Service = SessionService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around yours.
pub struct SessionService<S, U = User> {
    inner: S,
    layer: SessionLayer<U>,
}

impl<S: Clone, U> Clone for SessionService<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, U> fmt::Debug for SessionService<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<&'static str>,
    U: Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.layer.shared;
        // An outer layer (another context) may have put its user here: this layer alone
        // decides who the user is below it.
        req.extensions_mut().remove::<CurrentUser<U>>();
        let Some(credential) =
            extract::credential(req.headers(), shared.settings.cookie.get_name())
        else {
            let session = Session::new(Arc::clone(shared), None, SessionStatus::Anonymous, None);
            req.extensions_mut().insert(session.clone());
            return ResponseFuture::calling(self.inner.call(req), session);
        };
        if credential.source == CredentialSource::Cookie
            && !shared
                .settings
                .cross_origin
                .allows(req.method(), req.uri(), req.headers())
        {
            tracing::info!(context = %shared.context, method = %req.method(), "cross-origin write with the session cookie refused");
            return ResponseFuture::refused(cross_origin::refusal());
        }
        if let Some((record, user)) = self.layer.lookup_now(&credential.id) {
            let session = Session::new(
                Arc::clone(shared),
                Some(credential.source),
                SessionStatus::Authenticated,
                Some((credential.id, record, false)),
            );
            req.extensions_mut().insert(session.clone());
            req.extensions_mut().insert(CurrentUser::new(user));
            return ResponseFuture::calling(self.inner.call(req), session);
        }
        // The inner service was made ready by `poll_ready`; take that one and leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let loading = Box::pin(async move {
            let (session, user) = authenticate(&layer, credential).await;
            req.extensions_mut().insert(session.clone());
            if let Some(user) = user {
                req.extensions_mut().insert(user);
            }
            (inner.call(req), session)
        });
        ResponseFuture {
            state: State::Loading { loading },
            session: None,
        }
    }
}

/// Looks the credential up and decides what the request is. Never fails: backend errors
/// become [`SessionStatus::Unavailable`] (logged), everything else anonymous.
async fn authenticate<U: Send + Sync + 'static>(
    layer: &SessionLayer<U>,
    Credential { id, source }: Credential,
) -> (Session, Option<CurrentUser<U>>) {
    let shared = &layer.shared;
    let (context, store) = (&shared.context, &shared.store);
    let anonymous = || {
        Session::new(
            Arc::clone(shared),
            Some(source),
            SessionStatus::Anonymous,
            None,
        )
    };
    let unavailable = |what: &str, error: &dyn fmt::Display| {
        tracing::warn!(context = %context, %error, "{what} unavailable; request not authenticated");
        let session = Session::new(
            Arc::clone(shared),
            Some(source),
            SessionStatus::Unavailable,
            None,
        );
        (session, None)
    };

    #[cfg(feature = "cache")]
    let epoch = layer.cache.as_ref().map(|cache| cache.epoch());
    // One clock reading decides everything about this request.
    let now = shared.settings.clock.now_ms();
    let mut legacy = false;
    let found = match store.load(context, &id, now).await {
        Ok(None) if shared.legacy_active() => {
            legacy = true;
            store.load_legacy(&id, now).await
        }
        other => other,
    };
    let mut record = match found {
        Ok(Some(record)) => record,
        Ok(None) => return (anonymous(), None),
        Err(error) => return unavailable("session store", &error),
    };

    let settings = &shared.settings;
    if record.is_expired(now) || settings.absolute_deadline(&record) <= now {
        let deleted = if legacy {
            store.delete_legacy(&id).await
        } else {
            let deleted = store.delete(context, &id, now).await;
            // A copy left under the legacy key must not bring it back through the fallback.
            if shared.legacy_active() {
                if let Err(error) = store.delete_legacy(&id).await {
                    tracing::debug!(context = %context, %error, "could not delete a legacy copy");
                }
            }
            deleted
        };
        if let Err(error) = deleted {
            tracing::debug!(context = %context, %error, "could not delete an expired session");
        }
        return (anonymous(), None);
    }

    // Legacy records are not extended: they are on their way out (the seed's migration).
    if let Some(expires_at) = settings.extension_due(&record, now).filter(|_| !legacy) {
        match store.extend(context, &id, expires_at, now).await {
            Ok(true) => record.expires_at = expires_at,
            // Deleted between load and extend: logged out or revoked elsewhere.
            Ok(false) => return (anonymous(), None),
            // The record was valid a moment ago; a failed extension costs only the slide.
            Err(error) => tracing::warn!(context = %context, %error, "could not extend a session"),
        }
    }

    let resolved = match layer.users.resolve_now(context, &record.user_id) {
        Some(ready) => ready,
        None => layer.users.resolve(context, &record.user_id).await,
    };
    let user = match resolved {
        Ok(Some(user)) => user,
        Ok(None) => return (anonymous(), None),
        Err(error) => return unavailable("user store", &error),
    };
    if layer.admit.as_ref().is_some_and(|admit| !admit(&user)) {
        tracing::debug!(context = %context, "session refused by the context's admission policy");
        return (anonymous(), None);
    }
    #[cfg(feature = "cache")]
    if let (Some(cache), Some(epoch)) = (layer.cache.as_ref().filter(|_| !legacy), epoch) {
        let entry = crate::cache::Entry {
            record: record.clone(),
            user: Arc::clone(&user),
            loaded_ms: now,
        };
        cache.insert(context, &id, entry, epoch);
    }
    let session = Session::new(
        Arc::clone(shared),
        Some(source),
        SessionStatus::Authenticated,
        Some((id, record, legacy)),
    );
    (session, Some(CurrentUser::new(user)))
}

type Loading<F> = BoxFuture<'static, (F, Session)>;

pin_project! {
    /// Response future of [`SessionService`]: authenticates (when there is a credential),
    /// runs the inner service, then writes the `Set-Cookie` the handler's changes call for.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future, S::Response>,
        session: Option<Session>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Loading { loading: Loading<F> },
        Calling { #[pin] future: F },
        Refused { response: Option<R> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// The inner service already called: only the cookie is left to write.
    fn calling(future: S::Future, session: Session) -> Self {
        Self {
            state: State::Calling { future },
            session: Some(session),
        }
    }

    /// The layer answered itself; the inner service is never called.
    fn refused(response: S::Response) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
            session: None,
        }
    }
}

impl<S, Req, ResBody> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Loading { loading } => {
                    let (future, session) = ready!(loading.as_mut().poll(cx));
                    *this.session = Some(session);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(session) = this.session.take() {
                        session.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Refused { response } => {
                    // Polled again after completion: a contract violation of the caller;
                    // pending forever is the answer that cannot panic.
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn settings(idle: u64, absolute: u64, interval: u64) -> Settings {
        Settings {
            idle: Duration::from_millis(idle),
            absolute: Duration::from_millis(absolute),
            touch_interval: Duration::from_millis(interval),
            ..Settings::default()
        }
    }

    fn record(created_at: i64, expires_at: i64) -> SessionRecord {
        SessionRecord {
            user_id: Uuid::nil(),
            created_at,
            expires_at,
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn extension_is_throttled_and_capped() {
        let s = settings(1_000, 10_000, 100);
        // Extended 50 ms ago (expires_at = last touch + idle): not yet.
        assert_eq!(s.extension_due(&record(0, 1_050), 100), None);
        // Extended 100 ms ago: due, to now + idle.
        assert_eq!(s.extension_due(&record(0, 1_000), 100), Some(1_100));
        // Near the absolute limit: capped at created_at + absolute.
        assert_eq!(s.extension_due(&record(0, 9_500), 9_600), Some(10_000));
        // At the cap already: nothing to do.
        assert_eq!(s.extension_due(&record(0, 10_000), 9_900), None);
        // The interval is never longer than half the idle timeout.
        let s = settings(1_000, 10_000, 60_000);
        assert_eq!(s.extension_due(&record(0, 1_000), 500), Some(1_500));
    }
}
