//! The observability pairs of `benches/layer.rs` (included with `#[path]`): the same layer
//! with observability off (no recorder, no hook: the baseline) and on (a Prometheus
//! recorder from `metrics-exporter-prometheus` registered when the layer is built, and one
//! event hook that counts).
//!
//! | group | path |
//! |---|---|
//! | `observability-cached` | memory store behind the session cache, authenticated |
//! | `observability-redis` | `RedisStore`, no cache, authenticated |

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use tower_app_sessions::events::SessionEvent;

/// A layer with a recorder in place when it is built and one cheap hook.
fn observed(
    layer: impl FnOnce() -> SessionLayer,
    recorder: &dyn metrics::Recorder,
) -> SessionLayer {
    static EVENTS: AtomicU64 = AtomicU64::new(0);
    metrics::with_local_recorder(recorder, layer).on_event(|_: &SessionEvent| {
        EVENTS.fetch_add(1, Ordering::Relaxed);
    })
}

/// Measures `store` + `users` with observability off and on.
fn pair<S: SessionStore + Clone>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    (store, users, id): (S, MemoryUsers, &SessionId),
    cache: bool,
) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let layer = || {
        SessionLayer::for_context(AppContext::Web)
            .store(store.clone())
            .users(users.clone())
    };
    let on = observed(layer, &recorder);
    let off = layer();
    let bus = tower_app_sessions::cache::InvalidationBus::local();
    let service = |layer: SessionLayer| {
        let layer = if cache {
            layer.cache(&bus, 10_000, Duration::from_secs(60))
        } else {
            layer
        };
        tower::ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(inner))
    };
    let (off, on) = (service(off), service(on));
    check(rt, off.clone(), id.as_str());
    check(rt, on.clone(), id.as_str());
    let mut group = c.benchmark_group(group);
    group.bench_function("baseline", |b| {
        b.to_async(rt)
            .iter(|| off.clone().oneshot(request(Some(id.as_str()))))
    });
    group.bench_function("layer", |b| {
        b.to_async(rt)
            .iter(|| on.clone().oneshot(request(Some(id.as_str()))))
    });
    group.finish();
}

pub fn cached(c: &mut Criterion) {
    let rt = runtime();
    let (users, _, id, record) = fixture();
    let store = MemoryStore::new();
    rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("memory save");
    pair(c, &rt, "observability-cached", (store, users, &id), true);
}

#[cfg(feature = "redis")]
pub fn redis(c: &mut Criterion) {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let rt = runtime();
    if rt.block_on(super::redis_pairs::connection()).is_none() {
        eprintln!("observability-redis skipped: REDIS_URL does not answer");
        return;
    }
    let (users, _, id, record) = fixture();
    let store = rt
        .block_on(RedisStore::connect(RedisConfig::new(
            super::redis_pairs::url(),
        )))
        .expect("redis store");
    rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("save");
    pair(c, &rt, "observability-redis", (store, users, &id), false);
}

#[cfg(not(feature = "redis"))]
pub fn redis(_: &mut Criterion) {}
