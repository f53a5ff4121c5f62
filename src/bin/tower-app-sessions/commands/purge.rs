//! `purge`: PostgreSQL retention through the session store `Sessions::from_env` connected
//! (`PgSessionStore::purge`), saying what it removed, and what it kept and why.

use serde_json::json;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::postgres::PurgeReport;

use super::{count, store_error, Result};
use crate::connect::connect;
use crate::output::Output;
use crate::{Outcome, PurgeArgs};

pub(crate) async fn run(out: &Output, cluster: bool, args: PurgeArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    let Some(pg) = c.sessions.postgres_store() else {
        return Err("purge works on PostgreSQL: set DATABASE_URL".into());
    };
    c.require_schema().await?;
    let now = now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let progress = out.progress("purge: rows deleted", None);
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
    let revoked_bound = humantime::format_duration(args.revoked_older_than).to_string();
    let expired_bound = humantime::format_duration(args.expired_older_than).to_string();
    let mut text = vec![format!(
        "removed {} (revoked over {revoked_bound} ago, session expired) and {} (expired over \
         {expired_bound} ago)",
        count(report.revoked, "revoked row", "revoked rows"),
        count(report.expired, "expired row", "expired rows"),
    )];
    if report.kept_revoked_unexpired > 0 {
        text.push(format!(
            "kept {} whose session has not expired yet: a revoked row stays until its session \
             would have expired, because it is what keeps that session ended",
            count(report.kept_revoked_unexpired, "revoked row", "revoked rows"),
        ));
    }
    if report.kept_revoked_recent > 0 {
        text.push(format!(
            "kept {} revoked within the last {revoked_bound} (--revoked-older-than)",
            count(report.kept_revoked_recent, "revoked row", "revoked rows"),
        ));
    }
    if report.kept_expired_recent > 0 {
        text.push(format!(
            "kept {} expired within the last {expired_bound} (--expired-older-than)",
            count(report.kept_expired_recent, "expired row", "expired rows"),
        ));
    }
    out.emit(
        json!({
            "revoked": report.revoked,
            "expired": report.expired,
            "kept": {
                "revoked_unexpired": report.kept_revoked_unexpired,
                "revoked_recent": report.kept_revoked_recent,
                "expired_recent": report.kept_expired_recent,
            },
        }),
        &text,
    );
    Ok(Outcome::Clean)
}
