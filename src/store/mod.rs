//! [`SessionStore`]: where session records live, always scoped by [`AppContext`].
//!
//! # Writing a store
//!
//! A store is one type implementing [`SessionStore`]: eight operations and
//! [`capabilities`](SessionStore::capabilities). Here is a complete one, a `HashMap` behind
//! a `Mutex` (what `MemoryStore` does, without its index, metrics and sweeping). Every
//! operation takes the lock once, which makes each one atomic; an in-process store answers
//! with [`StoreFuture::ready`], a store that does I/O with [`StoreFuture::new`]`(async move
//! { … })`. The `testing` feature's [`check_store`](crate::testing) runs every rule of the
//! contract below against it, as the last lines do (a store in its own package,
//! `examples/sqlite_store` in the repository, does the same over SQLite):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//!
//! use tower_app_sessions::data::{DataLimits, DataPatch};
//! use tower_app_sessions::store::{Capabilities, DataUpdate, ListedSession};
//! use tower_app_sessions::{AppContext, Scope, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture};
//! use uuid::Uuid;
//!
//! #[derive(Default)]
//! pub struct MapStore(Mutex<HashMap<(AppContext, SessionId), SessionRecord>>);
//!
//! type Map = HashMap<(AppContext, SessionId), SessionRecord>;
//!
//! impl MapStore {
//!     /// Runs `f` under the lock; a poisoned lock is a backend failure, not a panic.
//!     fn with<'a, T>(&self, f: impl FnOnce(&mut Map) -> T) -> StoreFuture<'a, Result<T, StoreError>> {
//!         StoreFuture::ready(match self.0.lock() {
//!             Ok(mut map) => Ok(f(&mut map)),
//!             Err(_) => Err(StoreError::backend("map", "a writer panicked")),
//!         })
//!     }
//! }
//!
//! /// The live record of `id` in `context` at `now`.
//! fn live<'m>(map: &'m mut Map, context: &AppContext, id: &SessionId, now: i64) -> Option<&'m mut SessionRecord> {
//!     map.get_mut(&(context.clone(), id.clone())).filter(|r| !r.is_expired(now))
//! }
//!
//! impl SessionStore for MapStore {
//!     fn load<'a>(&'a self, context: &'a AppContext, id: &'a SessionId, now: i64)
//!         -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
//!         self.with(|map| live(map, context, id, now).map(|r| r.clone()))
//!     }
//!
//!     fn save<'a>(&'a self, context: &'a AppContext, id: &'a SessionId, record: &'a SessionRecord, _now: i64)
//!         -> StoreFuture<'a, Result<(), StoreError>> {
//!         // `bounded`: the user agent and address cut to their maximum, as every store keeps them.
//!         self.with(|map| { map.insert((context.clone(), id.clone()), record.bounded().into_owned()); })
//!     }
//!
//!     fn delete<'a>(&'a self, context: &'a AppContext, id: &'a SessionId, now: i64)
//!         -> StoreFuture<'a, Result<bool, StoreError>> {
//!         self.with(|map| map.remove(&(context.clone(), id.clone())).is_some_and(|r| !r.is_expired(now)))
//!     }
//!
//!     fn rotate<'a>(&'a self, context: &'a AppContext, old: &'a SessionId, new: &'a SessionId, user_id: &'a Uuid, now: i64)
//!         -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
//!         // Under the one lock, a `delete_user_sessions` runs wholly before or after this.
//!         self.with(|map| {
//!             live(map, context, old, now).filter(|r| r.user_id == *user_id)?;
//!             let record = map.remove(&(context.clone(), old.clone()))?;
//!             map.insert((context.clone(), new.clone()), record.clone());
//!             Some(record)
//!         })
//!     }
//!
//!     fn update_data<'a>(&'a self, context: &'a AppContext, id: &'a SessionId, patch: &'a DataPatch, limits: DataLimits, now: i64)
//!         -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
//!         self.with(|map| {
//!             let Some(record) = live(map, context, id, now) else { return DataUpdate::NotLive };
//!             // Measured and applied in the same step: no interleaving passes the limits.
//!             if !limits.admits(record.data.size(), record.data.size_with(patch)) {
//!                 return DataUpdate::OverLimit;
//!             }
//!             record.data.apply(patch);
//!             DataUpdate::Applied
//!         })
//!     }
//!
//!     fn extend<'a>(&'a self, context: &'a AppContext, id: &'a SessionId, expires_at: i64, now: i64)
//!         -> StoreFuture<'a, Result<bool, StoreError>> {
//!         self.with(|map| live(map, context, id, now).map(|r| r.expires_at = expires_at).is_some())
//!     }
//!
//!     fn delete_user_sessions<'a>(&'a self, user_id: &'a Uuid, scope: Scope<'a>, now: i64)
//!         -> StoreFuture<'a, Result<u64, StoreError>> {
//!         self.with(|map| {
//!             let mut ended = 0;
//!             map.retain(|(context, _), r| {
//!                 let ends = r.user_id == *user_id && scope.includes(context);
//!                 ended += u64::from(ends && !r.is_expired(now));
//!                 !ends
//!             });
//!             ended
//!         })
//!     }
//!
//!     fn list_user_sessions<'a>(&'a self, user_id: &'a Uuid, scope: Scope<'a>, now: i64)
//!         -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
//!         self.with(|map| {
//!             map.iter()
//!                 .filter(|((context, _), r)| r.user_id == *user_id && scope.includes(context) && !r.is_expired(now))
//!                 .map(|((context, id), r)| ListedSession { id: id.clone(), context: context.clone(), record: r.clone() })
//!                 .collect()
//!         })
//!     }
//!
//!     fn capabilities(&self) -> Capabilities<'_> {
//!         Capabilities::none()
//!     }
//! }
//!
//! # #[cfg(feature = "testing")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! tower_app_sessions::testing::check_store(|| async { MapStore::default() }).await.assert_ok();
//! # });
//! ```
//!
//! Then `SessionLayer::for_context(AppContext::Web).store(MapStore::default())` serves it
//! (or `Arc<dyn SessionStore>`, to choose the store at startup).
//!
//! **Which methods are required.** All nine: none of the eight operations can be derived
//! from the others without breaking the contract's atomicity (a default `extend` or
//! `update_data` as `load` then `save` would resurrect a session deleted in between; a
//! default `delete_user_sessions` as a listing then `delete`s would miss a session that a
//! concurrent `rotate` creates; listing needs a per-user index the trait cannot see), and
//! `capabilities` is required so that no decorator forgets to forward it.
//!
//! **`rotate` against `delete_user_sessions` without one lock.** A store whose operations
//! are not serialized by one lock or transaction (Redis Cluster: keys in different slots)
//! keeps a **revocation count** per user, as `RedisStore` does: `delete_user_sessions`
//! increments the user's count when it starts and again when it ends (so an odd count
//! means one is running); `rotate` reads the count first, ends the session at once if it is
//! odd, otherwise takes the old record (an atomic get-and-delete: from then on the old id
//! is gone for everyone), writes the new one, and reads the count again: if it moved, a
//! revocation overlapped the move, and `rotate` deletes what it wrote and answers `None`.
//! Either way no session of the user survives the revocation under either id. A store
//! with transactions gets the same by taking a per-user lock first in both `rotate`'s and
//! `delete_user_sessions`'s transactions (PostgreSQL: an advisory lock on the user id), so
//! the two serialize, as `PgSessionStore` does.
//!
//! # The contract
//!
//! Every implementation, and every decorator around one, keeps these rules; the executable
//! contract ([`testing::check_store`](crate::testing), feature `testing`) checks them against
//! every store of this crate and any store written elsewhere.
//!
//! - **Isolation.** Every operation on a session takes its [`AppContext`]; a record saved in
//!   one context is never returned, extended, moved or deleted through another.
//! - **Time is an input.** Every operation that decides whether a record is live takes `now`,
//!   the caller's clock reading in milliseconds since the Unix epoch (the layer reads its
//!   [`Clock`](crate::clock::Clock) once per request). A record is live while
//!   `now < expires_at`: `load` never returns one that is not, `extend` and `rotate` never act
//!   on one, and a backend TTL derived from `expires_at` and `now` may outlive it by at most a
//!   second (it is a memory bound; the record decides).
//! - **Ids are safe.** Every [`SessionId`] reaching a store has passed [`SessionId::parse`]
//!   (`[A-Za-z0-9_-]{16,128}`); stores may put [`SessionId::as_str`] in keys and statements
//!   as it is. That one method is the stored form of an id: a store never derives another.
//! - **Atomicity.** `save` replaces the whole record; `extend` moves the expiry of a live
//!   record and never recreates a deleted one, leaving its data as it is; `update_data`
//!   applies a [`DataPatch`] to a live record atomically, key by key (a concurrent patch of
//!   other keys keeps its change; of the same key, the later one wins), never recreating a
//!   deleted record nor touching anything but the data; `delete` reports whether a live record was
//!   there; `rotate` moves a live record to a new id atomically with respect to `delete` and
//!   `delete_user_sessions` (one that completes first leaves nothing to move; one that runs
//!   meanwhile ends the session under either id); `delete_user_sessions` ends every session
//!   of the user in the scope that exists when it starts, and any that a concurrent `rotate`
//!   creates.
//! - **Data limits.** `update_data` enforces its [`DataLimits`] where the data is stored,
//!   atomically with the write (memory under its lock, Redis inside the script, PostgreSQL
//!   in the `UPDATE`'s condition; decorators on the store that decides): it measures the data
//!   as it is stored *with* the patch, and applies the patch only if
//!   [`DataLimits::admits`] the change, else answers [`DataUpdate::OverLimit`] and changes
//!   nothing. So no interleaving of any number of writers stores more than the limits, and
//!   data written past them by another writer can shrink but never grow. Its cost is
//!   bounded by the stored record (which the limits bound) and the patch.
//! - **Failures.** A backend that fails or does not answer in time is a [`StoreError`], never
//!   a panic and never "not found": the layer makes such a request unauthenticated and
//!   routes that require a user answer `503` (with `Retry-After: 1`). "Not found" (`None`,
//!   `false`, `0`) makes it anonymous, `401` on those routes. A stored value that is not a
//!   record is "not found", logged.
//! - **Readiness.** Operations return a [`StoreFuture`]: in-process stores answer with
//!   [`StoreFuture::ready`], which the layer consumes without boxing a future or awaiting.
//! - **Decorators** forward every operation they do not change, returning the inner
//!   `StoreFuture` as it is (so a ready answer stays ready), and forward
//!   [`capabilities`](SessionStore::capabilities), a required method precisely so that no
//!   decorator can forget it.
//!
//! # Capabilities
//!
//! What only some stores can do is not in the core trait: a store says what it can do
//! through [`SessionStore::capabilities`], as tower-sessions keeps expired-record deletion in
//! its own trait and axum-login keeps authorization apart from authentication.
//!
//! - [`LegacySessions`]: pre-migration, context-less sessions (Redis `session:<id>`,
//!   PostgreSQL `users.session_id`), read only by layers whose legacy fallback is on;
//! - [`DurableRecords`]: a store that keeps ended records (revoked, expired) and may not hold
//!   every context (PostgreSQL); a [`TieredStore`] asks it whether a session was ever written
//!   there, and every layer whether it can hold the layer's context;
//! - [`KnownDeletions`]: a store that can tell a session deleted on purpose from one it never
//!   held (Redis, through its per-user index); a [`TieredStore`] asks it before refilling;
//! - [`StoreStats`](crate::stats::StoreStats): a store that can count its sessions
//!   ([`Sessions::stats`](crate::Sessions::stats)); pairs (tiered, write-through) report
//!   both halves'.
//!
//! # Change feeds
//!
//! A store whose records other processes change can also offer a
//! [`ChangeFeed`](crate::feed::ChangeFeed) ("this session, this user, or everything changed;
//! I am heard or not"): PostgreSQL's [`Notifications`](crate::store::postgres::Notifications)
//! and Redis's [`RedisFeed`](crate::store::redis::RedisFeed) are two. A [`TieredStore`] and
//! the cache's invalidation bus follow any feed, so a backend of one's own gets the long
//! trust and the cache invalidation without this crate knowing it.
//!
//! # Why `dyn`
//!
//! The trait is object-safe, so one store chosen at startup from the environment
//! ([`Sessions::from_env`](crate::Sessions::from_env)) serves every layer as
//! `Arc<dyn SessionStore>`, without making applications generic over the backend.

use uuid::Uuid;

use crate::data::{DataLimits, DataPatch};

use crate::{AppContext, SessionId, SessionRecord};

pub(crate) use crate::backend::BoxFuture;
pub use crate::backend::{BoxError, JoinedUser, StoreError, StoreFuture};

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PgSessionStore;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
mod instrumented;
pub use instrumented::Instrumented;
mod tiered;
pub use tiered::TieredStore;
mod write_through;
pub use write_through::WriteThroughStore;
mod shared;

/// The figures of both stores of a pair (tiered, write-through), those that report any.
pub(crate) async fn stats_of_both(
    first: &dyn SessionStore,
    second: &dyn SessionStore,
    now: i64,
) -> Result<crate::stats::SessionStats, StoreError> {
    let mut stats = crate::stats::SessionStats::default();
    for store in [first, second] {
        if let Some(reporter) = store.capabilities().stats {
            stats = stats.merge(reporter.stats(now).await?);
        }
    }
    Ok(stats)
}

/// What [`SessionStore::load_with_user`] found: the record, and its user when the store read
/// it in the same query.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded {
    /// The live record.
    pub record: SessionRecord,
    /// The record's user, read with it, for the resolver it [came from](JoinedUser::new).
    pub user: Option<JoinedUser>,
}

impl From<SessionRecord> for Loaded {
    fn from(record: SessionRecord) -> Self {
        Self { record, user: None }
    }
}

impl Loaded {
    /// A record and the user the same query read.
    pub fn with_user(record: SessionRecord, user: JoinedUser) -> Self {
        Self {
            record,
            user: Some(user),
        }
    }
}

/// What [`SessionStore::update_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataUpdate {
    /// The patch is applied.
    Applied,
    /// The session is not live (never was, ended, expired, or moved to another id): nothing
    /// was written.
    NotLive,
    /// With the patch, the stored data would pass its [`DataLimits`] (and grow): nothing was
    /// written (`413`).
    OverLimit,
}

/// Which sessions of a user an operation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Only the sessions of one application.
    Context(&'a AppContext),
    /// The user's sessions in every application.
    AllContexts,
}

impl Scope<'_> {
    /// Whether a session of `context` is in this scope.
    pub fn includes(&self, context: &AppContext) -> bool {
        match self {
            Scope::Context(wanted) => *wanted == context,
            Scope::AllContexts => true,
        }
    }
}

/// One live session of a user as a store lists it ([`SessionStore::list_user_sessions`]),
/// id included: for the crate and custom stores. What people see is
/// [`SessionInfo`](crate::manage::SessionInfo), which names the session by its handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    /// The session's id (a secret: never show it; show [`SessionId::handle`]).
    pub id: SessionId,
    /// The application it belongs to.
    pub context: AppContext,
    /// The stored record: created, expires, ip, user agent.
    pub record: SessionRecord,
}

/// Storage for session records, every operation scoped by [`AppContext`].
///
/// See the [module documentation](self) for the contract. [`MemoryStore`] is the embedded
/// implementation:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use tower_app_sessions::{record::now_ms, AppContext, MemoryStore, SessionId, SessionMetadata, SessionRecord, SessionStore};
///
/// let store = MemoryStore::new();
/// let (id, now) = (SessionId::generate().unwrap(), now_ms());
/// let record = SessionRecord::new(uuid::Uuid::new_v4(), SessionMetadata::new(), now, Duration::from_secs(60));
/// store.save(&AppContext::Web, &id, &record, now).await.unwrap();
///
/// // In process: the answer is there without waiting.
/// let loaded = store.load(&AppContext::Web, &id, now).into_ready().unwrap();
/// assert_eq!(loaded.unwrap(), Some(record));
/// assert_eq!(store.load(&AppContext::Admin, &id, now).await.unwrap(), None); // isolated
/// # });
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// The record of `id` in `context`, or `None` if there is none or it is not live at `now`.
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>>;

    /// [`load`](Self::load), with the session's user when the store reads it in the same
    /// query ([`Loaded::user`]): the layer calls this one, so a store that can join the users'
    /// table saves the request its second round trip. The default answers what `load`
    /// answers, without a user (and, for a ready answer, without allocating). Decorators
    /// forward it.
    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        self.load(context, id, now)
            .map(|found| found.map(|record| record.map(Loaded::from)))
    }

    /// Writes `record` under `id` in `context`, replacing any record there; it lives until
    /// `record.expires_at`.
    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Deletes (or, for audited backends, revokes) `id` in `context`. `true` if it was live
    /// at `now`.
    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>>;

    /// Moves the live record of `old` (a session of `user_id`) to the fresh id `new`, keeping
    /// its content, atomically with respect to deletion (see the [contract](self)).
    /// `Ok(Some(record))`: the record now lives under `new` alone. `Ok(None)`: `old` was not
    /// live at `now` (logged out, revoked or expired meanwhile), and nothing was written.
    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>>;

    /// Applies `patch` to the [data](crate::data) of the live session `id` in `context`,
    /// atomically (see the [contract](self)): the keys it sets are set, those it removes are
    /// gone, every other key and field stays as stored, and the expiry does not move, if
    /// the data with the patch is within `limits` (checked in the same atomic step).
    /// [`DataUpdate::NotLive`] if the session is not live at `now`,
    /// [`DataUpdate::OverLimit`] if the limits refuse it: nothing is written then.
    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>>;

    /// Moves the session's `expires_at` (and its TTL with it) to `expires_at`. `false` if the
    /// session is not live at `now`; never resurrects a deleted session.
    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>>;

    /// Deletes every session of `user_id` in `scope`; returns how many were live at `now`.
    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>>;

    /// The sessions of `user_id` in `scope` that are live at `now`.
    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>>;

    /// What this store can do beyond the core operations (see
    /// [Capabilities](self#capabilities)). Required, so that a decorator cannot forget to
    /// forward its inner store's; a store without any returns [`Capabilities::none`].
    fn capabilities(&self) -> Capabilities<'_>;
}

/// The optional abilities of a store, as [`SessionStore::capabilities`] reports them.
///
/// ```
/// use tower_app_sessions::{store::Capabilities, MemoryStore, SessionStore};
/// assert!(MemoryStore::new().capabilities().legacy.is_none());
/// assert!(Capabilities::none().durable.is_none());
/// ```
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct Capabilities<'a> {
    /// Pre-migration, context-less sessions.
    pub legacy: Option<&'a dyn LegacySessions>,
    /// Ended records kept, and the contexts it can hold.
    pub durable: Option<&'a dyn DurableRecords>,
    /// Deletions it can tell from records it never held.
    pub deletions: Option<&'a dyn KnownDeletions>,
    /// Figures for [`Sessions::stats`](crate::Sessions::stats).
    pub stats: Option<&'a dyn crate::stats::StoreStats>,
}

impl<'a> Capabilities<'a> {
    /// No capability.
    pub fn none() -> Self {
        Self::default()
    }

    /// With legacy sessions.
    #[must_use]
    pub fn legacy(mut self, legacy: &'a dyn LegacySessions) -> Self {
        self.legacy = Some(legacy);
        self
    }

    /// With durable records.
    #[must_use]
    pub fn durable(mut self, durable: &'a dyn DurableRecords) -> Self {
        self.durable = Some(durable);
        self
    }

    /// With figures for [`Sessions::stats`](crate::Sessions::stats).
    #[must_use]
    pub fn stats(mut self, stats: &'a dyn crate::stats::StoreStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// With known deletions.
    #[must_use]
    pub fn deletions(mut self, deletions: &'a dyn KnownDeletions) -> Self {
        self.deletions = Some(deletions);
        self
    }

    /// Whether the store can hold sessions of `context` (all stores can, except durable ones
    /// that say otherwise).
    pub fn supports(&self, context: &AppContext) -> bool {
        self.durable.is_none_or(|durable| durable.supports(context))
    }
}

impl std::fmt::Debug for Capabilities<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("legacy", &self.legacy.is_some())
            .field("durable", &self.durable.is_some())
            .field("deletions", &self.deletions.is_some())
            .finish()
    }
}

/// Pre-migration, context-less sessions (Redis `session:<id>`, PostgreSQL
/// `users.session_id`): read only by layers whose legacy fallback is on for their context.
pub trait LegacySessions: Send + Sync {
    /// The record stored under the context-less key of `id`, if live at `now`.
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>>;

    /// Deletes the context-less record of `id`, so a login or logout from a legacy session
    /// leaves no live legacy id behind. `true` if it existed.
    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Result<bool, StoreError>>;
}

/// A store that keeps ended records (revoked, expired, for audit) and may not hold every
/// context: what a [`TieredStore`] asks of its durable store.
pub trait DurableRecords: Send + Sync {
    /// Whether any record of `id` in `context` exists, live or not: a tiered store must tell
    /// "revoked here" from "never written here".
    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>>;

    /// Whether sessions of `context` can be stored here (PostgreSQL's `"ApplicationType"`
    /// knows `web` and `admin` only).
    fn supports(&self, context: &AppContext) -> bool;
}

/// A store that can tell a session deleted on purpose from one it never held, or lost with
/// its data: what a [`TieredStore`] asks of its fast store before refilling it from the
/// durable one, so that a logout done by deleting the fast copy only (the TypeScript apps'
/// `deleteSession` deletes the Redis key) holds, while sessions lost in a Redis restart are
/// refilled.
pub trait KnownDeletions: Send + Sync {
    /// Whether the session `id` of `user_id` in `context` was deleted on purpose.
    fn deleted_on_purpose<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>>;
}
