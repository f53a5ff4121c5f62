//! The store contract (`tower_app_sessions::testing::check_store`, the entry point any store's
//! author uses) against every store and decorator that runs in process, with the fast path's
//! readiness through each decorator. (Redis, Redis Cluster, PostgreSQL and the tiered and
//! write-through stores over them run it in their own modules, against real servers.) And the
//! check itself: a store that breaks a rule is reported by the rule's name.

use std::sync::{Arc, Mutex};

use tower_app_sessions::store::{Instrumented, TieredStore, WriteThroughStore};
use tower_app_sessions::testing::{check_store, Contract, RULES};
use tower_app_sessions::{MemoryStore, SessionStore, Sessions};

use crate::common::CountingStore;

mod broken;

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn the_memory_store() {
    let report = Contract::new()
        .ready_loads()
        .check(|| async { MemoryStore::new() })
        .await;
    report.assert_ok();
    assert_eq!(
        report.passed().len(),
        RULES.len() + 1,
        "{:?}",
        report.passed()
    );
}

#[tokio::test]
async fn a_shared_store() {
    Contract::new()
        .ready_loads()
        .check(|| async { memory() })
        .await
        .assert_ok();
}

#[tokio::test]
async fn write_through_over_memory() {
    let warm_stores = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::clone(&warm_stores);
    Contract::new()
        .ready_loads()
        .check(move || {
            let warm = MemoryStore::new();
            made.lock().unwrap().push(warm.clone());
            async move { WriteThroughStore::new(memory(), Arc::new(warm)) }
        })
        .await
        .assert_ok();
    // and every write reached the warm store: each rule ends with nothing live
    for warm in warm_stores.lock().unwrap().iter() {
        assert!(
            warm.is_empty(),
            "{} records left in a warm store",
            warm.len()
        );
    }
}

#[tokio::test]
async fn tiered_over_memory() {
    check_store(|| async { TieredStore::new(memory(), memory()) })
        .await
        .assert_ok();
}

#[tokio::test]
async fn publishing_on_a_cache_bus() {
    let bus = tower_app_sessions::cache::InvalidationBus::local();
    Contract::new()
        .ready_loads()
        .check(|| async {
            let sessions = Sessions::memory().cache(&bus, 100, std::time::Duration::from_secs(60));
            Arc::clone(sessions.session_store())
        })
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_user_written_decorator() {
    let store = CountingStore::default();
    let shared = store.clone();
    Contract::new()
        .ready_loads()
        .check(move || {
            let store = shared.clone();
            async move { store }
        })
        .await
        .assert_ok();
    assert!(store.calls() > 0);
}

#[tokio::test]
async fn instrumented_memory() {
    Contract::new()
        .ready_loads()
        .check(|| async {
            Instrumented::new(MemoryStore::new(), "memory")
                .timeout(std::time::Duration::from_secs(5))
        })
        .await
        .assert_ok();
}

#[tokio::test]
async fn instrumented_tiered() {
    check_store(|| async { Instrumented::new(TieredStore::new(memory(), memory()), "tiered") })
        .await
        .assert_ok();
}
