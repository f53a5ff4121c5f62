//! The commands. Each prints its answer (text or `--json`) and says whether every check
//! passed; an `Err` is a command that could not run (exit status 2), said in one sentence
//! that names what to fix.

pub(crate) mod doctor;
pub(crate) mod legacy;
pub(crate) mod purge;
pub(crate) mod schema;
pub(crate) mod status;
pub(crate) mod users;

use tower_app_sessions::{AppContext, SessionHandle, StoreError};

pub(crate) type Result<T> = std::result::Result<T, String>;

/// A backend error, prefixed with what failed.
pub(crate) fn store_error(what: &str) -> impl FnOnce(StoreError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// `--context` parsed, with the value quoted (and cut) in the error.
pub(crate) fn context_of(name: Option<&str>) -> Result<Option<AppContext>> {
    name.map(|n| {
        n.parse::<AppContext>()
            .map_err(|e| format!("--context {}: {e}", quoted(n)))
    })
    .transpose()
}

/// A value from the command line as an error shows it: quoted, escaped, at most 64
/// characters (the terminal never receives its control characters).
pub(crate) fn quoted(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// `n thing` or `n things`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Up to `max` handles, comma-separated, "…" when there are more.
pub(crate) fn handles<'a>(all: impl IntoIterator<Item = &'a SessionHandle>, max: usize) -> String {
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    for handle in all {
        if shown.len() == max {
            more = true;
            break;
        }
        shown.push(handle.to_string());
    }
    let mut list = shown.join(", ");
    if more {
        list.push_str(", …");
    }
    list
}

/// A time in milliseconds since the epoch, as `2025-01-31T12:00:00Z`.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}
