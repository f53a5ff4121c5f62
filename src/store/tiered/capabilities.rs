//! What a [`TieredStore`] offers beyond the core trait: both stores' figures, the pair's
//! durable records, and the legacy sessions of both.

use super::{DurableRecords, LegacySessions, StoreError, StoreFuture, TieredStore};
use crate::{AppContext, SessionId, SessionRecord};

impl TieredStore {
    async fn read_legacy(
        &self,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(fast) = self.fast.capabilities().legacy {
            match fast.load_legacy(id, now).await {
                Ok(Some(record)) => return Ok(Some(record)),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "fast store failed on a legacy lookup"),
            }
        }
        match self.durable.capabilities().legacy {
            Some(durable) => durable.load_legacy(id, now).await,
            None => Ok(None),
        }
    }

    async fn remove_legacy(&self, id: &SessionId) -> Result<bool, StoreError> {
        let durable = match self.durable.capabilities().legacy {
            Some(durable) => durable.delete_legacy(id).await?,
            None => false,
        };
        let fast = match self.fast.capabilities().legacy {
            Some(fast) => match fast.delete_legacy(id).await {
                Ok(deleted) => deleted,
                Err(error) => {
                    self.fast_best_effort(Err(error));
                    false
                }
            },
            None => false,
        };
        Ok(durable || fast)
    }
}

/// Both stores' figures.
impl crate::stats::StoreStats for TieredStore {
    fn stats(&self, now: i64) -> StoreFuture<'_, Result<crate::stats::SessionStats, StoreError>> {
        StoreFuture::new(crate::store::stats_of_both(
            self.fast.as_ref(),
            self.durable.as_ref(),
            now,
        ))
    }
}

/// What the pair holds: the durable store's records for the contexts it can hold, the fast
/// store's for the others (so every context is supported).
impl DurableRecords for TieredStore {
    fn contains<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        if self.durable_for(context).is_some() {
            return StoreFuture::new(self.durable_holds(context, id, now));
        }
        match self.fast.capabilities().durable {
            Some(fast) => fast.contains(context, id, now),
            None => {
                StoreFuture::new(
                    async move { Ok(self.fast.load(context, id, now).await?.is_some()) },
                )
            }
        }
    }

    fn supports(&self, _context: &AppContext) -> bool {
        true
    }
}

/// The legacy sessions of both stores: the fast store's first.
impl LegacySessions for TieredStore {
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        StoreFuture::new(self.read_legacy(id, now))
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(self.remove_legacy(id))
    }
}
