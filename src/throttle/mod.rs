//! [`LoginThrottle`]: what to put in front of your own login (and registration) handler, so
//! that password hashing cannot be turned into a flood, and password guessing neither into
//! success nor into a lockout of the account's owner (feature `throttle`).
//!
//! [`PasswordLogin`](crate::login::PasswordLogin) puts all of this in the right order for you;
//! use the throttle directly only for a login flow of your own.
//!
//! Verifying a password with a memory-hard hash costs real resources (Argon2id with its
//! default parameters: 19 MiB and tens of milliseconds per call). Without a bound, a few
//! hundred concurrent wrong-password logins take a process to gigabytes. The throttle gives:
//!
//! 1. **at most N verifications at once** ([`LoginThrottle::verify`], default N = the number
//!    of cores), run on blocking threads; the rest wait at most
//!    [`max_wait`](LoginThrottle::max_wait) (default 5 s) and then get
//!    [`Throttled::Busy`]: `503` with `Retry-After`;
//! 2. **attempts from unknown devices, per client address and per account**
//!    ([`LoginThrottle::admit`], token buckets from the `governor` crate; defaults 30 per
//!    minute per address and 10 per minute per account, `LOGIN_LIMIT_PER_ADDRESS` /
//!    `LOGIN_LIMIT_PER_ACCOUNT`, `0` turning one off): over them,
//!    [`Throttled::TooManyAttempts`], `429` with `Retry-After`. Accounts are counted by
//!    [canonical email](crate::users::canonical_email) whether or not such a user exists,
//!    so the answer tells nothing about which emails are registered. IPv6 addresses are
//!    counted by their /64 prefix (one subscriber's network: a client picks any address in
//!    it), IPv4-mapped IPv6 addresses as the IPv4 address;
//! 3. **attempts from known devices, per device** ([`LoginThrottle::admit_device`], default
//!    10 per minute, `LOGIN_LIMIT_PER_DEVICE`): a device that signed in to the account before
//!    holds a [device cookie](DeviceCookies) and is counted against its own budget only, not
//!    the account's nor its address's, so guesses from elsewhere never lock the owner out;
//! 4. **re-authentication inside a session, per session**
//!    ([`LoginThrottle::admit_reauthentication`], default 10 per minute,
//!    `LOGIN_LIMIT_PER_SESSION`): asking for the password again before a sensitive action
//!    ("sign out my other devices") is bounded per session, never per account, so a thief
//!    holding a stolen session cannot stop the owner from ending it;
//! 5. **the client address from the socket** (axum's `ConnectInfo`), never from a header,
//!    unless you say a trusted proxy sets one
//!    ([`trust_proxy_header`](LoginThrottle::trust_proxy_header)).
//!
//! The budgets live in the process: with several instances behind a balancer, each counts
//! its own (an attacker gets at most one budget per instance).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::net::SocketAddr;
//! use tower_app_sessions::throttle::{LoginThrottle, Throttled};
//!
//! let throttle = LoginThrottle::new().per_account(3);
//! let peer: SocketAddr = "203.0.113.7:50000".parse().unwrap();
//! let client = throttle.client_address(peer, &http::HeaderMap::new());
//! for _ in 0..3 {
//!     throttle.admit(client, "kate@example.com").unwrap();
//!     // The expensive part, bounded: hash or verify the password here.
//!     let ok = throttle.verify(|| "wrong" == "password").await.unwrap();
//!     assert!(!ok);
//! }
//! assert!(matches!(throttle.admit(client, "KATE@example.com"), Err(Throttled::TooManyAttempts { .. })));
//! # });
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderName};
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::users::canonical_email;
use crate::SessionHandle;

mod device;

pub use device::{
    DeviceCookies, KnownDevice, WeakKey, DEFAULT_DEVICE_COOKIE, DEFAULT_LIFETIME, MAX_ACCOUNTS,
    MIN_KEY_BYTES,
};

/// Default attempts per minute per client address.
pub const DEFAULT_PER_ADDRESS: u32 = 30;
/// Default attempts per minute per account (from unknown devices).
pub const DEFAULT_PER_ACCOUNT: u32 = 10;
/// Default attempts per minute per known device.
pub const DEFAULT_PER_DEVICE: u32 = 10;
/// Default re-authentications per minute per session.
pub const DEFAULT_PER_SESSION: u32 = 10;
/// Every this many admissions, the limiters forget the keys that are back to a full bucket,
/// so their memory follows the active keys rather than every key ever seen.
const FORGET_EVERY: u64 = 4096;

/// A login attempt that must not go on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Throttled {
    /// Over the attempts allowed for this client address or this account: `429`.
    #[error("too many login attempts; retry after {retry_after:?}")]
    TooManyAttempts {
        /// When the next attempt would be admitted.
        retry_after: Duration,
    },
    /// Every verification slot stayed busy for the longest wait: `503`.
    #[error("password verification is busy; retry after {retry_after:?}")]
    Busy {
        /// A hint for the client.
        retry_after: Duration,
    },
}

impl Throttled {
    /// The HTTP status this answers with: `429` or `503`.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Throttled::TooManyAttempts { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            Throttled::Busy { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Retry-After` of the answer, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let (Throttled::TooManyAttempts { retry_after } | Throttled::Busy { retry_after }) = self;
        (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1)
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> &'static str {
        match self {
            Throttled::TooManyAttempts { .. } => r#"{"error":"too_many_attempts"}"#,
            Throttled::Busy { .. } => r#"{"error":"busy"}"#,
        }
    }

    /// The whole answer: status, `Retry-After`, JSON body.
    pub fn response<B: From<&'static str>>(&self) -> http::Response<B> {
        crate::Rejection::from(self).response()
    }
}

/// [`Throttled::response`]'s answer.
impl From<&Throttled> for crate::Rejection {
    fn from(throttled: &Throttled) -> Self {
        crate::Rejection::retry_after(
            throttled.status(),
            throttled.body(),
            throttled.retry_after_secs(),
        )
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Throttled {
    fn into_response(self) -> axum_core::response::Response {
        self.response()
    }
}

/// The crate's [`Clock`] as `governor` reads time, so a manual clock drives the limits too.
#[derive(Clone)]
struct LimiterClock(Clock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

type Limiter<K> = RateLimiter<
    K,
    DefaultKeyedStateStore<K>,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Where the client address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientAddress {
    Socket,
    /// The last address in this header, set or appended by a proxy in front of the service.
    TrustedHeader(HeaderName),
}

/// Bounds on password verification and login attempts; see the [module docs](self).
///
/// Clones share the same limits and slots: build one per service (or one for login and
/// registration together) and share it.
#[derive(Clone)]
pub struct LoginThrottle {
    slots: Arc<Semaphore>,
    slot_count: usize,
    max_wait: Duration,
    /// Attempts per minute (`0`: no limit), and the limiters built from them.
    address_quota: u32,
    account_quota: u32,
    device_quota: u32,
    session_quota: u32,
    per_address: Option<Arc<Limiter<IpAddr>>>,
    per_account: Option<Arc<Limiter<String>>>,
    per_device: Option<Arc<Limiter<[u8; 16]>>>,
    per_session: Option<Arc<Limiter<SessionHandle>>>,
    client_address: ClientAddress,
    clock: Clock,
    admissions: Arc<AtomicU64>,
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("concurrent_verifications", &self.slot_count)
            .field("max_wait", &self.max_wait)
            .field("per_address", &self.per_address.is_some())
            .field("per_account", &self.per_account.is_some())
            .field("per_device", &self.per_device.is_some())
            .field("per_session", &self.per_session.is_some())
            .field("client_address", &self.client_address)
            .finish_non_exhaustive()
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_minute: u32,
    clock: &Clock,
) -> Option<Arc<Limiter<K>>> {
    let per_minute = NonZeroU32::new(per_minute)?;
    Some(Arc::new(RateLimiter::new(
        Quota::per_minute(per_minute),
        DefaultKeyedStateStore::default(),
        LimiterClock(clock.clone()),
    )))
}

impl LoginThrottle {
    /// The defaults: as many verifications at once as the machine has cores, a 5 s wait for
    /// a slot, [`DEFAULT_PER_ADDRESS`] attempts per minute per address,
    /// [`DEFAULT_PER_ACCOUNT`] per account, [`DEFAULT_PER_DEVICE`] per known device,
    /// [`DEFAULT_PER_SESSION`] re-authentications per session, the address from the socket.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let clock = Clock::system();
        Self {
            slots: Arc::new(Semaphore::new(cores)),
            slot_count: cores,
            max_wait: Duration::from_secs(5),
            address_quota: DEFAULT_PER_ADDRESS,
            account_quota: DEFAULT_PER_ACCOUNT,
            device_quota: DEFAULT_PER_DEVICE,
            session_quota: DEFAULT_PER_SESSION,
            per_address: limiter(DEFAULT_PER_ADDRESS, &clock),
            per_account: limiter(DEFAULT_PER_ACCOUNT, &clock),
            per_device: limiter(DEFAULT_PER_DEVICE, &clock),
            per_session: limiter(DEFAULT_PER_SESSION, &clock),
            client_address: ClientAddress::Socket,
            clock,
            admissions: Arc::default(),
        }
    }

    /// [`new`](Self::new) with the attempt limits of `LOGIN_LIMIT_PER_ACCOUNT`,
    /// `LOGIN_LIMIT_PER_ADDRESS`, `LOGIN_LIMIT_PER_DEVICE` and `LOGIN_LIMIT_PER_SESSION`
    /// (attempts per minute; `0` turns that limit off; unset: the defaults), read through
    /// `lookup`.
    ///
    /// # Errors
    /// [`ConfigError::NotANumber`](crate::config::ConfigError) for a value that is not a
    /// whole number.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let number = |var: &'static str, default: u32| -> Result<u32, crate::config::ConfigError> {
            match lookup(var).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| crate::config::ConfigError::NotANumber {
                        var,
                        value: v.chars().take(64).collect(),
                        example: u64::from(default),
                    }),
            }
        };
        let per_account = number("LOGIN_LIMIT_PER_ACCOUNT", DEFAULT_PER_ACCOUNT)?;
        let per_address = number("LOGIN_LIMIT_PER_ADDRESS", DEFAULT_PER_ADDRESS)?;
        let per_device = number("LOGIN_LIMIT_PER_DEVICE", DEFAULT_PER_DEVICE)?;
        let per_session = number("LOGIN_LIMIT_PER_SESSION", DEFAULT_PER_SESSION)?;
        Ok(Self::new()
            .per_account(per_account)
            .per_address(per_address)
            .per_device(per_device)
            .per_session(per_session))
    }

    /// [`from_lookup`](Self::from_lookup) on the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// At most `n` verifications at once (at least 1).
    #[must_use]
    pub fn max_concurrent_verifications(mut self, n: usize) -> Self {
        let n = n.max(1);
        self.slots = Arc::new(Semaphore::new(n));
        self.slot_count = n;
        self
    }

    /// How long a verification may wait for a slot before [`Throttled::Busy`].
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Attempts per minute per account from unknown devices (`0`: no limit), in bursts of as
    /// many.
    #[must_use]
    pub fn per_account(mut self, per_minute: u32) -> Self {
        self.account_quota = per_minute;
        self.per_account = limiter(per_minute, &self.clock);
        self
    }

    /// Attempts per minute per client address (IPv6: per /64) from unknown devices (`0`:
    /// no limit), in bursts of as many.
    #[must_use]
    pub fn per_address(mut self, per_minute: u32) -> Self {
        self.address_quota = per_minute;
        self.per_address = limiter(per_minute, &self.clock);
        self
    }

    /// Attempts per minute per known device (`0`: no limit), in bursts of as many.
    #[must_use]
    pub fn per_device(mut self, per_minute: u32) -> Self {
        self.device_quota = per_minute;
        self.per_device = limiter(per_minute, &self.clock);
        self
    }

    /// Re-authentications per minute per session (`0`: no limit), in bursts of as many.
    #[must_use]
    pub fn per_session(mut self, per_minute: u32) -> Self {
        self.session_quota = per_minute;
        self.per_session = limiter(per_minute, &self.clock);
        self
    }

    /// Takes the client address from the last entry of `header` (such as
    /// `x-forwarded-for`) instead of the socket. Only when every request reaches the service
    /// through a proxy you run that sets or appends that header: otherwise a client picks
    /// its own address, and escapes the per-address limit.
    #[must_use]
    pub fn trust_proxy_header(mut self, header: HeaderName) -> Self {
        self.client_address = ClientAddress::TrustedHeader(header);
        self
    }

    /// Reads the time from `clock` (default: the system clock; see [`clock`](crate::clock)).
    /// Resets the attempt counts.
    #[must_use]
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self.per_address = limiter(self.address_quota, &self.clock);
        self.per_account = limiter(self.account_quota, &self.clock);
        self.per_device = limiter(self.device_quota, &self.clock);
        self.per_session = limiter(self.session_quota, &self.clock);
        self
    }

    /// The client's address: the socket's, or the trusted proxy header's last valid entry
    /// (falling back to the socket when the header is missing or unreadable).
    pub fn client_address(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let ClientAddress::TrustedHeader(header) = &self.client_address else {
            return peer.ip();
        };
        headers
            .get_all(header)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or_else(|| peer.ip())
    }

    /// Counts one login attempt from an unknown device by `client` for `account` (an email
    /// as typed): `Ok` if both the per-address and the per-account limit admit it. Call it
    /// before looking the user up. An address without a canonical form is counted against
    /// the client only (it matches no account). Attempts from a device that signed in to
    /// `account` before go to [`admit_device`](Self::admit_device) instead.
    ///
    /// # Errors
    /// [`Throttled::TooManyAttempts`] with the wait until the next admitted attempt.
    pub fn admit(&self, client: IpAddr, account: &str) -> Result<(), Throttled> {
        self.count_admission();
        let now = self.limiter_now();
        if let Some(limiter) = &self.per_address {
            limiter
                .check_key(&normalized(client))
                .map_err(|n| refused(n, now))?;
        }
        if let (Some(limiter), Ok(account)) = (&self.per_account, canonical_email(account)) {
            limiter.check_key(&account).map_err(|n| refused(n, now))?;
        }
        Ok(())
    }

    /// Counts one login attempt from a device that signed in to the account before (see
    /// [`DeviceCookies::recognize`]) against that device's own budget, and nothing else:
    /// neither the account's budget (which guesses from elsewhere may have spent) nor the
    /// address's.
    ///
    /// # Errors
    /// [`Throttled::TooManyAttempts`] with the wait until the next admitted attempt.
    pub fn admit_device(&self, device: &KnownDevice) -> Result<(), Throttled> {
        self.count_admission();
        let now = self.limiter_now();
        if let Some(limiter) = &self.per_device {
            limiter
                .check_key(&device.budget_key())
                .map_err(|n| refused(n, now))?;
        }
        Ok(())
    }

    /// Counts one re-authentication (the password asked again inside a signed-in session)
    /// against the session's own budget: not the account's, so guesses against the account
    /// from elsewhere, or from another (stolen) session, never stop the owner's session from
    /// proving itself.
    ///
    /// # Errors
    /// [`Throttled::TooManyAttempts`] with the wait until the next admitted attempt.
    pub fn admit_reauthentication(&self, session: &SessionHandle) -> Result<(), Throttled> {
        self.count_admission();
        let now = self.limiter_now();
        if let Some(limiter) = &self.per_session {
            limiter.check_key(session).map_err(|n| refused(n, now))?;
        }
        Ok(())
    }

    fn count_admission(&self) {
        if self.admissions.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.forget_idle();
        }
    }

    fn limiter_now(&self) -> Duration {
        LimiterClock(self.clock.clone()).now()
    }

    /// Runs `work` (hashing or verifying a password) on a blocking thread once one of the
    /// verification slots is free, waiting at most [`max_wait`](Self::max_wait) for it.
    ///
    /// # Errors
    /// [`Throttled::Busy`] if no slot freed in time (or the work panicked).
    pub async fn verify<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Throttled> {
        let busy = Throttled::Busy {
            retry_after: Duration::from_secs(1),
        };
        let slot = tokio::time::timeout(self.max_wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| busy)?
            .map_err(|_| busy)?;
        let done = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(slot);
            out
        })
        .await;
        done.map_err(|_| busy)
    }

    /// Drops the limiter entries that are back to a full bucket.
    fn forget_idle(&self) {
        fn forget<K: std::hash::Hash + Eq + Clone>(limiter: Option<&Arc<Limiter<K>>>) {
            if let Some(limiter) = limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        forget(self.per_address.as_ref());
        forget(self.per_account.as_ref());
        forget(self.per_device.as_ref());
        forget(self.per_session.as_ref());
    }
}

/// The refusal of an attempt a limiter did not admit at `now`.
fn refused(not_until: governor::NotUntil<Duration>, now: Duration) -> Throttled {
    Throttled::TooManyAttempts {
        retry_after: not_until.wait_time_from(now),
    }
}

/// The key of a client address for the per-address limit: IPv4 addresses that arrive as
/// IPv6 (`::ffff:a.b.c.d`) count as the IPv4 address, and other IPv6 addresses by their /64
/// prefix: a subscriber is given at least a /64 and may use any address in it, so counting
/// addresses one by one would give a single client 2^64 budgets.
fn normalized(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !u128::from(u64::MAX),
            )),
        },
        v4 => v4,
    }
}
