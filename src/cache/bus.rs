//! [`InvalidationBus`]: carries "drop this session" and "drop everything" to every cache.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use uuid::Uuid;

use crate::{AppContext, SessionId};

/// The Redis channel invalidations travel on.
pub const CHANNEL: &str = "tower-app-sessions:invalidate";

/// What a cache must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
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

    /// Anything unreadable drops everything: an unknown message must not leave stale entries.
    #[cfg(any(feature = "redis", test))]
    fn decode(message: &[u8]) -> Event {
        std::str::from_utf8(message)
            .ok()
            .and_then(|m| m.strip_prefix("s:"))
            .and_then(|rest| rest.rsplit_once(':'))
            .and_then(|(ctx, id)| Some(Event::Session(ctx.parse().ok()?, SessionId::parse(id)?)))
            .unwrap_or(Event::Everything)
    }
}

/// A cache the bus delivers to.
pub(crate) trait LocalCache: Send + Sync {
    fn apply(&self, event: &Event);
}

struct BusInner {
    caches: Mutex<Vec<Weak<dyn LocalCache>>>,
    /// Whether caches may serve: always for a local bus; while subscribed for Redis.
    healthy: AtomicBool,
    #[cfg(feature = "redis")]
    publisher: std::sync::OnceLock<crate::store::redis::bus::Publisher>,
}

impl BusInner {
    fn deliver(&self, event: &Event) {
        let caches: Vec<Arc<dyn LocalCache>> = crate::sync::lock(&self.caches)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            cache.apply(event);
        }
    }
}

#[cfg(feature = "redis")]
impl crate::store::redis::bus::Subscriber for BusInner {
    fn message(&self, payload: &[u8]) {
        self.deliver(&Event::decode(payload));
    }

    fn lost(&self) {
        self.healthy.store(false, Ordering::Release);
        self.deliver(&Event::Everything);
    }

    fn restored(&self) {
        // Messages may have been missed while unsubscribed.
        self.deliver(&Event::Everything);
        self.healthy.store(true, Ordering::Release);
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

    /// Whether caches may serve now.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn register(&self, cache: Weak<dyn LocalCache>) {
        let mut caches = crate::sync::lock(&self.inner.caches);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(cache);
    }

    async fn publish(&self, event: Event) {
        self.inner.deliver(&event);
        #[cfg(feature = "redis")]
        if let Some(publisher) = self.inner.publisher.get() {
            if let Err(error) = publisher.publish(event.encode()).await {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
