//! A test that cannot run here (a program it drives is not installed) says so instead of
//! passing silently. Under CI (`CI` set, and not `false` or `0`) a skip is a failure: CI
//! installs everything the suite needs (`.ci/run`). Elsewhere the test passes, and its name and
//! reason are appended to the file `TEST_SKIPS_FILE` names, which `scripts/test` reads back to
//! end its run with the list of what was skipped.
//!
//! Shared by the integration tests and the browser test (`tests/browser`, included there with
//! `#[path]`).

use std::io::Write;

/// Whether this run is CI's: `CI` set to anything but `false`, `0` or nothing.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Skips the calling test for `why` (what is missing and how to install it): panics under CI,
/// records the skip otherwise. The test is named after its thread, which the test harness
/// names after the test.
#[track_caller]
pub(crate) fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    if in_ci() {
        panic!("{test} cannot run: {why} (under CI a skipped test is a failure)");
    }
    eprintln!("SKIPPED {test}: {why}");
    if let Some(path) = std::env::var_os("TEST_SKIPS_FILE") {
        // One short write per line with O_APPEND: lines of concurrent tests never interleave.
        let line = format!("{test}: {why}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
}
