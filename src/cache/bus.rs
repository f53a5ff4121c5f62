//! [`InvalidationBus`]: carries "drop this session" and "drop everything" to every cache,
//! from this process and from every [`ChangeFeed`] it follows.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use uuid::Uuid;

pub(crate) use crate::feed::Change;
use crate::feed::{ChangeFeed, FeedListener};
use crate::{AppContext, SessionId};

/// A cache the bus delivers to.
pub(crate) trait LocalCache: Send + Sync {
    fn apply(&self, change: &Change);
}

struct BusInner {
    caches: Mutex<Vec<Weak<dyn LocalCache>>>,
    /// How many of the feeds this bus follows are not heard now: caches serve only at 0.
    unheard: AtomicUsize,
    /// The feeds followed, each with whether it is heard (the feeds hold them weakly).
    links: Mutex<Vec<Arc<Link>>>,
    /// The feed this bus publishes its own changes on (the one it was built [over]).
    ///
    /// [over]: InvalidationBus::over
    publisher: Option<Arc<dyn ChangeFeed>>,
}

impl BusInner {
    /// A feed this bus follows went down or came back. Either way everything is dropped:
    /// entries may go stale while it is down, and messages may have been missed by the time
    /// it is back. Down: closed before emptying; back: emptied before opening.
    fn channel_health(&self, heard: &AtomicBool, healthy: bool) {
        if !healthy && heard.swap(false, Ordering::AcqRel) {
            self.unheard.fetch_add(1, Ordering::AcqRel);
        }
        self.deliver(&Change::Everything);
        if healthy && !heard.swap(true, Ordering::AcqRel) {
            self.unheard.fetch_sub(1, Ordering::AcqRel);
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

/// One feed a bus follows: what it hears goes to the bus's caches.
struct Link {
    bus: Weak<BusInner>,
    /// Counted in the bus's `unheard` while false; false until the feed says otherwise.
    heard: AtomicBool,
}

impl FeedListener for Link {
    fn changed(&self, change: &Change) {
        if let Some(bus) = self.bus.upgrade() {
            bus.deliver(change);
        }
    }

    fn health(&self, healthy: bool) {
        if let Some(bus) = self.bus.upgrade() {
            bus.channel_health(&self.heard, healthy);
        }
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
    fn with_publisher(publisher: Option<Arc<dyn ChangeFeed>>) -> Self {
        Self {
            inner: Arc::new(BusInner {
                caches: Mutex::new(Vec::new()),
                unheard: AtomicUsize::new(0),
                links: Mutex::new(Vec::new()),
                publisher,
            }),
        }
    }

    /// A bus for one process: invalidations reach this process's caches only.
    pub fn local() -> Self {
        Self::with_publisher(None)
    }

    /// A bus over a [`ChangeFeed`] shared by every process (Redis pub/sub:
    /// [`RedisFeed`](crate::store::redis::RedisFeed), or a channel of one's own): changes
    /// made here are [published](ChangeFeed::publish) on it, what it delivers reaches this
    /// process's caches, and while it is not heard the caches do not serve.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_app_sessions::cache::InvalidationBus;
    /// use tower_app_sessions::feed::{ChangeFeed, FeedListener, Listeners};
    ///
    /// #[derive(Default)]
    /// struct Quiet(Listeners);
    /// impl ChangeFeed for Quiet {
    ///     fn follow(&self, listener: std::sync::Weak<dyn FeedListener>) { self.0.follow(listener) }
    ///     fn is_healthy(&self) -> bool { self.0.is_healthy() }
    /// }
    ///
    /// let feed = Arc::new(Quiet::default());
    /// let bus = InvalidationBus::over(feed.clone());
    /// assert!(!bus.is_healthy()); // not heard yet: the caches do not serve
    /// feed.0.set_health(true);
    /// assert!(bus.is_healthy());
    /// feed.0.set_health(false);
    /// assert!(!bus.is_healthy()); // the caches stop serving
    /// ```
    pub fn over(feed: impl ChangeFeed + 'static) -> Self {
        let feed: Arc<dyn ChangeFeed> = Arc::new(feed);
        let bus = Self::with_publisher(Some(feed.clone()));
        bus.follow(feed.as_ref());
        bus
    }

    /// A bus over Redis pub/sub ([`RedisFeed`](crate::store::redis::RedisFeed)):
    /// invalidations published by any process reach every process. A background task keeps
    /// the subscription; while it is down, caches do not serve.
    ///
    /// # Errors
    /// [`StoreError`](crate::StoreError) if Redis cannot be reached now.
    #[cfg(feature = "redis")]
    pub async fn redis(url: &str) -> Result<Self, crate::StoreError> {
        Ok(Self::over(
            crate::store::redis::RedisFeed::connect(url).await?,
        ))
    }

    /// Whether caches may serve now: every feed this bus follows (the one it was built over,
    /// those it [follows](Self::follow)) is heard.
    pub fn is_healthy(&self) -> bool {
        self.inner.unheard.load(Ordering::Acquire) == 0
    }

    /// Delivers what another [`ChangeFeed`] says to this process's caches, say PostgreSQL's
    /// [`Notifications`]: a session or user changed by any process, the TypeScript admin
    /// panel's SQL included, is dropped at once. While the feed is not heard the caches do
    /// not serve (and are emptied): fail towards freshness. PostgreSQL cannot notify changes
    /// made in Redis alone (the TypeScript apps' logout is a bare `DEL`): keep session caches
    /// on the short bound; user caches can take a long one.
    ///
    /// The bus does not keep `feed` alive: a feed whose last handle is dropped stops being
    /// heard, and the caches close (a [`Listeners`](crate::feed::Listeners)-based feed says so
    /// when it is dropped).
    ///
    /// [`Notifications`]: crate::store::postgres::Notifications
    pub fn follow<F: ChangeFeed + ?Sized>(&self, feed: &F) {
        self.inner.unheard.fetch_add(1, Ordering::AcqRel);
        let link = Arc::new(Link {
            bus: Arc::downgrade(&self.inner),
            heard: AtomicBool::new(false),
        });
        crate::sync::lock(&self.inner.links).push(link.clone());
        let listener: Arc<dyn FeedListener> = link;
        feed.follow(Arc::downgrade(&listener));
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
        if let Some(feed) = &self.inner.publisher {
            if let Err(error) = feed.publish(&change).await {
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
