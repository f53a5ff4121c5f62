//! A change feed of one's own (`feed::ChangeFeed`, no Redis, no PostgreSQL) drives what the
//! crate's feeds drive: a tiered store's long trust and a cache bus's health.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tower_app_sessions::cache::InvalidationBus;
use tower_app_sessions::data::{DataLimits, DataPatch};
use tower_app_sessions::feed::{Change, ChangeFeed, FeedListener, Listeners};
use tower_app_sessions::store::{DataUpdate, MemoryStore, TieredStore};
use tower_app_sessions::{AppContext, SessionId, SessionMetadata, SessionRecord, SessionStore};

/// A feed a test drives by hand.
#[derive(Default)]
struct HandFeed(Listeners);

impl ChangeFeed for HandFeed {
    fn follow(&self, listener: Weak<dyn FeedListener>) {
        self.0.follow(listener);
    }
    fn is_healthy(&self) -> bool {
        self.0.is_healthy()
    }
}

const SHORT: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(300);

/// A session saved through `store`, then its durable copy's data changed behind its back.
async fn session_changed_in_durable(
    store: &TieredStore,
    durable: &MemoryStore,
    now: i64,
) -> SessionId {
    let id = SessionId::generate().unwrap();
    let record = SessionRecord::new(uuid::Uuid::new_v4(), SessionMetadata::new(), now, LONG * 2);
    store
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    let mut patch = DataPatch::new();
    patch.set("changed", &true).unwrap();
    let update = durable
        .update_data(&AppContext::Web, &id, &patch, DataLimits::default(), now)
        .await
        .unwrap();
    assert_eq!(update, DataUpdate::Applied);
    id
}

async fn sees_change(store: &TieredStore, id: &SessionId, now: i64) -> bool {
    let record = store
        .load(&AppContext::Web, id, now)
        .await
        .unwrap()
        .unwrap();
    record.data.get::<bool>("changed").unwrap() == Some(true)
}

#[tokio::test]
async fn a_third_party_feed_gives_the_tiered_store_its_long_trust_and_takes_it_back() {
    let feed = Arc::new(HandFeed::default());
    assert!(!feed.is_healthy(), "a feed is not heard before it says so");
    feed.0.set_health(true);
    let durable = Arc::new(MemoryStore::new());
    let store = TieredStore::new(Arc::new(MemoryStore::new()), durable.clone())
        .revalidate_after(SHORT)
        .notifications(&feed, LONG);
    let now = 1_000_000;
    let later = now + 60_000; // past the short bound, within the long one

    // Healthy: the checked fast copy is trusted past the short bound.
    let id = session_changed_in_durable(&store, &durable, now).await;
    assert!(
        !sees_change(&store, &id, later).await,
        "trusted for the long bound"
    );
    // The feed names the session: its check is dropped, the durable record wins at once.
    feed.0
        .deliver(&Change::Session(AppContext::Web, id.clone()));
    assert!(sees_change(&store, &id, later).await);

    // Lost: the short bound applies again, and every check is dropped.
    let id = session_changed_in_durable(&store, &durable, now).await;
    assert!(!sees_change(&store, &id, later).await);
    feed.0.set_health(false);
    assert!(
        sees_change(&store, &id, later).await,
        "a lost feed ends the long trust"
    );
    let id = session_changed_in_durable(&store, &durable, now).await;
    assert!(
        sees_change(&store, &id, later).await,
        "no long trust while the feed is lost"
    );

    // Heard again: long trust again.
    feed.0.set_health(true);
    let id = session_changed_in_durable(&store, &durable, now).await;
    assert!(!sees_change(&store, &id, later).await);
}

#[tokio::test]
async fn a_bus_serves_only_while_every_feed_it_follows_is_heard() {
    let own = Arc::new(HandFeed(Listeners::new(true)));
    let other = Arc::new(HandFeed::default()); // not heard yet
    let bus = InvalidationBus::over(own.clone());
    assert!(bus.is_healthy());
    bus.follow(&other);
    assert!(
        !bus.is_healthy(),
        "a followed feed not heard closes the caches"
    );
    other.0.set_health(true);
    assert!(bus.is_healthy());
    own.0.set_health(false);
    assert!(!bus.is_healthy());
    own.0.set_health(true);
    assert!(bus.is_healthy());
    // A followed feed that goes away is not heard: the caches close.
    drop(other);
    assert!(
        !bus.is_healthy(),
        "nobody listens, yet the caches would trust"
    );
    // The bus holds the feed it publishes on, and the feeds hold the bus weakly.
    assert!(own.0.is_followed());
    drop(bus);
    assert!(!own.0.is_followed());
}
