//! Unit tests of the memory store's bookkeeping (eviction, sweeping, the user index).

use super::*;
use crate::SessionMetadata;
use std::time::Duration;

const T0: i64 = 1_757_660_000_000;

fn record(user: Uuid, ttl_ms: u64) -> SessionRecord {
    SessionRecord::new(
        user,
        SessionMetadata::new(),
        T0,
        Duration::from_millis(ttl_ms),
    )
}

#[tokio::test]
async fn expired_records_are_not_returned_and_are_swept() {
    let store = MemoryStore::new();
    let user = Uuid::new_v4();
    let short = SessionId::generate().unwrap();
    let long = SessionId::generate().unwrap();
    let web = AppContext::Web;
    store
        .save(&web, &short, &record(user, 30), T0)
        .await
        .unwrap();
    store
        .save(&web, &long, &record(user, 60_000), T0)
        .await
        .unwrap();
    let later = T0 + 30;
    assert_eq!(store.len(), 2);
    let listed = store
        .list_user_sessions(&user, Scope::AllContexts, later)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, long);
    assert_eq!(store.write(|s| s.sweep(later)), 1);
    assert_eq!(store.len(), 1);
    assert!(store.load(&web, &short, later).await.unwrap().is_none());
    assert!(!store
        .extend(&web, &short, later + 10_000, later)
        .await
        .unwrap());
    // A record is live up to, not including, its expires_at.
    assert!(store
        .load(&web, &long, T0 + 59_999)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .load(&web, &long, T0 + 60_000)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn lookup_of_an_expired_record_removes_it() {
    let store = MemoryStore::new();
    let id = SessionId::generate().unwrap();
    let admin = AppContext::Admin;
    store
        .save(&admin, &id, &record(Uuid::new_v4(), 10), T0)
        .await
        .unwrap();
    assert!(store.load(&admin, &id, T0 + 10).await.unwrap().is_none());
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_write_sweeps_at_most_every_interval() {
    let store = MemoryStore::new();
    let user = Uuid::new_v4();
    let web = AppContext::Web;
    let id = |_| SessionId::generate().unwrap();
    store
        .save(&web, &id(0), &record(user, 10), T0)
        .await
        .unwrap();
    // The first write swept (nothing): the next sweep is due SWEEP_INTERVAL_MS later.
    store
        .save(&web, &id(1), &record(user, 10), T0 + 20)
        .await
        .unwrap();
    assert_eq!(store.len(), 2, "swept before the interval");
    store
        .save(&web, &id(2), &record(user, 600_000), T0 + SWEEP_INTERVAL_MS)
        .await
        .unwrap();
    assert_eq!(store.len(), 1, "a write after the interval sweeps");
}

#[tokio::test]
async fn per_user_operations_respect_scope() {
    let store = MemoryStore::new();
    let user = Uuid::new_v4();
    let other = Uuid::new_v4();
    for ctx in [AppContext::Web, AppContext::Web, AppContext::Admin] {
        store
            .save(
                &ctx,
                &SessionId::generate().unwrap(),
                &record(user, 60_000),
                T0,
            )
            .await
            .unwrap();
    }
    store
        .save(
            &AppContext::Web,
            &SessionId::generate().unwrap(),
            &record(other, 60_000),
            T0,
        )
        .await
        .unwrap();
    let web = Scope::Context(&AppContext::Web);
    let all = Scope::AllContexts;
    assert_eq!(
        store
            .list_user_sessions(&user, web, T0)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.delete_user_sessions(&user, web, T0).await.unwrap(), 2);
    assert_eq!(
        store
            .list_user_sessions(&user, all, T0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.delete_user_sessions(&user, all, T0).await.unwrap(), 1);
    assert_eq!(store.len(), 1, "the other user's session is untouched");
}

#[tokio::test]
async fn a_full_store_evicts_the_sessions_closest_to_expiry() {
    let store = MemoryStore::with_capacity(128);
    let web = AppContext::Web;
    let user = Uuid::new_v4();
    // 128 sessions, the i-th expiring i seconds after T0 + 1 h.
    let ids: Vec<SessionId> = (0..128).map(|_| SessionId::generate().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut r = record(user, 3_600_000);
        r.expires_at += i as i64 * 1000;
        store.save(&web, id, &r, T0).await.unwrap();
    }
    assert_eq!(store.len(), 128);
    // One more: the store makes room by evicting the two closest to expiry (128 / 64).
    let newest = SessionId::generate().unwrap();
    store
        .save(&web, &newest, &record(user, 7_200_000), T0)
        .await
        .unwrap();
    assert_eq!(store.len(), 127);
    for id in &ids[..2] {
        assert!(
            store.load(&web, id, T0).await.unwrap().is_none(),
            "not evicted"
        );
    }
    for id in ids[2..].iter().chain([&newest]) {
        assert!(store.load(&web, id, T0).await.unwrap().is_some(), "evicted");
    }
    let listed = store
        .list_user_sessions(&user, Scope::AllContexts, T0)
        .await
        .unwrap();
    assert_eq!(listed.len(), 127, "the index follows the evictions");
    // Expired sessions go first, before any live one is evicted.
    let store = MemoryStore::with_capacity(2);
    store
        .save(&web, &ids[0], &record(user, 10), T0)
        .await
        .unwrap();
    store
        .save(&web, &ids[1], &record(user, 60_000), T0)
        .await
        .unwrap();
    store
        .save(&web, &ids[2], &record(user, 60_000), T0 + 10)
        .await
        .unwrap();
    assert!(store.load(&web, &ids[1], T0 + 10).await.unwrap().is_some());
    assert!(store.load(&web, &ids[2], T0 + 10).await.unwrap().is_some());
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn overwriting_an_id_moves_it_between_user_indexes() {
    let store = MemoryStore::new();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let id = SessionId::generate().unwrap();
    let all = Scope::AllContexts;
    store
        .save(&AppContext::Web, &id, &record(a, 60_000), T0)
        .await
        .unwrap();
    store
        .save(&AppContext::Web, &id, &record(b, 60_000), T0)
        .await
        .unwrap();
    assert!(store
        .list_user_sessions(&a, all, T0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.delete_user_sessions(&a, all, T0).await.unwrap(), 0);
    assert_eq!(
        store.list_user_sessions(&b, all, T0).await.unwrap().len(),
        1
    );
}
