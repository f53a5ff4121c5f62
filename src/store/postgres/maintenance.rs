//! Retention of the `sessions` table in batches ([`PgSessionStore::purge`]): an operator's
//! job, never on the request path.

use serde::Serialize;

use super::{row::to_time, timed, PgSessionStore};
use crate::store::StoreError;

/// What [`PgSessionStore::purge`] removed, and what it kept that a retention bound might
/// seem to cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Revoked rows removed: revoked before the bound, their session expired.
    pub revoked: u64,
    /// Rows removed that expired (not revoked) before the bound.
    pub expired: u64,
    /// Revoked rows kept because their session has not expired yet: until it does, the row
    /// is what keeps the ended session ended (a Redis copy of it is not served while a
    /// revoked row exists).
    pub kept_revoked_unexpired: u64,
    /// Revoked rows kept because they were revoked after the bound.
    pub kept_revoked_recent: u64,
    /// Expired (not revoked) rows kept because they expired after the bound.
    pub kept_expired_recent: u64,
}

impl PgSessionStore {
    /// Deletes revoked rows revoked before `revoked_before` whose session has expired too
    /// (until then the row is what keeps the ended session ended), and unrevoked rows that
    /// expired before `expired_before` (milliseconds since the epoch), `batch` rows per statement,
    /// calling `progress` after each: never one giant `DELETE`, and safe beside traffic
    /// (rows another transaction holds are skipped until the next run). The audit trail a
    /// revoked row is kept for ends with the bound. The report also counts the rows kept
    /// that a bound might seem to cover, by reason.
    ///
    /// # Errors
    /// [`StoreError`] if PostgreSQL fails; what was deleted until then stays deleted.
    pub async fn purge(
        &self,
        revoked_before: i64,
        expired_before: i64,
        batch: u32,
        progress: &(dyn Fn(&PurgeReport) + Send + Sync),
    ) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        let batch = i64::from(batch.max(1));
        // A revoked row is the tombstone that keeps a Redis copy of the ended session from
        // being served (the tiered store treats a Redis copy without a row as Redis-only):
        // it goes only once the session would have expired anyway. And nothing that has not
        // expired yet is "expired before" a bound in the future.
        let statements = [
            (
                "revoked AND coalesce(revoked_at, expires_at) < $1 AND expires_at < now()",
                revoked_before,
            ),
            (
                "NOT revoked AND expires_at < least($1, now())",
                expired_before,
            ),
        ];
        for (i, (condition, bound)) in statements.into_iter().enumerate() {
            let sql = format!(
                "WITH doomed AS (SELECT id FROM sessions WHERE {condition} \
                   LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM sessions s USING doomed WHERE s.id = doomed.id"
            );
            loop {
                let done = timed(
                    self.timeout,
                    sqlx::query(&sql)
                        .bind(to_time(bound)?)
                        .bind(batch)
                        .execute(&self.pool),
                )
                .await?
                .rows_affected();
                if i == 0 {
                    report.revoked += done;
                } else {
                    report.expired += done;
                }
                progress(&report);
                if done < u64::try_from(batch).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        let (unexpired, recent, expired_recent): (i64, i64, i64) = timed(
            self.timeout,
            sqlx::query_as(
                "SELECT \
                   count(*) FILTER (WHERE revoked AND expires_at >= now()), \
                   count(*) FILTER (WHERE revoked AND expires_at < now() \
                                      AND coalesce(revoked_at, expires_at) >= $1), \
                   count(*) FILTER (WHERE NOT revoked AND expires_at < now() \
                                      AND expires_at >= least($2, now())) \
                 FROM sessions",
            )
            .bind(to_time(revoked_before)?)
            .bind(to_time(expired_before)?)
            .fetch_one(&self.pool),
        )
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        report.kept_revoked_unexpired = count(unexpired);
        report.kept_revoked_recent = count(recent);
        report.kept_expired_recent = count(expired_recent);
        Ok(report)
    }
}
