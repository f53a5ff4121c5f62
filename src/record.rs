//! [`SessionRecord`] and its JSON wire format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::data::SessionData;

/// One server-side session as stored in every backend.
///
/// Its JSON is the single source of truth for the JSON the TypeScript apps read and write
/// (the TypeScript apps' `SessionData`, stored by `RedisSessionAdapter.set` with `JSON.stringify`):
///
/// ```json
/// {"user_id":"<uuid>","created_at":<ms>,"expires_at":<ms>,"ip":"…","user_agent":"…"}
/// ```
///
/// The writer emits exactly these names in this order and, like `JSON.stringify` with an
/// `undefined` field, leaves out `ip` / `user_agent` when they are unknown. The reader ignores
/// unknown fields, takes `null` or a missing `ip` / `user_agent` as unknown, and accepts
/// timestamps written as floats (JavaScript numbers).
///
/// A session with [data](crate::data) has one more field, last: `"data":{…}`. It is left out
/// when there is no data, so a record without data is byte for byte what the TypeScript apps
/// write, and their reader (`JSON.parse`, then `user_id` and `expires_at`) ignores it. A
/// `data` that is not an object reads as no data.
///
/// ```
/// use tower_app_sessions::SessionRecord;
///
/// let json = br#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1757660000000,"expires_at":1757746400000,"ip":"203.0.113.7","user_agent":"Mozilla/5.0","theme":"dark"}"#;
/// let record = SessionRecord::from_json(json).unwrap();
/// assert_eq!(record.expires_at, 1_757_746_400_000);
/// assert_eq!(record.ip.as_deref(), Some("203.0.113.7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user the session authenticates (`users.id`).
    pub user_id: Uuid,
    /// When the session was created, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "epoch_ms")]
    pub created_at: i64,
    /// When the session stops being valid unless extended, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "epoch_ms")]
    pub expires_at: i64,
    /// Client address at login, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client `User-Agent` at login, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// What handlers keep in the session (see [`data`](crate::data)); empty for a new one.
    #[serde(default, skip_serializing_if = "SessionData::is_empty")]
    pub data: SessionData,
}

/// A stored value that is not a session record.
#[derive(Debug, thiserror::Error)]
#[error("session record is not valid JSON of the expected shape: {0}")]
pub struct RecordError(#[from] serde_json::Error);

/// Client details stored with a new session, as the TypeScript apps' `SessionMetadata`.
///
/// ```
/// use tower_app_sessions::SessionMetadata;
/// let meta = SessionMetadata::new().ip("203.0.113.7").user_agent("curl/8");
/// assert_eq!(meta.ip.as_deref(), Some("203.0.113.7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMetadata {
    /// Client address.
    pub ip: Option<String>,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
}

impl SessionMetadata {
    /// Empty metadata.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client address: an [`IpAddr`](std::net::IpAddr) (axum's
    /// `ConnectInfo<SocketAddr>` gives it as `peer.ip()`), or its text (cut to
    /// [`MAX_IP_BYTES`]).
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    /// use tower_app_sessions::SessionMetadata;
    ///
    /// let peer: SocketAddr = "[::ffff:203.0.113.7]:50000".parse().unwrap();
    /// let meta = SessionMetadata::new().ip(peer.ip());
    /// // IPv4 clients of a dual-stack socket are stored as IPv4, as the TypeScript apps do.
    /// assert_eq!(meta.ip.as_deref(), Some("203.0.113.7"));
    /// assert_eq!(SessionMetadata::new().ip("2001:db8::1").ip.as_deref(), Some("2001:db8::1"));
    /// ```
    #[must_use]
    pub fn ip(mut self, ip: impl Into<ClientIp>) -> Self {
        self.ip = Some(bounded(ip.into().0, MAX_IP_BYTES));
        self
    }

    /// Sets the client `User-Agent` (cut to [`MAX_USER_AGENT_BYTES`]).
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(bounded(user_agent.into(), MAX_USER_AGENT_BYTES));
        self
    }

    /// Takes the `User-Agent` from request headers (cut to [`MAX_USER_AGENT_BYTES`];
    /// non-UTF-8 is ignored).
    #[must_use]
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT_BYTES).to_owned());
        Self {
            ip: None,
            user_agent,
        }
    }
}

/// A client address for [`SessionMetadata::ip`]: an [`IpAddr`](std::net::IpAddr) (an
/// IPv4-mapped IPv6 address is written as the IPv4 address), an
/// [`Ipv4Addr`](std::net::Ipv4Addr), an [`Ipv6Addr`](std::net::Ipv6Addr), or text as stored.
/// Deliberately not a `SocketAddr`: the port is not part of the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(String);

impl From<std::net::IpAddr> for ClientIp {
    fn from(ip: std::net::IpAddr) -> Self {
        Self(ip.to_canonical().to_string())
    }
}

impl From<std::net::Ipv4Addr> for ClientIp {
    fn from(ip: std::net::Ipv4Addr) -> Self {
        Self(ip.to_string())
    }
}

impl From<std::net::Ipv6Addr> for ClientIp {
    fn from(ip: std::net::Ipv6Addr) -> Self {
        Self::from(std::net::IpAddr::V6(ip))
    }
}

impl From<String> for ClientIp {
    fn from(ip: String) -> Self {
        Self(ip)
    }
}

impl From<&str> for ClientIp {
    fn from(ip: &str) -> Self {
        Self(ip.to_owned())
    }
}

impl From<&String> for ClientIp {
    fn from(ip: &String) -> Self {
        Self(ip.clone())
    }
}

/// The longest `User-Agent` a session stores, in bytes; longer ones are cut (at a character
/// boundary) by every store. A user agent costs memory and storage per session, and an
/// attacker chooses it.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// The longest client address a session stores, in bytes (an IPv6 address with a zone fits).
pub const MAX_IP_BYTES: usize = 64;

fn bounded(mut s: String, max: usize) -> String {
    let len = truncate(&s, max).len();
    s.truncate(len);
    s
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl SessionRecord {
    /// When the user last proved a credential for this session, in milliseconds since the
    /// Unix epoch. Only a login does, and a login always makes a new record, so this is
    /// `created_at`: slides and rotations keep it, and a record the TypeScript apps wrote
    /// counts from its creation too. Asking for the password again means logging in again
    /// ([`Session::login`](crate::Session::login)), which makes a fresh session.
    pub fn authenticated_at(&self) -> i64 {
        self.created_at
    }

    /// A record for a session created `now_ms` that expires after `ttl`.
    pub fn new(user_id: Uuid, metadata: SessionMetadata, now_ms: i64, ttl: Duration) -> Self {
        Self {
            user_id,
            created_at: now_ms,
            expires_at: now_ms.saturating_add(duration_ms(ttl)),
            ip: metadata.ip.map(|ip| bounded(ip, MAX_IP_BYTES)),
            user_agent: metadata
                .user_agent
                .map(|ua| bounded(ua, MAX_USER_AGENT_BYTES)),
            data: SessionData::new(),
        }
    }

    /// The record as a store writes it: its client address and user agent cut to
    /// [`MAX_IP_BYTES`] and [`MAX_USER_AGENT_BYTES`] (borrowed when they fit, as they do for
    /// every record made by [`SessionRecord::new`]).
    pub fn bounded(&self) -> std::borrow::Cow<'_, Self> {
        let fits = |s: &Option<String>, max| s.as_ref().is_none_or(|s| s.len() <= max);
        if fits(&self.ip, MAX_IP_BYTES) && fits(&self.user_agent, MAX_USER_AGENT_BYTES) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut record = self.clone();
        record.ip = record.ip.map(|ip| bounded(ip, MAX_IP_BYTES));
        record.user_agent = record
            .user_agent
            .map(|ua| bounded(ua, MAX_USER_AGENT_BYTES));
        std::borrow::Cow::Owned(record)
    }

    /// Parses a stored value.
    ///
    /// # Errors
    /// [`RecordError`] if the bytes are not JSON of the record's shape.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The exact JSON the TypeScript apps write.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the record is past its `expires_at` at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at <= now_ms
    }
}

/// Milliseconds since the Unix epoch, as `Date.now()` gives them.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The time left until `until_ms` at `now_ms` (zero once past).
pub(crate) fn remaining(until_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0))
}

/// Accepts integers and (JavaScript) floats for epoch milliseconds.
fn epoch_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(deserializer)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom("timestamp out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f";

    #[test]
    fn writes_the_typescript_bytes_exactly() {
        // What `JSON.stringify(sessionData)` gives for the TypeScript apps' createSession.
        let seed = r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1757660000000,"expires_at":1757746400000,"ip":"203.0.113.7","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}"#;
        let record = SessionRecord {
            user_id: USER.parse().unwrap(),
            created_at: 1_757_660_000_000,
            expires_at: 1_757_746_400_000,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            data: SessionData::new(),
        };
        assert_eq!(record.to_json(), seed);
        assert_eq!(SessionRecord::from_json(seed.as_bytes()).unwrap(), record);
    }

    /// Found by the `record_json` fuzz target: data values are kept as stored, so one that
    /// JavaScript writes (`JSON.stringify` escapes a lone UTF-16 surrogate as `\ud800`) and
    /// a strict JSON parser refuses is read, kept and written back byte for byte; reading it
    /// as a Rust string is a typed error, never a panic.
    #[test]
    fn a_lone_surrogate_escape_in_data_is_kept_as_stored() {
        let table = [
            r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1,"expires_at":2,"data":{"k":"\ud800\n"}}"#,
            r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1,"expires_at":2,"data":{"k":["\udfff"]}}"#,
        ];
        for stored in table {
            let record = SessionRecord::from_json(stored.as_bytes()).expect(stored);
            assert_eq!(record.to_json(), stored);
            assert!(
                record.data.get::<serde_json::Value>("k").is_err(),
                "{stored}"
            );
        }
    }

    #[test]
    fn data_is_one_more_field_last_and_absent_when_empty() {
        let seed = r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1757660000000,"expires_at":1757746400000,"ip":"203.0.113.7","user_agent":"Mozilla/5.0"}"#;
        let mut record = SessionRecord::from_json(seed.as_bytes()).unwrap();
        let mut patch = crate::data::DataPatch::new();
        patch.set("theme", "dark").unwrap();
        patch.set("cart", &[1, 2]).unwrap();
        record.data.apply(&patch);
        let with_data = record.to_json();
        assert_eq!(
            with_data,
            r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1757660000000,"expires_at":1757746400000,"ip":"203.0.113.7","user_agent":"Mozilla/5.0","data":{"cart":[1,2],"theme":"dark"}}"#
        );
        assert_eq!(
            SessionRecord::from_json(with_data.as_bytes()).unwrap(),
            record
        );
        let mut emptied = crate::data::DataPatch::new();
        emptied.remove("theme").unwrap();
        emptied.remove("cart").unwrap();
        record.data.apply(&emptied);
        assert_eq!(record.to_json(), seed);
        // A `data` that is not an object is no data, not a broken record.
        for malformed in [r#""x""#, "[1]", "null", "3"] {
            let json = seed.replace('}', &format!(r#","data":{malformed}}}"#));
            let read = SessionRecord::from_json(json.as_bytes()).unwrap();
            assert!(read.data.is_empty(), "{malformed}");
            assert_eq!(read.expires_at, 1_757_746_400_000);
        }
    }

    #[test]
    fn unknown_metadata_is_left_out_like_undefined() {
        let record = SessionRecord::new(
            USER.parse().unwrap(),
            SessionMetadata::new(),
            1000,
            Duration::from_secs(60),
        );
        assert_eq!(
            record.to_json(),
            r#"{"user_id":"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f","created_at":1000,"expires_at":61000}"#
        );
    }

    #[test]
    fn reader_is_tolerant() {
        let json = br#"{"expires_at":1757746400000.0,"extra":{"a":[1]},"ip":null,"created_at":1757660000000,"user_id":"3F1C2A9E-8B7D-4C6E-9F00-1A2B3C4D5E6F"}"#;
        let record = SessionRecord::from_json(json).unwrap();
        assert_eq!(record.user_id.to_string(), USER);
        assert_eq!(record.expires_at, 1_757_746_400_000);
        assert_eq!(record.ip, None);
        assert_eq!(record.user_agent, None);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"not json",
            b"{\"user_id\":\"not-a-uuid\",\"created_at\":1,\"expires_at\":2}",
            b"{\"user_id\":\"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f\",\"created_at\":1}",
            b"{\"user_id\":\"3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f\",\"created_at\":1,\"expires_at\":1e300}",
            b"\xff\xfe",
        ] {
            assert!(SessionRecord::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_agent_from_headers_is_bounded() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_str(&"é".repeat(400))
                .unwrap_or(http::HeaderValue::from_static("x")),
        );
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_str(&"a".repeat(2000)).unwrap(),
        );
        let meta = SessionMetadata::from_headers(&headers);
        assert_eq!(meta.user_agent.unwrap().len(), 512);
    }

    #[test]
    fn user_agents_and_addresses_are_bounded_everywhere_they_enter() {
        let huge = "é".repeat(10_000);
        let meta = SessionMetadata::new()
            .user_agent(huge.clone())
            .ip(huge.clone());
        assert_eq!(meta.user_agent.as_ref().unwrap().len(), 512);
        assert_eq!(meta.ip.as_ref().unwrap().len(), 64);
        let mut record = SessionRecord::new(USER.parse().unwrap(), meta, 0, Duration::ZERO);
        assert!(matches!(record.bounded(), std::borrow::Cow::Borrowed(_)));
        record.user_agent = Some(huge);
        let bounded = record.bounded();
        assert_eq!(bounded.user_agent.as_ref().unwrap().len(), 512);
        assert!(bounded
            .user_agent
            .as_ref()
            .unwrap()
            .chars()
            .all(|c| c == 'é'));
    }
}
