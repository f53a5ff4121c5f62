//! The store contract against every store and decorator that runs in process, and the fast
//! path's readiness through each decorator. (Redis, Redis Cluster, PostgreSQL and the tiered
//! and write-through stores over them run it in their own modules, against real servers.)

use std::sync::Arc;

use tower_app_sessions::store::{TieredStore, WriteThroughStore};
use tower_app_sessions::{MemoryStore, SessionStore, Sessions};

use crate::common::contract::{loads_are_ready, store_contract};
use crate::common::CountingStore;

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn the_memory_store() {
    store_contract(&MemoryStore::new()).await;
    loads_are_ready(&MemoryStore::new()).await;
}

#[tokio::test]
async fn a_shared_store() {
    let shared: Arc<dyn SessionStore> = memory();
    store_contract(&shared).await;
    loads_are_ready(&shared).await;
}

#[tokio::test]
async fn write_through_over_memory() {
    let warm = MemoryStore::new();
    let store = WriteThroughStore::new(memory(), Arc::new(warm.clone()));
    store_contract(&store).await;
    loads_are_ready(&store).await;
    // and every write reached the warm store: the contract ends with nothing live
    assert!(
        warm.is_empty(),
        "{} records left in the warm store",
        warm.len()
    );
}

#[tokio::test]
async fn tiered_over_memory() {
    store_contract(&TieredStore::new(memory(), memory())).await;
}

#[tokio::test]
async fn publishing_on_a_cache_bus() {
    let bus = tower_app_sessions::cache::InvalidationBus::local();
    let sessions = Sessions::memory().cache(&bus, 100, std::time::Duration::from_secs(60));
    store_contract(sessions.session_store()).await;
    loads_are_ready(sessions.session_store()).await;
}

#[tokio::test]
async fn a_user_written_decorator() {
    let store = CountingStore::default();
    store_contract(&store).await;
    loads_are_ready(&store).await;
    assert!(store.calls() > 0);
}
