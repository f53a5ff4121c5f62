//! The Redis pub/sub transport of the cache's [`InvalidationBus`](crate::cache::InvalidationBus):
//! one publishing connection, and one subscription kept alive by a background task.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;

use super::conn::{error, BACKEND};
use crate::change::CHANNEL;
use crate::store::{timed, StoreError};

/// What the subscription tells the bus it serves.
pub(crate) trait Subscriber: Send + Sync + 'static {
    /// A message arrived.
    fn message(&self, payload: &[u8]);
    /// The subscription broke: messages may be missed until [`restored`](Self::restored).
    fn lost(&self);
    /// Subscribed again.
    fn restored(&self);
}

/// The publishing side.
pub(crate) struct Publisher(redis::aio::ConnectionManager);

impl Publisher {
    pub(crate) async fn publish(&self, message: String) -> Result<(), StoreError> {
        let mut connection = self.0.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(CHANNEL).arg(message);
        timed(
            BACKEND,
            Duration::from_secs(1),
            cmd.query_async::<i64>(&mut connection),
            error,
        )
        .await
        .map(drop)
    }
}

/// Connects the publisher, subscribes once (so a bus that returns is listening), then keeps
/// the subscription in a background task for as long as `subscriber` lives.
pub(crate) async fn connect(
    url: &str,
    subscriber: Weak<dyn Subscriber>,
) -> Result<Publisher, StoreError> {
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
    tokio::spawn(listen(client, subscriber, first));
    Ok(Publisher(publisher))
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

/// Hands every message over until the subscriber is dropped; on a broken subscription,
/// reports it lost, resubscribes (backing off up to a second), and reports it restored.
async fn listen(
    client: redis::Client,
    subscriber: Weak<dyn Subscriber>,
    mut pubsub: redis::aio::PubSub,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(subscriber) = subscriber.upgrade() else {
                    return;
                };
                subscriber.message(message.get_payload_bytes());
            }
        }
        let Some(alive) = subscriber.upgrade() else {
            return;
        };
        alive.lost();
        drop(alive);
        tracing::warn!("session invalidation channel lost; caches closed until it is back");
        let mut delay = Duration::from_millis(50);
        pubsub = loop {
            if subscriber.strong_count() == 0 {
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
        let Some(alive) = subscriber.upgrade() else {
            return;
        };
        alive.restored();
        tracing::info!("session invalidation channel back; caches open");
    }
}
