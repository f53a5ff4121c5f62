//! [`InvalidationBus`]: carries "drop this session" and "drop everything" to every cache.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use uuid::Uuid;

pub(crate) use crate::change::Change;
use crate::{AppContext, SessionId};

pub use crate::change::CHANNEL;

/// A cache the bus delivers to.
pub(crate) trait LocalCache: Send + Sync {
    fn apply(&self, change: &Change);
}

struct BusInner {
    caches: Mutex<Vec<Weak<dyn LocalCache>>>,
    /// Whether caches may serve: always for a local bus; while subscribed for Redis.
    healthy: AtomicBool,
    /// False while PostgreSQL notifications this bus follows are not heard.
    notified: AtomicBool,
    #[cfg(feature = "redis")]
    publisher: std::sync::OnceLock<crate::store::redis::bus::Publisher>,
}

impl BusInner {
    /// One invalidation channel (`flag`: the Redis subscription, or PostgreSQL's
    /// notifications) went down or came back. Either way everything is dropped: entries may
    /// go stale while it is down, and messages may have been missed by the time it is back.
    /// Down: closed before emptying; back: emptied before opening.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    fn channel_health(&self, flag: &AtomicBool, healthy: bool) {
        if !healthy {
            flag.store(false, Ordering::Release);
        }
        self.deliver(&Change::Everything);
        if healthy {
            flag.store(true, Ordering::Release);
        }
    }

    fn deliver(&self, change: &Change) {
        let caches: Vec<Arc<dyn LocalCache>> = crate::sync::lock(&self.caches)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            cache.apply(change);
        }
    }
}

#[cfg(feature = "redis")]
impl crate::store::redis::bus::Subscriber for BusInner {
    fn message(&self, payload: &[u8]) {
        self.deliver(&Change::decode(payload));
    }

    fn lost(&self) {
        self.channel_health(&self.healthy, false);
    }

    fn restored(&self) {
        self.channel_health(&self.healthy, true);
    }
}

#[cfg(feature = "postgres")]
impl crate::store::postgres::Follower for BusInner {
    fn changed(&self, change: &Change) {
        self.deliver(change);
    }

    fn health(&self, healthy: bool) {
        self.channel_health(&self.notified, healthy);
    }
}

/// Carries invalidations to every session cache of this process and, with
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
    fn with_health(healthy: bool) -> Self {
        Self {
            inner: Arc::new(BusInner {
                caches: Mutex::new(Vec::new()),
                healthy: AtomicBool::new(healthy),
                notified: AtomicBool::new(true),
                #[cfg(feature = "redis")]
                publisher: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A bus for one process: invalidations reach this process's caches only.
    pub fn local() -> Self {
        Self::with_health(true)
    }

    /// A bus over Redis pub/sub: invalidations published by any process reach every process.
    /// A background task keeps the subscription; while it is down, caches do not serve.
    ///
    /// # Errors
    /// [`StoreError`](crate::StoreError) if Redis cannot be reached now.
    #[cfg(feature = "redis")]
    pub async fn redis(url: &str) -> Result<Self, crate::StoreError> {
        let bus = Self::with_health(false);
        let subscriber: Weak<dyn crate::store::redis::bus::Subscriber> =
            Arc::downgrade(&bus.inner) as Weak<BusInner>;
        let publisher = crate::store::redis::bus::connect(url, subscriber).await?;
        let _ = bus.inner.publisher.set(publisher);
        bus.inner.healthy.store(true, Ordering::Release);
        Ok(bus)
    }

    /// Whether caches may serve now: the Redis subscription (if any) is up, and so are the
    /// PostgreSQL notifications it [follows](Self::follow) (if any).
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire) && self.inner.notified.load(Ordering::Acquire)
    }

    /// Delivers what PostgreSQL notifies ([`Notifications`]) to this process's caches: a
    /// session or user changed by any process, the TypeScript admin panel's SQL included, is
    /// dropped at once. While the notifications are not heard the caches do not serve (and
    /// are emptied): fail towards freshness. PostgreSQL cannot notify changes made in Redis
    /// alone (the TypeScript apps' logout is a bare `DEL`): keep session caches on the short
    /// bound; user caches can take a long one.
    ///
    /// [`Notifications`]: crate::store::postgres::Notifications
    #[cfg(feature = "postgres")]
    pub fn follow(&self, notifications: &crate::store::postgres::Notifications) {
        let follower: Arc<dyn crate::store::postgres::Follower> = self.inner.clone();
        notifications.follow(&follower);
    }

    pub(crate) fn register(&self, cache: Weak<dyn LocalCache>) {
        let mut caches = crate::sync::lock(&self.inner.caches);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(cache);
    }

    /// Delivers `change` to this process's caches only.
    #[cfg(test)]
    pub(crate) fn deliver_local(&self, change: &Change) {
        self.inner.deliver(change);
    }

    async fn publish(&self, change: Change) {
        self.inner.deliver(&change);
        #[cfg(feature = "redis")]
        if let Some(publisher) = self.inner.publisher.get() {
            if let Err(error) = publisher.publish(change.encode()).await {
                // Other processes then see the change when their entries expire (the TTL).
                tracing::warn!(%error, "could not publish a session invalidation");
            }
        }
    }

    /// Drops one session from every cache (and publishes it).
    pub async fn session_changed(&self, context: &AppContext, id: &SessionId) {
        self.publish(Change::Session(context.clone(), id.clone()))
            .await;
    }

    /// Drops the user from every user cache, and every entry of every session cache (a
    /// user-wide change: revoke-all, role, permissions; session caches keep no per-user
    /// index, and such changes are rare).
    pub async fn user_changed(&self, user_id: &Uuid) {
        self.publish(Change::User(*user_id)).await;
    }
}
