//! [`RedisFeed`]: Redis pub/sub as a [`ChangeFeed`], the transport of the cache's
//! [`InvalidationBus`](crate::cache::InvalidationBus) between processes: one publishing
//! connection, and one subscription kept alive by a background task.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::conn::{error, BACKEND};
use crate::backend::timed;
use crate::feed::{Change, ChangeFeed, FeedListener, Listeners};
use crate::store::{StoreError, StoreFuture};

/// The channel invalidations travel on (a wire contract: every process of every app that
/// shares the Redis publishes and subscribes here).
const CHANNEL: &str = "tower-app-sessions:invalidate";

/// Redis pub/sub on the channel `tower-app-sessions:invalidate`, as a [`ChangeFeed`]: what
/// any process publishes there reaches every follower; while the subscription is down (it
/// is renewed in the background, backing off up to a second), the feed is not healthy.
/// Clones share one subscription; it ends when the last clone is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_app_sessions::StoreError> {
/// use tower_app_sessions::cache::InvalidationBus;
/// use tower_app_sessions::store::redis::RedisFeed;
///
/// let bus = InvalidationBus::over(RedisFeed::connect("redis://127.0.0.1:6379").await?);
/// # let _ = bus; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisFeed {
    inner: Arc<FeedInner>,
}

struct FeedInner {
    listeners: Listeners,
    publisher: redis::aio::ConnectionManager,
    listening: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for FeedInner {
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.listening).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed")
            .field("healthy", &self.inner.listeners.is_healthy())
            .finish_non_exhaustive()
    }
}

impl RedisFeed {
    /// Connects the publisher and subscribes once (so a feed that returns is heard), then
    /// keeps the subscription in a background task. Needs a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError`] if Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(error)?;
        let publisher = redis::aio::ConnectionManager::new_with_config(
            client.clone(),
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(1))),
        )
        .await
        .map_err(error)?;
        let first = subscribe(&client).await?;
        let inner = Arc::new(FeedInner {
            listeners: Listeners::new(true),
            publisher,
            listening: Mutex::new(None),
        });
        let task = tokio::spawn(listen(client, Arc::downgrade(&inner), first));
        *crate::sync::lock(&inner.listening) = Some(task);
        Ok(Self { inner })
    }
}

impl ChangeFeed for RedisFeed {
    fn follow(&self, listener: Weak<dyn FeedListener>) {
        self.inner.listeners.follow(listener);
    }

    fn is_healthy(&self) -> bool {
        self.inner.listeners.is_healthy()
    }

    fn publish(&self, change: &Change) -> StoreFuture<'_, Result<(), StoreError>> {
        let mut connection = self.inner.publisher.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(CHANNEL).arg(change.encode());
        StoreFuture::new(async move {
            timed(
                BACKEND,
                Duration::from_secs(1),
                cmd.query_async::<i64>(&mut connection),
                error,
            )
            .await
            .map(drop)
        })
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSub, StoreError> {
    let mut pubsub = timed(
        BACKEND,
        Duration::from_secs(2),
        client.get_async_pubsub(),
        error,
    )
    .await?;
    timed(
        BACKEND,
        Duration::from_secs(2),
        pubsub.subscribe(CHANNEL),
        error,
    )
    .await?;
    Ok(pubsub)
}

/// Hands every message over until the feed is dropped; on a broken subscription, reports it
/// lost, resubscribes (backing off up to a second), and reports it restored.
async fn listen(client: redis::Client, feed: Weak<FeedInner>, mut pubsub: redis::aio::PubSub) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(feed) = feed.upgrade() else {
                    return;
                };
                if let Some(change) = Change::decode(message.get_payload_bytes()) {
                    feed.listeners.deliver(&change);
                }
            }
        }
        let Some(alive) = feed.upgrade() else {
            return;
        };
        alive.listeners.set_health(false);
        drop(alive);
        tracing::warn!("session invalidation channel lost; caches closed until it is back");
        let mut delay = Duration::from_millis(50);
        pubsub = loop {
            if feed.strong_count() == 0 {
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
        let Some(alive) = feed.upgrade() else {
            return;
        };
        alive.listeners.set_health(true);
        tracing::info!("session invalidation channel back; caches open");
    }
}
