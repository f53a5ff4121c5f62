//! The environment's vocabulary: what `Sessions::from_env` reads, and the errors that name
//! what to fix.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `SESSION_ENV` | `mock`, `development`, `production` | `mock` (in-memory stores) |
//! | `SESSION_MIGRATION_STRATEGY` | `mock-only`, `production-only`, `gradual`, `mock-with-write-through` | `mock-only` in mock, else `production-only` |
//! | `REDIS_URL`, `REDIS_MAX_RETRIES` | Redis connection | required outside mock |
//! | `REDIS_CLUSTER` | `true`: `REDIS_URL` lists Redis Cluster nodes, comma-separated | `false` |
//! | `DATABASE_URL` or `DATABASE_IDENTITY_URL` | the PostgreSQL user database | required in production |
//! | `DATABASE_WEB_URL` | the web app's own database | optional |
//! | `SESSION_REVALIDATE_SECS` | how long a Redis copy is trusted before PostgreSQL is asked | `5` |
//! | `SESSION_NOTIFIED_REVALIDATE_SECS` | with PostgreSQL: listen for its [notifications](crate::store::postgres::Notifications) and trust a checked Redis copy this long while they are heard (`SESSION_REVALIDATE_SECS` applies while they are not); [`Sessions::migrate`](crate::Sessions::migrate) then installs the triggers | unset: not listening |
//! | `SESSION_TRUSTED_ORIGINS` | comma-separated origins (`https://admin.example.com`) whose writes pass the [cross-origin check](crate::cross_origin) | none |
//! | `SESSION_CACHE_ENTRIES`, `SESSION_CACHE_TTL_SECS` | every layer's [session cache](crate::Sessions::cache): at most this many sessions, each for at most this long | unset or `0`: no cache; TTL `SESSION_REVALIDATE_SECS` |
//! | `SESSION_USER_CACHE_ENTRIES`, `SESSION_USER_CACHE_TTL_SECS` | the [user cache](crate::Sessions::user_cache) | unset or `0`: no cache; TTL `SESSION_NOTIFIED_REVALIDATE_SECS` if set, else `SESSION_REVALIDATE_SECS` |
//! | `SESSION_MAX_PER_USER` | sessions a user may have per context; a login beyond it ends the least recently used ([`SessionLayer::max_sessions_per_user`](crate::SessionLayer::max_sessions_per_user)) | unset or `0`: no limit |
//!
//! The caches share one invalidation bus: Redis pub/sub on `REDIS_URL` (in-process with
//! `SESSION_ENV=mock`), following PostgreSQL's notifications when they are on.
//!
//! The password login reads its own (feature `throttle`, [`PasswordLogin::from_env`](crate::login::PasswordLogin::from_env)):
//!
//! | variable | values | default |
//! |---|---|---|
//! | `SESSION_DEVICE_KEY` | the base64 of at least 32 random bytes, the same on every instance: the key of the [device cookies](crate::throttle::DeviceCookies) | unset: a random key per process, and a warning |
//! | `LOGIN_LIMIT_PER_ADDRESS`, `LOGIN_LIMIT_PER_ACCOUNT`, `LOGIN_LIMIT_PER_DEVICE`, `LOGIN_LIMIT_PER_SESSION` | attempts per minute of each [budget](crate::throttle) (`0`: no limit) | `30`, `10`, `10`, `10` |
//!
//! Reading them is pure (what [`Sessions::from_lookup`](crate::Sessions::from_lookup) reads
//! is checked before anything connects). Production without its
//! backends is a startup error that names the missing variable; there is never a silent
//! fallback to memory.

#[cfg(feature = "memory")]
mod connect;
// Read only to be connected, which needs the in-memory store at least.
#[cfg(feature = "memory")]
mod plan;

#[cfg(feature = "memory")]
pub(crate) use plan::{Backends, Plan};

use crate::AppContext;

/// `SESSION_ENV`: which backends the process runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `mock`: in-memory stores, nothing to set up.
    Mock,
    /// `development`: real backends, development defaults.
    Development,
    /// `production`: real backends, every variable required.
    Production,
}

/// `SESSION_MIGRATION_STRATEGY`: the TypeScript apps' migration strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStrategy {
    /// `mock-only`: memory only.
    MockOnly,
    /// `production-only`: Redis as the fast path, PostgreSQL as the durable record.
    ProductionOnly,
    /// `gradual`: production plus the legacy fallbacks, for the migration period.
    Gradual,
    /// `mock-with-write-through`: serve from memory, write through to the real backends.
    MockWithWriteThrough,
}

labels!(Environment, ConfigError, trim: true, |other: &str| ConfigError::Invalid {
        var: "SESSION_ENV",
        value: other.chars().take(64).collect(),
        expected: Environment::LABELS.trim_end(),
    },
    Environment::Mock => "mock",
    Environment::Development => "development",
    Environment::Production => "production",
);

labels!(MigrationStrategy, ConfigError, trim: true, |other: &str| ConfigError::Invalid {
        var: "SESSION_MIGRATION_STRATEGY",
        value: other.chars().take(64).collect(),
        expected: MigrationStrategy::LABELS.trim_end(),
    },
    MigrationStrategy::MockOnly => "mock-only",
    MigrationStrategy::ProductionOnly => "production-only",
    MigrationStrategy::Gradual => "gradual",
    MigrationStrategy::MockWithWriteThrough => "mock-with-write-through",
);

/// A configuration that cannot start. Every variant names the variable and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable has a value outside its set.
    #[error("{var}={value:?} is not valid: set {var} to one of: {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value (cut to 64 characters).
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A variable the chosen environment needs is not set.
    #[error("{var} is not set, but {needed_by} needs it: {fix}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What needs it (`SESSION_ENV=production`, …).
        needed_by: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A secret-valued variable (a key) that cannot be used. The value is not repeated.
    #[error("{var} is not valid ({reason}): set {var} to {expected}")]
    InvalidSecret {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A number-valued variable that is not a number.
    #[error("{var}={value:?} is not a whole number: set {var} to a number such as {example}")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// Its value (cut to 64 characters).
        value: String,
        /// A valid value.
        example: u64,
    },
    /// A backend named by a variable could not be reached at startup.
    #[error(
        "{var} could not be reached: {reason}; check that the server runs and that {var} is right"
    )]
    Unreachable {
        /// The variable.
        var: &'static str,
        /// The driver's error (no credentials: the URL is not repeated).
        reason: String,
    },
    /// The session store cannot hold sessions of this context (a custom context on a bare
    /// `PgSessionStore`, whose `"ApplicationType"` enum knows `web` and `admin`).
    #[error("the session store cannot hold sessions of the {context} context: PostgreSQL's \"ApplicationType\" knows web and admin only; put the context's sessions in Redis or memory, or in a TieredStore (which keeps them in its fast store)")]
    UnsupportedContext {
        /// The context.
        context: AppContext,
    },
    /// The configuration needs a backend this build of the crate does not have.
    #[error("{var}={value} needs the `{feature}` backend, which this build of tower-app-sessions does not include: {fix}")]
    BackendUnavailable {
        /// The variable that asked for it.
        var: &'static str,
        /// Its value.
        value: String,
        /// The cargo feature or backend.
        feature: &'static str,
        /// How to fix it.
        fix: &'static str,
    },
}

/// A change [`Sessions::migrate`](crate::Sessions::migrate) would make
/// ([`Sessions::pending_migrations`](crate::Sessions::pending_migrations)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingMigration {
    /// A schema migration not applied yet.
    Schema {
        /// `identity` or `web`.
        database: &'static str,
        /// Its version.
        version: i64,
        /// What it is.
        description: String,
    },
    /// The notification triggers `SESSION_NOTIFIED_REVALIDATE_SECS` listens for are not
    /// installed in the identity database.
    NotificationTriggers,
}

impl std::fmt::Display for PendingMigration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PendingMigration::Schema {
                database,
                version,
                description,
            } => write!(
                f,
                "{database} database: apply migration {version} ({description})"
            ),
            PendingMigration::NotificationTriggers => {
                f.write_str("identity database: install the notification triggers")
            }
        }
    }
}

/// A migration of one of the databases failed.
#[derive(Debug, thiserror::Error)]
#[error("migrating the {database} database failed: {reason}")]
pub struct MigrateError {
    /// `identity` or `web`.
    pub database: &'static str,
    /// The migrator's message.
    pub reason: String,
}
