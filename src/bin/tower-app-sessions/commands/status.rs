//! `status`: `Sessions::stats` per context, and the migration's cleanup checklist, each
//! failing check with what blocks it and the command that fixes it.

use serde_json::json;
use tower_app_sessions::config::PendingMigration;
use tower_app_sessions::store::redis::{LegacyMigration, MigrationMode, MigrationReport};
use tower_app_sessions::AppContext;

use super::{count, handles, store_error, Result};
use crate::connect::connect;
use crate::output::Output;
use crate::Outcome;

/// One line of the cleanup checklist.
struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

pub(crate) async fn run(out: &Output, cluster: bool) -> Result<Outcome> {
    let c = connect(cluster).await?;
    c.require_schema().await?;
    let sessions = &c.sessions;
    let stats = sessions.stats().await.map_err(store_error("stats"))?;
    let legacy = stats.redis.as_ref().map_or(0, |r| r.legacy_keys);
    // What blocks the first check: the dry run reads every legacy key as the migration does.
    let preview = match (legacy, sessions.redis_store()) {
        (0, _) | (_, None) => None,
        (_, Some(redis)) => Some(
            redis
                .migrate_legacy_with(
                    &LegacyMigration::new(MigrationMode::Move).dry_run(true),
                    &|_| {},
                )
                .await
                .map_err(store_error("REDIS_URL"))?,
        ),
    };
    let mut checks = vec![legacy_check(legacy, preview.as_ref())];
    let mut skipped = Vec::new();
    match sessions.postgres_store() {
        Some(pg) => {
            let problems = pg
                .check_schema()
                .await
                .map_err(store_error("DATABASE_URL"))?;
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            checks.push(Check {
                name: "the sessions table matches the Prisma target (every row has an application_context)",
                pass: list.is_empty(),
                detail: if list.is_empty() {
                    "it does".to_owned()
                } else {
                    format!("{}; `tower-app-sessions doctor` says how to fix it", list.join("; "))
                },
            });
        }
        None => skipped.push(format!(
            "PostgreSQL: no DATABASE_URL (SESSION_ENV={}): its sessions and the schema check",
            sessions.environment()
        )),
    }
    if sessions.notifications().is_some() {
        let pending = sessions
            .pending_migrations()
            .await
            .map_err(|e| e.to_string())?;
        let missing = pending.contains(&PendingMigration::NotificationTriggers);
        checks.push(Check {
            name: "the notification triggers are installed",
            pass: !missing,
            detail: if missing {
                "SESSION_NOTIFIED_REVALIDATE_SECS is set, but they are not: run \
                 `tower-app-sessions migrate`"
                    .to_owned()
            } else {
                "they are".to_owned()
            },
        });
    }
    let fallback: Vec<&str> = sessions
        .legacy_contexts()
        .iter()
        .map(AppContext::as_str)
        .collect();
    checks.push(Check {
        name: "the legacy fallback is off",
        pass: fallback.is_empty(),
        detail: if fallback.is_empty() {
            format!("SESSION_MIGRATION_STRATEGY={}", sessions.strategy())
        } else {
            format!(
                "on for {} (SESSION_MIGRATION_STRATEGY={}): set SESSION_MIGRATION_STRATEGY=production-only once no legacy key is left",
                fallback.join(", "),
                sessions.strategy()
            )
        },
    });
    let clean = checks.iter().all(|check| check.pass);
    let mut text = Vec::new();
    for (context, figures) in &stats.contexts {
        let redis = figures
            .redis_sessions
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        let pg = figures.postgres_sessions.map_or_else(
            || "-".to_owned(),
            |r| {
                format!(
                    "{} live, {} revoked, {} expired",
                    r.live, r.revoked, r.expired
                )
            },
        );
        text.push(format!("{context}: redis {redis}; postgres {pg}"));
    }
    text.push(format!("legacy keys: {legacy}"));
    text.push("cleanup checklist:".to_owned());
    for check in &checks {
        let mark = if check.pass { "PASS" } else { "FAIL" };
        text.push(format!("  [{mark}] {} ({})", check.name, check.detail));
    }
    for skip in &skipped {
        text.push(format!("skipped: {skip}"));
    }
    let value = json!({
        "contexts": stats.contexts,
        "legacy_keys": legacy,
        "legacy": preview.as_ref().map(|p| json!({
            "to_migrate": p.moved,
            "not_records": p.failed,
            "expired": p.expired,
            "failures": p.failures,
        })),
        "redis": stats.redis,
        "postgres": stats.postgres,
        "checks": checks.iter().map(|c| json!({"check": c.name, "pass": c.pass, "detail": c.detail})).collect::<Vec<_>>(),
        "skipped": skipped,
        "clean": clean,
    });
    out.emit(value, &text);
    Ok(Outcome::of(clean))
}

/// "No legacy key left", with what blocks it: records to migrate, keys that are not
/// records (by handle), expired ones.
fn legacy_check(legacy: u64, preview: Option<&MigrationReport>) -> Check {
    let name = "no legacy session:<id> keys left";
    let Some(p) = preview.filter(|_| legacy > 0) else {
        return Check {
            name,
            pass: true,
            detail: "none left".to_owned(),
        };
    };
    let mut blockers = Vec::new();
    if p.moved > 0 {
        blockers.push(format!(
            "{} to migrate: run `tower-app-sessions migrate-legacy --move`",
            count(p.moved, "session record", "session records")
        ));
    }
    if p.failed > 0 {
        blockers.push(format!(
            "{} (session {}): run `tower-app-sessions migrate-legacy --move --quarantine`",
            count(
                p.failed,
                "key that is not a session record",
                "keys that are not session records"
            ),
            handles(p.failures.iter().map(|f| &f.session), 5),
        ));
    }
    if p.expired > 0 {
        blockers.push(format!(
            "{}: `migrate-legacy --move` deletes them, or their TTL ends them",
            count(p.expired, "expired record", "expired records")
        ));
    }
    Check {
        name,
        pass: false,
        detail: format!("{legacy} left: {}", blockers.join("; ")),
    }
}
