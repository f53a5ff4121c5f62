//! [`SessionId`]: generation of new ids and validation of incoming ones.
//!
//! An id is stored inline (no heap allocation), so validating a credential on the request path
//! costs a scan of at most 128 bytes and a copy.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Shortest id accepted from a request.
pub(crate) const MIN_LEN: usize = 16;
/// Longest id accepted from a request.
pub(crate) const MAX_LEN: usize = 128;
/// Bytes of OS randomness in a new id (256 bits).
const ENTROPY_BYTES: usize = 32;
/// Length of a new id: 32 bytes in base64url without padding.
pub(crate) const GENERATED_LEN: usize = 43;

/// A session id: either freshly generated or an incoming value that passed validation.
///
/// The only way to get one is [`SessionId::generate`] or [`SessionId::parse`], so every
/// `SessionId` matches `[A-Za-z0-9_-]{16,128}` and is safe to put in a Redis key or a SQL
/// parameter. `Debug` shows only the first four characters, so ids do not leak into logs.
///
/// ```
/// use tower_app_sessions::SessionId;
///
/// let id = SessionId::generate().unwrap();
/// assert_eq!(id.as_str().len(), 43);
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
///
/// assert!(SessionId::parse("short").is_none());
/// assert!(SessionId::parse("abcdefghijklmnop:admin").is_none());
/// assert!(!format!("{id:?}").contains(id.as_str()));
/// ```
#[derive(Clone)]
pub struct SessionId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

/// The operating system's random number generator failed; no id could be issued.
#[derive(Debug, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RandomError(#[from] getrandom::Error);

/// `[A-Za-z0-9_-]` as a table: one load per byte on the request path.
const ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

fn is_id_byte(b: u8) -> bool {
    ID_BYTES[usize::from(b)]
}

// Equality and hashing look at the id's bytes only, not the unused tail of the buffer: a
// 43-character id hashes 43 bytes, not 129.
impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SessionId {}

impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As a slice: length-prefixed, so an id inside a tuple key stays unambiguous.
        self.as_bytes().hash(state);
    }
}

impl SessionId {
    /// A new id: 256 bits from the OS CSPRNG, base64url without padding (43 characters).
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator is unavailable; no id is made up instead.
    pub fn generate() -> Result<Self, RandomError> {
        let mut entropy = [0u8; ENTROPY_BYTES];
        getrandom::fill(&mut entropy)?;
        let mut bytes = [0u8; MAX_LEN];
        // 32 bytes always encode to 43 base64 characters, which fit in the buffer.
        let len = URL_SAFE_NO_PAD
            .encode_slice(entropy, &mut bytes)
            .unwrap_or_default();
        debug_assert_eq!(len, GENERATED_LEN);
        Ok(Self {
            len: len as u8,
            bytes,
        })
    }

    /// Accepts `value` only if it matches `[A-Za-z0-9_-]{16,128}`; anything else is `None`.
    ///
    /// This is the gate in front of every store: a value that fails it never reaches one.
    pub fn parse(value: &str) -> Option<Self> {
        Self::from_bytes(value.as_bytes())
    }

    /// [`parse`](Self::parse) for raw bytes (a header value need not be UTF-8; an id is ASCII).
    pub(crate) fn from_bytes(src: &[u8]) -> Option<Self> {
        if !(MIN_LEN..=MAX_LEN).contains(&src.len()) || !src.iter().copied().all(is_id_byte) {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        bytes[..src.len()].copy_from_slice(src);
        Some(Self {
            len: src.len() as u8,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as it goes into a cookie, a key or a column.
    ///
    /// This is the secret itself: keep it out of logs and URLs.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes ever enter `bytes`, so this cannot fail; an empty string is the
        // harmless answer if that invariant were ever broken.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Characters of a [`SessionHandle`].
const HANDLE_LEN: usize = 16;

/// A non-secret name of a session, for logs, events and listings: the first 16 characters
/// of base64url(SHA-256(id)). The same id always gives the same handle; the handle gives
/// nothing that authenticates (96 bits of a one-way digest). It is derived here and nowhere
/// else.
///
/// ```
/// use tower_app_sessions::SessionId;
///
/// let id = SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA").unwrap();
/// assert_eq!(id.handle().as_str().len(), 16);
/// assert_eq!(id.handle(), SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA").unwrap().handle());
/// assert!(!id.as_str().contains(id.handle().as_str()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle([u8; HANDLE_LEN]);

/// A string that is not a [`SessionHandle`]: not exactly 16 characters of the base64url
/// alphabet (`A`–`Z`, `a`–`z`, `0`–`9`, `-`, `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session handle")]
pub struct HandleError;

impl SessionHandle {
    /// The handle's 16 base64url characters.
    pub fn as_str(&self) -> &str {
        // base64url output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Reads a handle as [`as_str`](Self::as_str) writes it (a path segment, a form field).
    /// Every 16 base64url characters are the encoding of some 96-bit digest, so a parsed
    /// handle may name no session at all; only a lookup tells.
    ///
    /// ```
    /// use tower_app_sessions::SessionId;
    /// use tower_app_sessions::SessionHandle;
    ///
    /// let handle = SessionId::generate().unwrap().handle();
    /// assert_eq!(SessionHandle::parse(handle.as_str()), Ok(handle));
    /// assert!(SessionHandle::parse("too-short").is_err());
    /// assert!(SessionHandle::parse("AAAAAAAAAAAAAAA=").is_err());
    /// ```
    ///
    /// # Errors
    /// [`HandleError`] for anything else.
    pub fn parse(s: &str) -> Result<Self, HandleError> {
        let bytes: [u8; HANDLE_LEN] = s.as_bytes().try_into().map_err(|_| HandleError)?;
        if bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            Ok(Self(bytes))
        } else {
            Err(HandleError)
        }
    }
}

impl std::str::FromStr for SessionHandle {
    type Err = HandleError;
    fn from_str(s: &str) -> Result<Self, HandleError> {
        Self::parse(s)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.as_str())
    }
}

impl serde::Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl SessionId {
    /// This session's [`SessionHandle`].
    pub fn handle(&self) -> SessionHandle {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.as_bytes());
        // 12 bytes encode to exactly 16 characters, no padding.
        let mut out = [0u8; HANDLE_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(&digest[..12], &mut out)
            .unwrap_or_default();
        debug_assert_eq!(written, HANDLE_LEN);
        SessionHandle(out)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_str();
        write!(f, "SessionId({}…, {} chars)", &s[..4.min(s.len())], s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_43_url_safe_chars_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = SessionId::generate().unwrap();
            assert_eq!(id.as_str().len(), GENERATED_LEN);
            assert!(id.as_str().bytes().all(is_id_byte));
            assert_eq!(URL_SAFE_NO_PAD.decode(id.as_str()).unwrap().len(), 32);
            assert!(seen.insert(id.as_str().to_owned()));
        }
    }

    #[test]
    fn parse_accepts_exactly_the_shape() {
        assert!(SessionId::parse(&"a".repeat(16)).is_some());
        assert!(SessionId::parse(&"Z".repeat(128)).is_some());
        assert!(SessionId::parse("aB3_-aB3_-aB3_-x").is_some());
        for bad in [
            String::new(),
            "a".repeat(15),
            "a".repeat(129),
            "abcdefghijklmnop=".into(),
            "abcdefghijklmnop ".into(),
            "abcdefgh:ijklmnop".into(),
            "abcdefgh*ijklmnop".into(),
            "abcdefgh\r\nijklmnop".into(),
            "abcdefghijklmnoé".into(),
            "\"abcdefghijklmnop\"".into(),
        ] {
            assert!(SessionId::parse(&bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_does_not_print_the_id() {
        let id = SessionId::parse("SECRETsecretSECRETsecret").unwrap();
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("SECRETsecretSECRETsecret"), "{dbg}");
        assert_eq!(dbg, "SessionId(SECR…, 24 chars)");
    }
}
