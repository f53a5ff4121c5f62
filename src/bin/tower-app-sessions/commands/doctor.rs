//! `doctor`: a sample of Redis session keys (`RedisStore::check_sessions`) and the
//! PostgreSQL schema (`Sessions::pending_migrations`, `PgSessionStore::check_schema`), in
//! plain sentences: for each kind of problem, what it means and the fix, with the sessions
//! it concerns by handle (`--json` keeps one entry per problem).

use std::collections::BTreeSet;

use serde_json::json;
use tower_app_sessions::config::PendingMigration;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::postgres::SchemaProblem;
use tower_app_sessions::store::redis::{KeyCheck, KeyProblem};
use tower_app_sessions::SessionHandle;
use uuid::Uuid;

use super::{handles, store_error, Result};
use crate::connect::connect;
use crate::output::Output;
use crate::{DoctorArgs, Outcome};

/// Sessions listed per sentence, at most.
const LISTED: usize = 10;

/// The kinds of key problems, in the order they are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    LegacyNotARecord,
    WrongType,
    Unparseable,
    NoTtl,
    TtlMismatch,
    NotIndexed,
    IndexWrongType,
}

fn kind(check: &KeyCheck) -> Kind {
    let legacy = check.context.is_none();
    match &check.problem {
        KeyProblem::Unparseable | KeyProblem::WrongType { .. } if legacy => Kind::LegacyNotARecord,
        KeyProblem::WrongType { .. } => Kind::WrongType,
        KeyProblem::NoTtl => Kind::NoTtl,
        KeyProblem::TtlMismatch { .. } => Kind::TtlMismatch,
        KeyProblem::NotIndexed => Kind::NotIndexed,
        KeyProblem::IndexWrongType { .. } => Kind::IndexWrongType,
        _ => Kind::Unparseable,
    }
}

/// What `n` keys of `kind` mean, and the fix (`users`: the users they belong to).
fn sentence(kind: Kind, n: usize, sessions: &str, users: &[Uuid]) -> String {
    // "1 session key (session X) holds …", "3 session keys (session X, Y, Z) hold …".
    let (keys, s) = if n == 1 { ("key", "s") } else { ("keys", "") };
    let (they, them) = if n == 1 {
        ("it", "it")
    } else {
        ("they", "them")
    };
    let (what, fix) = match kind {
        Kind::LegacyNotARecord => (
            format!("{n} legacy session:<id> {keys} (session {sessions}) hold{s} no session record the apps can read, and the cleanup checklist counts {}", if n == 1 { "it" } else { "them" }),
            format!("run `tower-app-sessions migrate-legacy --quarantine`, which renames {them} to session-quarantine:<handle> (TTL kept)"),
        ),
        Kind::WrongType => (
            format!("{n} session {keys} (session {sessions}) hold{s} another Redis type than a string (a list, a hash, …), so no session: the apps treat it as signed out"),
            format!("find what writes {them} (neither this crate nor the TypeScript apps do); `redis-cli --scan --pattern 'session:*'` lists the keys and `TYPE <key>` tells which {they} {}, then `DEL` {them}", if n == 1 { "is" } else { "are" }),
        ),
        Kind::Unparseable => (
            format!("{n} session {keys} (session {sessions}) hold{s} a value that is not a session record: the apps treat it as signed out"),
            format!("nothing breaks, and Redis drops {them} when {} TTL ends; find what writes {them} if more come", if n == 1 { "its" } else { "their" }),
        ),
        Kind::NoTtl => (
            format!("{n} session {keys} (session {sessions}) never expire{s} (no TTL): the session still ends at its expires_at, but Redis keeps the key"),
            format!("legacy keys: `tower-app-sessions migrate-legacy --move` (the copy gets a TTL); others: `tower-app-sessions revoke --user <uuid> --all` (users: {}), or EXPIRE {them} by hand", users_list(users)),
        ),
        Kind::TtlMismatch => (
            format!("{n} session {keys} (session {sessions}) ha{} a TTL more than 2 s away from the record's expires_at: Redis ends the session early, or keeps the key late", if n == 1 { "s" } else { "ve" }),
            format!("check what writes {them}: the TypeScript apps and this crate set both together"),
        ),
        Kind::NotIndexed => (
            format!("{n} session {keys} (session {sessions}) {} not in the user's index user-sessions:{{<uuid>}}, so `sessions` and `revoke` miss {} (the TypeScript apps do not index what they write)", if n == 1 { "is" } else { "are" }, if n == 1 { "it" } else { "them" }),
            format!("{they} join{s} the index the next time this crate extends {them}; to end {them} now, end {them} where {they} {} created (users: {})", if n == 1 { "was" } else { "were" }, users_list(users)),
        ),
        Kind::IndexWrongType => (
            format!("the session index of {} holds another Redis type than a sorted set: listing and revoke-all see none of the user's sessions", users_list(users)),
            "the user's next sign-in replaces it; or now: `redis-cli DEL 'user-sessions:{<uuid>}'`".to_owned(),
        ),
    };
    format!("{what}. Fix: {fix}.")
}

fn users_list(users: &[Uuid]) -> String {
    let shown: Vec<String> = users.iter().take(LISTED).map(Uuid::to_string).collect();
    let more = if users.len() > LISTED { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// What one schema problem means and its fix.
fn schema_sentence(problem: &SchemaProblem) -> String {
    let fix = match problem {
        SchemaProblem::MissingTable | SchemaProblem::MissingColumn { .. } => {
            "run `tower-app-sessions migrate`"
        }
        SchemaProblem::Nullable { .. } => {
            "a row may have no value there; set the column NOT NULL as the TypeScript apps' Prisma schema does (`prisma migrate` shows the drift)"
        }
        _ => "Prisma sees drift: align the column with the TypeScript apps' Prisma schema (`prisma migrate diff` shows the change)",
    };
    format!("{problem}. Fix: {fix}.")
}

pub(crate) async fn run(out: &Output, cluster: bool, args: DoctorArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let redis = c
        .sessions
        .redis_store()
        .ok_or("no Redis store to check (REDIS_URL)")?;
    let sample = redis
        .check_sessions(usize::try_from(args.sample).unwrap_or(usize::MAX), now_ms())
        .await
        .map_err(store_error("REDIS_URL"))?;
    let mut text = vec![format!(
        "redis: {} session keys checked, {}",
        sample.checked,
        match sample.problems.len() {
            0 => "no problem".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        }
    )];
    let kinds: BTreeSet<Kind> = sample.problems.iter().map(kind).collect();
    for k in kinds {
        let of_kind: Vec<&KeyCheck> = sample.problems.iter().filter(|p| kind(p) == k).collect();
        let sessions: Vec<&SessionHandle> = of_kind.iter().map(|p| &p.session).collect();
        let mut users: Vec<Uuid> = of_kind.iter().filter_map(|p| p.user).collect();
        users.sort_unstable();
        users.dedup();
        text.push(format!(
            "  {}",
            sentence(k, of_kind.len(), &handles(sessions, LISTED), &users)
        ));
    }
    let mut schema: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    match c.sessions.postgres_store() {
        Some(pg) => {
            let pending = c
                .sessions
                .pending_migrations()
                .await
                .map_err(|e| e.to_string())?;
            let unapplied = pending
                .iter()
                .filter(|p| {
                    matches!(
                        p,
                        PendingMigration::Schema {
                            database: "identity",
                            ..
                        }
                    )
                })
                .count();
            if unapplied > 0 {
                schema.push(format!(
                    "the identity database is not migrated ({unapplied} migration{} pending). Fix: run `tower-app-sessions migrate`.",
                    if unapplied == 1 { "" } else { "s" }
                ));
            } else {
                let problems = pg
                    .check_schema()
                    .await
                    .map_err(store_error("DATABASE_URL"))?;
                schema.extend(problems.iter().map(schema_sentence));
            }
            if pending.contains(&PendingMigration::NotificationTriggers) {
                schema.push("the notification triggers are not installed although SESSION_NOTIFIED_REVALIDATE_SECS is set: the apps keep their short revalidation bound. Fix: run `tower-app-sessions migrate`.".to_owned());
            }
            text.push(if schema.is_empty() {
                "postgres: the sessions table matches the Prisma target".to_owned()
            } else {
                format!(
                    "postgres: {}",
                    match schema.len() {
                        1 => "1 problem".to_owned(),
                        n => format!("{n} problems"),
                    }
                )
            });
            text.extend(schema.iter().map(|s| format!("  {s}")));
        }
        None => {
            skipped.push("PostgreSQL schema: no DATABASE_URL".to_owned());
            text.push("skipped: PostgreSQL schema (no DATABASE_URL)".to_owned());
        }
    }
    let clean = sample.problems.is_empty() && schema.is_empty();
    out.emit(
        json!({ "redis": sample, "schema": schema, "skipped": skipped, "clean": clean }),
        &text,
    );
    Ok(Outcome::of(clean))
}
