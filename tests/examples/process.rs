//! The examples as processes: built by cargo with the features this test run asks for, started
//! on a free port (`BIND_ADDR=127.0.0.1:0`), their address read from the `listening on` line.
//!
//! Shared by `tests/examples.rs` and the browser test (`tests/browser`, a package of its own),
//! each including this file with `#[path]`; the including crate root says how to build with
//! `EXAMPLES_ROOT` (the crate's directory) and `example_features()`.
//!
//! The binaries are never judged by their file time: an earlier `cargo run --example
//! multi_app` leaves one built with other features at the same path. Every test run asks cargo
//! to build them with this run's features instead, and cargo's fingerprints decide whether
//! anything is to be done (nothing, usually: a fraction of a second).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{example_features, EXAMPLES_ROOT};

/// The examples the tests start, built together.
pub(crate) const EXAMPLES: [&str; 3] = ["multi_app", "hyper_service", "minimal"];
/// How long an example may take to print its address, and its instructions.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The crate features the examples are built with.
#[allow(dead_code)] // each includer builds one way
pub(crate) enum Features {
    /// `--all-features`.
    All,
    /// `--no-default-features --features <these>`: exactly the features of the including
    /// test build, so the examples behave as the tests expect.
    Exactly(Vec<&'static str>),
}

/// `target/<profile>`, from this test's own path `target/<profile>/deps/<test>-…`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

pub(crate) fn binary(name: &str) -> PathBuf {
    profile_dir()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The `cargo build` of the examples for this test run: same target directory and profile
/// as this test, the features of [`example_features`].
fn build_command() -> Command {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // What cargo set for this test process only: build scripts that read one of them (ring's
    // reads CARGO_MANIFEST_DIR) would see a change and rebuild half the dependencies.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd.current_dir(EXAMPLES_ROOT)
        .args(["build", "--quiet", "--package", "tower-app-sessions"])
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--profile", profile]);
    for name in EXAMPLES {
        cmd.args(["--example", name]);
    }
    match example_features() {
        Features::All => {
            cmd.arg("--all-features");
        }
        Features::Exactly(features) => {
            cmd.arg("--no-default-features");
            if !features.is_empty() {
                cmd.args(["--features", &features.join(",")]);
            }
        }
    }
    cmd
}

/// Builds the examples once per test binary; cargo decides whether anything changed.
pub(crate) fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let mut cmd = build_command();
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if !status.success() {
            return Err(format!("{cmd:?} failed: {status}"));
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    for name in EXAMPLES {
        assert!(
            binary(name).exists(),
            "{} missing after the build",
            binary(name).display()
        );
    }
}

/// A running example, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Everything the example printed on stdout after its first line.
    output: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn start(name: &str) -> Server {
        Self::start_with(name, &[])
    }

    /// The example `name` with `env` on top of a clean environment for it: no `SESSION_ENV`,
    /// no backend URLs (the test's own `REDIS_URL` and `DATABASE_URL` are passed only when a
    /// test says so).
    pub(crate) fn start_with(name: &str, env: &[(&str, &str)]) -> Server {
        ensure_built();
        let mut child = Command::new(binary(name))
            .env("BIND_ADDR", "127.0.0.1:0")
            .env_remove("SESSION_ENV")
            .env_remove("SESSION_MIGRATION_STRATEGY")
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary(name).display()));

        // stderr is collected for the failure message; stdout is read to its end so that the
        // example never writes to a closed pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    *stderr.lock().unwrap() = String::from_utf8_lossy(&buf).into_owned();
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for line in lines.map_while(Result::ok) {
                let mut collected = collected.lock().unwrap();
                collected.push_str(&line);
                collected.push('\n');
            }
        });

        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{name} did not print its address ({other:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: unexpected first line {first:?}"));
        Server {
            child,
            addr,
            output,
        }
    }

    /// What the example printed after its first line, waiting (up to the timeout) for the
    /// instructions to be complete.
    #[allow(dead_code)] // not every includer reads it
    pub(crate) fn output(&self) -> String {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let output = self.output.lock().unwrap().clone();
            if output.contains("sessions:") || std::time::Instant::now() > deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
