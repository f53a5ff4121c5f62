//! [`Clock`]: where the crate reads the time, and [`ManualClock`] to drive it by hand.
//!
//! Every expiry decision (idle and absolute timeouts, sliding, a store's "is this record
//! live", the tiered store's revalidation, the cache's bound) is taken against one clock
//! reading per operation, in milliseconds since the Unix epoch (`Date.now()` in the
//! TypeScript apps). Layers read it from their [`Clock`], which is the system clock unless a
//! [`ManualClock`] replaces it, and hand the reading to the store (every time-dependent
//! [`SessionStore`](crate::SessionStore) method takes `now`). So a test can move a whole
//! deployment through a day of idle timeouts in microseconds, and its assertions are exact:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use axum::{routing::{get, post}, Router};
//! use tower::ServiceExt;
//! use tower_app_sessions::{clock::ManualClock, AppContext, CurrentUser, MemoryUsers, Session, SessionLayer, SessionMetadata, User};
//!
//! let clock = ManualClock::starting_now();
//! let users = MemoryUsers::new();
//! let user = users.insert(User::new("ada@example.com", tower_app_sessions::Role::User)).unwrap().id;
//! let app = Router::new()
//!     .route("/login", post(move |s: Session| async move { s.login(user, SessionMetadata::new()).await.map(|_| "ok") }))
//!     .route("/me", get(|_: CurrentUser<User>| async { "me" }))
//!     .layer(SessionLayer::for_context(AppContext::Web).users(users).idle_timeout(Duration::from_secs(60)).clock(clock.clock()));
//! let res = app.clone().oneshot(http::Request::post("/login").body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
//! let me = || http::Request::get("/me").header("cookie", &cookie).body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(me()).await.unwrap().status(), 200);
//!
//! clock.advance(Duration::from_secs(61)); // idle for longer than the timeout
//! assert_eq!(app.oneshot(me()).await.unwrap().status(), 401);
//! # });
//! ```
//!
//! Time that belongs to a server is not the clock's: a Redis key's TTL runs on Redis's
//! clock (it is a memory bound; the record's `expires_at` decides), and audit columns such as
//! `revoked_at` are written by PostgreSQL's `now()`.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::record::{duration_ms, now_ms};

/// The time source of a layer: the system clock (the default) or a [`ManualClock`].
///
/// Cloning is cheap; reading the system clock costs what `SystemTime::now()` costs.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => now_ms(),
            Some(at) => at.load(Ordering::Acquire),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock(system)"),
            Some(at) => write!(f, "Clock(manual at {} ms)", at.load(Ordering::Acquire)),
        }
    }
}

/// A clock that moves only when told to: for tests of code that depends on timeouts.
///
/// Clones share the same time. Hand [`clock`](Self::clock) to the layers (and to
/// [`PgUsers`](crate::users::PgUsers) where its probe interval matters), then
/// [`advance`](Self::advance) it.
///
/// ```
/// use std::time::Duration;
/// use tower_app_sessions::clock::ManualClock;
///
/// let clock = ManualClock::at(1_000);
/// let reader = clock.clock();
/// clock.advance(Duration::from_millis(500));
/// assert_eq!(reader.now_ms(), 1_500);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    at: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `ms` milliseconds since the Unix epoch.
    pub fn at(ms: i64) -> Self {
        Self {
            at: Arc::new(AtomicI64::new(ms)),
        }
    }

    /// A clock standing at the current system time (so records it stamps look like real ones
    /// to other programs reading the same store).
    pub fn starting_now() -> Self {
        Self::at(now_ms())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.at.fetch_add(duration_ms(by), Ordering::AcqRel);
    }

    /// Sets the clock to `ms` milliseconds since the Unix epoch (backwards too).
    pub fn set(&self, ms: i64) {
        self.at.store(ms, Ordering::Release);
    }

    /// The time it shows, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.at.load(Ordering::Acquire)
    }

    /// A [`Clock`] that reads this one.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(Arc::clone(&self.at)),
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        manual.clock()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({} ms)", self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_moves_and_a_manual_one_does_not() {
        let system = Clock::system();
        let before = now_ms();
        assert!(system.now_ms() >= before);
        let manual = ManualClock::at(42);
        let clock = manual.clock();
        assert_eq!(clock.now_ms(), 42);
        assert_eq!(clock.now_ms(), 42);
        manual.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), 1_042);
        manual.set(7);
        assert_eq!(clock.clone().now_ms(), 7);
    }
}
