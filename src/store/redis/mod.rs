//! [`RedisStore`]: sessions in Redis (or Redis Cluster), shared with the TypeScript apps
//! (feature `redis`).
//!
//! The keys are those of [`keys`]; the values the TypeScript apps' JSON
//! ([`SessionRecord`]), written with `SET … EX`. The per-user index `user-sessions:{<user>}`
//! makes revoke-all, listing and per-user limits work without scanning; its dead members are
//! pruned on every write to it and the key expires with the user's last session.
//!
//! # Cluster
//!
//! A session key and its user's index usually live in different slots, so no command or
//! script here touches two keys: operations that need both send two commands concurrently on
//! the multiplexed connection (one round-trip time, not two). SCAN-based helpers visit every
//! primary.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_app_sessions::StoreError> {
//! use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
//! use tower_app_sessions::{AppContext, MemoryUsers, SessionLayer};
//!
//! let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let users = MemoryUsers::new(); // or a `PgUsers`
//! let admin = SessionLayer::for_context(AppContext::Admin).store(store.clone()).users(users.clone());
//! let web = SessionLayer::for_context(AppContext::Web).store(store).users(users).legacy_fallback(true);
//! # Ok(()) }
//! ```

use futures_util::future::join_all;
use uuid::Uuid;

use super::{
    Capabilities, DataUpdate, KnownDeletions, LegacySessions, ListedSession, Scope, SessionStore,
    StoreError, StoreFuture,
};
use crate::data::{DataLimits, DataPatch};
use crate::telemetry::{StoreMetrics, StoreOp};
use crate::{AppContext, SessionId, SessionRecord};

mod bus;
pub use bus::RedisFeed;
mod conn;
mod doctor;
mod index;
pub mod keys;
mod migrate;
mod scripts;
mod stats;

pub use conn::RedisConfig;
use conn::{Redis, WrongType, BACKEND};
pub use doctor::{KeyCheck, KeyProblem, KeySample};
pub use migrate::{
    LegacyKeyFailure, LegacyMigration, MigrationMode, MigrationReport, MAX_LISTED_FAILURES,
};

/// How long a user's revocation count outlives the last revocation ([`keys::user_revocations`]).
const REVOCATION_COUNT_TTL_MS: i64 = 60_000;

/// A [`SessionStore`] on Redis or Redis Cluster.
///
/// Clones share one multiplexed connection that reconnects by itself; build one per process
/// and share it between contexts (that is what [`Sessions`](crate::Sessions) does).
#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
    scripts: scripts::Scripts,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// `EX` seconds for a record expiring at `expires_at`: rounded up, at least 1, so the key never
/// outlives the record by more than a second and never dies before it.
fn ttl_secs(expires_at: i64, now: i64) -> i64 {
    ((expires_at - now + 999) / 1000).max(1)
}

impl RedisStore {
    /// Connects (and fails fast if Redis cannot be reached now).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the URL is invalid or no connection could be made in time.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        Ok(Self {
            redis: Redis::connect(&config).await?,
            scripts: scripts::Scripts::new(),
            metrics: StoreMetrics::new(BACKEND),
        })
    }

    /// Whether this store is on a Redis Cluster (`RedisConfig::cluster`).
    pub fn is_cluster(&self) -> bool {
        self.redis.is_cluster()
    }

    /// Parses a stored value; one that is not a record is a miss, logged, never deleted.
    fn parse(key: &str, bytes: &[u8]) -> Option<SessionRecord> {
        match SessionRecord::from_json(bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                let key = keys::loggable(key);
                tracing::warn!(key, %error, "unparseable session record treated as missing");
                None
            }
        }
    }

    /// Logs a session key that holds another Redis type than a string: it is treated as
    /// missing (the layer answers as for no session), and left where it is for an operator
    /// (`tower-app-sessions doctor` names it; the legacy migration can quarantine it).
    fn wrong_type(key: &str) {
        let session = keys::handle_of(key).map(|h| h.to_string());
        tracing::warn!(
            key = keys::loggable(key),
            session = session.as_deref().unwrap_or("-"),
            "session key holds another Redis type than a string: treated as missing",
        );
    }

    async fn load_key(&self, key: String, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        let Ok(value) = self.redis.get(&key).await? else {
            Self::wrong_type(&key);
            return Ok(None);
        };
        let Some(bytes) = value else {
            return Ok(None);
        };
        let Some(record) = Self::parse(&key, &bytes) else {
            return Ok(None);
        };
        if record.is_expired(now) {
            // Expired is expired: failing to delete it must not turn a 401 into a 503.
            if let Err(error) = self.redis.del(&key).await {
                tracing::debug!(%error, "could not delete an expired session key");
            }
            return Ok(None);
        }
        Ok(Some(record))
    }

    async fn write(
        &self,
        context: &AppContext,
        id: &SessionId,
        record: &SessionRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let ttl = ttl_secs(record.expires_at, now);
        let mut set = redis::cmd("SET");
        set.arg(keys::session(context, id))
            .arg(record.bounded().to_json())
            .arg("EX")
            .arg(ttl);
        let index = self.index_add(
            &record.user_id,
            keys::index_member(context, id),
            None,
            record.expires_at,
            now,
        );
        // The key first, its index member only once the key is in: a member without its key
        // reads as a deliberate deletion (`KnownDeletions`), so a key write that fails or is
        // still under way must not leave one. One round trip more than sending both at once.
        self.redis.query::<()>(set).await?;
        index.await
    }

    async fn slide(
        &self,
        context: &AppContext,
        id: &SessionId,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let script = self.scripts.extend.clone();
        let key = keys::session(context, id);
        let ttl = ttl_secs(expires_at, now);
        let moved: redis::Value = self
            .redis
            .run(|mut c| async move {
                script
                    .key(key)
                    .arg(expires_at)
                    .arg(ttl)
                    .arg(now)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let user = match moved {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap_or_default(),
            redis::Value::SimpleString(s) => s,
            // 1: extended, no user id to index; 0 / -1: nothing extended.
            redis::Value::Int(n) => return Ok(n == 1),
            _ => return Ok(false),
        };
        // The index score is the session's expiry: keep it moving with the slide, or
        // revoke-all and logout detection would lose active sessions.
        if let Ok(user_id) = user.parse::<Uuid>() {
            self.index_add(
                &user_id,
                keys::index_member(context, id),
                None,
                expires_at,
                now,
            )
            .await?;
        }
        Ok(true)
    }

    /// Applies `patch` to the record's data in one script (`scripts/data_patch.lua`), which
    /// enforces `limits` on the data as stored.
    async fn patch_data(
        &self,
        context: &AppContext,
        id: &SessionId,
        patch: &DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> Result<DataUpdate, StoreError> {
        let script = self.scripts.data_patch.clone();
        let key = keys::session(context, id);
        let sets = patch.sets_json();
        let removes: Vec<String> = patch.removes().map(str::to_owned).collect();
        let answer: i64 = self
            .redis
            .run(|mut c| async move {
                let mut invocation = script.key(key);
                invocation
                    .arg(now)
                    .arg(limits.max_bytes)
                    .arg(limits.max_keys)
                    .arg(sets);
                for key in removes {
                    invocation.arg(key);
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(match answer {
            1 => DataUpdate::Applied,
            -2 => DataUpdate::OverLimit,
            -1 => {
                tracing::warn!(context = %context, "unparseable session record: data not written");
                DataUpdate::NotLive
            }
            _ => DataUpdate::NotLive,
        })
    }

    /// Moves `old` to `new`: see [`SessionStore::rotate`]. A key cannot be renamed across
    /// cluster slots, so the record is *taken* (`GETDEL`: from then on `old` is gone, whoever
    /// asks) and written under `new`; a revoke-all of the user that overlaps the move is seen
    /// through the user's revocation count, read before the take and after the write, and
    /// undoes the write.
    async fn move_session(
        &self,
        context: &AppContext,
        old: &SessionId,
        new: &SessionId,
        user_id: &Uuid,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let before = self.revocations(user_id).await?;
        let old_key = keys::session(context, old);
        let Ok(taken) = self
            .redis
            .query_key::<Option<Vec<u8>>>(conn::command("GETDEL", &old_key))
            .await?
        else {
            // Not a record: nothing to move (and left for an operator to look at).
            Self::wrong_type(&old_key);
            return Ok(None);
        };
        let Some(bytes) = taken else {
            return Ok(None);
        };
        let record =
            Self::parse(&old_key, &bytes).filter(|r| !r.is_expired(now) && r.user_id == *user_id);
        let Some(record) = record.filter(|_| before % 2 == 0) else {
            // Expired, unreadable, or a revocation of the user is running: taken is ended.
            return Ok(None);
        };
        let mut set = redis::cmd("SET");
        set.arg(keys::session(context, new))
            .arg(bytes)
            .arg("EX")
            .arg(ttl_secs(record.expires_at, now))
            .arg("NX");
        let index = self.index_add(
            &record.user_id,
            keys::index_member(context, new),
            Some(keys::index_member(context, old)),
            record.expires_at,
            now,
        );
        // The key before its index member, as in `write`.
        let written = self.redis.query::<Option<String>>(set).await?.is_some();
        index.await?;
        if written && self.revocations(user_id).await? == before {
            return Ok(Some(record));
        }
        // A revocation overlapped the move (or, impossibly for a fresh id, `new` was taken):
        // the session ends here.
        self.redis.del(&keys::session(context, new)).await?;
        self.index_remove(
            &keys::user_index(&record.user_id),
            &[(context.clone(), new.clone())],
        )
        .await?;
        Ok(None)
    }

    async fn revoke_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        // Counted at the start and the end, so a rotation that overlaps it undoes itself.
        self.count_revocation(user_id).await?;
        let index = keys::user_index(user_id);
        let members = self.index_members(&index, scope, now).await?;
        let deleted =
            join_all(members.iter().map(|(context, id)| async move {
                self.redis.del(&keys::session(context, id)).await
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<bool>, _>>()?;
        self.index_remove(&index, &members).await?;
        self.count_revocation(user_id).await?;
        Ok(deleted.into_iter().filter(|d| *d).count() as u64)
    }

    async fn list_user(
        &self,
        user_id: &Uuid,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<ListedSession>, StoreError> {
        let index = keys::user_index(user_id);
        let members = self.index_members(&index, scope, now).await?;
        let values =
            join_all(members.iter().map(|(context, id)| async move {
                self.redis.get(&keys::session(context, id)).await
            }))
            .await;
        let mut live = Vec::with_capacity(members.len());
        let mut dead = Vec::new();
        for ((context, id), value) in members.into_iter().zip(values) {
            // A live member whose key is gone stays: it is what remembers that the key was
            // deleted on purpose (`KnownDeletions`: the TypeScript apps' logout deletes the
            // key alone) until its score passes; it is not listed.
            let key = keys::session(&context, &id);
            let Some(bytes) = value?.unwrap_or_else(|WrongType| {
                Self::wrong_type(&key);
                None
            }) else {
                continue;
            };
            let record =
                Self::parse(&key, &bytes).filter(|r| !r.is_expired(now) && r.user_id == *user_id);
            match record {
                Some(record) => live.push(ListedSession {
                    id,
                    context,
                    record,
                }),
                None => dead.push((context, id)),
            }
        }
        self.index_remove(&index, &dead).await?;
        Ok(live)
    }
}

impl SessionStore for RedisStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.metrics.pending(
            StoreOp::Load,
            self.load_key(keys::session(context, id), now),
        )
    }

    /// Redis reads no user with the session; overridden only so that the request's one
    /// future is the load itself (the default maps `load`'s future, boxing a second one).
    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<crate::store::Loaded>, StoreError>> {
        self.metrics.pending(StoreOp::Load, async move {
            let found = self.load_key(keys::session(context, id), now).await?;
            Ok(found.map(crate::store::Loaded::from))
        })
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.metrics
            .pending(StoreOp::Save, self.write(context, id, record, now))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        _now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        // The index member stays until its score (the session's expiry) passes: it tells a
        // tiered store that the key was deleted on purpose (`KnownDeletions`).
        self.metrics.pending(StoreOp::Delete, async move {
            self.redis.del(&keys::session(context, id)).await
        })
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.metrics.pending(
            StoreOp::Rotate,
            self.move_session(context, old, new, user_id, now),
        )
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics
            .pending(StoreOp::Extend, self.slide(context, id, expires_at, now))
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        self.metrics.pending(
            StoreOp::UpdateData,
            self.patch_data(context, id, patch, limits, now),
        )
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.metrics.pending(
            StoreOp::DeleteUserSessions,
            self.revoke_user(user_id, scope, now),
        )
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        self.metrics.pending(
            StoreOp::ListUserSessions,
            self.list_user(user_id, scope, now),
        )
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none()
            .legacy(self)
            .deletions(self)
            .stats(self)
    }
}

impl LegacySessions for RedisStore {
    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        self.metrics
            .pending(StoreOp::LoadLegacy, self.load_key(keys::legacy(id), now))
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Result<bool, StoreError>> {
        self.metrics.pending(StoreOp::DeleteLegacy, async move {
            self.redis.del(&keys::legacy(id)).await
        })
    }
}

/// The user index outlives a session key deleted by another app (the TypeScript apps `DEL`
/// the key and leave the index alone), and dies with the data in a restart: a live index
/// member whose key is gone means the key was deleted on purpose — once the key has been
/// looked for again after the member was seen: writes add the member only after the key is
/// in, so neither a write landing between a reader's miss and its look at the index nor a
/// key write that failed reads as a deletion.
impl KnownDeletions for RedisStore {
    fn deleted_on_purpose<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        StoreFuture::new(async move {
            let mut cmd = redis::cmd("ZSCORE");
            cmd.arg(keys::user_index(user_id))
                .arg(keys::index_member(context, id));
            // An index of another type knows of no deletion: as if it were gone.
            let score: Option<i64> = self.redis.query_key(cmd).await?.unwrap_or(None);
            Ok(score.is_some_and(|expires_at| expires_at > now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_rounded_up() {
        assert_eq!(ttl_secs(1_000, 0), 1);
        assert_eq!(ttl_secs(1_001, 0), 2);
        assert_eq!(ttl_secs(5, 10), 1);
    }
}
