//! `soak`: runs instances of the `multi_app` example on throwaway Redis and PostgreSQL
//! servers, drives clients against them while a nemesis injects faults, records every
//! request and fault, and checks the history (`check`). The report ends with the verdict
//! line `soak: N operations, F faults, V violations`; the exit status is 0 only without
//! violations.
//!
//! ```text
//! soak                 run (scripts/soak builds everything and runs this)
//! soak check HISTORY   check a history an earlier run wrote
//! ```
//!
//! The run reads `DURATION` (seconds, default 120), `SOAK_SEED` (default: from the clock;
//! printed), `SOAK_INSTANCES` (2), `SOAK_CLIENTS` (6), `SOAK_THINK_MS` (100, a client's mean
//! pause between requests), `SOAK_APP` (the `multi_app` binary, default
//! `target/debug/examples/multi_app`) and `SOAK_OUT` (where the history and the instances'
//! logs go, default `target/soak`). `SOAK_INSTANCE_ENV="VAR=value,VAR=value"` sets variables
//! on the instances over the soak's own while the checker keeps the documented bounds: a
//! looser configuration (say `SESSION_CACHE_TTL_SECS=30`) then shows up as violations.

mod check;
mod history;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

fn number(var: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{var}={v:?} is not a whole number")),
        _ => Ok(default),
    }
}

fn instance_env() -> anyhow::Result<Vec<(String, String)>> {
    let raw = std::env::var("SOAK_INSTANCE_ENV").unwrap_or_default();
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("SOAK_INSTANCE_ENV: {pair:?} is not VAR=value"))
        })
        .collect()
}

fn config() -> anyhow::Result<run::Config> {
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let instances = usize::try_from(number("SOAK_INSTANCES", 2)?)?;
    anyhow::ensure!(instances >= 2, "SOAK_INSTANCES must be at least 2");
    Ok(run::Config {
        duration: Duration::from_secs(number("DURATION", 120)?),
        seed: number("SOAK_SEED", clock_seed)?,
        instances,
        clients: usize::try_from(number("SOAK_CLIENTS", 6)?)?,
        think: Duration::from_millis(number("SOAK_THINK_MS", 100)?),
        app: std::env::var_os("SOAK_APP").map_or_else(
            || PathBuf::from("target/debug/examples/multi_app"),
            PathBuf::from,
        ),
        instance_env: instance_env()?,
        out: std::env::var_os("SOAK_OUT")
            .map_or_else(|| PathBuf::from("target/soak"), PathBuf::from),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clean = match args.first().map(String::as_str) {
        Some("check") => {
            let path = args.get(1).context("usage: soak check HISTORY")?;
            let events = history::read(&std::fs::read_to_string(path)?)?;
            let verdict = check::check(&events)?;
            println!("{}", verdict.report(&events));
            verdict.violations.is_empty()
        }
        None | Some("run") => {
            let config = config()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                tokio::select! {
                    clean = run::run(config) => clean,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                }
            })?
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: soak [run] | soak check HISTORY"),
    };
    std::process::exit(if clean { 0 } else { 1 });
}
