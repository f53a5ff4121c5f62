//! The per-user keys of [`RedisStore`]: the index `user-sessions:{<user>}` (a sorted set of
//! `<context>:<id>` scored by expiry: listing, revoke-all and limits without scanning) and
//! the revocation count `user-revocations:{<user>}`. A key of another type there (not this
//! crate's, or damaged) reads as absent and is replaced by the next write, logged: one stray
//! key must not make every sign-in or revocation of a user fail.

use uuid::Uuid;

use super::conn::WrongType;
use super::{keys, RedisStore, REVOCATION_COUNT_TTL_MS};
use crate::store::{Scope, StoreError};
use crate::{AppContext, SessionId};

impl RedisStore {
    /// Logs a per-user index that is not a sorted set: treated as empty (no session of the
    /// user can be listed or ended through it) until the next write replaces it.
    fn index_wrong_type(index: &str) {
        tracing::warn!(
            key = index,
            "per-user session index holds another Redis type than a sorted set: treated as empty until the next sign-in replaces it",
        );
    }

    /// Adds (or moves) `member` in the user's index, removing `replaced` in the same script.
    /// An index of another type than a sorted set (not this crate's, or damaged) is replaced
    /// by a fresh one, and logged.
    pub(super) async fn index_add(
        &self,
        user_id: &Uuid,
        member: String,
        replaced: Option<String>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let script = self.scripts.index_add.clone();
        let key = keys::user_index(user_id);
        let index = key.clone();
        let answer: i64 = self
            .redis
            .run(|mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(member).arg(expires_at).arg(now);
                if let Some(replaced) = replaced {
                    invocation.arg(replaced);
                }
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await?;
        if answer == 2 {
            tracing::warn!(
                key = index,
                "per-user session index held another Redis type than a sorted set: replaced",
            );
        }
        Ok(())
    }

    /// Live members of a user's index in `scope` (by score: a record is expired from its
    /// `expires_at` on; dead ones are left for pruning).
    pub(super) async fn index_members(
        &self,
        index: &str,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<(AppContext, SessionId)>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(index)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE");
        let Ok(members) = self.redis.query_key::<Vec<String>>(cmd).await? else {
            Self::index_wrong_type(index);
            return Ok(Vec::new());
        };
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_index_member(m))
            .filter(|(context, _)| scope.includes(context))
            .collect())
    }

    pub(super) async fn index_remove(
        &self,
        index: &str,
        members: &[(AppContext, SessionId)],
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(index);
        for (context, id) in members {
            cmd.arg(keys::index_member(context, id));
        }
        // An index replaced by another type meanwhile has nothing of ours to remove.
        self.redis.query_key::<()>(cmd).await.map(drop)
    }

    /// The user's revocation count ([`keys::user_revocations`]); 0 when none is known, and
    /// when the key holds something else than a count (logged): the next revocation replaces
    /// it before it removes anything ([`count_revocation`](Self::count_revocation)), so a
    /// rotation that overlaps that revocation still sees the count change.
    pub(super) async fn revocations(&self, user_id: &Uuid) -> Result<i64, StoreError> {
        let key = keys::user_revocations(user_id);
        let count = match self.redis.get(&key).await? {
            Ok(None) => Some(0),
            Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse().ok()),
            Err(WrongType) => None,
        };
        Ok(count.unwrap_or_else(|| {
            tracing::warn!(key, "revocation count holds no integer: read as 0");
            0
        }))
    }

    /// Counts one edge of a revocation (its start or its end). The count outlives any one
    /// revocation by a minute: a revocation that dies half-way leaves it odd, and rotations of
    /// the user's sessions fail (closed) until it expires.
    ///
    /// A key that holds something else than a count (another type, or a string that is not
    /// an integer) is replaced by a fresh count, and logged.
    pub(super) async fn count_revocation(&self, user_id: &Uuid) -> Result<(), StoreError> {
        let key = keys::user_revocations(user_id);
        let script = self.scripts.count_revocation.clone();
        let replaced: i64 = self
            .redis
            .run(|mut c| {
                let key = key.clone();
                async move {
                    script
                        .key(key)
                        .arg(REVOCATION_COUNT_TTL_MS)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        if replaced == 1 {
            tracing::warn!(key, "revocation count held no integer: replaced");
        }
        Ok(())
    }
}
