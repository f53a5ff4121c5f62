//! [`StoreStats`] for PostgreSQL: `sessions` rows per context by state, and the use of the
//! table's indexes (`pg_stat_user_indexes`).

use super::{row::to_time, timed, PgSessionStore};
use crate::stats::{IndexUsage, PostgresStats, RowStates, SessionStats, StoreStats};
use crate::store::{StoreError, StoreFuture};

impl PgSessionStore {
    async fn collect_stats(&self, now: i64) -> Result<SessionStats, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = timed(
            self.timeout,
            sqlx::query_as(
                "SELECT application_context::text, \
                   count(*) FILTER (WHERE NOT revoked AND expires_at > $1), \
                   count(*) FILTER (WHERE revoked), \
                   count(*) FILTER (WHERE NOT revoked AND expires_at <= $1) \
                 FROM sessions GROUP BY 1 ORDER BY 1",
            )
            .bind(to_time(now)?)
            .fetch_all(&self.pool),
        )
        .await?;
        let indexes: Vec<(String, i64, i64)> = timed(
            self.timeout,
            sqlx::query_as(
                "SELECT indexrelname::text, idx_scan, idx_tup_read FROM pg_stat_user_indexes \
                 WHERE relname = 'sessions' AND schemaname = current_schema() ORDER BY 1",
            )
            .fetch_all(&self.pool),
        )
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut stats = SessionStats::default();
        for (context, live, revoked, expired) in rows {
            stats.context(&context).postgres_sessions = Some(RowStates {
                live: count(live),
                revoked: count(revoked),
                expired: count(expired),
            });
        }
        stats.postgres = Some(PostgresStats {
            indexes: indexes
                .into_iter()
                .map(|(name, scans, tuples_read)| IndexUsage {
                    name,
                    scans: count(scans),
                    tuples_read: count(tuples_read),
                })
                .collect(),
        });
        Ok(stats)
    }
}

impl StoreStats for PgSessionStore {
    fn stats(&self, now: i64) -> StoreFuture<'_, Result<SessionStats, StoreError>> {
        StoreFuture::new(self.collect_stats(now))
    }
}
