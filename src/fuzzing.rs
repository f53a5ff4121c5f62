//! Thin wrappers that let the fuzz targets (`fuzz/`, `cargo fuzz`) reach parsers that are not
//! public API. Compiled only under `--cfg fuzzing` (which `cargo fuzz` sets), hidden from the
//! docs, and never part of the crate's public surface: a user's build never sees this module.
//!
//! Everything public (ids, handles, credentials, records, data, the cross-origin check) is
//! fuzzed through its public API; only what has none is here.
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
/// can hold ([`Change::Nothing`]).
pub fn decode_change(message: &[u8]) -> Option<String> {
    match Change::decode(message) {
        Change::Session(context, id) => Some(format!("s:{}:{}", context.as_str(), id.as_str())),
        Change::User(id) => Some(format!("u:{id}")),
        Change::Everything => Some("all".to_owned()),
        Change::Nothing => None,
    }
}
