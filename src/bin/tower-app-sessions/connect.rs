//! The stores, connected by `Sessions::from_env` exactly as the apps connect them (the
//! user repository paired with PostgreSQL, the revalidation bound, notifications, the legacy
//! fallback), with two visible adjustments for an operator's process:
//!
//! - `--cluster` is `REDIS_CLUSTER=true`;
//! - with `SESSION_MIGRATION_STRATEGY=mock-with-write-through` the apps serve sessions from
//!   their own memory, which no other process can reach; the CLI works on what they write
//!   through to Redis and PostgreSQL, wired as `production-only` wires them, and says so.
//!
//! Ending sessions is published on `REDIS_URL`'s invalidation channel, where the apps'
//! session caches listen (`Sessions::publish`; not on a cluster, which has no such channel).

use tower_app_sessions::cache::InvalidationBus;
use tower_app_sessions::config::PendingMigration;
use tower_app_sessions::Sessions;

use crate::output::stderr;

const WRITE_THROUGH: &str = "mock-with-write-through";

/// What a command works on.
pub(crate) struct Connected {
    pub sessions: Sessions,
    /// `--cluster` (or `REDIS_CLUSTER=true`).
    pub cluster: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Connects what the environment names; an error names the variable to fix.
pub(crate) async fn connect(cluster: bool) -> Result<Connected, String> {
    let write_through = var("SESSION_MIGRATION_STRATEGY")
        .is_some_and(|s| s.trim().eq_ignore_ascii_case(WRITE_THROUGH));
    let sessions = Sessions::from_lookup(|name| match name {
        "REDIS_CLUSTER" if cluster => Some("true".to_owned()),
        "SESSION_MIGRATION_STRATEGY" if write_through => Some("production-only".to_owned()),
        _ => var(name),
    })
    .await
    .map_err(|error| error.to_string())?;
    if sessions.redis_store().is_none() {
        return Err(format!(
            "SESSION_ENV={}: in-memory stores, nothing to operate (set SESSION_ENV=development \
             or production, and REDIS_URL)",
            sessions.environment()
        ));
    }
    if write_through {
        stderr(&format!(
            "note: SESSION_MIGRATION_STRATEGY={WRITE_THROUGH}: the apps serve sessions from \
             their own memory; this works on the copies written through to Redis and \
             PostgreSQL"
        ));
    }
    let cluster = sessions
        .redis_store()
        .is_some_and(tower_app_sessions::store::RedisStore::is_cluster);
    Ok(Connected { sessions, cluster })
}

impl Connected {
    /// Fails with "run `tower-app-sessions migrate`" when the identity database lacks a
    /// migration: the commands that read `sessions` need its schema.
    pub(crate) async fn require_schema(&self) -> Result<(), String> {
        if self.sessions.postgres_store().is_none() {
            return Ok(());
        }
        let pending: Vec<PendingMigration> = self
            .sessions
            .pending_migrations()
            .await
            .map_err(|error| error.to_string())?
            .into_iter()
            .filter(|p| {
                matches!(
                    p,
                    PendingMigration::Schema {
                        database: "identity",
                        ..
                    }
                )
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the identity database is not migrated ({} migration{} pending): run \
             `tower-app-sessions migrate`",
            pending.len(),
            if pending.len() == 1 { "" } else { "s" }
        ))
    }

    /// The sessions, publishing every deletion on `REDIS_URL`'s invalidation channel, so
    /// the apps' caches drop what is ended before the command returns (a cluster has no
    /// channel: said on stderr).
    pub(crate) async fn publishing(self) -> Result<Sessions, String> {
        if self.cluster {
            stderr(
                "note: --cluster: no invalidation channel; the apps' session caches keep ended \
                 sessions until their entries expire (their cache TTL)",
            );
            return Ok(self.sessions);
        }
        let url = var("REDIS_URL").unwrap_or_default();
        let bus = InvalidationBus::redis(&url)
            .await
            .map_err(|error| format!("REDIS_URL (invalidation channel): {error}"))?;
        Ok(self.sessions.publish(&bus))
    }
}
