//! The in-process session cache (feature `cache`, opt-in per layer) and the
//! [`InvalidationBus`] that keeps it correct.
//!
//! A cached request makes no network round trip: the layer finds the session's record and
//! resolved user in memory. Correctness comes first:
//!
//! - an entry lives at most its TTL (use the revalidation bound, `SESSION_REVALIDATE_SECS`),
//!   counted by the layer's [`Clock`](crate::clock::Clock): changes made outside this crate
//!   (the TypeScript apps deleting a Redis key or revoking a row) publish nothing, and are
//!   seen within that bound;
//! - every change made through this crate — logout, rotation, revoke-all, a user's update or
//!   permission change through [`Sessions::user_repository`](crate::Sessions::user_repository) — is published on
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
//! let sessions = Sessions::memory().cache(&bus, 100_000, Duration::from_secs(5));
//! let web = sessions.layer(AppContext::Web); // cached
//! # let _ = web;
//! ```

mod admission;
mod bus;
mod entries;
mod publishing;
mod users;

pub use bus::InvalidationBus;
pub(crate) use entries::{CacheSettings, Entry, SessionCache};
pub(crate) use publishing::{PublishingStore, PublishingUsers};
pub(crate) use users::UserCache;
