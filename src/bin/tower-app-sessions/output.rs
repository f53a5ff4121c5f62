//! Text or JSON on stdout, progress on stderr (a bar on a terminal, plain lines otherwise).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `value` as JSON (with `--json`), or the `text` lines.
    pub fn emit(&self, value: &serde_json::Value, text: &[String]) {
        if self.json {
            println!("{value}");
        } else {
            for line in text {
                println!("{line}");
            }
        }
    }

    pub fn error(&self, error: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "error": error }));
        }
        eprintln!("error: {error}");
    }

    /// Progress of `what` towards `total` (`None`: unknown).
    pub fn progress(&self, what: &'static str, total: Option<u64>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
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
        Progress { bar, what, total }
    }
}

/// A progress bar, or plain lines when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: Option<u64>,
}

impl Progress {
    pub fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => match self.total {
                Some(total) => eprintln!("{}: {done} of {total}", self.what),
                None => eprintln!("{}: {done}", self.what),
            },
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
