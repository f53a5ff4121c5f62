//! `tower-app-sessions`: the operator's tool for the session migration (feature `cli`).
//!
//! It reads the same environment as `Sessions::from_env` (`SESSION_ENV`, `REDIS_URL`,
//! `DATABASE_URL` / `DATABASE_IDENTITY_URL`, `SESSION_MIGRATION_STRATEGY`, …). With
//! `SESSION_ENV=development` and no database it works on Redis alone and says what it
//! skipped. `--cluster` reads `REDIS_URL` as a comma-separated list of Redis Cluster nodes.
//!
//! Every command takes `--json` (one JSON object on stdout). Long commands show a progress
//! bar on a terminal and plain lines on stderr otherwise. Exit status: `0` done and every
//! check passed, `1` done but a check failed or a problem was found, `2` the command could
//! not run (configuration, a backend down, bad arguments).

mod backends;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Operate the sessions of the tower-app-sessions apps: migration status and cleanup,
/// per-user sessions, retention, consistency checks.
#[derive(Parser, Debug)]
#[command(name = "tower-app-sessions", version)]
struct Cli {
    /// One JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// `REDIS_URL` lists the nodes of a Redis Cluster (comma-separated).
    #[arg(long, global = true)]
    cluster: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sessions per context in Redis and PostgreSQL, legacy keys left, and the migration's
    /// cleanup checklist as pass/fail lines.
    Status,
    /// Copy (or, with --move, move) the legacy `session:<id>` keys to `session:web:<id>`.
    /// Resumable and safe beside live traffic: rerun it until nothing is left.
    MigrateLegacy(MigrateArgs),
    /// A user's sessions, newest first.
    Sessions(UserArgs),
    /// End a user's sessions (in one context, or all of them).
    Revoke(RevokeArgs),
    /// PostgreSQL retention: delete old revoked and expired `sessions` rows, in batches.
    Purge(PurgeArgs),
    /// Check a sample of Redis session keys (format, TTL, per-user index) and the
    /// PostgreSQL schema against the Prisma target.
    Doctor(DoctorArgs),
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// Delete each legacy key once its copy is in place (default: copy only).
    #[arg(long = "move")]
    move_keys: bool,
    /// Keys per SCAN page and per batch of concurrent copies.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Count what would be migrated; write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct UserArgs {
    /// The user: a UUID, or an email (looked up in PostgreSQL).
    #[arg(long)]
    user: String,
    /// Only this context (`web`, `admin`, …); default every context.
    #[arg(long)]
    context: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["context", "all"])))]
struct RevokeArgs {
    /// The user: a UUID, or an email (looked up in PostgreSQL).
    #[arg(long)]
    user: String,
    /// End the sessions of this context only.
    #[arg(long)]
    context: Option<String>,
    /// End the sessions of every context.
    #[arg(long)]
    all: bool,
}

#[derive(Args, Debug)]
struct PurgeArgs {
    /// Delete revoked rows revoked longer ago than this (e.g. `30d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    revoked_older_than: std::time::Duration,
    /// Delete unrevoked rows expired longer ago than this (e.g. `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    expired_older_than: std::time::Duration,
    /// Rows per `DELETE`.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// How many Redis session keys to check.
    #[arg(long, default_value_t = 1000)]
    sample: usize,
}

/// How a command ended.
pub enum Outcome {
    /// Done, every check passed.
    Clean,
    /// Done, but a check failed or a problem was found.
    Problems,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match cli.command {
        Command::Status => commands::status(&out, cli.cluster).await,
        Command::MigrateLegacy(args) => commands::migrate(&out, cli.cluster, args).await,
        Command::Sessions(args) => commands::sessions(&out, cli.cluster, args).await,
        Command::Revoke(args) => commands::revoke(&out, cli.cluster, args).await,
        Command::Purge(args) => commands::purge(&out, cli.cluster, args).await,
        Command::Doctor(args) => commands::doctor(&out, cli.cluster, args).await,
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(error) => {
            out.error(&error);
            ExitCode::from(2)
        }
    }
}
