//! The commands. Each prints its answer (text or `--json`) and says whether every check
//! passed; an `Err` is a command that could not run (exit status 2).

use serde_json::{json, Value};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::stats::SessionStats;
use tower_app_sessions::store::postgres::PurgeReport;
use tower_app_sessions::store::redis::{MigrationMode, MigrationReport};
use tower_app_sessions::{AppContext, Scope, SessionStore, UserRepository};
use uuid::Uuid;

use crate::backends::{connect, Connected};
use crate::output::Output;
use crate::{DoctorArgs, MigrateArgs, Outcome, PurgeArgs, RevokeArgs, UserArgs};

type Result<T> = std::result::Result<T, String>;

fn store_error(what: &str) -> impl FnOnce(tower_app_sessions::StoreError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

fn outcome(clean: bool) -> Outcome {
    if clean {
        Outcome::Clean
    } else {
        Outcome::Problems
    }
}

/// One line of the cleanup checklist.
struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

pub async fn status(out: &Output, cluster: bool) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let now = now_ms();
    let mut stats = stats_of(&c.redis, now).await?;
    let mut checks = Vec::new();
    let mut skipped = Vec::new();
    let legacy = stats.redis.as_ref().map_or(0, |r| r.legacy_keys);
    checks.push(Check {
        name: "no legacy session:<id> keys left",
        pass: legacy == 0,
        detail: format!("{legacy} left"),
    });
    match &c.postgres {
        Some((pool, pg, _)) => {
            stats = stats.merge(stats_of(pg, now).await?);
            let without: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
                "SELECT count(*) FROM sessions WHERE application_context IS NULL",
            )
            .fetch_one(pool)
            .await;
            checks.push(match without {
                Ok(n) => Check {
                    name: "every sessions row has an application_context",
                    pass: n == 0,
                    detail: format!("{n} without"),
                },
                Err(error) => Check {
                    name: "every sessions row has an application_context",
                    pass: false,
                    detail: format!("cannot read sessions.application_context: {error}"),
                },
            });
        }
        None => skipped.push(format!(
            "PostgreSQL: no DATABASE_URL (SESSION_ENV={}): its sessions and the \
             application_context check",
            c.plan.environment
        )),
    }
    let fallback: Vec<&str> = c
        .plan
        .legacy_contexts
        .iter()
        .map(AppContext::as_str)
        .collect();
    checks.push(Check {
        name: "the legacy fallback is off",
        pass: fallback.is_empty(),
        detail: if fallback.is_empty() {
            format!("SESSION_MIGRATION_STRATEGY={}", c.plan.strategy)
        } else {
            format!(
                "on for {} (SESSION_MIGRATION_STRATEGY={})",
                fallback.join(", "),
                c.plan.strategy
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
        "redis": stats.redis,
        "postgres": stats.postgres,
        "checks": checks.iter().map(|c| json!({"check": c.name, "pass": c.pass, "detail": c.detail})).collect::<Vec<_>>(),
        "skipped": skipped,
        "clean": clean,
    });
    out.emit(&value, &text);
    Ok(outcome(clean))
}

async fn stats_of(store: &dyn SessionStore, now: i64) -> Result<SessionStats> {
    match store.capabilities().stats {
        Some(stats) => stats.stats(now).await.map_err(store_error("stats")),
        None => Ok(SessionStats::default()),
    }
}

pub async fn migrate(out: &Output, cluster: bool, args: MigrateArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let total = c
        .redis
        .count_legacy_sessions()
        .await
        .map_err(store_error("REDIS_URL"))?;
    if args.dry_run {
        let text = vec![format!(
            "dry run: {total} legacy keys would be {}",
            if args.move_keys { "moved" } else { "copied" }
        )];
        out.emit(&json!({ "dry_run": true, "legacy_keys": total }), &text);
        return Ok(Outcome::Clean);
    }
    let mode = if args.move_keys {
        MigrationMode::Move
    } else {
        MigrationMode::Copy
    };
    let progress = out.progress("migrate-legacy", Some(total));
    let started = std::time::Instant::now();
    let report = c
        .redis
        .migrate_legacy_with(mode, args.batch, &|r: &MigrationReport| {
            progress.set(r.scanned)
        })
        .await
        .map_err(store_error("REDIS_URL"))?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let skipped = report.already_present + report.expired;
    let rate = if seconds > 0.0 {
        report.scanned as f64 / seconds
    } else {
        0.0
    };
    let value = json!({
        "scanned": report.scanned,
        "copied": report.copied,
        "moved": report.deleted,
        "skipped": skipped,
        "already_present": report.already_present,
        "expired": report.expired,
        "failed": report.invalid,
        "seconds": seconds,
        "keys_per_second": rate.round(),
    });
    let text = vec![
        format!(
            "scanned {}: copied {}, moved {}, skipped {} ({} already there, {} expired), failed {} (not session records, left as they were)",
            report.scanned, report.copied, report.deleted, skipped, report.already_present, report.expired, report.invalid
        ),
        format!("{seconds:.2} s, {rate:.0} keys/s"),
    ];
    out.emit(&value, &text);
    Ok(outcome(report.invalid == 0))
}

/// The user named by `--user`: a UUID as given, an email through PostgreSQL's users.
async fn user_id(c: &Connected, user: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(user) {
        return Ok(id);
    }
    let Some((_, _, users)) = &c.postgres else {
        return Err("looking a user up by email needs DATABASE_URL; give the user's UUID".into());
    };
    match users.find_by_email(user).await {
        Ok(Some(found)) => Ok(found.id),
        Ok(None) => Err("no user with that email".into()),
        Err(error) => Err(format!("users: {error}")),
    }
}

fn context_of(name: &Option<String>) -> Result<Option<AppContext>> {
    name.as_deref()
        .map(|n| {
            n.parse::<AppContext>()
                .map_err(|e| format!("--context: {e}"))
        })
        .transpose()
}

fn scope(context: &Option<AppContext>) -> Scope<'_> {
    context.as_ref().map_or(Scope::AllContexts, Scope::Context)
}

pub async fn sessions(out: &Output, cluster: bool, args: UserArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let user = user_id(&c, &args.user).await?;
    let context = context_of(&args.context)?;
    let listed = c
        .sessions()
        .await?
        .list_user(&user, scope(&context))
        .await
        .map_err(store_error("sessions"))?;
    let mut text = vec![format!("{} sessions of {user}", listed.len())];
    for s in &listed {
        text.push(format!(
            "  {} {} created {} last seen {} ip {} agent {}",
            s.handle,
            s.context,
            time(s.created_at),
            time(s.last_seen),
            s.ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("-"),
        ));
    }
    out.emit(&json!({ "user": user, "sessions": listed }), &text);
    Ok(Outcome::Clean)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

pub async fn revoke(out: &Output, cluster: bool, args: RevokeArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let user = user_id(&c, &args.user).await?;
    let context = if args.all {
        None
    } else {
        context_of(&args.context)?
    };
    let ended = c
        .sessions()
        .await?
        .revoke_user(&user, scope(&context))
        .await
        .map_err(store_error("sessions"))?;
    let scope = context.as_ref().map_or("every context", AppContext::as_str);
    let text = vec![format!("ended {ended} sessions of {user} ({scope})")];
    out.emit(
        &json!({ "user": user, "ended": ended, "scope": scope }),
        &text,
    );
    Ok(Outcome::Clean)
}

pub async fn purge(out: &Output, cluster: bool, args: PurgeArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let Some((_, pg, _)) = &c.postgres else {
        return Err("purge works on PostgreSQL: set DATABASE_URL".into());
    };
    let now = now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let progress = out.progress("purge", None);
    let report = pg
        .purge(
            now.saturating_sub(ms(args.revoked_older_than)),
            now.saturating_sub(ms(args.expired_older_than)),
            args.batch,
            &|r: &PurgeReport| progress.set(r.revoked + r.expired),
        )
        .await
        .map_err(store_error("DATABASE_URL"))?;
    progress.finish();
    let text = vec![format!(
        "removed {} revoked rows (revoked over {} ago) and {} expired rows (expired over {} ago)",
        report.revoked,
        humantime::format_duration(args.revoked_older_than),
        report.expired,
        humantime::format_duration(args.expired_older_than),
    )];
    out.emit(
        &json!({ "revoked": report.revoked, "expired": report.expired }),
        &text,
    );
    Ok(Outcome::Clean)
}

pub async fn doctor(out: &Output, cluster: bool, args: DoctorArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let sample = c
        .redis
        .check_sessions(args.sample, now_ms())
        .await
        .map_err(store_error("REDIS_URL"))?;
    let mut text = vec![format!(
        "redis: {} session keys checked, {} problems",
        sample.checked,
        sample.problems.len()
    )];
    for p in &sample.problems {
        let context = p.context.as_ref().map_or("legacy", AppContext::as_str);
        let problem = serde_json::to_value(&p.problem).unwrap_or(Value::Null);
        text.push(format!("  session {} ({context}): {problem}", p.session));
    }
    let mut schema = Vec::new();
    let mut skipped = Vec::new();
    match &c.postgres {
        Some((_, pg, _)) => {
            schema = pg
                .check_schema()
                .await
                .map_err(store_error("DATABASE_URL"))?;
            text.push(format!(
                "postgres: {} schema differences from the Prisma target",
                schema.len()
            ));
            text.extend(schema.iter().map(|s| format!("  {s}")));
        }
        None => {
            skipped.push("PostgreSQL schema: no DATABASE_URL".to_owned());
            text.push("skipped: PostgreSQL schema (no DATABASE_URL)".to_owned());
        }
    }
    let clean = sample.problems.is_empty() && schema.is_empty();
    out.emit(
        &json!({ "redis": sample, "schema": schema, "skipped": skipped, "clean": clean }),
        &text,
    );
    Ok(outcome(clean))
}
