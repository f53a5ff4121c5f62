//! The browser test's binary: the example started as a process (`tests/examples/process.rs`,
//! shared with `tests/examples.rs`) and driven by a real browser (`browser.rs`).

#[path = "../examples/process.rs"]
mod process;
#[path = "../it/common/skip.rs"]
mod skip;

mod browser;

use process::{Features, Server};

/// The repository root: the crate whose examples `process` builds and whose `docs/` holds
/// the screenshots.
const EXAMPLES_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// All of the crate's features: what `scripts/test` builds the examples with for
/// `tests/examples.rs` too (`--all-features`), so the two test binaries share one build.
fn example_features() -> Features {
    Features::All
}
