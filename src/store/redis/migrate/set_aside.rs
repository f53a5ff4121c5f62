//! Taking legacy keys with nothing to migrate out of `session:*`: the quarantine of keys that
//! hold no session record, and (move mode) the deletion of expired records. Both act only
//! if the key still holds what was read (`set_aside.lua`), so a key rewritten meanwhile is
//! left for the next run to read again.

use super::super::{keys, RedisStore};
use super::read::NotARecord;
use crate::store::StoreError;
use crate::SessionId;

/// How a quarantine went.
enum Quarantine {
    Done,
    /// The key changed or went since it was read: left for the next run.
    Changed,
    /// `session-quarantine:<handle>` exists already.
    TargetExists,
}

impl RedisStore {
    /// Deletes the legacy key of `id` if it still holds `expired` (an expired record).
    pub(super) async fn delete_expired(
        &self,
        id: &SessionId,
        expired: &[u8],
    ) -> Result<(), StoreError> {
        self.set_aside(id, None, &NotARecord::Unparseable(expired.to_vec()))
            .await
            .map(drop)
    }

    /// Renames the legacy key of `id`, read as `not`, to `session-quarantine:<handle>`
    /// (TTL kept); in a dry run, only says whether it would. `Some(the new key)` when it
    /// is (would be) there; `None` when the key changed or went since it was read (left for
    /// the next run to read again), or the quarantine key exists already (logged).
    pub(super) async fn quarantine(
        &self,
        id: &SessionId,
        not: &NotARecord,
        dry_run: bool,
    ) -> Result<Option<String>, StoreError> {
        let target = keys::quarantine(id);
        let result = if dry_run {
            if self.redis.exists(&target).await? {
                Quarantine::TargetExists
            } else {
                Quarantine::Done
            }
        } else if self.redis.is_cluster() {
            self.quarantine_across_slots(id, &target, not).await?
        } else {
            // One server: an atomic check and rename, which keeps the TTL.
            match self.set_aside(id, Some(&target), not).await? {
                1 => Quarantine::Done,
                0 => Quarantine::Changed,
                _ => Quarantine::TargetExists,
            }
        };
        match result {
            Quarantine::Done => Ok(Some(target)),
            Quarantine::Changed => Ok(None),
            Quarantine::TargetExists => {
                tracing::warn!(
                    key = target,
                    "quarantine key exists already: the legacy key is left where it is",
                );
                Ok(None)
            }
        }
    }

    /// The quarantine on a cluster, where the two keys live in different slots: `DUMP` the
    /// legacy key, `RESTORE` it under `target` with its TTL, then delete the legacy key if
    /// it still holds what was read (if not, the copy is removed again).
    async fn quarantine_across_slots(
        &self,
        id: &SessionId,
        target: &str,
        not: &NotARecord,
    ) -> Result<Quarantine, StoreError> {
        let legacy = keys::legacy(id);
        let (dump, pttl): (Option<Vec<u8>>, i64) = self
            .redis
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("DUMP")
                    .arg(&legacy)
                    .cmd("PTTL")
                    .arg(&legacy)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(dump) = dump else {
            return Ok(Quarantine::Changed); // gone
        };
        let mut restore = redis::cmd("RESTORE");
        // PTTL -1 (no TTL) restores as 0: no TTL either.
        restore.arg(target).arg(pttl.max(0)).arg(dump);
        let restored = self
            .redis
            .run(|mut c| async move {
                match restore.query_async::<()>(&mut c).await {
                    Ok(()) => Ok(true),
                    Err(e) if e.code() == Some("BUSYKEY") => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if !restored {
            return Ok(Quarantine::TargetExists);
        }
        if self.set_aside(id, None, not).await? != 1 {
            self.redis.del(target).await?;
            return Ok(Quarantine::Changed);
        }
        Ok(Quarantine::Done)
    }

    /// `set_aside.lua` on the legacy key of `id` (renamed to `target` when given, else
    /// deleted) if it still holds what `not` says was read: 1 done, 0 changed or gone,
    /// -1 `target` exists.
    async fn set_aside(
        &self,
        id: &SessionId,
        target: Option<&str>,
        not: &NotARecord,
    ) -> Result<i64, StoreError> {
        let script = self.scripts.set_aside.clone();
        let legacy = keys::legacy(id);
        let target = target.map(str::to_owned);
        let (kind, read): (&str, &[u8]) = match not {
            NotARecord::Unparseable(bytes) => ("string", bytes),
            NotARecord::WrongType(_) => ("other", &[]),
        };
        let read = read.to_vec();
        self.redis
            .run(|mut c| async move {
                let mut invocation = script.key(legacy);
                if let Some(target) = target {
                    invocation.key(target);
                }
                invocation.arg(kind).arg(read).invoke_async(&mut c).await
            })
            .await
    }
}
