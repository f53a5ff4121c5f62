//! On-demand figures for operating the stores ([`Sessions::stats`](crate::Sessions::stats)):
//! sessions per context in memory, Redis and PostgreSQL, legacy keys left, Redis memory per
//! session key, and how much the `sessions` indexes are used. Computed when asked
//! (SCAN-based, never `KEYS`), never on the request path; serializable, so an endpoint can
//! return it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use tower_app_sessions::{AppContext, SessionId, SessionMetadata, SessionRecord, Sessions};
//!
//! let sessions = Sessions::memory();
//! let record = SessionRecord::new(uuid::Uuid::new_v4(), SessionMetadata::new(), sessions.now(), Duration::from_secs(60));
//! let id = SessionId::generate().unwrap();
//! sessions.session_store().save(&AppContext::Admin, &id, &record, sessions.now()).await.unwrap();
//!
//! let stats = sessions.stats().await.unwrap();
//! assert_eq!(stats.contexts["admin"].memory_sessions, Some(1));
//! assert!(stats.redis.is_none() && stats.postgres.is_none()); // no Redis, no PostgreSQL
//! assert_eq!(
//!     serde_json::to_value(&stats).unwrap(),
//!     serde_json::json!({"contexts": {"admin": {"memory_sessions": 1}}})
//! );
//! # });
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::{StoreError, StoreFuture};

/// What [`Sessions::stats`](crate::Sessions::stats) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionStats {
    /// Per context (by name: `web`, `admin`, custom ones).
    pub contexts: BTreeMap<String, ContextStats>,
    /// Redis-wide figures, when a Redis store is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStats>,
    /// PostgreSQL-wide figures, when a PostgreSQL store is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStats>,
}

/// One context's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ContextStats {
    /// Live sessions of the context in a [`MemoryStore`](crate::store::MemoryStore)
    /// (expired ones not yet swept are not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_sessions: Option<u64>,
    /// Keys `session:<context>:<id>` in Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_sessions: Option<u64>,
    /// Rows of the context in PostgreSQL's `sessions`, by state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_sessions: Option<RowStates>,
}

/// `sessions` rows by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RowStates {
    /// Not revoked, not expired.
    pub live: u64,
    /// Revoked (logout, revoke-all; kept for audit).
    pub revoked: u64,
    /// Not revoked, past `expires_at`.
    pub expired: u64,
}

/// Redis-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedisStats {
    /// Pre-migration keys `session:<id>` left (the migration's cleanup check wants 0).
    pub legacy_keys: u64,
    /// `INFO memory` `used_memory`, summed over the primaries.
    pub used_memory_bytes: u64,
    /// Session keys whose `MEMORY USAGE` was sampled.
    pub sampled_keys: u64,
    /// Their mean `MEMORY USAGE`, in bytes; `None` without a session key.
    pub bytes_per_session_key: Option<u64>,
}

/// PostgreSQL-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PostgresStats {
    /// The indexes of `sessions`, from `pg_stat_user_indexes`.
    pub indexes: Vec<IndexUsage>,
}

/// One index's use since the statistics were last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IndexUsage {
    /// The index.
    pub name: String,
    /// Scans that used it (`idx_scan`).
    pub scans: u64,
    /// Index entries read (`idx_tup_read`).
    pub tuples_read: u64,
}

impl SessionStats {
    /// The figures of `self` and `other` together (a tiered store's two halves).
    #[must_use]
    pub(crate) fn merge(mut self, other: SessionStats) -> Self {
        for (context, theirs) in other.contexts {
            let ours = self.contexts.entry(context).or_default();
            ours.memory_sessions = ours.memory_sessions.or(theirs.memory_sessions);
            ours.redis_sessions = ours.redis_sessions.or(theirs.redis_sessions);
            ours.postgres_sessions = ours.postgres_sessions.or(theirs.postgres_sessions);
        }
        self.redis = self.redis.or(other.redis);
        self.postgres = self.postgres.or(other.postgres);
        self
    }

    /// The entry of `context`.
    #[cfg_attr(
        // `redis` and `postgres` turn on `memory`.
        not(feature = "memory"),
        allow(dead_code)
    )]
    pub(crate) fn context(&mut self, context: &str) -> &mut ContextStats {
        self.contexts.entry(context.to_owned()).or_default()
    }
}

/// A store that can report [`SessionStats`] (a capability: see
/// [`Capabilities`](crate::store::Capabilities)).
pub trait StoreStats: Send + Sync {
    /// The store's figures at `now` (milliseconds since the Unix epoch).
    ///
    /// # Errors
    /// [`StoreError`] if the backend fails.
    fn stats(&self, now: i64) -> StoreFuture<'_, Result<SessionStats, StoreError>>;
}
