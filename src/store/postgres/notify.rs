//! [`Notifications`]: PostgreSQL `LISTEN/NOTIFY` for revocations and user changes made by any
//! process, so that copies can be trusted for long and still end at once (opt-in).
//!
//! [`install_notifications`] creates a trigger function and triggers on `sessions`, `users`
//! and `user_permissions` (`migrations/notifications/install.sql`). They are the only objects
//! this crate adds beside the Prisma schema, so they are created only when asked for, and
//! removed by `migrations/notifications/uninstall.sql` ([`uninstall_notifications`]) and by the
//! rollback script. They send, on the channel [`NOTIFY_CHANNEL`], one message per change
//! that must end a trusted copy: a session revoked, deleted, moved, its data changed or its
//! expiry shortened (`UPDATE sessions SET revoked = true` from the TypeScript admin panel
//! included), a user's role, email, password hash or verification changed or the user
//! deleted, any change of `user_permissions`. A slide that only extends a session sends
//! nothing, so the per-request path does not generate traffic; nor does deleting a row
//! already revoked or expired (a purge). What is not a row change is not notified: a
//! permission lapsing by its `expires_at`, and anything done in Redis alone (the TypeScript
//! apps' logout, a bare `DEL`). A row deleted outright ends the trust in its Redis copy, but
//! the tiered store then serves that copy as a Redis-only session's: revoke rows instead.
//! Behind a pooler in transaction mode (PgBouncer) `LISTEN` hears nothing: listen on a direct
//! connection.
//!
//! [`Notifications::listen`] keeps one connection listening; it is a
//! [`ChangeFeed`](crate::feed::ChangeFeed). What it hears goes to every
//! [`TieredStore`](crate::store::TieredStore) that follows it
//! ([`TieredStore::notifications`](crate::store::TieredStore::notifications)) and to every
//! cache whose bus follows it
//! ([`InvalidationBus::follow`](crate::cache::InvalidationBus::follow)). The connection is
//! checked every [`HEARTBEAT`]; when it drops or stops answering, everything trusted is
//! dropped and the followers fall back to their short bounds (fail towards freshness) until it
//! listens again, when everything trusted is dropped once more (messages may have been missed).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use tower_app_sessions::store::postgres::{connect, install_notifications, Notifications, PgSessionStore};
//! use tower_app_sessions::store::{redis::{RedisConfig, RedisStore}, TieredStore};
//!
//! let pool = connect("postgres://postgres@127.0.0.1:5432/app").await?;
//! install_notifications(&pool).await?; // once, from a deploy step
//! let notifications = Notifications::listen(&pool).await?;
//! let redis = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let store = TieredStore::new(Arc::new(redis), Arc::new(PgSessionStore::new(pool)))
//!     .revalidate_after(Duration::from_secs(5)) // while notifications are down
//!     .notifications(&notifications, Duration::from_secs(300)); // while they are up
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::row::pg_error;
use crate::feed::{Change, ChangeFeed, FeedListener, Listeners};
use crate::store::StoreError;

/// The channel the triggers notify on.
pub const NOTIFY_CHANNEL: &str = "tower_app_sessions";

/// How often the listening connection is checked (a query on it, answered within twice
/// this): a connection that died without closing is noticed within three times this.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest wait between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const INSTALL: &str = include_str!("../../../migrations/notifications/install.sql");
const UNINSTALL: &str = include_str!("../../../migrations/notifications/uninstall.sql");

/// Creates (or replaces) the notification triggers of `migrations/notifications/install.sql`
/// on the migrated identity database. Idempotent; run it from a deploy step, like
/// [`migrate`](super::migrate).
///
/// # Errors
/// [`StoreError::Backend`] if the SQL fails (say, the tables are not migrated yet).
pub async fn install_notifications(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::raw_sql(INSTALL)
        .execute(pool)
        .await
        .map(drop)
        .map_err(pg_error)
}

/// Removes the notification triggers and their function (`migrations/notifications/
/// uninstall.sql`); rows are not touched. Idempotent.
///
/// # Errors
/// [`StoreError::Backend`] if the SQL fails.
pub async fn uninstall_notifications(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::raw_sql(UNINSTALL)
        .execute(pool)
        .await
        .map(drop)
        .map_err(pg_error)
}

struct Shared {
    listeners: Listeners,
    listening: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn set_health(&self, healthy: bool) {
        self.listeners.set_health(healthy);
        tracing::info!(
            healthy,
            "PostgreSQL notifications {}",
            if healthy {
                "listening"
            } else {
                "lost; short bounds apply"
            }
        );
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.listening).take() {
            task.abort();
        }
        // Nobody listens any more: followers that outlive the handle (a bus) must not trust.
        if self.listeners.is_healthy() {
            self.set_health(false);
        }
    }
}

/// One listening connection for the notification triggers, shared by its followers. Clones
/// share it; it stops listening when the last clone is dropped.
#[derive(Clone)]
pub struct Notifications {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl Notifications {
    /// Listens on [`NOTIFY_CHANNEL`] over a connection of its own, opened with `pool`'s
    /// options (not taken from `pool`). Needs a Tokio runtime.
    ///
    /// The triggers must be installed ([`install_notifications`]) for anything to be heard:
    /// while they are not (checked with every [`HEARTBEAT`]), the notifications count as not
    /// healthy, so followers keep their short bounds and nothing is trusted for long on the
    /// strength of messages that would never come.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if it cannot listen now.
    pub async fn listen(pool: &PgPool) -> Result<Self, StoreError> {
        let options = (*pool.connect_options()).clone();
        let mut listener = connect(&options).await.map_err(pg_error)?;
        let installed = installed(&mut listener).await.map_err(pg_error)?;
        if !installed {
            tracing::warn!("PostgreSQL notification triggers are not installed (install_notifications); short bounds apply");
        }
        let shared = Arc::new(Shared {
            listeners: Listeners::new(installed),
            listening: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&shared), options, listener));
        *crate::sync::lock(&shared.listening) = Some(task);
        Ok(Self { shared })
    }

    /// Whether it is listening now and the triggers are installed: while not, followers use
    /// their short bounds.
    pub fn is_healthy(&self) -> bool {
        self.shared.listeners.is_healthy()
    }
}

/// What the triggers notify, and whether they are heard. Publishing is the triggers' job:
/// [`ChangeFeed::publish`] sends nothing.
impl ChangeFeed for Notifications {
    fn follow(&self, listener: Weak<dyn FeedListener>) {
        self.shared.listeners.follow(listener);
    }

    fn is_healthy(&self) -> bool {
        Notifications::is_healthy(self)
    }
}

/// The health check: whether every trigger `install.sql` creates is in place, exactly.
const CHECK: &str = include_str!("../../../migrations/notifications/check.sql");

/// Whether all the triggers are there, enabled and exactly as `install.sql` makes them (the
/// heartbeat's query: it also proves the connection answers). A table recreated without
/// them, or `DISABLE TRIGGER`, counts as not installed.
///
/// The check (`migrations/notifications/check.sql`) names each trigger, the table it must be
/// on (resolved through the search path as the crate's queries resolve it, never a temporary
/// table), its events, and the function it must call by OID, in that table's schema. So no
/// other trigger counts: a role with only the default `TEMP` privilege cannot stand in for
/// a dropped trigger with a temporary table and a `pg_temp` function of the same name, nor
/// turn every instance to short bounds by adding a ninth trigger somewhere.
async fn installed(listener: &mut PgListener) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(CHECK).fetch_one(&mut *listener).await
}

/// A listening connection: a pool of one, so a dead connection goes with its pool.
async fn connect(options: &sqlx::postgres::PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let options = options
        .clone()
        .application_name("tower-app-sessions notifications");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(MAX_BACKOFF)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

/// Listens until the last handle is gone, listening again after every loss.
async fn run(
    shared: Weak<Shared>,
    options: sqlx::postgres::PgConnectOptions,
    mut listener: PgListener,
) {
    loop {
        let lost = hear(&shared, &mut listener).await;
        drop(listener);
        let Some(alive) = shared.upgrade() else {
            return;
        };
        tracing::warn!(error = %lost, "PostgreSQL notification connection lost");
        if alive.listeners.is_healthy() {
            alive.set_health(false);
        }
        drop(alive);
        let mut backoff = Duration::from_millis(100);
        listener = loop {
            tokio::time::sleep(backoff).await;
            if shared.strong_count() == 0 {
                return;
            }
            match tokio::time::timeout(MAX_BACKOFF, connect(&options)).await {
                Ok(Ok(listener)) => break listener,
                Ok(Err(error)) => tracing::debug!(%error, "cannot listen for notifications yet"),
                Err(_) => tracing::debug!("listening for notifications timed out"),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
    }
}

/// Delivers what `listener` hears, and keeps the health current (listening, and the
/// triggers installed), until its connection is lost (the reason).
async fn hear(shared: &Weak<Shared>, listener: &mut PgListener) -> String {
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            heard = listener.try_recv() => match heard {
                Ok(Some(notification)) => {
                    let Some(shared) = shared.upgrade() else {
                        return "stopped".into();
                    };
                    if let Some(change) = Change::decode(notification.payload().as_bytes()) {
                        shared.listeners.deliver(&change);
                    }
                }
                Ok(None) => return "connection closed".into(),
                Err(error) => return error.to_string(),
            },
            // The first tick is at once: a reconnect checks the triggers before trusting.
            _ = beat.tick() => {
                // Twice the period: a briefly slow server does not flush every follower.
                let answer = tokio::time::timeout(HEARTBEAT * 2, installed(listener)).await;
                let installed = match answer {
                    Ok(Ok(installed)) => installed,
                    Ok(Err(error)) => return error.to_string(),
                    Err(_) => return format!("no answer within {:?}", HEARTBEAT * 2),
                };
                let Some(shared) = shared.upgrade() else {
                    return "stopped".into();
                };
                if shared.listeners.is_healthy() != installed {
                    if !installed {
                        tracing::warn!("PostgreSQL notification triggers are not installed; short bounds apply");
                    }
                    shared.set_health(installed);
                }
            }
        }
    }
}
