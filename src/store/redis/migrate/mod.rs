//! The legacy-key migration (`session:<id>` → `session:web:<id>`) and the key counts the
//! TypeScript apps' cleanup checklist asks for. Everything here SCANs; nothing uses `KEYS`.
//!
//! Each legacy key is read and checked once ([`read`]), then acted on: a dry run decides
//! from the same reading what the real run would do, so both report the same counts for
//! the same keys.

mod read;
mod set_aside;

use futures_util::future::join_all;
use serde::Serialize;

use super::doctor::KeyProblem;
use super::{keys, RedisStore};
use crate::record::now_ms;
use crate::store::StoreError;
use crate::{AppContext, SessionHandle, SessionId};
use read::{Dead, Reading};

/// Legacy sessions migrated per script call on one server: the call's cost is shared, and
/// Redis is busy for about a millisecond per call (some 10 µs per session), so live traffic
/// waits at most that long between calls.
const SCRIPT_BATCH: usize = 100;

/// How many keys that are not session records a [`MigrationReport`] lists (all are
/// counted): the quarantined ones can be listed again with `SCAN 0 MATCH session-quarantine:*`.
pub const MAX_LISTED_FAILURES: usize = 1000;

/// Whether [`RedisStore::migrate_legacy`] keeps the legacy keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// Copy: legacy keys stay until they expire (safe while old app versions still run).
    Copy,
    /// Move: each legacy key is deleted once its copy is in place.
    Move,
}

/// How [`RedisStore::migrate_legacy_with`] runs: the mode, the page size, and whether it is
/// a dry run and quarantines what is not a session record.
///
/// ```
/// use tower_app_sessions::store::redis::{LegacyMigration, MigrationMode};
///
/// let preview = LegacyMigration::new(MigrationMode::Move).dry_run(true).quarantine(true);
/// assert!(preview.is_dry_run());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct LegacyMigration {
    mode: MigrationMode,
    batch: usize,
    dry_run: bool,
    quarantine: bool,
}

impl LegacyMigration {
    /// A migration in `mode`, 1000 keys per SCAN page, writing, without quarantine.
    pub fn new(mode: MigrationMode) -> Self {
        Self {
            mode,
            batch: 1000,
            dry_run: false,
            quarantine: false,
        }
    }

    /// Keys per SCAN page and per batch of reads and copies (at least 1).
    pub fn batch(mut self, keys: usize) -> Self {
        self.batch = keys.max(1);
        self
    }

    /// Reads and checks every legacy key exactly as the real run does, and reports what it
    /// would do, writing nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Renames each legacy key that holds no session record (a value the apps cannot read,
    /// or a key of another type) to `session-quarantine:<handle>` ([`keys::quarantine`]),
    /// keeping its TTL: out of `session:*`, so the cleanup check can pass, and kept for
    /// whoever wants to look at it. Without it such keys are left as they are.
    pub fn quarantine(mut self, quarantine: bool) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}

/// What [`RedisStore::migrate_legacy`] did (or, in a dry run, would do). Every legacy key
/// scanned is counted in exactly one of `copied`, `moved`, `already_present`, `expired`
/// and `failed`, so `scanned` is their sum ([`adds_up`](Self::adds_up)); `already_present`
/// and `expired` together are the keys [`skipped`](Self::skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MigrationReport {
    /// A dry run: nothing was written; the counts say what the run would do.
    pub dry_run: bool,
    /// Legacy keys `session:<id>` seen (a key SCAN returns twice is counted twice; the
    /// second time it is found gone or already copied).
    pub scanned: u64,
    /// Copied to `session:web:<id>`, the legacy key kept ([`MigrationMode::Copy`]).
    pub copied: u64,
    /// In place under `session:web:<id>` (copied by this run or an earlier one) and the
    /// legacy key deleted ([`MigrationMode::Move`]).
    pub moved: u64,
    /// Skipped: already under `session:web:<id>` (an earlier run, or a new login), the
    /// legacy key kept ([`MigrationMode::Copy`]).
    pub already_present: u64,
    /// Skipped: expired, or gone while the run went on (expired records are deleted in
    /// [`MigrationMode::Move`]; otherwise their TTL ends them).
    pub expired: u64,
    /// Not session records (a value the apps cannot read, or a key of another type): left
    /// as they were, or quarantined.
    pub failed: u64,
    /// Of `failed`: renamed to `session-quarantine:<handle>` ([`LegacyMigration::quarantine`]).
    pub quarantined: u64,
    /// The first [`MAX_LISTED_FAILURES`] of `failed`, by handle.
    pub failures: Vec<LegacyKeyFailure>,
}

impl MigrationReport {
    /// The keys skipped: `already_present + expired`.
    pub fn skipped(&self) -> u64 {
        self.already_present + self.expired
    }

    /// Whether `scanned = copied + moved + skipped + failed` (it always does; a check for
    /// reports built or changed by hand).
    pub fn adds_up(&self) -> bool {
        self.scanned == self.copied + self.moved + self.skipped() + self.failed
    }

    fn count(&mut self, outcome: Outcome) {
        self.scanned += 1;
        match outcome {
            Outcome::Copied => self.copied += 1,
            Outcome::Moved => self.moved += 1,
            Outcome::Present => self.already_present += 1,
            Outcome::Expired => self.expired += 1,
            Outcome::Failed(failure) => {
                self.failed += 1;
                self.quarantined += u64::from(failure.quarantined_as.is_some());
                if self.failures.len() < MAX_LISTED_FAILURES {
                    self.failures.push(failure);
                }
            }
        }
    }
}

/// A legacy key that holds no session record, named by the session's handle (never the key
/// or the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyKeyFailure {
    /// The handle of the id in the key.
    pub session: SessionHandle,
    /// What is wrong: [`KeyProblem::Unparseable`] or [`KeyProblem::WrongType`].
    #[serde(flatten)]
    pub problem: KeyProblem,
    /// Where the quarantine put it (`session-quarantine:<handle>`); `None` when it was left
    /// where it was (no quarantine, or that key exists already).
    pub quarantined_as: Option<String>,
}

/// What happened to one legacy key.
enum Outcome {
    Copied,
    Moved,
    Present,
    Expired,
    Failed(LegacyKeyFailure),
}

impl RedisStore {
    /// Number of session keys of `context` (`session:<context>:*`), counted with SCAN.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails.
    pub async fn count_sessions(&self, context: &AppContext) -> Result<u64, StoreError> {
        self.redis
            .scan_fold(
                &keys::context_pattern(context),
                1000,
                0,
                |total, page| async move { Ok(total + page.len() as u64) },
            )
            .await
    }

    /// Number of legacy keys `session:<id>` left (the cleanup check of the TypeScript apps'
    /// migration), counted with SCAN.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails.
    pub async fn count_legacy_sessions(&self) -> Result<u64, StoreError> {
        self.redis
            .scan_fold(keys::ALL_SESSIONS, 1000, 0, |total, page| async move {
                let legacy = page
                    .iter()
                    .filter(|k| keys::parse_legacy(k).is_some())
                    .count();
                Ok(total + legacy as u64)
            })
            .await
    }

    /// Copies (or moves) every legacy key `session:<id>` to `session:web:<id>`, keeping its
    /// remaining TTL, `batch` keys per SCAN page: [`migrate_legacy_with`](Self::migrate_legacy_with)
    /// without dry run, quarantine or progress.
    ///
    /// # Errors
    /// As [`migrate_legacy_with`](Self::migrate_legacy_with).
    pub async fn migrate_legacy(
        &self,
        mode: MigrationMode,
        batch: usize,
    ) -> Result<MigrationReport, StoreError> {
        self.migrate_legacy_with(&LegacyMigration::new(mode).batch(batch), &|_| {})
            .await
    }

    /// Migrates every legacy key `session:<id>` as `how` says, calling `progress` with the
    /// report so far after each SCAN page (for a progress bar).
    ///
    /// Safe to run while traffic flows and to rerun: a session already present under the new
    /// key (copied earlier, or rotated by a login) is never overwritten (`SET … NX`); a legacy
    /// key is deleted only after its copy exists; a copy whose legacy key was deleted while it
    /// was made (a logout) is deleted too; an interrupted run loses nothing and the next one
    /// finishes the job. Migrated sessions join their user's index, so revoke-all covers them.
    ///
    /// A legacy key that holds no session record (a value the TypeScript apps cannot read,
    /// or a key of another Redis type) is counted as failed, listed by handle, and left as it
    /// was, or set aside under `session-quarantine:<handle>` with
    /// [`LegacyMigration::quarantine`]; the run goes on.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails; what was done until then stays done.
    pub async fn migrate_legacy_with(
        &self,
        how: &LegacyMigration,
        progress: &(dyn Fn(&MigrationReport) + Send + Sync),
    ) -> Result<MigrationReport, StoreError> {
        let report = MigrationReport {
            dry_run: how.dry_run,
            ..MigrationReport::default()
        };
        self.redis
            .scan_fold(
                keys::ALL_SESSIONS,
                how.batch,
                report,
                |mut report, page| async move {
                    let ids: Vec<SessionId> =
                        page.iter().filter_map(|k| keys::parse_legacy(k)).collect();
                    let outcomes = if self.redis.is_cluster() {
                        // The keys of one id live in different slots: one at a time, the
                        // batch's ids concurrently.
                        join_all(ids.iter().map(|id| self.migrate_one(id, how)))
                            .await
                            .into_iter()
                            .collect::<Result<Vec<_>, _>>()?
                    } else {
                        self.migrate_page(&ids, how).await?
                    };
                    for outcome in outcomes {
                        report.count(outcome);
                    }
                    progress(&report);
                    Ok(report)
                },
            )
            .await
    }

    /// A page of ids on one server: one pipelined read of the keys ([`read`]), then for
    /// the live records `migrate_legacy.lua` (copy with the TTL, index, and in move mode
    /// delete, atomically), [`SCRIPT_BATCH`] sessions per call, the calls pipelined (after a
    /// `SCRIPT LOAD`): three round trips per page instead of four per id. A key rewritten
    /// between the read and the script is read and migrated again on its own.
    async fn migrate_page(
        &self,
        ids: &[SessionId],
        how: &LegacyMigration,
    ) -> Result<Vec<Outcome>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let readings = self.read_legacy(ids, now).await?;
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(ids.len());
        // (index in `ids`, the live record read) of the records to migrate.
        let mut pending = Vec::new();
        for (i, reading) in readings.into_iter().enumerate() {
            outcomes.push(match reading {
                Reading::Live(live) => {
                    pending.push((i, live));
                    None
                }
                Reading::Dead(dead) => Some(self.settle(&ids[i], dead, how).await?),
            });
        }
        if pending.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        if how.dry_run {
            let present = self.web_copies(ids, &pending).await?;
            for ((i, _), present) in pending.iter().zip(present) {
                outcomes[*i] = Some(predicted(how.mode, present));
            }
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let codes = self.copy_batches(ids, &pending, how.mode, now).await?;
        for ((i, _), code) in pending.iter().zip(codes) {
            let deleted = code >= 10;
            outcomes[*i] = Some(match code % 10 {
                _ if deleted => Outcome::Moved,
                1 => Outcome::Copied,
                2 => Outcome::Present,
                // Rewritten since it was read: read and migrated again, on its own.
                3 => self.migrate_one(&ids[*i], how).await?,
                _ => Outcome::Expired,
            });
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Whether `session:web:<id>` exists, for each pending record (a dry run's prediction).
    async fn web_copies(
        &self,
        ids: &[SessionId],
        pending: &[(usize, read::Live)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for (i, _) in pending {
            pipe.cmd("EXISTS")
                .arg(keys::session(&AppContext::Web, &ids[*i]));
        }
        let found: Vec<u64> = self
            .redis
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok(found.into_iter().map(|n| n > 0).collect())
    }

    /// `migrate_legacy.lua` for `pending`, [`SCRIPT_BATCH`] sessions per call: one code per
    /// session (see the script).
    async fn copy_batches(
        &self,
        ids: &[SessionId],
        pending: &[(usize, read::Live)],
        mode: MigrationMode,
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let script = self.scripts.migrate_legacy.clone();
        let hash = script.get_hash().to_owned();
        let mut calls = redis::pipe();
        for chunk in pending.chunks(SCRIPT_BATCH) {
            let call = calls.cmd("EVALSHA").arg(&hash).arg(chunk.len() * 3);
            for (i, live) in chunk {
                call.arg(keys::legacy(&ids[*i]))
                    .arg(keys::session(&AppContext::Web, &ids[*i]))
                    .arg(keys::user_index(&live.record.user_id));
            }
            for (i, live) in chunk {
                // The value read and checked: the script copies it only if it is unchanged.
                call.arg(keys::index_member(&AppContext::Web, &ids[*i]))
                    .arg(live.record.expires_at)
                    .arg(now)
                    .arg(live.bytes.as_slice());
            }
            call.arg(if mode == MigrationMode::Move {
                "1"
            } else {
                "0"
            });
        }
        // EVALSHA in a pipeline has no EVAL fallback: load the script first (a no-op when
        // the server has it).
        self.redis
            .run(|mut c| async move { script.prepare_invoke().load_async(&mut c).await })
            .await?;
        let replies: Vec<Vec<i64>> = self
            .redis
            .run(|mut c| async move { calls.query_async(&mut c).await })
            .await?;
        let codes: Vec<i64> = replies.into_iter().flatten().collect();
        if codes.len() != pending.len() {
            return Err(StoreError::backend(
                super::conn::BACKEND,
                format!(
                    "migration script answered {} of {} sessions",
                    codes.len(),
                    pending.len()
                ),
            ));
        }
        Ok(codes)
    }

    /// What becomes of a key that is not a live record: gone or expired (deleted in move
    /// mode), or not a record at all (quarantined when asked).
    async fn settle(
        &self,
        id: &SessionId,
        dead: Dead,
        how: &LegacyMigration,
    ) -> Result<Outcome, StoreError> {
        match dead {
            Dead::Gone => Ok(Outcome::Expired),
            Dead::Expired(bytes) => {
                if how.mode == MigrationMode::Move && !how.dry_run {
                    // Only if it still holds the expired record read: a key that changed
                    // is left for the next run to read again.
                    self.delete_expired(id, &bytes).await?;
                }
                Ok(Outcome::Expired)
            }
            Dead::NotARecord(not) => {
                let quarantined_as = if how.quarantine {
                    self.quarantine(id, &not, how.dry_run).await?
                } else {
                    None
                };
                Ok(Outcome::Failed(LegacyKeyFailure {
                    session: id.handle(),
                    problem: not.problem(),
                    quarantined_as,
                }))
            }
        }
    }

    /// One legacy key, on its own (a cluster, or a key rewritten while its page migrated):
    /// read and checked as a page's keys are, then copied with `SET … NX PX`.
    async fn migrate_one(
        &self,
        id: &SessionId,
        how: &LegacyMigration,
    ) -> Result<Outcome, StoreError> {
        let now = now_ms();
        let reading = self
            .read_legacy(std::slice::from_ref(id), now)
            .await?
            .pop()
            .unwrap_or(Reading::Dead(Dead::Gone));
        let live = match reading {
            Reading::Live(live) => live,
            Reading::Dead(dead) => return self.settle(id, dead, how).await,
        };
        let new_key = keys::session(&AppContext::Web, id);
        if how.dry_run {
            let present = self.redis.exists(&new_key).await?;
            return Ok(predicted(how.mode, present));
        }
        let legacy = keys::legacy(id);
        let mut set = redis::cmd("SET");
        set.arg(&new_key)
            .arg(live.bytes.as_slice())
            .arg("PX")
            .arg(live.ttl_ms)
            .arg("NX");
        let created: Option<String> = self.redis.query(set).await?;
        if created.is_some() && !self.redis.exists(&legacy).await? {
            // Logged out (the legacy key deleted) between our read and our copy: the copy
            // must not outlive the logout.
            self.redis.del(&new_key).await?;
            return Ok(Outcome::Expired);
        }
        if created.is_some() {
            // The member lives as long as the copy (a bare EXPIRE may have moved the TTL past
            // the record's expires_at).
            self.index_add(
                &live.record.user_id,
                keys::index_member(&AppContext::Web, id),
                None,
                live.record.expires_at.max(now.saturating_add(live.ttl_ms)),
                now,
            )
            .await?;
        }
        let deleted = how.mode == MigrationMode::Move && self.redis.del(&legacy).await?;
        Ok(match (deleted, created.is_some()) {
            (true, _) => Outcome::Moved,
            (false, true) => Outcome::Copied,
            (false, false) => Outcome::Present,
        })
    }
}

/// What the real run does with a live record, given whether its copy exists already.
fn predicted(mode: MigrationMode, present: bool) -> Outcome {
    match (mode, present) {
        (MigrationMode::Move, _) => Outcome::Moved,
        (MigrationMode::Copy, true) => Outcome::Present,
        (MigrationMode::Copy, false) => Outcome::Copied,
    }
}
