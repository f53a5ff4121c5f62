//! What the library logs at WARN or above while a command runs (a key of the wrong type
//! skipped, a record that does not parse, …): collected, so the command can show each one
//! and its exit status can say that something was skipped. The library logs such things
//! instead of failing, which is right for a server; an operator must see them.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// At most this many warnings are kept (all are counted): one per skipped key could be
/// millions.
const KEPT: usize = 1000;

/// The warnings collected so far.
#[derive(Clone, Default)]
pub(crate) struct Warnings {
    inner: Arc<Mutex<Collected>>,
}

#[derive(Default)]
struct Collected {
    kept: Vec<String>,
    count: usize,
}

impl Warnings {
    /// The warnings kept, and how many there were in all.
    pub(crate) fn take(&self) -> (Vec<String>, usize) {
        let mut collected = self.lock();
        (std::mem::take(&mut collected.kept), collected.count)
    }

    /// How many there were.
    pub(crate) fn count(&self) -> usize {
        self.lock().count
    }

    /// Forgets those collected so far (what connecting logged, when the command itself
    /// deals with it).
    pub(crate) fn discard(&self) {
        *self.lock() = Collected::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A panic while pushing a string leaves nothing half-written worth refusing.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Collects the library's warnings from now on (the process's only subscriber).
pub(crate) fn install() -> Warnings {
    let warnings = Warnings::default();
    let subscriber = Registry::default().with(Collector {
        warnings: warnings.clone(),
    });
    // Only fails if a subscriber is set already, which nothing here does.
    let _ = tracing::subscriber::set_global_default(subscriber);
    warnings
}

struct Collector {
    warnings: Warnings,
}

impl<S: Subscriber> Layer<S> for Collector {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || !meta.target().starts_with("tower_app_sessions") {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let mut collected = self.warnings.lock();
        collected.count += 1;
        if collected.kept.len() < KEPT {
            collected.kept.push(line.finish());
        }
    }
}

/// `message (field=value, …)`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else {
            format!("{} ({})", self.message, self.fields)
        }
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, &format!("{value:?}"));
    }
}

impl Line {
    fn add(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push_str(", ");
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}
