//! [`SessionStore`]: where session records live, always scoped by [`AppContext`].
//!
//! # Why the trait is object-safe
//!
//! Every method returns a boxed future ([`BoxFuture`]) instead of using `async fn`, so a store
//! can be held as `Arc<dyn SessionStore>`. That is what lets [`Sessions::from_env`] choose
//! memory, Redis or PostgreSQL at startup from environment variables, and lets one
//! [`Sessions`] handle share one store (and one connection pool) between the web and admin
//! layers without making every application type generic over the backend. The price is one
//! small allocation per store call, which is noise next to a network round trip. In-process
//! stores avoid even that on the request path by also answering
//! [`SessionStore::load_now`], which the layer tries first.
//!
//! # Contract for implementors
//!
//! - Every method that touches a session takes the [`AppContext`]; a record saved in one
//!   context is never returned, extended or deleted through another.
//! - Time is an input: every method that decides whether a record is live takes `now`, the
//!   caller's clock reading in milliseconds since the Unix epoch (the layer reads its
//!   [`Clock`](crate::clock::Clock) once per request). `load` never returns a record whose
//!   `expires_at` is at or before `now`; the key's time to live (where the backend has one)
//!   ends at `expires_at` as seen from `now`.
//! - Ids reaching a store have passed [`SessionId::parse`]; stores may put them in keys as-is.
//! - Backend failures are [`StoreError`]s, never panics and never "not found": the layer turns
//!   them into "not authenticated" and `503` on routes that require a user.
//!
//! [`Sessions::from_env`]: crate::Sessions::from_env
//! [`Sessions`]: crate::Sessions

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::{AppContext, SessionId, SessionRecord};

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod tiered;

/// A boxed, `Send` future: the return type of store and resolver methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A future that is already done: what synchronous backends (memory) return.
pub(crate) fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

/// A boxed error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A session or user backend could not answer.
///
/// The layer never treats this as "anonymous but fine": the request is not authenticated and
/// a route that requires a user answers `503 Service Unavailable`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("{backend} backend failed: {source}")]
    Backend {
        /// Which backend (`"redis"`, `"postgres"`, …).
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend did not answer in time.
    #[error("{backend} backend timed out")]
    Timeout {
        /// Which backend.
        backend: &'static str,
    },
}

impl StoreError {
    /// Wraps a driver error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            backend,
            source: source.into(),
        }
    }
}

/// Which sessions of a user an operation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Only the sessions of one application.
    Context(&'a AppContext),
    /// The user's sessions in every application.
    AllContexts,
}

/// One live session of a user, as listed by [`SessionStore::list_user_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id (a secret: show users a prefix at most).
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
/// let id = SessionId::generate().unwrap();
/// let record = SessionRecord::new(uuid::Uuid::new_v4(), SessionMetadata::new(), now_ms(), Duration::from_secs(60));
/// store.save(&AppContext::Web, &id, &record, now_ms()).await.unwrap();
///
/// assert_eq!(store.load(&AppContext::Web, &id, now_ms()).await.unwrap(), Some(record));
/// assert_eq!(store.load(&AppContext::Admin, &id, now_ms()).await.unwrap(), None); // isolated
/// # });
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// The record of `id` in `context`, or `None` if there is none or it has expired at `now`.
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>>;

    /// What [`load`](Self::load) would return, answered at once by stores that hold their
    /// records in process, or `None` (the default) for stores that must wait on I/O.
    ///
    /// The layer asks this first, so an in-process store serves a request without boxing a
    /// future; `None` costs nothing but the call. Override it only where the answer needs no
    /// I/O and no lock held across an await, and where it has the same effects as `load`.
    ///
    ///
    /// ```
    /// use tower_app_sessions::{record::now_ms, AppContext, MemoryStore, SessionId, SessionStore};
    /// let id = SessionId::generate().unwrap();
    /// let answer = MemoryStore::new().load_now(&AppContext::Web, &id, now_ms());
    /// assert!(matches!(answer, Some(Ok(None))));
    /// ```
    fn load_now(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
    ) -> Option<Result<Option<SessionRecord>, StoreError>> {
        let _ = (context, id, now);
        None
    }

    /// Writes `record` under `id` in `context`; it lives until `record.expires_at`
    /// (the backend's TTL is derived from it and `now`, so the two never disagree).
    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes (or, for audited backends, revokes) `id` in `context`. `true` if it existed
    /// and was live at `now`.
    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Moves the live record of `old` (a session of `user_id`) to the fresh id `new`, keeping
    /// its content, atomically with respect to deletion: a logout of `old` or a revocation of
    /// the user's sessions that completes before the move is never undone by it, and one that
    /// runs while it does ends the session (under either id). `Ok(Some(record))`: the record
    /// now lives under `new` alone. `Ok(None)`: `old` was not live at `now` (logged out,
    /// revoked or expired meanwhile), and nothing was written.
    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>>;

    /// Moves the session's `expires_at` (and its TTL with it) to `expires_at`.
    /// `false` if the session no longer exists or has expired at `now`; never resurrects a
    /// deleted session.
    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes every session of `user_id` in `scope`; returns how many were live at `now`.
    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The sessions of `user_id` in `scope` that are live at `now`.
    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>>;

    /// The record stored under the pre-migration, context-less key for `id`
    /// (Redis `session:<id>`). Only called when the layer's legacy fallback is on for its
    /// context. Backends without legacy data keep this default, which finds nothing.
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        let _ = (id, now);
        ready(Ok(None))
    }

    /// Whether the store holds any record of `id` in `context`, live or not: audited
    /// backends keep revoked and expired rows, and a tiered store must tell "revoked here"
    /// from "never written here". The default is [`load`](Self::load)`.is_some()`.
    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.load(context, id, now).await?.is_some()) })
    }

    /// Whether this store positively knows that the session `id` of `user_id` was deleted
    /// (rather than never held, or lost with the store's data). A [`TieredStore`] asks its fast
    /// store before refilling it from the durable one, so a logout done by deleting the fast
    /// copy only (the TypeScript apps' `deleteSession` deletes the Redis key) holds, while
    /// sessions lost in a Redis restart are still refilled. The default knows nothing.
    ///
    /// [`TieredStore`]: tiered::TieredStore
    fn knows_deleted<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = (context, id, user_id, now);
        ready(Ok(false))
    }

    /// Whether sessions of `context` can be stored here at all (PostgreSQL's enum knows only
    /// `web` and `admin`). A [`TieredStore`](tiered::TieredStore) keeps the others in its fast
    /// store alone.
    fn supports(&self, context: &AppContext) -> bool {
        let _ = context;
        true
    }

    /// Deletes the pre-migration, context-less record of `id` (Redis `session:<id>`), so a
    /// login or logout from a legacy session leaves no live legacy id behind. `true` if it
    /// existed. Backends without legacy data keep this default.
    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = id;
        ready(Ok(false))
    }
}
