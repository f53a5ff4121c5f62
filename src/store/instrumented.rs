//! [`Instrumented`]: a decorator that gives any [`SessionStore`] the crate's store metrics
//! ([`STORE_DURATION_SECONDS`](crate::telemetry::STORE_DURATION_SECONDS), labelled with the
//! backend's name) and a per-operation timeout, so a store of one's own reports and fails
//! like the crate's without copying code.

use std::time::Duration;

use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, ListedSession, Loaded, Scope, SessionStore, StoreError, StoreFuture,
};
use crate::backend::timed;
use crate::data::{DataLimits, DataPatch};
use crate::telemetry::{StoreMetrics, StoreOp};
use crate::{AppContext, SessionId, SessionRecord};

/// Times every operation of `S` into
/// [`STORE_DURATION_SECONDS`](crate::telemetry::STORE_DURATION_SECONDS) (labels `backend`:
/// the name given, `op`: the operation), and bounds every operation that waits by a timeout
/// ([`StoreError::Timeout`] past it, so the layer answers a fast `503` instead of hanging).
///
/// An answer that is ready ([`StoreFuture::ready`], an in-process store) stays ready: it is
/// timed as it is made, and nothing is allocated. The handles are registered when the
/// decorator is built, as the layer's are: install the metrics recorder first. Like every
/// decorator, it forwards [`capabilities`](SessionStore::capabilities) and
/// [`load_with_user`](SessionStore::load_with_user).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use tower_app_sessions::store::{Instrumented, MemoryStore, SessionStore};
/// use tower_app_sessions::{AppContext, SessionId};
///
/// // Your own store in place of MemoryStore.
/// let store = Instrumented::new(MemoryStore::new(), "mine").timeout(Duration::from_secs(1));
/// let id = SessionId::generate().unwrap();
/// let found = store.load(&AppContext::Web, &id, 0);
/// assert!(found.is_ready()); // still ready: nothing boxed
/// assert_eq!(found.await.unwrap(), None);
/// # });
/// ```
pub struct Instrumented<S> {
    inner: S,
    backend: &'static str,
    timeout: Option<Duration>,
    metrics: StoreMetrics,
}

impl<S> std::fmt::Debug for Instrumented<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("backend", &self.backend)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> Instrumented<S> {
    /// `inner`, timed under the label `backend` (a fixed name: `"sqlite"`, `"dynamo"`), with
    /// no timeout.
    pub fn new(inner: S, backend: &'static str) -> Self {
        Self {
            inner,
            backend,
            timeout: None,
            metrics: StoreMetrics::new(backend),
        }
    }

    /// Fails an operation that has not answered within `limit` with
    /// [`StoreError::Timeout`] (the operation is dropped: write idempotently).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The decorated store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Runs one operation: timed, and bounded when it waits.
    fn run<'a, T: Send + 'a>(
        &'a self,
        op: StoreOp,
        call: impl FnOnce() -> StoreFuture<'a, Result<T, StoreError>>,
    ) -> StoreFuture<'a, Result<T, StoreError>> {
        let started = self.metrics.started();
        let pending = match call().into_ready() {
            Ok(answer) => {
                self.metrics.record(op, started);
                return StoreFuture::ready(answer);
            }
            Err(pending) => pending,
        };
        let (limit, backend) = (self.timeout, self.backend);
        self.metrics.pending(op, async move {
            match limit {
                Some(limit) => timed(backend, limit, pending, |error| error).await,
                None => pending.await,
            }
        })
    }
}

impl<S: SessionStore> SessionStore for Instrumented<S> {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.run(StoreOp::Load, || self.inner.load(context, id, now))
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        self.run(StoreOp::Load, || {
            self.inner.load_with_user(context, id, now)
        })
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.run(StoreOp::Save, || self.inner.save(context, id, record, now))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.run(StoreOp::Delete, || self.inner.delete(context, id, now))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.run(StoreOp::Rotate, || {
            self.inner.rotate(context, old, new, user_id, now)
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.run(StoreOp::Extend, || {
            self.inner.extend(context, id, expires_at, now)
        })
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.run(StoreOp::UpdateData, || {
            self.inner.update_data(context, id, patch, limits, now)
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.run(StoreOp::DeleteUserSessions, || {
            self.inner.delete_user_sessions(user_id, scope, now)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.run(StoreOp::ListUserSessions, || {
            self.inner.list_user_sessions(user_id, scope, now)
        })
    }

    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}
