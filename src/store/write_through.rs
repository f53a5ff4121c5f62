//! [`WriteThroughStore`]: serve from one store, write through to another (the TypeScript
//! apps' migration strategy `mock-with-write-through`).

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, LegacySessions, ListedSession, Scope, SessionStore, StoreError,
    StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::{AppContext, SessionId, SessionRecord};

/// Serves every read from `primary` (memory) and writes through to `warm` (the real
/// backends), logging but not failing on their errors: the TypeScript apps' `mock-with-write-through` strategy,
/// for warming Redis and PostgreSQL before switching to them.
pub struct WriteThroughStore {
    primary: Arc<dyn SessionStore>,
    warm: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for WriteThroughStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteThroughStore").finish_non_exhaustive()
    }
}

impl WriteThroughStore {
    /// Reads from `primary`; every write also goes to `warm`.
    pub fn new(primary: Arc<dyn SessionStore>, warm: Arc<dyn SessionStore>) -> Self {
        Self { primary, warm }
    }

    fn warm_result<T>(result: Result<T, StoreError>) {
        if let Err(error) = result {
            tracing::warn!(%error, "write-through to the real session backends failed");
        }
    }
}

impl SessionStore for WriteThroughStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.primary.load(context, id, now)
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<crate::store::Loaded>, StoreError>> {
        self.primary.load_with_user(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        StoreFuture::new(async move {
            self.primary.save(context, id, record, now).await?;
            Self::warm_result(self.warm.save(context, id, record, now).await);
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let existed = self.primary.delete(context, id, now).await?;
            Self::warm_result(self.warm.delete(context, id, now).await);
            Ok(existed)
        })
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(async move {
            let moved = self.primary.rotate(context, old, new, user_id, now).await?;
            if let Some(record) = &moved {
                match self.warm.rotate(context, old, new, user_id, now).await {
                    Ok(Some(_)) => {}
                    Ok(None) => Self::warm_result(self.warm.save(context, new, record, now).await),
                    Err(error) => Self::warm_result::<()>(Err(error)),
                }
            } else {
                Self::warm_result(self.warm.delete(context, old, now).await);
            }
            Ok(moved)
        })
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let extended = self.primary.extend(context, id, expires_at, now).await?;
            Self::warm_result(self.warm.extend(context, id, expires_at, now).await);
            Ok(extended)
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
        // The primary decides, limits included; the warm copy follows only what it applied.
        StoreFuture::new(async move {
            let updated = self
                .primary
                .update_data(context, id, patch, limits, now)
                .await?;
            if updated == DataUpdate::Applied {
                let warm = self.warm.update_data(context, id, patch, limits, now).await;
                if let Ok(refused @ (DataUpdate::NotLive | DataUpdate::OverLimit)) = warm {
                    tracing::debug!(context = %context, ?refused, "the warm store did not take a data patch the primary applied");
                }
                Self::warm_result(warm);
            }
            Ok(updated)
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        StoreFuture::new(async move {
            let removed = self
                .primary
                .delete_user_sessions(user_id, scope, now)
                .await?;
            Self::warm_result(self.warm.delete_user_sessions(user_id, scope, now).await);
            Ok(removed)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.primary.list_user_sessions(user_id, scope, now)
    }

    fn capabilities(&self) -> Capabilities<'_> {
        // Reads are the primary's; legacy deletions are written through as well.
        let mut capabilities = Capabilities::none();
        if self.primary.capabilities().legacy.is_some() {
            capabilities = capabilities.legacy(self);
        }
        if let Some(durable) = self.primary.capabilities().durable {
            capabilities = capabilities.durable(durable);
        }
        if self.primary.capabilities().stats.is_some() || self.warm.capabilities().stats.is_some() {
            capabilities = capabilities.stats(self);
        }
        capabilities
    }
}

/// Both stores' figures (the warmed store's are what is being warmed up).
impl crate::stats::StoreStats for WriteThroughStore {
    fn stats(&self, now: i64) -> StoreFuture<'_, Result<crate::stats::SessionStats, StoreError>> {
        StoreFuture::new(super::stats_of_both(
            self.primary.as_ref(),
            self.warm.as_ref(),
            now,
        ))
    }
}

impl LegacySessions for WriteThroughStore {
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        match self.primary.capabilities().legacy {
            Some(primary) => primary.load_legacy(id, now),
            None => StoreFuture::ready(Ok(None)),
        }
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let deleted = match self.primary.capabilities().legacy {
                Some(primary) => primary.delete_legacy(id).await?,
                None => false,
            };
            if let Some(warm) = self.warm.capabilities().legacy {
                Self::warm_result(warm.delete_legacy(id).await);
            }
            Ok(deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{MemoryStore, SessionMetadata};

    const NOW: i64 = 1_757_660_000_000;

    fn record() -> SessionRecord {
        SessionRecord::new(
            Uuid::new_v4(),
            SessionMetadata::new(),
            NOW,
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn write_through_serves_the_primary_and_warms_the_rest() {
        let (primary, warm) = (MemoryStore::new(), MemoryStore::new());
        let store = WriteThroughStore::new(Arc::new(primary.clone()), Arc::new(warm.clone()));
        let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
        store.save(&ctx, &id, &rec, NOW).await.unwrap();
        assert!(warm.load(&ctx, &id, NOW).await.unwrap().is_some());
        warm.delete(&ctx, &id, NOW).await.unwrap();
        assert!(
            store.load(&ctx, &id, NOW).await.unwrap().is_some(),
            "served from the primary"
        );
        store.delete(&ctx, &id, NOW).await.unwrap();
        assert!(primary.is_empty());
    }

    #[test]
    fn reads_keep_the_primarys_readiness() {
        let primary = MemoryStore::new();
        let store = WriteThroughStore::new(Arc::new(primary), Arc::new(MemoryStore::new()));
        let id = SessionId::generate().unwrap();
        assert!(store.load(&AppContext::Web, &id, NOW).is_ready());
    }
}
