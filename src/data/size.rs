//! How big a session's data is, and the limits every store enforces on it.
//!
//! # The measure
//!
//! A session's data is measured as **the bytes of its JSON object written compactly** (no
//! whitespace between tokens), its values as the store holds them, and by **the number of
//! its keys**. `{"theme":"dark","cart":[1,2]}` is 29 bytes and 2 keys; no data is `{}`,
//! 2 bytes and no key.
//!
//! - In memory, values are kept as compact JSON text (whitespace outside strings is dropped
//!   when data is read), so the measure is the length of [`SessionData::to_json`].
//! - In Redis, `data_patch.lua` measures the `data` member as it is stored in the record:
//!   what this crate writes is compact; a value another writer stored with whitespace
//!   counts its whitespace.
//! - In PostgreSQL, `jsonb` keeps its own form (`data::text` writes a space after every `:`
//!   and `,`): the `UPDATE` subtracts those separators, so the measure is the compact form of
//!   what `jsonb` holds. `jsonb` rewrites numbers in their canonical form (`1e3` is stored
//!   as `1000`), and that is what counts.
//!
//! A limit of 16 KiB is therefore the same 16 KiB on every store, up to how each writes
//! numbers and escapes.
//!
//! # The rule
//!
//! A change is stored when the data it leaves is within both limits
//! ([`DataLimits::admits`]). Data that is already past a limit (written so by another
//! writer, or before the limit was lowered) may still shrink: a change that does not make a
//! measure past its limit any larger is stored, so removals always go through while growth
//! is refused.
//!
//! [`SessionData::to_json`]: super::SessionData::to_json

use serde_json::value::RawValue;

use super::DataError;

/// The default limit of a session's data, in bytes of its JSON object (16 KiB); see
/// [`SessionLayer::max_data_bytes`](crate::SessionLayer::max_data_bytes).
pub const DEFAULT_MAX_DATA_BYTES: usize = 16 * 1024;

/// The default limit of a session's keys (256); see
/// [`SessionLayer::max_data_keys`](crate::SessionLayer::max_data_keys).
pub const DEFAULT_MAX_DATA_KEYS: usize = 256;

/// The size of a session's data ([the measure](self#the-measure)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSize {
    /// Bytes of the data's compact JSON object.
    pub bytes: usize,
    /// Number of keys.
    pub keys: usize,
}

impl DataSize {
    /// No data: `{}`.
    pub const EMPTY: DataSize = DataSize { bytes: 2, keys: 0 };

    /// The size once a member of `old` bytes (`"key":value`, if there was one) is replaced
    /// by one of `new` bytes (if any): constant time, the commas counted.
    pub(crate) fn replacing(self, old: Option<usize>, new: Option<usize>) -> DataSize {
        // bytes = 2 + the members + a comma between each two
        let mut members = self.bytes.saturating_sub(2 + self.keys.saturating_sub(1));
        let mut keys = self.keys;
        if let Some(old) = old {
            members = members.saturating_sub(old);
            keys = keys.saturating_sub(1);
        }
        if let Some(new) = new {
            members += new;
            keys += 1;
        }
        DataSize {
            bytes: 2 + members + keys.saturating_sub(1),
            keys,
        }
    }
}

impl Default for DataSize {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The limits of a session's data that a store enforces atomically with every change
/// ([`SessionStore::update_data`](crate::SessionStore::update_data)): bytes of its compact
/// JSON object and number of keys.
///
/// ```
/// use tower_app_sessions::data::{DataLimits, DataSize};
///
/// let limits = DataLimits::default();
/// assert_eq!((limits.max_bytes, limits.max_keys), (16 * 1024, 256));
/// let small = DataSize { bytes: 100, keys: 3 };
/// let big = DataSize { bytes: 20_000, keys: 3 };
/// assert!(limits.admits(DataSize::EMPTY, small));
/// assert!(!limits.admits(small, big));
/// // Data written oversized by another writer may shrink, never grow.
/// assert!(limits.admits(big, DataSize { bytes: 19_000, keys: 2 }));
/// assert!(!limits.admits(big, DataSize { bytes: 20_001, keys: 3 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// The most bytes of the data's compact JSON object.
    pub max_bytes: usize,
    /// The most keys.
    pub max_keys: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_DATA_BYTES,
            max_keys: DEFAULT_MAX_DATA_KEYS,
        }
    }
}

impl DataLimits {
    /// Limits of `max_bytes` and `max_keys`.
    pub fn new(max_bytes: usize, max_keys: usize) -> Self {
        Self {
            max_bytes,
            max_keys,
        }
    }

    /// Whether data of size `before` may become data of size `after`: each measure within
    /// its limit, or, if past it already, not growing ([the rule](self#the-rule)).
    pub fn admits(&self, before: DataSize, after: DataSize) -> bool {
        (after.bytes <= self.max_bytes || after.bytes <= before.bytes)
            && (after.keys <= self.max_keys || after.keys <= before.keys)
    }

    /// [`admits`](Self::admits), with the error that says which limit was passed.
    ///
    /// # Errors
    /// [`DataError::TooLarge`] or [`DataError::TooManyKeys`].
    pub fn check(&self, before: DataSize, after: DataSize) -> Result<(), DataError> {
        if after.bytes > self.max_bytes && after.bytes > before.bytes {
            return Err(DataError::TooLarge {
                size: after.bytes,
                limit: self.max_bytes,
            });
        }
        if after.keys > self.max_keys && after.keys > before.keys {
            return Err(DataError::TooManyKeys {
                keys: after.keys,
                limit: self.max_keys,
            });
        }
        Ok(())
    }
}

/// Bytes of `"key":value` in compact JSON, the key escaped as JSON escapes it.
pub(crate) fn member_len(key: &str, value: &RawValue) -> usize {
    string_len(key) + 1 + value.get().len()
}

/// Bytes of `s` as a JSON string, quotes included, escaped as `serde_json` (and
/// PostgreSQL's `jsonb`) escape it: `"` `\` and the short forms of `\b \f \n \r \t` take two
/// bytes, other control characters six (`\u00XX`), everything else its UTF-8 bytes.
/// Computed without writing the string out.
fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// `value` without whitespace between its tokens, or `None` if it has none (most values:
/// the common case allocates nothing). `value` is valid JSON, so every byte outside a
/// string that is a space, tab, newline or carriage return is insignificant.
pub(crate) fn compacted(value: &RawValue) -> Option<Box<RawValue>> {
    let text = value.get();
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    // A quick look first: a value without any whitespace byte needs no scan for strings.
    if !text.bytes().any(is_space) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii() && is_space(c as u8) {
            changed = true;
            continue;
        }
        out.push(c);
    }
    if !changed {
        return None;
    }
    RawValue::from_string(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn strings_are_measured_as_json_writes_them() {
        for s in [
            "theme",
            "a\"b\\c",
            "\u{0001}\n\t",
            "é ☃",
            "\u{7f}\u{1f}",
            "",
        ] {
            assert_eq!(
                string_len(s),
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn whitespace_between_tokens_goes_and_strings_keep_theirs() {
        let spaced = raw(r#"[1, {"a" : "x y, z: \" w" }, [ ] ,2]"#);
        assert_eq!(
            compacted(&spaced).unwrap().get(),
            r#"[1,{"a":"x y, z: \" w"},[],2]"#
        );
        assert!(compacted(&raw(r#""a b""#)).is_none());
        assert!(compacted(&raw("[1,2]")).is_none());
        assert_eq!(
            compacted(&raw(r#"["\\", 1]"#)).unwrap().get(),
            r#"["\\",1]"#
        );
    }

    #[test]
    fn replacing_members_keeps_the_commas_right() {
        let one = DataSize::EMPTY.replacing(None, Some(7)); // {"a":12}
        assert_eq!(one, DataSize { bytes: 9, keys: 1 });
        let two = one.replacing(None, Some(5)); // {"a":12,"b":1}
        assert_eq!(two, DataSize { bytes: 15, keys: 2 });
        assert_eq!(two.replacing(Some(7), None), DataSize { bytes: 7, keys: 1 });
        assert_eq!(
            two.replacing(Some(7), Some(9)),
            DataSize { bytes: 17, keys: 2 }
        );
        assert_eq!(one.replacing(Some(7), None), DataSize::EMPTY);
    }

    #[test]
    fn past_a_limit_only_shrinking_is_admitted() {
        let limits = DataLimits::new(100, 2);
        let over = DataSize {
            bytes: 150,
            keys: 3,
        };
        assert!(limits.admits(
            over,
            DataSize {
                bytes: 150,
                keys: 3
            }
        ));
        assert!(limits.admits(
            over,
            DataSize {
                bytes: 140,
                keys: 2
            }
        ));
        assert!(!limits.admits(
            over,
            DataSize {
                bytes: 151,
                keys: 3
            }
        ));
        assert!(!limits.admits(over, DataSize { bytes: 90, keys: 4 }));
        assert!(matches!(
            limits.check(
                DataSize::EMPTY,
                DataSize {
                    bytes: 101,
                    keys: 1
                }
            ),
            Err(DataError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
        assert!(matches!(
            limits.check(DataSize::EMPTY, DataSize { bytes: 20, keys: 3 }),
            Err(DataError::TooManyKeys { keys: 3, limit: 2 })
        ));
    }
}
