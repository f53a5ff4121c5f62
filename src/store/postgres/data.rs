//! The data patch of [`PgSessionStore`]: one `UPDATE` that merges a patch into `sessions.data`
//! and enforces the data's limits in its own condition.

use std::sync::LazyLock;

use super::row::{pg_context, to_time};
use super::{timed, PgSessionStore};
use crate::data::{DataLimits, DataPatch};
use crate::store::{DataUpdate, StoreError};
use crate::{AppContext, SessionId};

/// The data as a `jsonb` object: a `data` that is not one (`NULL`, `[1,2]`) counts as `{}`.
const CURRENT: &str =
    "(CASE WHEN jsonb_typeof(sessions.data) = 'object' THEN sessions.data ELSE '{}'::jsonb END)";

/// The size of the `jsonb` object `d` ([the measure](crate::data::size#the-measure)): bytes of
/// its compact JSON and keys. `d::text` is `jsonb`'s own form, which writes `": "` after
/// each key and `", "` between members and elements at every depth; those spaces are
/// subtracted (an object of `n` members has `2n - 1` of them, an array of `n` elements
/// `n - 1`), every node visited once by `strict $.**`.
fn measure(d: &str) -> String {
    format!(
        "SELECT octet_length({d}::text) - coalesce((SELECT sum(CASE jsonb_typeof(node) \
           WHEN 'object' THEN greatest(2 * (SELECT count(*) FROM jsonb_object_keys(node)) - 1, 0) \
           WHEN 'array' THEN greatest(jsonb_array_length(node) - 1, 0) ELSE 0 END) \
           FROM jsonb_path_query({d}, 'strict $.**') AS node), 0) AS bytes, \
         (SELECT count(*) FROM jsonb_object_keys({d})) AS keys"
    )
}

/// `$1` id, `$2` context, `$3` the keys set (a JSON object), `$4` the keys removed, `$5`
/// now, `$6` the most bytes, `$7` the most keys.
///
/// The limits are part of the `UPDATE`'s condition, computed from the row it updates: when
/// concurrent patches of one session queue on its row lock, PostgreSQL re-evaluates the
/// condition of each on the row the previous one left (READ COMMITTED's re-check of an
/// updated row), so none can pass the limits whatever the interleaving.
static PATCH: LazyLock<String> = LazyLock::new(|| {
    let next = format!("(({CURRENT} || $3::jsonb) - $4::text[])");
    format!(
        "UPDATE sessions SET data = NULLIF({next}, '{{}}'::jsonb) \
         WHERE id = $1 AND application_context = $2::\"ApplicationType\" \
           AND NOT revoked AND expires_at > $5 \
           AND (SELECT (n.bytes <= $6 OR n.bytes <= o.bytes) AND (n.keys <= $7 OR n.keys <= o.keys) \
                FROM (SELECT {CURRENT} AS d) cur \
                CROSS JOIN LATERAL (SELECT (cur.d || $3::jsonb) - $4::text[] AS d) nxt \
                CROSS JOIN LATERAL ({before}) o \
                CROSS JOIN LATERAL ({after}) n)",
        before = measure("cur.d"),
        after = measure("nxt.d"),
    )
});

/// Whether the session is live (asked only after a patch changed nothing, to tell why).
const LIVE: &str = "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 \
     AND application_context = $2::\"ApplicationType\" AND NOT revoked AND expires_at > $3)";

impl PgSessionStore {
    /// Merges the patch into `data` in one statement: concurrent patches of other keys keep
    /// their change (the row lock orders them); a `data` that is not an object is replaced;
    /// nothing is written if the data would pass `limits` (and grow).
    pub(super) async fn patch_data(
        &self,
        context: &AppContext,
        id: &SessionId,
        patch: &DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> Result<DataUpdate, StoreError> {
        let label = pg_context(context)?;
        let removes: Vec<&str> = patch.removes().collect();
        let now = to_time(now)?;
        let clamp = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let done = timed(
            self.timeout,
            sqlx::query(PATCH.as_str())
                .bind(id.as_str())
                .bind(label)
                .bind(patch.sets_json())
                .bind(&removes)
                .bind(now)
                .bind(clamp(limits.max_bytes))
                .bind(clamp(limits.max_keys))
                .execute(&self.pool),
        )
        .await?;
        if done.rows_affected() == 1 {
            return Ok(DataUpdate::Applied);
        }
        // Nothing written: not live, or over the limits. A session that was not live then is
        // not live now (none comes back), so a live one now was refused over the limits.
        let live: bool = timed(
            self.timeout,
            sqlx::query_scalar(LIVE)
                .bind(id.as_str())
                .bind(label)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await?;
        Ok(if live {
            DataUpdate::OverLimit
        } else {
            DataUpdate::NotLive
        })
    }
}
