//! What operators' jobs need of a [`Sessions`] beyond serving requests: the backends
//! `from_env` connected (for the legacy-key migration, retention and consistency checks),
//! the migrations still to apply, and the legacy fallback in force. The operator CLI
//! (`tower-app-sessions`, feature `cli`) is built on these and on `Sessions`' own
//! operations only; a deploy job or an admin endpoint can use them the same way.

use crate::config::{MigrateError, PendingMigration};
use crate::{AppContext, Sessions};

impl Sessions {
    /// The Redis store [`from_env`](Sessions::from_env) connected (`None` with in-memory
    /// stores, and for a `Sessions` built by hand: keep your own handle then). For jobs the
    /// session operations do not cover:
    /// [`migrate_legacy_with`](crate::store::RedisStore::migrate_legacy_with) (the legacy-key
    /// migration, its dry run and quarantine) and
    /// [`check_sessions`](crate::store::RedisStore::check_sessions) (a consistency check of
    /// the keys).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_app_sessions::store::redis::{LegacyMigration, MigrationMode};
    /// use tower_app_sessions::Sessions;
    ///
    /// let sessions = Sessions::from_env().await?;
    /// if let Some(redis) = sessions.redis_store() {
    ///     let preview = LegacyMigration::new(MigrationMode::Move).dry_run(true);
    ///     let report = redis.migrate_legacy_with(&preview, &|_| {}).await?;
    ///     println!("{} legacy keys, {} would be moved", report.scanned, report.moved);
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis_store(&self) -> Option<&crate::store::RedisStore> {
        self.redis.as_ref()
    }

    /// The PostgreSQL session store [`from_env`](Sessions::from_env) connected on the
    /// identity database (`None` without a database, and for a `Sessions` built by hand).
    /// For retention ([`purge`](crate::store::PgSessionStore::purge)) and the schema check
    /// ([`check_schema`](crate::store::PgSessionStore::check_schema)).
    #[cfg(feature = "postgres")]
    pub fn postgres_store(&self) -> Option<&crate::store::PgSessionStore> {
        self.databases.sessions.as_ref()
    }

    /// What [`migrate`](Sessions::migrate) would change, creating nothing: the schema
    /// migrations each database has not applied, and the notification triggers when
    /// `SESSION_NOTIFIED_REVALIDATE_SECS` asks for them and they are not installed (as the
    /// notifications found when they started listening). Empty when everything is up to
    /// date, and without PostgreSQL.
    ///
    /// # Errors
    /// [`MigrateError`] naming the database that could not be read.
    pub async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, MigrateError> {
        #[allow(unused_mut)]
        let mut pending = self.databases.pending().await?;
        #[cfg(feature = "postgres")]
        if self.databases.notifications
            && self.notifications.as_ref().is_some_and(|n| !n.is_healthy())
        {
            pending.push(PendingMigration::NotificationTriggers);
        }
        Ok(pending)
    }

    /// The contexts whose layers read pre-migration sessions (set by
    /// [`legacy_fallback_contexts`](Sessions::legacy_fallback_contexts); `from_env`: `web`
    /// with `SESSION_MIGRATION_STRATEGY=gradual`). Empty once the migration's cleanup
    /// turned the fallback off.
    pub fn legacy_contexts(&self) -> &[AppContext] {
        &self.settings.legacy_contexts
    }
}
