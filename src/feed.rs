//! [`ChangeFeed`]: "this session, this user, or everything changed; I am heard or not", the
//! backend-neutral contract of an invalidation channel.
//!
//! Redis pub/sub ([`RedisFeed`](crate::store::redis::RedisFeed)) and PostgreSQL's
//! `LISTEN/NOTIFY` ([`Notifications`](crate::store::postgres::Notifications)) are both change
//! feeds; so can be any other channel (NATS, a message queue). What follows one:
//!
//! - a [`TieredStore`](crate::store::TieredStore)
//!   ([`notifications`](crate::store::TieredStore::notifications)) trusts a checked fast copy
//!   for its long bound only while the feed [is healthy](ChangeFeed::is_healthy), and drops
//!   the check of a session the feed names;
//! - an [`InvalidationBus`](crate::cache::InvalidationBus) (feature `cache`) drops what the
//!   feed names from every cache, and its caches serve only while every feed it follows is
//!   healthy. A bus built [over](crate::cache::InvalidationBus::over) a feed also
//!   [publishes](ChangeFeed::publish) the changes this process makes on it.
//!
//! **Health is the contract's safety half.** A feed that may have missed a message (its
//! connection dropped, its triggers are missing) reports itself unhealthy *before* anything
//! relies on it again, and when it is heard again it tells its listeners so (they drop
//! everything: messages may have been missed meanwhile). [`Listeners`] keeps that order for an
//! implementation; a feed only says what it heard and when its health changed.
//!
//! ```
//! use std::sync::{Arc, Weak};
//! use std::time::Duration;
//! use tower_app_sessions::feed::{Change, ChangeFeed, FeedListener, Listeners};
//! use tower_app_sessions::store::{MemoryStore, TieredStore};
//!
//! /// A feed of one's own: here, changes a test hands over.
//! #[derive(Default)]
//! struct ManualFeed(Listeners);
//!
//! impl ChangeFeed for ManualFeed {
//!     fn follow(&self, listener: Weak<dyn FeedListener>) {
//!         self.0.follow(listener);
//!     }
//!     fn is_healthy(&self) -> bool {
//!         self.0.is_healthy()
//!     }
//! }
//!
//! let feed = Arc::new(ManualFeed::default());
//! let store = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()))
//!     .revalidate_after(Duration::from_secs(5)) // while the feed is down
//!     .notifications(&feed, Duration::from_secs(300)); // while it is heard
//! feed.0.set_health(true); // connected and heard: the 300-second bound applies
//! feed.0.deliver(&Change::Everything);
//! feed.0.set_health(false); // lost: the 5-second bound applies again
//! # let _ = store;
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::backend::{StoreError, StoreFuture};
pub use crate::change::Change;

/// Who hears a [`ChangeFeed`]: a tiered store's validations, a cache bus.
pub trait FeedListener: Send + Sync {
    /// Something changed: drop what it names.
    fn changed(&self, change: &Change);
    /// The feed stopped being heard (`false`) or is heard again (`true`). Either way messages
    /// may have been missed: drop everything trusted on the strength of the feed.
    fn health(&self, healthy: bool);
}

/// An invalidation channel: tells its listeners what changed and whether it is heard. See the
/// [module docs](self).
pub trait ChangeFeed: Send + Sync {
    /// Adds `listener` (held weakly: it stops hearing when dropped), and tells it the current
    /// health at once, so it starts from a known state (see [`Listeners::follow`]). A feed
    /// that goes away tells its listeners it is not healthy ([`Listeners`] does on drop): they
    /// do not keep it alive.
    fn follow(&self, listener: Weak<dyn FeedListener>);

    /// Whether every change is being heard now. While not, followers use their short bounds
    /// and caches do not serve.
    fn is_healthy(&self) -> bool;

    /// Sends `change` to every process following this feed (this one's listeners included,
    /// or not: a bus delivers locally itself). The default sends nothing: a feed whose
    /// changes come from elsewhere (PostgreSQL's triggers) has nothing to send.
    ///
    /// # Errors
    /// [`StoreError`] if the channel fails; other processes then see the change when their
    /// entries expire.
    fn publish(&self, change: &Change) -> StoreFuture<'_, Result<(), StoreError>> {
        let _ = change;
        StoreFuture::ready(Ok(()))
    }
}

impl<F: ChangeFeed + ?Sized> ChangeFeed for Arc<F> {
    fn follow(&self, listener: Weak<dyn FeedListener>) {
        (**self).follow(listener);
    }
    fn is_healthy(&self) -> bool {
        (**self).is_healthy()
    }
    fn publish(&self, change: &Change) -> StoreFuture<'_, Result<(), StoreError>> {
        (**self).publish(change)
    }
}

/// The listeners of a feed and its health, for implementing [`ChangeFeed`]: delivers in
/// order, and keeps the rule that nothing trusts the feed while its listeners drop what it
/// covered. Healthy until [`set_health`](Self::set_health) says otherwise.
pub struct Listeners {
    healthy: AtomicBool,
    listeners: Mutex<Vec<Weak<dyn FeedListener>>>,
    /// Held through a health change and a new listener's start, so a listener never misses
    /// a change of health nor starts from a stale one.
    transition: Mutex<()>,
}

/// Not heard until the feed says so ([`set_health`](Listeners::set_health)): a feed that
/// has not connected yet must not grant the long trust.
impl Default for Listeners {
    fn default() -> Self {
        Self::new(false)
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// No listeners yet, starting `healthy` or not.
    pub fn new(healthy: bool) -> Self {
        Self {
            healthy: AtomicBool::new(healthy),
            listeners: Mutex::new(Vec::new()),
            transition: Mutex::new(()),
        }
    }

    /// Adds `listener` and tells it the current health.
    pub fn follow(&self, listener: Weak<dyn FeedListener>) {
        let _transition = crate::sync::lock(&self.transition);
        let Some(alive) = listener.upgrade() else {
            return;
        };
        crate::sync::lock(&self.listeners).push(listener);
        alive.health(self.is_healthy());
    }

    /// Whether the feed is heard now.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether anyone still listens (a feed's background task may stop when nobody does).
    pub fn is_followed(&self) -> bool {
        !self.alive().is_empty()
    }

    fn alive(&self) -> Vec<Arc<dyn FeedListener>> {
        let mut listeners = crate::sync::lock(&self.listeners);
        listeners.retain(|l| l.strong_count() > 0);
        listeners.iter().filter_map(Weak::upgrade).collect()
    }

    /// Hands `change` to every listener.
    pub fn deliver(&self, change: &Change) {
        for listener in self.alive() {
            listener.changed(change);
        }
    }

    /// The feed stopped or started being heard. Going down, the feed is unhealthy before any
    /// listener hears of it; coming back, healthy only after every listener has dropped what
    /// it held. A call that changes nothing is ignored.
    pub fn set_health(&self, healthy: bool) {
        let _transition = crate::sync::lock(&self.transition);
        if self.is_healthy() == healthy {
            return;
        }
        if !healthy {
            self.healthy.store(false, Ordering::Release);
        }
        for listener in self.alive() {
            listener.health(healthy);
        }
        if healthy {
            self.healthy.store(true, Ordering::Release);
        }
    }
}

/// A feed that goes away is not heard any more: its listeners are told so, and stop
/// trusting it.
impl Drop for Listeners {
    fn drop(&mut self) {
        self.set_health(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl FeedListener for Heard {
        fn changed(&self, change: &Change) {
            crate::sync::lock(&self.0).push(change.encode());
        }
        fn health(&self, healthy: bool) {
            crate::sync::lock(&self.0).push(format!("health {healthy}"));
        }
    }

    #[test]
    fn listeners_hear_health_at_once_then_changes_and_transitions_in_order() {
        let listeners = Listeners::new(false);
        let heard = Arc::new(Heard::default());
        let weak: Weak<dyn FeedListener> = Arc::downgrade(&heard) as Weak<Heard>;
        listeners.follow(weak);
        listeners.set_health(true);
        listeners.set_health(true); // no change: not repeated
        listeners.deliver(&Change::Everything);
        listeners.set_health(false);
        assert_eq!(
            *crate::sync::lock(&heard.0),
            ["health false", "health true", "all", "health false"]
        );
        assert!(listeners.is_followed());
        drop(heard);
        assert!(!listeners.is_followed());
    }
}
