//! `migrate-legacy`: the legacy-key migration of the Redis store `Sessions::from_env`
//! connected (`RedisStore::migrate_legacy_with`), its dry run and its quarantine.

use serde_json::json;
use tower_app_sessions::store::redis::{
    KeyProblem, LegacyKeyFailure, LegacyMigration, MigrationMode, MigrationReport,
};

use super::{store_error, Result};
use crate::connect::connect;
use crate::output::Output;
use crate::{MigrateArgs, Outcome};

pub(crate) async fn run(out: &Output, cluster: bool, args: MigrateArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let redis = c
        .sessions
        .redis_store()
        .ok_or("no Redis store to migrate (REDIS_URL)")?;
    let mode = if args.move_keys {
        MigrationMode::Move
    } else {
        MigrationMode::Copy
    };
    let how = LegacyMigration::new(mode)
        .batch(usize::try_from(args.batch).unwrap_or(usize::MAX))
        .dry_run(args.dry_run)
        .quarantine(args.quarantine);
    let total = redis
        .count_legacy_sessions()
        .await
        .map_err(store_error("REDIS_URL"))?;
    let progress = out.progress("migrate-legacy", Some(total));
    let started = std::time::Instant::now();
    let report = redis
        .migrate_legacy_with(&how, &|r: &MigrationReport| progress.set(r.scanned))
        .await
        .map_err(store_error("REDIS_URL"))?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        report.scanned as f64 / seconds
    } else {
        0.0
    };
    let left_in_place = report.failed - report.quarantined;
    let mut text = Vec::new();
    if report.dry_run {
        text.push("dry run: nothing was written; the real run would do this:".to_owned());
    }
    text.push(summary(&report, args.quarantine));
    for failure in &report.failures {
        text.push(format!("  {}", failure_line(failure, report.dry_run)));
    }
    if report.failed > report.failures.len() as u64 {
        text.push(format!(
            "  and {} more not listed",
            report.failed - report.failures.len() as u64
        ));
    }
    if left_in_place > 0 && !args.quarantine {
        text.push(
            "keys that are not session records keep the cleanup checklist failing: rerun with \
             --quarantine to set them aside"
                .to_owned(),
        );
    }
    text.push(format!("{seconds:.2} s, {rate:.0} keys/s"));
    let value = json!({
        "dry_run": report.dry_run,
        "scanned": report.scanned,
        "copied": report.copied,
        "moved": report.moved,
        "skipped": report.skipped(),
        "already_present": report.already_present,
        "expired": report.expired,
        "failed": report.failed,
        "quarantined": report.quarantined,
        "failures": report.failures,
        "seconds": seconds,
        "keys_per_second": rate.round(),
    });
    out.emit(value, &text);
    Ok(Outcome::of(left_in_place == 0))
}

/// `scanned 6: copied 0, moved 5, skipped 0 (…), failed 1 (…)`: the four counts add up to
/// the first.
fn summary(r: &MigrationReport, quarantine: bool) -> String {
    let failed = if r.failed == 0 {
        "failed 0".to_owned()
    } else if quarantine {
        format!(
            "failed {} (not session records: {} quarantined, {} left in place)",
            r.failed,
            r.quarantined,
            r.failed - r.quarantined
        )
    } else {
        format!("failed {} (not session records, left in place)", r.failed)
    };
    format!(
        "scanned {}: copied {}, moved {}, skipped {} ({} already there, {} expired or gone), {failed}",
        r.scanned,
        r.copied,
        r.moved,
        r.skipped(),
        r.already_present,
        r.expired,
    )
}

/// `session <handle> holds a list, not a session record: quarantined as …`.
fn failure_line(f: &LegacyKeyFailure, dry_run: bool) -> String {
    let what = match &f.problem {
        KeyProblem::WrongType { found } => format!("holds a {found}, not a session record"),
        _ => "holds a value that is not a session record".to_owned(),
    };
    let fate = match (&f.quarantined_as, dry_run) {
        (Some(key), false) => format!("quarantined as {key}"),
        (Some(key), true) => format!("would be quarantined as {key}"),
        (None, _) => "left in place".to_owned(),
    };
    format!("session {} {what}: {fate}", f.session)
}
