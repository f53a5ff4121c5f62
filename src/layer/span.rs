//! The request span: one `tracing` span per request that carries a credential; its name and
//! fields are documented in [`telemetry`](crate::telemetry#tracing).

use tracing::field::Empty;
use tracing::Span;

use crate::telemetry::RequestOutcome;
use crate::{AppContext, SessionId};

/// A span for a request of `context` whose outcome is not known yet.
pub(super) fn start(context: &AppContext) -> Span {
    tracing::info_span!(
        target: "tower_app_sessions",
        "session",
        context = context.as_str(),
        outcome = Empty,
        session = Empty,
    )
}

/// Writes what the request turned out to be; the handle is derived only when someone
/// listens.
pub(super) fn record(span: &Span, outcome: RequestOutcome, id: &SessionId) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome.as_str());
    span.record("session", id.handle().as_str());
}
