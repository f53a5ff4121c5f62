//! The legacy-key migration (`session:<id>` → `session:web:<id>`) and the key counts the
//! TypeScript apps' cleanup checklist asks for. Everything here SCANs; nothing uses `KEYS`.

use futures_util::future::join_all;

use super::{keys, RedisStore};

/// Legacy sessions migrated per script call on one server: the call's cost is shared, and
/// Redis is busy for about a millisecond per call (some 10 µs per session), so live traffic
/// waits at most that long between calls.
const SCRIPT_BATCH: usize = 100;
use crate::record::now_ms;
use crate::store::StoreError;
use crate::{AppContext, SessionId};

/// What [`RedisStore::migrate_legacy`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Legacy keys `session:<id>` seen.
    pub scanned: u64,
    /// Copied to `session:web:<id>` by this run.
    pub copied: u64,
    /// Already present under the new key (an earlier run, or a new login), left as they were.
    pub already_present: u64,
    /// Legacy keys deleted (move mode), after their copy was in place.
    pub deleted: u64,
    /// Expired or vanished while the migration ran.
    pub expired: u64,
    /// Values that are not session records: left untouched and logged.
    pub invalid: u64,
}

/// Whether [`RedisStore::migrate_legacy`] keeps the legacy keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// Copy: legacy keys stay until they expire (safe while old app versions still run).
    Copy,
    /// Move: each legacy key is deleted once its copy is in place.
    Move,
}

enum Migrated {
    Copied { deleted: bool },
    Present { deleted: bool },
    Expired,
    Invalid,
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
    /// remaining TTL, `batch` keys per SCAN page.
    ///
    /// Safe to run while traffic flows and to rerun: a session already present under the new
    /// key (copied earlier, or rotated by a login) is never overwritten (`SET … NX`); a legacy
    /// key is deleted only after its copy exists; a copy whose legacy key was deleted while it
    /// was made (a logout) is deleted too; an interrupted run loses nothing and the next one
    /// finishes the job. Migrated sessions join their user's index, so revoke-all covers them.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails; what was done until then stays done.
    pub async fn migrate_legacy(
        &self,
        mode: MigrationMode,
        batch: usize,
    ) -> Result<MigrationReport, StoreError> {
        self.migrate_legacy_with(mode, batch, &|_| {}).await
    }

    /// [`migrate_legacy`](Self::migrate_legacy), calling `progress` with the report so far
    /// after each batch (for a progress bar).
    ///
    /// # Errors
    /// As [`migrate_legacy`](Self::migrate_legacy).
    pub async fn migrate_legacy_with(
        &self,
        mode: MigrationMode,
        batch: usize,
        progress: &(dyn Fn(&MigrationReport) + Send + Sync),
    ) -> Result<MigrationReport, StoreError> {
        // SCAN may return a key twice; the second visit finds the copy (`SET NX`) and counts as
        // already present.
        self.redis
            .scan_fold(
                keys::ALL_SESSIONS,
                batch,
                MigrationReport::default(),
                |mut report, page| async move {
                    let ids: Vec<SessionId> =
                        page.iter().filter_map(|k| keys::parse_legacy(k)).collect();
                    report.scanned += ids.len() as u64;
                    let migrated = if self.redis.is_cluster() {
                        // The keys of one id live in different slots: one at a time, the
                        // batch's ids concurrently.
                        join_all(ids.iter().map(|id| self.migrate_one(id, mode)))
                            .await
                            .into_iter()
                            .collect::<Result<Vec<_>, _>>()?
                    } else {
                        self.migrate_page(&ids, mode).await?
                    };
                    for result in migrated {
                        match result {
                            Migrated::Copied { deleted } => {
                                report.copied += 1;
                                report.deleted += u64::from(deleted);
                            }
                            Migrated::Present { deleted } => {
                                report.already_present += 1;
                                report.deleted += u64::from(deleted);
                            }
                            Migrated::Expired => report.expired += 1,
                            Migrated::Invalid => report.invalid += 1,
                        }
                    }
                    progress(&report);
                    Ok(report)
                },
            )
            .await
    }

    /// [`migrate_one`](Self::migrate_one) for a page of ids on one server: one pipelined
    /// read of the values (each checked to be a session record), then `migrate_legacy.lua`
    /// (copy with the TTL, index, and in move mode delete, atomically) for
    /// [`SCRIPT_BATCH`] sessions per call, the calls pipelined (after a `SCRIPT LOAD`): three
    /// round trips per page instead of four per id. A value rewritten between the read and
    /// the script is left to the script's check and migrated again on its own.
    async fn migrate_page(
        &self,
        ids: &[SessionId],
        mode: MigrationMode,
    ) -> Result<Vec<Migrated>, StoreError> {
        use redis::{FromRedisValue, Value};
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let legacy: Vec<String> = ids.iter().map(keys::legacy).collect();
        let mut read = redis::pipe();
        for key in &legacy {
            read.cmd("GET").arg(key);
        }
        let values: Vec<Value> = self.pipeline(read).await?;
        let now = now_ms();
        let mut outcome: Vec<Option<Migrated>> = Vec::with_capacity(ids.len());
        // (index in `ids`, user index key, expires_at, the value read) of the records to
        // migrate.
        let mut pending: Vec<(usize, String, i64, Vec<u8>)> = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let Ok(Some(bytes)) = Option::<Vec<u8>>::from_redis_value(value) else {
                outcome.push(Some(Migrated::Expired));
                continue;
            };
            let Some(record) = Self::parse(&legacy[i], &bytes) else {
                outcome.push(Some(Migrated::Invalid));
                continue;
            };
            if record.is_expired(now) {
                outcome.push(Some(Migrated::Expired));
                continue;
            }
            pending.push((
                i,
                keys::user_index(&record.user_id),
                record.expires_at,
                bytes,
            ));
            outcome.push(None);
        }
        if pending.is_empty() {
            return Ok(outcome.into_iter().flatten().collect());
        }
        let script = self.scripts.migrate_legacy.clone();
        let hash = script.get_hash().to_owned();
        let mut calls = redis::pipe();
        for chunk in pending.chunks(SCRIPT_BATCH) {
            let call = calls.cmd("EVALSHA").arg(&hash).arg(chunk.len() * 3);
            for (i, index, _, _) in chunk {
                call.arg(&legacy[*i])
                    .arg(keys::session(&AppContext::Web, &ids[*i]))
                    .arg(index);
            }
            for (i, _, expires_at, bytes) in chunk {
                // The value read and checked: the script copies it only if it is unchanged.
                call.arg(keys::index_member(&AppContext::Web, &ids[*i]))
                    .arg(*expires_at)
                    .arg(now)
                    .arg(bytes.as_slice());
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
        for ((i, _, _, _), code) in pending.iter().zip(codes) {
            let deleted = code >= 10;
            outcome[*i] = Some(match code % 10 {
                1 => Migrated::Copied { deleted },
                2 => Migrated::Present { deleted },
                // Rewritten since it was read: checked and migrated again, on its own.
                3 => self.migrate_one(&ids[*i], mode).await?,
                _ => Migrated::Expired,
            });
        }
        Ok(outcome.into_iter().flatten().collect())
    }

    /// The replies of `pipe` (one server), within the response timeout.
    async fn pipeline(&self, pipe: redis::Pipeline) -> Result<Vec<redis::Value>, StoreError> {
        self.redis
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    async fn migrate_one(
        &self,
        id: &SessionId,
        mode: MigrationMode,
    ) -> Result<Migrated, StoreError> {
        let legacy = keys::legacy(id);
        let key = legacy.clone();
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self
            .redis
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(bytes) = bytes else {
            return Ok(Migrated::Expired);
        };
        let Some(record) = Self::parse(&legacy, &bytes) else {
            return Ok(Migrated::Invalid);
        };
        // An operator's job, outside any request: the system clock.
        let now = now_ms();
        // PTTL -1: no TTL on the legacy key; the record's own expiry then bounds the copy.
        // (0 is a key about to expire.)
        let ttl_ms = if pttl == -1 {
            record.expires_at.saturating_sub(now)
        } else {
            pttl
        };
        if pttl == -2 || ttl_ms <= 0 || record.is_expired(now) {
            return Ok(Migrated::Expired);
        }
        let new_key = keys::session(&AppContext::Web, id);
        let mut set = redis::cmd("SET");
        set.arg(&new_key).arg(bytes).arg("PX").arg(ttl_ms).arg("NX");
        let created: Option<String> = self.redis.query(set).await?;
        if created.is_some() && !self.redis.exists(&legacy).await? {
            // Logged out (the legacy key deleted) between our read and our copy: the copy
            // must not outlive the logout.
            self.redis.del(&new_key).await?;
            return Ok(Migrated::Expired);
        }
        if created.is_some() {
            // The member lives as long as the copy (a bare EXPIRE may have moved the TTL past
            // the record's expires_at).
            self.index_add(
                &record.user_id,
                keys::index_member(&AppContext::Web, id),
                None,
                record.expires_at.max(now.saturating_add(ttl_ms)),
                now,
            )
            .await?;
        }
        let deleted = mode == MigrationMode::Move && self.redis.del(&legacy).await?;
        Ok(if created.is_some() {
            Migrated::Copied { deleted }
        } else {
            Migrated::Present { deleted }
        })
    }
}
