//! `tower-app-sessions`: the operator's tool for the session migration (feature `cli`).
//!
//! It connects exactly as the apps do, through `Sessions::from_env` (`SESSION_ENV`,
//! `REDIS_URL`, `REDIS_CLUSTER`, `DATABASE_URL` / `DATABASE_IDENTITY_URL`,
//! `SESSION_MIGRATION_STRATEGY`, …), and works through the public operations of `Sessions`
//! and of the stores it wired. With `SESSION_ENV=development` and no database it works on
//! Redis alone and says what it skipped.
//!
//! Every command takes `--json` (one JSON object on stdout). Long commands show a progress
//! bar on a terminal and one line per step on stderr otherwise. Exit status: `0` done and
//! every check passed, `1` done but a check failed, a problem was found or something was
//! skipped (each named), `2` the command could not run (configuration, a backend down, an
//! unmigrated database, bad arguments).

mod capture;
mod commands;
mod connect;
mod output;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Operate the sessions of the tower-app-sessions apps: database migrations, the legacy-key
/// migration and its cleanup checklist, per-user sessions, retention, consistency checks.
#[derive(Parser, Debug)]
#[command(name = "tower-app-sessions", version)]
struct Cli {
    /// One JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// `REDIS_URL` lists the nodes of a Redis Cluster, comma-separated: the same as
    /// `REDIS_CLUSTER=true`.
    #[arg(long, global = true)]
    cluster: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sessions per context in Redis and PostgreSQL, legacy keys left, and the migration's
    /// cleanup checklist as pass/fail lines, each failure with what blocks it and the
    /// command that fixes it.
    Status,
    /// Apply the crate's PostgreSQL migrations (and install the notification triggers when
    /// SESSION_NOTIFIED_REVALIDATE_SECS asks for them): first what it will change, then it
    /// changes it. Nothing to do prints one line.
    Migrate(SchemaArgs),
    /// Copy (or, with --move, move) the legacy `session:<id>` keys to `session:web:<id>`.
    /// Resumable and safe beside live traffic: rerun it until nothing is left.
    #[command(after_long_help = LEGACY_COUNTS)]
    MigrateLegacy(MigrateArgs),
    /// A user's sessions, newest first.
    Sessions(UserArgs),
    /// End a user's sessions (in one context, or all of them).
    Revoke(RevokeArgs),
    /// PostgreSQL retention: delete old revoked and expired `sessions` rows, in batches, and
    /// say what was kept and why.
    Purge(PurgeArgs),
    /// Check a sample of Redis session keys (type, format, TTL, per-user index) and the
    /// PostgreSQL schema against the Prisma target; each problem with its fix.
    Doctor(DoctorArgs),
}

/// What the report of `migrate-legacy` counts (its `--help`).
const LEGACY_COUNTS: &str = "\
The report counts every legacy key scanned once: scanned = copied + moved + skipped + failed.
  copied   copied to session:web:<id>; the legacy key is kept (without --move)
  moved    in place under session:web:<id> (copied now or by an earlier run) and the legacy
           key deleted (--move)
  skipped  nothing to migrate: already under session:web:<id> (without --move), or expired,
           or gone during the run (expired records are deleted with --move)
  failed   not a session record (a value the apps cannot read, or a key of another Redis
           type): left as it is, or with --quarantine renamed to
           session-quarantine:<handle> (TTL kept), where `status` no longer counts it
Keys are named by the session's handle (the first 16 characters of base64url(SHA-256(id))),
never by the id. A dry run reads and checks every key exactly as the real run does.
Exit status 1 when a key that is not a session record is left in place.";

#[derive(Args, Debug)]
struct SchemaArgs {
    /// Say what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// Delete each legacy key once its copy is in place (default: copy only).
    #[arg(long = "move")]
    move_keys: bool,
    /// Keys per SCAN page and per batch of reads and copies (1 to 100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Read and check every key as the real run does, report what it would do; write
    /// nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rename legacy keys that hold no session record to `session-quarantine:<handle>`
    /// (TTL kept), so the cleanup checklist can pass.
    #[arg(long)]
    quarantine: bool,
}

#[derive(Args, Debug)]
struct UserArgs {
    /// The user: a UUID, or an email address (looked up in PostgreSQL).
    #[arg(long)]
    user: String,
    /// Only this context (`web`, `admin`, …); default every context.
    #[arg(long)]
    context: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["context", "all"])))]
struct RevokeArgs {
    /// The user: a UUID, or an email address (looked up in PostgreSQL).
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
    /// Delete revoked rows revoked longer ago than this (e.g. `30d`), once their session
    /// has expired too.
    #[arg(long, value_parser = humantime::parse_duration)]
    revoked_older_than: std::time::Duration,
    /// Delete unrevoked rows expired longer ago than this (e.g. `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    expired_older_than: std::time::Duration,
    /// Rows per `DELETE` (1 to 100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// How many Redis session keys to check (1 to 1000000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample: u32,
}

/// How a command ended.
pub enum Outcome {
    /// Done, every check passed.
    Clean,
    /// Done, but a check failed, a problem was found or something was skipped.
    Problems,
}

impl Outcome {
    /// `Clean` when `clean`, else `Problems`.
    pub fn of(clean: bool) -> Self {
        if clean {
            Outcome::Clean
        } else {
            Outcome::Problems
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let warnings = capture::install();
    let out = output::Output::new(cli.json, warnings);
    let result = match cli.command {
        Command::Status => commands::status::run(&out, cli.cluster).await,
        Command::Migrate(args) => commands::schema::run(&out, cli.cluster, args).await,
        Command::MigrateLegacy(args) => commands::legacy::run(&out, cli.cluster, args).await,
        Command::Sessions(args) => commands::users::sessions(&out, cli.cluster, args).await,
        Command::Revoke(args) => commands::users::revoke(&out, cli.cluster, args).await,
        Command::Purge(args) => commands::purge::run(&out, cli.cluster, args).await,
        Command::Doctor(args) => commands::doctor::run(&out, cli.cluster, args).await,
    };
    match result {
        Ok(Outcome::Clean) if out.warned() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            out.error(&error);
            ExitCode::from(2)
        }
    }
}
