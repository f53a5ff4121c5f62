//! Operators' jobs on the `sessions` table: retention in batches
//! ([`PgSessionStore::purge`]) and a check of its shape against the Prisma target
//! ([`PgSessionStore::check_schema`]). Never on the request path.

use serde::Serialize;

use super::{row::to_time, timed, PgSessionStore};
use crate::store::StoreError;

/// What [`PgSessionStore::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Revoked rows, revoked before the bound.
    pub revoked: u64,
    /// Rows that expired (not revoked) before the bound.
    pub expired: u64,
}

/// The columns of `sessions` in the Prisma target schema, with their types as
/// `information_schema.columns` names them (`udt_name`).
const SESSION_COLUMNS: [(&str, &str); 11] = [
    ("application_context", "ApplicationType"),
    ("created_at", "timestamptz"),
    ("data", "jsonb"),
    ("expires_at", "timestamptz"),
    ("id", "varchar"),
    ("ip_address", "inet"),
    ("last_activity", "timestamptz"),
    ("revoked", "bool"),
    ("revoked_at", "timestamptz"),
    ("user_agent", "text"),
    ("user_id", "uuid"),
];

impl PgSessionStore {
    /// Deletes revoked rows revoked before `revoked_before` whose session has expired too
    /// (until then the row is what keeps the ended session ended), and unrevoked rows that
    /// expired before `expired_before` (milliseconds since the epoch), `batch` rows per statement,
    /// calling `progress` after each: never one giant `DELETE`, and safe beside traffic
    /// (rows another transaction holds are skipped until the next run). The audit trail a
    /// revoked row is kept for ends with the bound.
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
        Ok(report)
    }

    /// How the `sessions` table differs from the Prisma target: one line per missing,
    /// extra or mistyped column (empty when it matches).
    ///
    /// # Errors
    /// [`StoreError`] if PostgreSQL fails.
    pub async fn check_schema(&self) -> Result<Vec<String>, StoreError> {
        let columns: Vec<(String, String)> = timed(
            self.timeout,
            sqlx::query_as(
                "SELECT column_name::text, udt_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'sessions' ORDER BY 1",
            )
            .fetch_all(&self.pool),
        )
        .await?;
        if columns.is_empty() {
            return Ok(vec!["table sessions is missing".to_owned()]);
        }
        let mut problems = Vec::new();
        for (name, wanted) in SESSION_COLUMNS {
            match columns.iter().find(|(c, _)| c == name) {
                None => problems.push(format!("sessions.{name} is missing")),
                Some((_, found)) if found != wanted => {
                    problems.push(format!("sessions.{name} is {found}, not {wanted}"));
                }
                Some(_) => {}
            }
        }
        for (name, found) in &columns {
            if !SESSION_COLUMNS.iter().any(|(c, _)| c == name) {
                problems.push(format!("sessions.{name} ({found}) is not in the target"));
            }
        }
        Ok(problems)
    }
}
