//! What a layer does with a store that cannot hold its context's sessions (a custom context
//! on a bare `PgSessionStore`): it is built all the same, logs the mistake once, and answers
//! every store operation with [`ConfigError::UnsupportedContext`] as a [`StoreError`], so
//! that routes requiring a user answer `503` and nothing panics.
//! [`SessionLayer::try_new`](super::SessionLayer::try_new),
//! [`SessionLayer::check`](super::SessionLayer::check) and
//! [`Sessions::try_layer`](crate::Sessions::try_layer) return the error instead, for an
//! application that would rather not start.

use std::sync::Arc;

use uuid::Uuid;

use crate::config::ConfigError;
use crate::data::{DataLimits, DataPatch};
use crate::store::{Capabilities, DataUpdate, DurableRecords, ListedSession, Scope, StoreFuture};
use crate::{AppContext, SessionId, SessionRecord, SessionStore, StoreError};

/// The backend name of the errors it answers with (in logs and `store_errors_total`).
const BACKEND: &str = "unsupported-context";

/// `store` if it can hold `context`'s sessions, else a store refusing every operation.
pub(super) fn supported_or_refusing(
    store: Arc<dyn SessionStore>,
    context: &AppContext,
) -> Arc<dyn SessionStore> {
    if store.capabilities().supports(context) {
        return store;
    }
    let error = unsupported(context);
    tracing::error!(%context, "{error}; every request of this layer is answered as a store failure (503)");
    Arc::new(Refusing {
        context: context.clone(),
    })
}

/// [`ConfigError::UnsupportedContext`] for `context`.
pub(super) fn unsupported(context: &AppContext) -> ConfigError {
    ConfigError::UnsupportedContext {
        context: context.clone(),
    }
}

/// Refuses every operation: the layer's store cannot hold its context.
struct Refusing {
    context: AppContext,
}

impl Refusing {
    fn refuse<'a, T>(&self) -> StoreFuture<'a, Result<T, StoreError>> {
        StoreFuture::ready(Err(StoreError::backend(
            BACKEND,
            unsupported(&self.context),
        )))
    }
}

impl SessionStore for Refusing {
    fn load<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.refuse()
    }

    fn save<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a SessionRecord,
        _: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.refuse()
    }

    fn delete<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.refuse()
    }

    fn rotate<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a SessionId,
        _: &'a Uuid,
        _: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.refuse()
    }

    fn update_data<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: &'a DataPatch,
        _: DataLimits,
        _: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.refuse()
    }

    fn extend<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
        _: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.refuse()
    }

    fn delete_user_sessions<'a>(
        &'a self,
        _: &'a Uuid,
        _: Scope<'a>,
        _: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.refuse()
    }

    fn list_user_sessions<'a>(
        &'a self,
        _: &'a Uuid,
        _: Scope<'a>,
        _: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.refuse()
    }

    /// Still says that it cannot hold the context, so that
    /// [`SessionLayer::check`](super::SessionLayer::check) reports it.
    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().durable(self)
    }
}

impl DurableRecords for Refusing {
    fn contains<'a>(
        &'a self,
        _: &'a AppContext,
        _: &'a SessionId,
        _: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.refuse()
    }

    fn supports(&self, context: &AppContext) -> bool {
        *context != self.context
    }
}
