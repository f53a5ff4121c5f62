//! The tiered store's own rules, on two memory stores.

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

// Revocation at the source needs a durable store that keeps revoked records
// (PostgreSQL): tests/pg_tiered.rs covers it against a real one.

#[tokio::test]
async fn a_miss_refills_the_fast_store() {
    let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
    let tiered = TieredStore::new(Arc::new(fast.clone()), Arc::new(durable.clone()))
        .revalidate_after(Duration::ZERO);
    let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
    durable.save(&ctx, &id, &rec, NOW).await.unwrap();
    assert_eq!(
        tiered.load(&ctx, &id, NOW).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(
        fast.load(&ctx, &id, NOW).await.unwrap(),
        Some(rec),
        "refilled"
    );
}

#[tokio::test]
async fn a_fast_copy_the_durable_store_never_held_is_served() {
    // What a Redis-only writer (the TypeScript apps) leaves: no durable record at all.
    let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
    let tiered = TieredStore::new(Arc::new(fast.clone()), Arc::new(durable.clone()))
        .revalidate_after(Duration::ZERO);
    let (ctx, id, rec) = (AppContext::Web, SessionId::generate().unwrap(), record());
    fast.save(&ctx, &id, &rec, NOW).await.unwrap();
    assert_eq!(tiered.load(&ctx, &id, NOW).await.unwrap(), Some(rec));
    assert!(durable.is_empty(), "not copied into the durable store");
}

#[tokio::test]
async fn contexts_the_durable_store_cannot_hold_stay_in_the_fast_store() {
    struct WebAndAdminOnly(MemoryStore);
    impl SessionStore for WebAndAdminOnly {
        fn load<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            now: i64,
        ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
            self.0.load(c, id, now)
        }
        fn save<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            r: &'a SessionRecord,
            now: i64,
        ) -> StoreFuture<'a, Result<(), StoreError>> {
            self.0.save(c, id, r, now)
        }
        fn delete<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            now: i64,
        ) -> StoreFuture<'a, Result<bool, StoreError>> {
            self.0.delete(c, id, now)
        }
        fn extend<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            at: i64,
            now: i64,
        ) -> StoreFuture<'a, Result<bool, StoreError>> {
            self.0.extend(c, id, at, now)
        }
        fn update_data<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            patch: &'a crate::data::DataPatch,
            limits: crate::data::DataLimits,
            now: i64,
        ) -> StoreFuture<'a, Result<crate::store::DataUpdate, StoreError>> {
            self.0.update_data(c, id, patch, limits, now)
        }
        fn rotate<'a>(
            &'a self,
            c: &'a AppContext,
            old: &'a SessionId,
            new: &'a SessionId,
            u: &'a Uuid,
            now: i64,
        ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
            self.0.rotate(c, old, new, u, now)
        }
        fn delete_user_sessions<'a>(
            &'a self,
            u: &'a Uuid,
            s: Scope<'a>,
            now: i64,
        ) -> StoreFuture<'a, Result<u64, StoreError>> {
            self.0.delete_user_sessions(u, s, now)
        }
        fn list_user_sessions<'a>(
            &'a self,
            u: &'a Uuid,
            s: Scope<'a>,
            now: i64,
        ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
            self.0.list_user_sessions(u, s, now)
        }
        fn capabilities(&self) -> Capabilities<'_> {
            Capabilities::none().durable(self)
        }
    }
    impl DurableRecords for WebAndAdminOnly {
        fn contains<'a>(
            &'a self,
            c: &'a AppContext,
            id: &'a SessionId,
            now: i64,
        ) -> StoreFuture<'a, Result<bool, StoreError>> {
            StoreFuture::new(async move { Ok(self.0.load(c, id, now).await?.is_some()) })
        }
        fn supports(&self, context: &AppContext) -> bool {
            !matches!(context, AppContext::Custom(_))
        }
    }
    let (fast, durable) = (MemoryStore::new(), MemoryStore::new());
    let tiered = TieredStore::new(
        Arc::new(fast.clone()),
        Arc::new(WebAndAdminOnly(durable.clone())),
    );
    let bot = AppContext::custom("telegram-bot").unwrap();
    let (id, rec) = (SessionId::generate().unwrap(), record());
    tiered.save(&bot, &id, &rec, NOW).await.unwrap();
    assert!(durable.is_empty());
    assert_eq!(
        tiered.load(&bot, &id, NOW).await.unwrap(),
        Some(rec.clone())
    );
    assert!(tiered.delete(&bot, &id, NOW).await.unwrap());
    assert!(fast.is_empty());
}
