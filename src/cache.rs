//! The in-process session cache (feature `cache`, opt-in per layer) and the
//! [`InvalidationBus`] that keeps it correct.
//!
//! A cached request makes no network round trip: the layer finds the session's record and
//! resolved user in memory. Correctness comes first:
//!
//! - an entry lives at most its TTL (use the revalidation bound, `SESSION_REVALIDATE_SECS`):
//!   changes made outside this crate (the TypeScript apps deleting a Redis key or revoking a
//!   row) publish nothing, and are seen within that bound;
//! - every change made through this crate — logout, rotation, revoke-all, a user's update or
//!   permission change through [`Sessions::users`](crate::Sessions::users) — is published on
//!   the bus and drops the affected entries in every process before the change returns
//!   ([`InvalidationBus::redis`]: Redis pub/sub, one round trip);
//! - when the invalidation channel drops, every cache stops serving (and is emptied) until it
//!   is subscribed again: fail closed, never stale;
//! - user-wide events (revoke-all, role or permission change) empty the whole cache: they are
//!   rare, and that keeps the per-request path free of a second index.
//!
//! ```
//! use std::time::Duration;
//! use tower_app_sessions::{cache::InvalidationBus, AppContext, Sessions};
//!
//! let bus = InvalidationBus::local(); // one process; InvalidationBus::redis(url) for several
//! let sessions = Sessions::memory().with_cache(&bus, 100_000, Duration::from_secs(5));
//! let web = sessions.layer(AppContext::Web); // cached
//! # let _ = web;
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use uuid::Uuid;

use crate::store::{BoxFuture, Scope, SessionInfo, SessionStore, StoreError};
use crate::users::{PermissionGrant, User, UserError, UserRepository, UserResolver};
use crate::{AppContext, SessionId, SessionRecord};

/// The Redis channel invalidations travel on.
pub const CHANNEL: &str = "tower-app-sessions:invalidate";

/// What a cache must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Session(AppContext, SessionId),
    Everything,
}

impl Event {
    #[cfg(any(feature = "redis", test))]
    fn encode(&self) -> String {
        match self {
            Event::Session(context, id) => format!("s:{}:{}", context.as_str(), id.as_str()),
            Event::Everything => "all".to_owned(),
        }
    }

    #[cfg(any(feature = "redis", test))]
    /// Anything unreadable drops everything: an unknown message must not leave stale entries.
    fn decode(message: &[u8]) -> Event {
        std::str::from_utf8(message)
            .ok()
            .and_then(|m| m.strip_prefix("s:"))
            .and_then(|rest| rest.rsplit_once(':'))
            .and_then(|(ctx, id)| Some(Event::Session(ctx.parse().ok()?, SessionId::parse(id)?)))
            .unwrap_or(Event::Everything)
    }
}

trait LocalCache: Send + Sync {
    fn apply(&self, event: &Event);
}

struct BusInner {
    caches: Mutex<Vec<Weak<dyn LocalCache>>>,
    /// Whether caches may serve: always for a local bus; while subscribed for Redis.
    healthy: AtomicBool,
    #[cfg(feature = "redis")]
    publisher: Option<redis::aio::ConnectionManager>,
}

/// Carries invalidations to every [`SessionCache`] of this process and, with
/// [`InvalidationBus::redis`], of every process sharing the Redis.
#[derive(Clone)]
pub struct InvalidationBus {
    inner: Arc<BusInner>,
}

impl std::fmt::Debug for InvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationBus")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl InvalidationBus {
    /// A bus for one process: invalidations reach this process's caches only.
    pub fn local() -> Self {
        Self {
            inner: Arc::new(BusInner {
                caches: Mutex::new(Vec::new()),
                healthy: AtomicBool::new(true),
                #[cfg(feature = "redis")]
                publisher: None,
            }),
        }
    }

    /// Whether caches may serve now.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    fn register(&self, cache: Weak<dyn LocalCache>) {
        let mut caches = self
            .inner
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(cache);
    }

    fn deliver(&self, event: &Event) {
        let caches: Vec<Arc<dyn LocalCache>> = self
            .inner
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            cache.apply(event);
        }
    }

    async fn publish(&self, event: Event) {
        self.deliver(&event);
        #[cfg(feature = "redis")]
        if let Some(publisher) = &self.inner.publisher {
            let mut publisher = publisher.clone();
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(event.encode())
                .query_async(&mut publisher)
                .await;
            if let Err(error) = sent {
                // Other processes then see the change when their entries expire (the TTL).
                tracing::warn!(%error, "could not publish a session invalidation");
            }
        }
    }

    /// Drops one session from every cache (and publishes it).
    pub async fn session_changed(&self, context: &AppContext, id: &SessionId) {
        self.publish(Event::Session(context.clone(), id.clone()))
            .await;
    }

    /// Drops every entry of every cache (a user-wide change: revoke-all, role, permissions).
    pub async fn user_changed(&self, user_id: &Uuid) {
        let _ = user_id;
        self.publish(Event::Everything).await;
    }

    /// A bus over Redis pub/sub: invalidations published by any process reach every process.
    /// A background task keeps the subscription; while it is down, caches do not serve.
    ///
    /// # Errors
    /// [`StoreError`] if Redis cannot be reached now.
    #[cfg(feature = "redis")]
    pub async fn redis(url: &str) -> Result<Self, StoreError> {
        let backend = |e: redis::RedisError| StoreError::backend("redis", e);
        let client = redis::Client::open(url).map_err(backend)?;
        let publisher = redis::aio::ConnectionManager::new_with_config(
            client.clone(),
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(1))),
        )
        .await
        .map_err(backend)?;
        let bus = Self {
            inner: Arc::new(BusInner {
                caches: Mutex::new(Vec::new()),
                healthy: AtomicBool::new(false),
                publisher: Some(publisher),
            }),
        };
        let first = subscribe(&client).await.map_err(backend)?;
        bus.inner.healthy.store(true, Ordering::Release);
        tokio::spawn(listen(client, Arc::downgrade(&bus.inner), first));
        Ok(bus)
    }
}

#[cfg(feature = "redis")]
async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connect timed out"))
        })??;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

/// Applies published invalidations until the bus is dropped; on a broken subscription,
/// closes the caches, resubscribes, empties them and opens them again.
#[cfg(feature = "redis")]
async fn listen(client: redis::Client, bus: Weak<BusInner>, mut pubsub: redis::aio::PubSub) {
    use futures_util::StreamExt;
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(inner) = bus.upgrade() else { return };
                InvalidationBus { inner }.deliver(&Event::decode(message.get_payload_bytes()));
            }
        }
        let Some(inner) = bus.upgrade() else { return };
        inner.healthy.store(false, Ordering::Release);
        let bus_handle = InvalidationBus { inner };
        bus_handle.deliver(&Event::Everything);
        tracing::warn!("session invalidation channel lost; caches closed until it is back");
        drop(bus_handle);
        let mut delay = Duration::from_millis(50);
        pubsub = loop {
            if bus.strong_count() == 0 {
                return;
            }
            match subscribe(&client).await {
                Ok(pubsub) => break pubsub,
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        let Some(inner) = bus.upgrade() else { return };
        let bus_handle = InvalidationBus { inner };
        // Messages may have been missed while unsubscribed.
        bus_handle.deliver(&Event::Everything);
        bus_handle.inner.healthy.store(true, Ordering::Release);
        tracing::info!("session invalidation channel back; caches open");
    }
}

/// One cached authentication: the record and the resolved, admitted user.
pub(crate) struct Entry<U> {
    pub(crate) record: SessionRecord,
    pub(crate) user: Arc<U>,
    /// The layer's clock reading when the entry was loaded: its TTL counts from here.
    pub(crate) loaded_ms: i64,
}

impl<U> Clone for Entry<U> {
    fn clone(&self) -> Self {
        Self {
            record: self.record.clone(),
            user: Arc::clone(&self.user),
            loaded_ms: self.loaded_ms,
        }
    }
}

/// A bounded cache of session → user for one layer.
pub struct SessionCache<U> {
    entries: moka::sync::Cache<(AppContext, SessionId), Entry<U>>,
    /// The TTL as the layer's [`Clock`](crate::clock::Clock) counts it. moka also drops
    /// entries after the same TTL by its own clock, which bounds memory.
    ttl_ms: i64,
    bus: InvalidationBus,
    /// Bumped by every invalidation: an entry loaded before an invalidation it may have
    /// missed is not inserted (a logout racing a request that is filling the cache).
    epoch: std::sync::atomic::AtomicU64,
}

impl<U: Send + Sync + 'static> SessionCache<U> {
    /// At most `max_entries` sessions, each for at most `ttl`, kept correct by `bus`.
    pub fn new(bus: &InvalidationBus, max_entries: u64, ttl: Duration) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            ttl_ms: crate::record::duration_ms(ttl),
            bus: bus.clone(),
            epoch: std::sync::atomic::AtomicU64::new(0),
        });
        let weak: Weak<dyn LocalCache> = Arc::downgrade(&(cache.clone() as Arc<dyn LocalCache>));
        bus.register(weak);
        cache
    }

    pub(crate) fn get(&self, context: &AppContext, id: &SessionId, now: i64) -> Option<Entry<U>> {
        if !self.bus.is_healthy() {
            return None;
        }
        let entry = self.entries.get(&(context.clone(), id.clone()))?;
        let fresh = now.saturating_sub(entry.loaded_ms) < self.ttl_ms;
        (fresh && !entry.record.is_expired(now)).then_some(entry)
    }

    pub(crate) fn bus(&self) -> &InvalidationBus {
        &self.bus
    }

    /// Read before loading what will be inserted.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Inserts an entry loaded when the epoch was `loaded_at`, unless an invalidation came in
    /// between (checked again after the insert, so an invalidation racing the insert wins).
    pub(crate) fn insert(
        &self,
        context: &AppContext,
        id: &SessionId,
        entry: Entry<U>,
        loaded_at: u64,
    ) {
        if !self.bus.is_healthy() || self.epoch() != loaded_at {
            return;
        }
        let key = (context.clone(), id.clone());
        self.entries.insert(key.clone(), entry);
        if self.epoch() != loaded_at || !self.bus.is_healthy() {
            self.entries.invalidate(&key);
        }
    }
}

impl<U: Send + Sync + 'static> LocalCache for SessionCache<U> {
    fn apply(&self, event: &Event) {
        // Epoch first: an insert that checks after this sees the change.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match event {
            Event::Session(context, id) => self.entries.invalidate(&(context.clone(), id.clone())),
            Event::Everything => self.entries.invalidate_all(),
        }
    }
}

/// A store that publishes every deletion on the bus before returning it, so no cache anywhere
/// keeps serving a session that ended.
pub(crate) struct PublishingStore {
    pub(crate) inner: Arc<dyn SessionStore>,
    pub(crate) bus: InvalidationBus,
}

impl SessionStore for PublishingStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.load(context, id, now)
    }

    fn load_now(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Option<Result<Option<SessionRecord>, StoreError>> {
        self.inner.load_now(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.save(context, id, record, now)
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self.inner.delete(context, id, now).await?;
            self.bus.session_changed(context, id).await;
            Ok(deleted)
        })
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(async move {
            let moved = self.inner.rotate(context, old, new, user_id, now).await;
            // Whatever happened, the old id must not be served from any cache.
            self.bus.session_changed(context, old).await;
            moved
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.extend(context, id, expires_at, now)
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let deleted = self.inner.delete_user_sessions(user_id, scope, now).await?;
            self.bus.user_changed(user_id).await;
            Ok(deleted)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        self.inner.list_user_sessions(user_id, scope, now)
    }

    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.contains(context, id, now)
    }

    fn knows_deleted<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.knows_deleted(context, id, user_id, now)
    }

    fn supports(&self, context: &AppContext) -> bool {
        self.inner.supports(context)
    }

    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.inner.load_legacy(id, now)
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete_legacy(id)
    }
}

/// A user repository that publishes every change of a user (role, password, permissions), so
/// cached users are dropped everywhere.
pub(crate) struct PublishingUsers {
    pub(crate) inner: Arc<dyn UserRepository>,
    pub(crate) resolver: Arc<dyn UserResolver<User = User>>,
    pub(crate) bus: InvalidationBus,
}

impl UserResolver for PublishingUsers {
    type User = User;

    fn resolve<'a>(
        &'a self,
        context: &'a AppContext,
        user_id: &'a Uuid,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.resolver.resolve(context, user_id)
    }

    fn resolve_now(
        &self,
        context: &AppContext,
        user_id: &Uuid,
    ) -> Option<Result<Option<Arc<User>>, StoreError>> {
        self.resolver.resolve_now(context, user_id)
    }
}

impl UserRepository for PublishingUsers {
    fn find_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, StoreError>> {
        self.inner.find_by_email(email)
    }

    fn create(&self, user: User) -> BoxFuture<'_, Result<Arc<User>, UserError>> {
        self.inner.create(user)
    }

    fn update(&self, user: User) -> BoxFuture<'_, Result<Option<Arc<User>>, UserError>> {
        Box::pin(async move {
            let id = user.id;
            let updated = self.inner.update(user).await?;
            self.bus.user_changed(&id).await;
            Ok(updated)
        })
    }

    fn record_login<'a>(&'a self, user_id: &'a Uuid) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.record_login(user_id)
    }

    fn grant<'a>(&'a self, grant: PermissionGrant<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.grant(grant).await?;
            self.bus.user_changed(grant.user_id).await;
            Ok(())
        })
    }

    fn revoke_permission<'a>(
        &'a self,
        user_id: &'a Uuid,
        context: &'a AppContext,
        permission: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let revoked = self
                .inner
                .revoke_permission(user_id, context, permission)
                .await?;
            self.bus.user_changed(user_id).await;
            Ok(revoked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::now_ms;

    fn entry() -> Entry<User> {
        let user = User::new("a@example.com", crate::Role::User);
        let record = SessionRecord::new(
            user.id,
            crate::SessionMetadata::new(),
            now_ms(),
            Duration::from_secs(3600),
        );
        Entry {
            record,
            user: Arc::new(user),
            loaded_ms: now_ms(),
        }
    }

    #[tokio::test]
    async fn an_entry_loaded_before_an_invalidation_is_not_cached() {
        let bus = InvalidationBus::local();
        let cache = SessionCache::<User>::new(&bus, 10, Duration::from_secs(60));
        let id = SessionId::generate().unwrap();
        let loaded_at = cache.epoch();
        // A logout of this very session lands while the request is still loading it.
        bus.session_changed(&AppContext::Web, &id).await;
        cache.insert(&AppContext::Web, &id, entry(), loaded_at);
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_none());
        // Without a race it is cached.
        cache.insert(&AppContext::Web, &id, entry(), cache.epoch());
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_some());
        // And any invalidation drops it.
        bus.user_changed(&Uuid::new_v4()).await;
        assert!(cache.get(&AppContext::Web, &id, now_ms()).is_none());
    }

    #[test]
    fn an_entry_is_served_for_its_ttl_by_the_layers_clock_and_not_after() {
        let bus = InvalidationBus::local();
        // moka's own 600 s TTL never comes into play in this test.
        let cache = SessionCache::<User>::new(&bus, 10, Duration::from_secs(600));
        let id = SessionId::generate().unwrap();
        let entry = entry();
        let loaded = entry.loaded_ms;
        cache.insert(&AppContext::Web, &id, entry, cache.epoch());
        assert!(cache.get(&AppContext::Web, &id, loaded + 599_999).is_some());
        assert!(cache.get(&AppContext::Web, &id, loaded + 600_000).is_none());
    }

    #[test]
    fn events_round_trip_and_garbage_drops_everything() {
        let id = SessionId::generate().unwrap();
        let event = Event::Session(AppContext::Admin, id.clone());
        assert_eq!(Event::decode(event.encode().as_bytes()), event);
        let bot = Event::Session(AppContext::custom("telegram-bot").unwrap(), id);
        assert_eq!(Event::decode(bot.encode().as_bytes()), bot);
        for garbage in [
            &b"s:web:short"[..],
            b"",
            b"\xff",
            b"s:Web:AAAAAAAAAAAAAAAAAAAA",
            b"all",
        ] {
            assert_eq!(Event::decode(garbage), Event::Everything);
        }
    }
}
