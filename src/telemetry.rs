//! Prometheus-style metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`, on by default). Nothing is recorded unless the application installs a
//! recorder (e.g. `metrics-exporter-prometheus`); install it **before building the layers**:
//! each layer registers its handles once, when it is built, so the request path only adds
//! to counters it already holds.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`REQUESTS_TOTAL`] | counter | `context`, `outcome`: `none`, `malformed`, `unknown`, `expired`, `refused`, `authenticated`, `error` |
//! | [`AUTH_DURATION_SECONDS`] | histogram | `context`, `source`: `cache`, `store` (answers made without waiting are sampled, one in 8 by default: [`SessionLayer::timing_sample`](crate::SessionLayer::timing_sample)) |
//! | [`EVENTS_TOTAL`] | counter | `context`, `event`: the [`SessionEventKind`] in snake case |
//! | [`CACHE_TOTAL`] | counter | `context`, `result`: `hit` (an entry served), `miss`, `closed` (invalidation channel down), `invalidated` (once per invalidation that reached a layer's cache: a session's entry dropped, or everything dropped by a user-wide change or a reconnect, counted under that layer's context) |
//! | [`USER_CACHE_TOTAL`] | counter | `result`: `hit`, `miss`, `invalidated` (once per user-wide change or reconnect that dropped users) |
//! | [`STORE_DURATION_SECONDS`] | histogram | `backend`: `memory`, `redis`, `postgres`; `op`: the store operation (`load`, `save`, `delete`, `rotate`, `update_data`, `extend`, `delete_user_sessions`, `list_user_sessions`, `load_legacy`, `delete_legacy`) or `resolve_user` (loading a user from PostgreSQL) |
//!
//! Label values are bounded sets: contexts are the configured ones, never taken from a
//! request. Durations are measured only when a recorder was installed when the layer (or,
//! for [`STORE_DURATION_SECONDS`], the store) was built (a zero-sized recorder counts as
//! none). A store's time runs from the operation's first poll to its answer, so it includes
//! waiting for a pooled connection; a tiered or write-through store is timed as its halves.
//!
//! # Tracing
//!
//! Every request that carries a well-formed credential runs inside one `tracing` span:
//!
//! | | |
//! |---|---|
//! | name | `session` |
//! | target | `tower_app_sessions` |
//! | level | `INFO` |
//! | `context` | the layer's [`AppContext`], e.g. `web` |
//! | `outcome` | as in [`REQUESTS_TOTAL`]: `unknown`, `expired`, `refused`, `authenticated`, `error` (a request without a credential, or with a malformed one, gets no span) |
//! | `session` | the credential's [`SessionHandle`](crate::SessionHandle), never the id |
//!
//! The span covers authentication, the inner service and the save of the session data, so
//! every event a handler logs carries these fields. `tracing-opentelemetry` turns it into an
//! OpenTelemetry span named `session` with attributes `context`, `outcome` and `session`,
//! with no mapping to write. When no subscriber wants the span, nothing is hashed or
//! recorded for it. Audit events go to the target [`AUDIT_TARGET`](crate::events::AUDIT_TARGET).
//!
//! # Example
//!
//! ```
//! use tower_app_sessions::{telemetry, AppContext, MemoryUsers, SessionLayer};
//!
//! // let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! let layer = SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new());
//! assert_eq!(telemetry::REQUESTS_TOTAL, "tower_app_sessions_requests_total");
//! # drop(layer);
//! ```

use crate::events::SessionEventKind;
use crate::AppContext;

/// Requests a layer saw, by outcome.
pub const REQUESTS_TOTAL: &str = "tower_app_sessions_requests_total";
/// How long authenticating a request with a credential took, by where the answer came from.
pub const AUTH_DURATION_SECONDS: &str = "tower_app_sessions_auth_duration_seconds";
/// Lifecycle events ([`events`](crate::events)), by kind.
pub const EVENTS_TOTAL: &str = "tower_app_sessions_events_total";
/// Session cache lookups and invalidations.
pub const CACHE_TOTAL: &str = "tower_app_sessions_cache_total";
/// User cache lookups and invalidations ([`SessionLayer::user_cache`](crate::SessionLayer::user_cache)).
pub const USER_CACHE_TOTAL: &str = "tower_app_sessions_user_cache_total";
/// How long one backend operation took, by backend and operation.
pub const STORE_DURATION_SECONDS: &str = "tower_app_sessions_store_duration_seconds";

/// A timed backend operation, in the order of `STORE_OPS` (any store, through
/// [`Instrumented`](crate::store::Instrumented), or the crate's own).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum StoreOp {
    Load,
    Save,
    Delete,
    Rotate,
    UpdateData,
    Extend,
    DeleteUserSessions,
    ListUserSessions,
    // Each variant keeps its place in `STORE_OPS` in every build; these are timed only by the
    // backends that have them (Redis's legacy keys, PostgreSQL's users), absent from some.
    #[allow(dead_code)]
    LoadLegacy,
    #[allow(dead_code)]
    DeleteLegacy,
    #[allow(dead_code)]
    ResolveUser,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const STORE_OPS: [&str; 11] = [
    "load",
    "save",
    "delete",
    "rotate",
    "update_data",
    "extend",
    "delete_user_sessions",
    "list_user_sessions",
    "load_legacy",
    "delete_legacy",
    "resolve_user",
];

/// What a request turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    None,
    Malformed,
    Unknown,
    Expired,
    Refused,
    Authenticated,
    Error,
}

impl RequestOutcome {
    /// The outcome's label value (and the request span's `outcome` field).
    pub(crate) fn as_str(self) -> &'static str {
        OUTCOMES[self as usize].1
    }
}

const OUTCOMES: [(RequestOutcome, &str); 7] = [
    (RequestOutcome::None, "none"),
    (RequestOutcome::Malformed, "malformed"),
    (RequestOutcome::Unknown, "unknown"),
    (RequestOutcome::Expired, "expired"),
    (RequestOutcome::Refused, "refused"),
    (RequestOutcome::Authenticated, "authenticated"),
    (RequestOutcome::Error, "error"),
];

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const EVENTS: [&str; 10] = [
    "created",
    "rotated",
    "extended",
    "logged_out",
    "revoked",
    "expired",
    "evicted",
    "refused",
    "unknown_credential",
    "backend_error",
];

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn event_index(kind: &SessionEventKind) -> usize {
    // In the order of `EVENTS`.
    match kind {
        SessionEventKind::Created => 0,
        SessionEventKind::Rotated { .. } => 1,
        SessionEventKind::Extended { .. } => 2,
        SessionEventKind::LoggedOut => 3,
        SessionEventKind::Revoked { .. } => 4,
        SessionEventKind::Expired => 5,
        SessionEventKind::Evicted => 6,
        SessionEventKind::Refused => 7,
        SessionEventKind::UnknownCredential { .. } => 8,
        SessionEventKind::BackendError { .. } => 9,
    }
}

/// Where an authenticated answer came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    Cache,
    Store,
}

/// A cache lookup's result.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) enum CacheResult {
    Hit,
    Miss,
    Closed,
}

#[cfg(feature = "metrics")]
mod handles {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Instant;

    use metrics::{Counter, Histogram};

    use super::*;
    use crate::backend::StoreFuture;

    /// A layer's registered handles.
    pub(crate) struct LayerMetrics {
        requests: [Counter; 7],
        events: [Counter; 10],
        auth: [Histogram; 2],
        #[cfg_attr(not(feature = "cache"), allow(dead_code))]
        cache: [Counter; 3],
        timing: bool,
    }

    impl LayerMetrics {
        pub(crate) fn new(context: &AppContext) -> Self {
            let ctx = context.as_str().to_owned();
            let requests = OUTCOMES.map(|(_, outcome)| {
                metrics::counter!(REQUESTS_TOTAL, "context" => ctx.clone(), "outcome" => outcome)
            });
            let events = EVENTS.map(
                |event| metrics::counter!(EVENTS_TOTAL, "context" => ctx.clone(), "event" => event),
            );
            let auth = ["cache", "store"].map(|source| {
                metrics::histogram!(AUTH_DURATION_SECONDS, "context" => ctx.clone(), "source" => source)
            });
            let cache = ["hit", "miss", "closed"]
                .map(|result| metrics::counter!(CACHE_TOTAL, "context" => ctx.clone(), "result" => result));
            let timing = recording();
            Self {
                requests,
                events,
                auth,
                cache,
                timing,
            }
        }

        pub(crate) fn request(&self, outcome: RequestOutcome) {
            self.requests[outcome as usize].increment(1);
        }

        pub(crate) fn event(&self, kind: &SessionEventKind) {
            self.events[event_index(kind)].increment(1);
        }

        #[cfg(feature = "cache")]
        pub(crate) fn cache(&self, result: CacheResult) {
            self.cache[result as usize].increment(1);
        }

        /// The start of a timed authentication, when durations are recorded.
        pub(crate) fn start(&self) -> Option<Instant> {
            self.timing.then(Instant::now)
        }

        /// [`start`](Self::start) for one in `one_in` calls on this thread.
        pub(crate) fn start_sampled(&self, one_in: u32) -> Option<Instant> {
            thread_local! {
                static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
            }
            if !self.timing {
                return None;
            }
            let due = CALLS.with(|calls| {
                let n = calls.get();
                calls.set(n.wrapping_add(1));
                n % one_in.max(1) == 0
            });
            due.then(Instant::now)
        }

        pub(crate) fn authenticated(&self, started: Option<Instant>, source: Source) {
            if let Some(started) = started {
                self.auth[source as usize].record(started.elapsed().as_secs_f64());
            }
        }
    }

    /// Counts an event reported outside any layer ([`Sessions`](crate::Sessions)' admin
    /// operations: rare), resolving its counter now.
    pub(crate) fn count_event(context: &AppContext, kind: &SessionEventKind) {
        let (ctx, event) = (context.as_str().to_owned(), kind.as_str());
        metrics::counter!(EVENTS_TOTAL, "context" => ctx, "event" => event).increment(1);
    }

    /// A backend's operation timers: none unless a recorder was installed when it was built.
    #[derive(Clone, Default)]
    pub(crate) struct StoreMetrics(Option<Arc<[Histogram; 11]>>);

    impl StoreMetrics {
        /// The start of a timed operation, when durations are recorded.
        pub(crate) fn started(&self) -> Option<Instant> {
            self.0.as_ref().map(|_| Instant::now())
        }

        /// Records an operation [`started`](Self::started) then.
        pub(crate) fn record(&self, op: StoreOp, started: Option<Instant>) {
            if let (Some(timers), Some(started)) = (&self.0, started) {
                timers[op as usize].record(started.elapsed().as_secs_f64());
            }
        }

        pub(crate) fn new(backend: &'static str) -> Self {
            if !recording() {
                return Self(None);
            }
            Self(Some(Arc::new(STORE_OPS.map(
                |op| metrics::histogram!(STORE_DURATION_SECONDS, "backend" => backend, "op" => op),
            ))))
        }

        /// `work`, an in-process operation, timed as it runs.
        #[cfg_attr(not(feature = "memory"), allow(dead_code))]
        pub(crate) fn ready<'a, T: Send + 'a>(
            &self,
            op: StoreOp,
            work: impl FnOnce() -> T,
        ) -> StoreFuture<'a, T> {
            let Some(timers) = &self.0 else {
                return StoreFuture::ready(work());
            };
            let started = Instant::now();
            let value = work();
            timers[op as usize].record(started.elapsed().as_secs_f64());
            StoreFuture::ready(value)
        }

        /// `work`, an operation that waits on I/O, boxed and timed from its first poll.
        pub(crate) fn pending<'a, T: Send + 'a>(
            &self,
            op: StoreOp,
            work: impl Future<Output = T> + Send + 'a,
        ) -> StoreFuture<'a, T> {
            let Some(timers) = &self.0 else {
                return StoreFuture::new(work);
            };
            let timer = timers[op as usize].clone();
            StoreFuture::new(async move {
                let started = Instant::now();
                let value = work.await;
                timer.record(started.elapsed().as_secs_f64());
                value
            })
        }
    }

    /// Whether a recorder is installed: the no-op recorder is zero-sized, a real one holds
    /// its registry.
    fn recording() -> bool {
        metrics::with_recorder(|recorder| std::mem::size_of_val(recorder) > 0)
    }

    /// A cache's count of invalidations that dropped something (rare: logouts, rotations,
    /// user changes, reconnects).
    #[cfg(feature = "cache")]
    pub(crate) struct Invalidations(Counter);

    #[cfg(feature = "cache")]
    impl Invalidations {
        pub(crate) fn new(context: &AppContext) -> Self {
            let ctx = context.as_str().to_owned();
            Self(metrics::counter!(CACHE_TOTAL, "context" => ctx, "result" => "invalidated"))
        }

        pub(crate) fn count(&self) {
            self.0.increment(1);
        }
    }

    /// The user cache's lookups and invalidations.
    #[cfg(feature = "cache")]
    pub(crate) struct UserCacheMetrics([Counter; 3]);

    #[cfg(feature = "cache")]
    impl UserCacheMetrics {
        pub(crate) fn new() -> Self {
            Self(
                ["hit", "miss", "invalidated"]
                    .map(|result| metrics::counter!(USER_CACHE_TOTAL, "result" => result)),
            )
        }

        pub(crate) fn lookup(&self, hit: bool) {
            self.0[usize::from(!hit)].increment(1);
        }

        pub(crate) fn invalidated(&self) {
            self.0[2].increment(1);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod handles {
    use super::*;

    pub(crate) struct LayerMetrics;

    pub(crate) fn count_event(_: &AppContext, _: &SessionEventKind) {}

    #[derive(Clone, Default)]
    pub(crate) struct StoreMetrics;

    impl StoreMetrics {
        pub(crate) fn new(_: &'static str) -> Self {
            Self
        }
        pub(crate) fn started(&self) -> Option<std::time::Instant> {
            None
        }
        pub(crate) fn record(&self, _: StoreOp, _: Option<std::time::Instant>) {}
        #[cfg_attr(not(feature = "memory"), allow(dead_code))]
        pub(crate) fn ready<'a, T: Send + 'a>(
            &self,
            _: StoreOp,
            work: impl FnOnce() -> T,
        ) -> crate::backend::StoreFuture<'a, T> {
            crate::backend::StoreFuture::ready(work())
        }
        pub(crate) fn pending<'a, T: Send + 'a>(
            &self,
            _: StoreOp,
            work: impl std::future::Future<Output = T> + Send + 'a,
        ) -> crate::backend::StoreFuture<'a, T> {
            crate::backend::StoreFuture::new(work)
        }
    }

    impl LayerMetrics {
        pub(crate) fn new(_: &AppContext) -> Self {
            Self
        }
        pub(crate) fn request(&self, _: RequestOutcome) {}
        pub(crate) fn event(&self, _: &SessionEventKind) {}
        #[cfg(feature = "cache")]
        pub(crate) fn cache(&self, _: CacheResult) {}
        pub(crate) fn start(&self) -> Option<std::time::Instant> {
            None
        }
        pub(crate) fn start_sampled(&self, _: u32) -> Option<std::time::Instant> {
            None
        }
        pub(crate) fn authenticated(&self, _: Option<std::time::Instant>, _: Source) {}
    }

    #[cfg(feature = "cache")]
    pub(crate) struct Invalidations;

    #[cfg(feature = "cache")]
    impl Invalidations {
        pub(crate) fn new(_: &AppContext) -> Self {
            Self
        }
        pub(crate) fn count(&self) {}
    }

    #[cfg(feature = "cache")]
    pub(crate) struct UserCacheMetrics;

    #[cfg(feature = "cache")]
    impl UserCacheMetrics {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn lookup(&self, _: bool) {}
        pub(crate) fn invalidated(&self) {}
    }
}

pub(crate) use handles::StoreMetrics;
pub(crate) use handles::{count_event, LayerMetrics};
#[cfg(feature = "cache")]
pub(crate) use handles::{Invalidations, UserCacheMetrics};

impl std::fmt::Debug for LayerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerMetrics")
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreMetrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CredentialProblem, RevokedScope};

    #[test]
    fn every_event_kind_counts_under_its_own_name() {
        let handle = crate::SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA")
            .map(|id| id.handle())
            .expect("a valid id");
        let kinds = [
            SessionEventKind::Created,
            SessionEventKind::Rotated { from: handle },
            SessionEventKind::Extended { expires_at: 1 },
            SessionEventKind::LoggedOut,
            SessionEventKind::Revoked {
                scope: RevokedScope::Context,
                count: 1,
            },
            SessionEventKind::Expired,
            SessionEventKind::Evicted,
            SessionEventKind::Refused,
            SessionEventKind::UnknownCredential {
                reason: CredentialProblem::Malformed,
            },
            SessionEventKind::BackendError { backend: "x" },
        ];
        for kind in &kinds {
            assert_eq!(EVENTS[event_index(kind)], kind.as_str());
        }
        let outcomes: Vec<usize> = OUTCOMES.iter().map(|(o, _)| *o as usize).collect();
        assert_eq!(outcomes, (0..OUTCOMES.len()).collect::<Vec<_>>());
    }
}
