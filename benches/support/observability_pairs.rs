//! The observability pairs of `benches/layer.rs` (included with `#[path]`): the same layer
//! with observability off (no recorder, no hook: the baseline) and on (a Prometheus
//! recorder from `metrics-exporter-prometheus` in place when the store and the layer are
//! built, so requests, authentication time, cache results and store timings are all
//! recorded, and one event hook that counts). No `tracing` subscriber on either side: the
//! request span is then `Span::none()`, as in a service that does not collect spans.
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

/// Measures `off` (a store built without a recorder) and `on` (the same data, built with
/// `recorder` in place) with the layer's observability off and on.
fn pair<S: SessionStore + Clone>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    recorder: &metrics_exporter_prometheus::PrometheusRecorder,
    (off_store, on_store): (S, S),
    (users, id): (MemoryUsers, &SessionId),
    cache: bool,
) {
    let layer = |store: S| {
        let users = users.clone();
        move || {
            SessionLayer::for_context(AppContext::Web)
                .store(store)
                .users(users)
        }
    };
    let on = observed(layer(on_store), recorder);
    let off = layer(off_store)();
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

fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

pub(crate) fn cached(c: &mut Criterion) {
    let rt = runtime();
    let (users, _, id, record) = fixture();
    let recorder = recorder();
    let off = MemoryStore::new();
    let on = metrics::with_local_recorder(&recorder, MemoryStore::new);
    for store in [&off, &on] {
        rt.block_on(store.save(&AppContext::Web, &id, &record, now_ms()))
            .expect("memory save");
    }
    let stores = (off, on);
    pair(
        c,
        &rt,
        "observability-cached",
        &recorder,
        stores,
        (users, &id),
        true,
    );
}

#[cfg(feature = "redis")]
pub(crate) fn redis(c: &mut Criterion) {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let rt = runtime();
    if rt.block_on(super::redis_pairs::connection()).is_none() {
        eprintln!("observability-redis skipped: REDIS_URL does not answer");
        return;
    }
    let (users, _, id, record) = fixture();
    let recorder = recorder();
    let connect = || {
        rt.block_on(RedisStore::connect(RedisConfig::new(
            super::redis_pairs::url(),
        )))
        .expect("redis store")
    };
    let off = connect();
    let on = {
        // `connect` registers the store's timers; the runtime polls it on this thread.
        let _local = metrics::set_default_local_recorder(&recorder);
        connect()
    };
    rt.block_on(off.save(&AppContext::Web, &id, &record, now_ms()))
        .expect("save");
    let stores = (off, on);
    pair(
        c,
        &rt,
        "observability-redis",
        &recorder,
        stores,
        (users, &id),
        false,
    );
}

#[cfg(not(feature = "redis"))]
pub fn redis(_: &mut Criterion) {}
