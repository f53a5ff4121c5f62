//! [`DeviceCookies`]: the signed cookie that gives a device that signed in before a login
//! budget of its own ([`KnownDevice`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::cookie::{CookieConfig, SameSite};
use crate::users::canonical_email;

/// The default name of the device cookie.
pub const DEFAULT_DEVICE_COOKIE: &str = "__Host-device";
/// How long a device stays known after its last sign-in, by default: 180 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(180 * 24 * 3600);
/// The most accounts one device cookie remembers; the oldest is dropped beyond.
pub const MAX_ACCOUNTS: usize = 4;
/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// What the HMAC of an entry covers first, so the key's tags mean nothing elsewhere.
const DOMAIN: &[u8] = b"tower-app-sessions device cookie v1\0";
const ISSUED_BYTES: usize = 4;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const ENTRY_BYTES: usize = ISSUED_BYTES + NONCE_BYTES + TAG_BYTES;
/// 32 bytes are 43 characters of base64 without padding.
const ENTRY_CHARS: usize = 43;
/// The longest cookie value read: anything longer is not one of ours.
const MAX_VALUE_CHARS: usize = MAX_ACCOUNTS * (ENTRY_CHARS + 1);
/// An entry may claim to be issued this far in the future (clocks of instances differ).
const CLOCK_SKEW_SECS: u32 = 300;

/// A device that signed in to the account of this attempt before: it holds a valid entry of
/// the [device cookie](DeviceCookies) for it. Its login attempts have a budget of their own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KnownDevice {
    /// The entry's time and nonce: unique per device and account.
    id: [u8; ISSUED_BYTES + NONCE_BYTES],
}

impl KnownDevice {
    /// The key of the device's budget.
    pub(crate) fn budget_key(&self) -> [u8; ISSUED_BYTES + NONCE_BYTES] {
        self.id
    }
}

impl fmt::Debug for KnownDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KnownDevice(..)")
    }
}

/// A key that cannot sign device cookies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a device cookie key must be at least {MIN_KEY_BYTES} bytes, got {len}")]
pub struct WeakKey {
    /// The length of the rejected key.
    pub len: usize,
}

/// A signed cookie that a successful sign-in leaves on the device, so that
/// the device gets a login budget of its own for that account ([`KnownDevice`]), which
/// password guesses from anywhere else cannot spend.
///
/// This is OWASP's "Slow Down Online Guessing Attacks with Device Cookies"
/// (<https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies>).
/// Without it, a per-account limit is a lockout anyone can trigger: ten wrong passwords a
/// minute, from any number of addresses, and the owner's right password gets `429` too.
/// With it, an attempt that presents a valid device cookie for the account it names is
/// counted against that device only
/// ([`LoginThrottle::admit_device`](super::LoginThrottle::admit_device)); the per-account and
/// per-address limits keep applying to every other attempt.
///
/// # The cookie
/// - name `__Host-device` by default (no sibling subdomain can set or read it; `Secure`,
///   `Path=/`, no `Domain`), `HttpOnly`, `SameSite=Strict` (a login form is posted from the
///   site's own pages), `Max-Age` 180 days ([`DEFAULT_LIFETIME`]); one cookie for the whole
///   host, whichever application context signs in. Change it with
///   [`cookie`](DeviceCookies::cookie) and [`lifetime`](DeviceCookies::lifetime);
/// - its value holds up to [`MAX_ACCOUNTS`] entries, one per account signed in from the
///   device, newest first, separated by `.`; each is 43 characters of base64url: the time it
///   was issued (4 bytes, seconds), a random nonce (12 bytes) and the first 16 bytes of
///   HMAC-SHA-256 over both and the account's [canonical email](crate::users::canonical_email),
///   under the key. The email is not in the cookie, only bound by the tag;
/// - an entry is recognized for an account only if its tag matches (compared in constant
///   time) and it is younger than the lifetime, whatever the browser does with `Max-Age`;
/// - every successful sign-in issues a fresh entry for the account (a new nonce and time) and
///   keeps the others, so a device keeps its standing with each account it uses.
///
/// # The key
/// HMAC needs a secret shared by every instance that serves logins:
/// `SESSION_DEVICE_KEY`, the base64 of at least 32 random bytes (`openssl rand -base64 32`),
/// read by [`DeviceCookies::from_env`]. Unset, a random key is made for the process and a
/// warning is logged: device cookies then count only on the instance that issued them, and
/// only until it restarts (the devices are then unknown again, which is the behaviour without
/// device cookies, never a lockout of its own). Changing the key forgets every device.
///
/// ```
/// use tower_app_sessions::throttle::DeviceCookies;
///
/// let devices = DeviceCookies::new(&[7u8; 32]).unwrap();
/// let mut headers = http::HeaderMap::new();
/// assert!(devices.recognize(&headers, "kate@example.com").is_none());
/// // After a successful sign-in, the response carries the cookie...
/// let set_cookie = devices.issue(&headers, "kate@example.com").unwrap();
/// let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
/// // ...and the device sends it back with its next login.
/// headers.insert("cookie", pair.parse().unwrap());
/// assert!(devices.recognize(&headers, "KATE@example.com").is_some());
/// assert!(devices.recognize(&headers, "sam@example.com").is_none());
/// ```
///
/// Clones share the key.
#[derive(Clone)]
pub struct DeviceCookies {
    key: Arc<[u8]>,
    cookie: CookieConfig,
    lifetime: Duration,
    clock: Clock,
}

impl fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCookies")
            .field("cookie", &self.cookie.current_name())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl DeviceCookies {
    /// Device cookies signed with `key` (at least [`MIN_KEY_BYTES`] random bytes, the same on
    /// every instance).
    ///
    /// # Errors
    /// [`WeakKey`] for a shorter key.
    pub fn new(key: &[u8]) -> Result<Self, WeakKey> {
        if key.len() < MIN_KEY_BYTES {
            return Err(WeakKey { len: key.len() });
        }
        Ok(Self::with_key(key))
    }

    fn with_key(key: &[u8]) -> Self {
        Self {
            key: key.into(),
            cookie: CookieConfig::default()
                .name(DEFAULT_DEVICE_COOKIE)
                .same_site(SameSite::Strict),
            lifetime: DEFAULT_LIFETIME,
            clock: Clock::system(),
        }
    }

    /// Device cookies signed with a random key of this process: recognized by this
    /// instance only, until it restarts.
    ///
    /// # Errors
    /// [`RandomError`](crate::RandomError) if the OS random source fails.
    pub fn random() -> Result<Self, crate::RandomError> {
        let mut key = [0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut key)?;
        Ok(Self::with_key(&key))
    }

    /// The key from `SESSION_DEVICE_KEY` (base64, standard or URL-safe, padding optional, of
    /// at least [`MIN_KEY_BYTES`] bytes), read through `lookup`; unset or empty, a
    /// [random](Self::random) key of this process and a logged warning.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSecret`] for a value that is not such base64 (the value is not
    /// repeated), or if no random key can be made.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        const VAR: &str = "SESSION_DEVICE_KEY";
        const EXPECTED: &str =
            "the base64 of at least 32 random bytes, the same on every instance (openssl rand -base64 32)";
        let Some(value) = lookup(VAR).filter(|v| !v.trim().is_empty()) else {
            tracing::warn!(
                "SESSION_DEVICE_KEY is not set: device cookies are signed with a key of this process, so other instances, and this one after a restart, do not recognize them; set it to {EXPECTED}"
            );
            return Self::random().map_err(|_| ConfigError::InvalidSecret {
                var: VAR,
                reason: "unset, and the OS random source failed",
                expected: EXPECTED,
            });
        };
        let key = decode_key(value.trim()).ok_or(ConfigError::InvalidSecret {
            var: VAR,
            reason: "not base64",
            expected: EXPECTED,
        })?;
        Self::new(&key).map_err(|_| ConfigError::InvalidSecret {
            var: VAR,
            reason: "shorter than 32 bytes",
            expected: EXPECTED,
        })
    }

    /// [`from_lookup`](Self::from_lookup) on the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// How the cookie is written (default: [`DEFAULT_DEVICE_COOKIE`], `HttpOnly`, `Secure`,
    /// `SameSite=Strict`, `Path=/`). Keep it `HttpOnly`: page scripts have no use for it.
    #[must_use]
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// How long a device stays known after its last sign-in (default [`DEFAULT_LIFETIME`]).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Reads the time from `clock` (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        self.cookie.current_name()
    }

    /// The device of this request, if its device cookie holds a valid entry for `account`
    /// (an email as typed; one without a canonical form matches nothing). No I/O.
    pub fn recognize(&self, headers: &HeaderMap, account: &str) -> Option<KnownDevice> {
        let account = canonical_email(account).ok()?;
        let now = self.now_secs();
        self.entries(headers)
            .find(|entry| self.is_valid(entry, account.as_bytes(), now))
            .map(|entry| KnownDevice { id: entry.id() })
    }

    /// The `Set-Cookie` that makes this device known for `account` (an email as typed), to
    /// send with a successful sign-in: a fresh entry for the account first, then the
    /// entries the request's cookie holds for other accounts (at most [`MAX_ACCOUNTS`] in
    /// all). `None` for an email without a canonical form, or if no random nonce can be had.
    pub fn issue(&self, headers: &HeaderMap, account: &str) -> Option<HeaderValue> {
        let account = canonical_email(account).ok()?;
        let now = self.now_secs();
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).ok()?;
        let mut fresh = [0u8; ENTRY_BYTES];
        fresh[..ISSUED_BYTES].copy_from_slice(&now.to_be_bytes());
        fresh[ISSUED_BYTES..ISSUED_BYTES + NONCE_BYTES].copy_from_slice(&nonce);
        let tag = self.tag(&fresh[..ISSUED_BYTES + NONCE_BYTES], account.as_bytes());
        fresh[ISSUED_BYTES + NONCE_BYTES..].copy_from_slice(&tag);
        let mut value = String::with_capacity(MAX_VALUE_CHARS);
        URL_SAFE_NO_PAD.encode_string(fresh, &mut value);
        // Other accounts' entries cannot be checked without their emails; they are kept as
        // they are unless expired (or this account's old one, replaced by the fresh one).
        let kept = self
            .entries(headers)
            .filter(|entry| entry.is_current(now, self.lifetime))
            .filter(|entry| !self.is_valid(entry, account.as_bytes(), now))
            .take(MAX_ACCOUNTS - 1);
        for entry in kept {
            value.push('.');
            URL_SAFE_NO_PAD.encode_string(entry.0, &mut value);
        }
        self.cookie.issue_value(&value, self.lifetime)
    }

    /// The well-formed entries of the request's device cookie, newest first.
    fn entries<'a>(&self, headers: &'a HeaderMap) -> impl Iterator<Item = Entry> + 'a {
        let value = crate::credential::cookie_value(headers, self.cookie.current_name())
            .filter(|value| value.len() <= MAX_VALUE_CHARS)
            .unwrap_or_default();
        value
            .split(|b| *b == b'.')
            .filter(|part| part.len() == ENTRY_CHARS)
            .filter_map(|part| {
                let mut entry = [0u8; ENTRY_BYTES];
                let written = URL_SAFE_NO_PAD.decode_slice(part, &mut entry).ok()?;
                (written == ENTRY_BYTES).then_some(Entry(entry))
            })
    }

    fn is_valid(&self, entry: &Entry, account: &[u8], now: u32) -> bool {
        if !entry.is_current(now, self.lifetime) {
            return false;
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return false;
        };
        mac.update(DOMAIN);
        mac.update(&entry.0[..ISSUED_BYTES + NONCE_BYTES]);
        mac.update(account);
        // Constant time, on the first TAG_BYTES of the MAC.
        mac.verify_truncated_left(&entry.0[ISSUED_BYTES + NONCE_BYTES..])
            .is_ok()
    }

    fn tag(&self, issued_and_nonce: &[u8], account: &[u8]) -> [u8; TAG_BYTES] {
        let mut tag = [0u8; TAG_BYTES];
        // HMAC takes keys of any length; `new` made sure this one is long enough.
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) {
            mac.update(DOMAIN);
            mac.update(issued_and_nonce);
            mac.update(account);
            tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_BYTES]);
        }
        tag
    }

    fn now_secs(&self) -> u32 {
        u32::try_from(self.clock.now_ms().max(0) / 1000).unwrap_or(u32::MAX)
    }
}

/// One decoded entry: issued (seconds, big-endian), nonce, tag.
struct Entry([u8; ENTRY_BYTES]);

impl Entry {
    fn issued(&self) -> u32 {
        let mut issued = [0u8; ISSUED_BYTES];
        issued.copy_from_slice(&self.0[..ISSUED_BYTES]);
        u32::from_be_bytes(issued)
    }

    fn id(&self) -> [u8; ISSUED_BYTES + NONCE_BYTES] {
        let mut id = [0u8; ISSUED_BYTES + NONCE_BYTES];
        id.copy_from_slice(&self.0[..ISSUED_BYTES + NONCE_BYTES]);
        id
    }

    /// Issued no longer than `lifetime` ago, and not (much) in the future.
    fn is_current(&self, now: u32, lifetime: Duration) -> bool {
        let issued = self.issued();
        let lifetime = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        issued <= now.saturating_add(CLOCK_SKEW_SECS) && now.saturating_sub(issued) < lifetime
    }
}

/// Base64, standard or URL-safe, with or without padding.
fn decode_key(text: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [
        GeneralPurpose::new(&alphabet::STANDARD, config),
        GeneralPurpose::new(&alphabet::URL_SAFE, config),
    ]
    .iter()
    .find_map(|engine| engine.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_either_base64_alphabet_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|b| b.wrapping_mul(37).wrapping_add(250))
            .collect();
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            assert_eq!(
                decode_key(&engine.encode(&bytes)).as_deref(),
                Some(&bytes[..])
            );
        }
        assert_eq!(decode_key("not base64!"), None);
    }
}
