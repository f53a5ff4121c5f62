//! Thin wrappers that let the fuzz targets (`fuzz/`, `cargo fuzz`) reach parsers that are not
//! public API. Compiled only under `--cfg fuzzing` (which `cargo fuzz` sets), hidden from the
//! docs, and never part of the crate's public surface: a user's build never sees this module.
//!
//! Everything public (ids, handles, records, data, the cross-origin check) is fuzzed through
//! its public API; only what has none is here: the credential extraction, the data key rule
//! and the change feed's message decoder.
//!
//! ```
//! # // Doc tests do not run under `--cfg fuzzing`; the example is the fuzz target's use.
//! # #[cfg(fuzzing)] {
//! use tower_app_sessions::fuzzing::decode_change;
//! assert_eq!(decode_change(b"u:00000000-0000-0000-0000-000000000001").as_deref(),
//!            Some("u:00000000-0000-0000-0000-000000000001"));
//! assert_eq!(decode_change(b"\xff").as_deref(), Some("all"));
//! # }
//! ```

use crate::change::Change;

/// What a message on an invalidation channel (the Redis bus, PostgreSQL's notification
/// payload) decodes to, written back in the channel's format: `s:<context>:<id>`,
/// `u:<user id>`, or `all`; `None` for a well-formed message that names nothing this crate
/// can hold.
pub fn decode_change(message: &[u8]) -> Option<String> {
    Change::decode(message).map(|change| change.encode())
}

/// The credential the session layer reads from a request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The session id it carries.
    pub id: crate::SessionId,
    /// Where it came from.
    pub source: crate::CredentialSource,
}

/// The session layer's credential extraction (the cookie `cookie_name`, else
/// `Authorization: Bearer`), as the layer calls it.
pub fn credential(headers: &http::HeaderMap, cookie_name: &str) -> Option<Credential> {
    crate::credential::credential(headers, cookie_name).map(|found| Credential {
        id: found.id,
        source: found.source,
    })
}

/// The key rule every insert and patch applies (`[A-Za-z0-9_.:-]{1,128}`).
pub fn check_key(key: &str) -> Result<(), crate::data::DataError> {
    crate::data::check_key(key)
}
