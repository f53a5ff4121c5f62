//! Text or JSON on stdout, progress and warnings on stderr (a bar on a terminal, one line
//! per step otherwise). Nothing here panics on a closed pipe: `tower-app-sessions sessions
//! … | head -1` stops printing when `head` has read its line, and the command's exit status
//! is still the command's.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::capture::Warnings;

pub(crate) struct Output {
    json: bool,
    warnings: Warnings,
    /// stdout was closed by its reader: print nothing more there.
    closed: AtomicBool,
}

impl Output {
    pub(crate) fn new(json: bool, warnings: Warnings) -> Self {
        Self {
            json,
            warnings,
            closed: AtomicBool::new(false),
        }
    }

    /// How many warnings the library logged (each is shown by [`emit`](Self::emit)).
    pub(crate) fn warned(&self) -> usize {
        self.warnings.count()
    }

    /// Forgets what the library logged so far (see [`Warnings::discard`]).
    pub(crate) fn discard_warnings(&self) {
        self.warnings.discard();
    }

    /// Prints `value` as JSON (with `--json`; the library's warnings under `"warnings"`), or
    /// the `text` lines, then each warning on stderr as `skipped: …`.
    pub(crate) fn emit(&self, value: Value, text: &[String]) {
        // Taken for showing; still counted, for the exit status.
        let (warnings, count) = self.warnings.take();
        if self.json {
            let mut value = value;
            if let Value::Object(map) = &mut value {
                if count > 0 {
                    map.insert("warnings".into(), warnings.clone().into());
                    map.insert("warning_count".into(), count.into());
                }
            }
            self.stdout(&value.to_string());
        } else {
            for line in text {
                self.stdout(line);
            }
        }
        for warning in &warnings {
            stderr(&format!("skipped: {warning}"));
        }
        if count > warnings.len() {
            stderr(&format!(
                "skipped: and {} more (only the first {} are shown)",
                count - warnings.len(),
                warnings.len()
            ));
        }
    }

    pub(crate) fn error(&self, error: &str) {
        if self.json {
            self.stdout(&serde_json::json!({ "error": error }).to_string());
        }
        stderr(&format!("error: {error}"));
    }

    /// One line on stdout, unless its reader has gone.
    fn stdout(&self, line: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // EPIPE (the reader closed it) or any other write error: nobody reads this any
            // more; the command finishes and exits with its own status.
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    /// Progress of `what` towards `total` (`None`: unknown).
    pub(crate) fn progress(&self, what: &'static str, total: Option<u64>) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = if total.is_some() {
                "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})"
            } else {
                "{msg} {spinner} {pos} ({per_sec})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            Some(bar)
        } else {
            None
        };
        Progress {
            bar,
            what,
            total,
            shown: AtomicU64::new(u64::MAX),
        }
    }
}

/// One line on stderr; a closed stderr is ignored (there is nowhere left to say so).
pub(crate) fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A progress bar, or one line per step when stderr is not a terminal.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: Option<u64>,
    /// The last position printed as a line (a step that changed nothing prints nothing).
    shown: AtomicU64,
}

impl Progress {
    pub(crate) fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if self.shown.swap(done, Ordering::Relaxed) == done {
                    return;
                }
                match self.total {
                    Some(total) => stderr(&format!("{}: {done} of {total}", self.what)),
                    None => stderr(&format!("{}: {done}", self.what)),
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
