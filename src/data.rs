//! Session data: what a handler keeps in its session, stored with the record and changed by
//! patches of the keys that changed, never by rewriting the whole record.
//!
//! - [`SessionData`]: a session's keys and their JSON values, kept as the JSON text they were
//!   stored as (so a write of one key leaves every other key byte for byte as it was);
//! - [`DataPatch`]: the keys one request set or removed, what a store applies atomically with
//!   [`SessionStore::update_data`](crate::SessionStore::update_data);
//! - the rules for keys ([`check_key`]) and the size limit ([`DEFAULT_MAX_DATA_BYTES`]).
//!
//! Handlers use the [`Session`](crate::Session) handle: `get`, `insert`, `remove`, `flash`,
//! `take_flash`.
//!
//! ```
//! use tower_app_sessions::data::{DataPatch, SessionData};
//!
//! let mut data = SessionData::from_json(r#"{"theme":"dark","cart":[1,2]}"#);
//! let mut patch = DataPatch::new();
//! patch.set("language", &"ru").unwrap();
//! patch.remove("cart").unwrap();
//! data.apply(&patch);
//! assert_eq!(data.to_json(), r#"{"language":"ru","theme":"dark"}"#);
//! assert_eq!(data.get::<String>("theme").unwrap().as_deref(), Some("dark"));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// The default limit of a session's data, in bytes of its JSON object (16 KiB); see
/// [`SessionLayer::max_data_bytes`](crate::SessionLayer::max_data_bytes).
pub const DEFAULT_MAX_DATA_BYTES: usize = 16 * 1024;

/// The prefix of the keys that hold flash messages (`flash.<key>`).
pub(crate) const FLASH_PREFIX: &str = "flash.";

/// Why a session data operation failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The request has no session: data belongs to an authenticated session (`401`).
    #[error("the request has no session to keep data in")]
    NoSession,
    /// The key is empty, longer than [`MAX_KEY_BYTES`] or has a character outside
    /// `[A-Za-z0-9_.:-]` (`422`).
    #[error("invalid session data key: 1 to 128 characters of A-Z a-z 0-9 _ . : -")]
    InvalidKey,
    /// The data would be larger than the layer allows (`413`).
    #[error("session data would be {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Bytes of the data's JSON with the change.
        size: usize,
        /// The layer's limit.
        limit: usize,
    },
    /// The value could not be serialized to JSON (a map with non-string keys, a failing
    /// `Serialize` impl) (`422`).
    #[error("session data value could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    /// The value holds a NUL character (`\u0000`), which PostgreSQL's `jsonb` cannot store,
    /// so no store takes it (`422`). Checked on the value's JSON text, conservatively: an
    /// escaped backslash followed by `u0000` is refused too.
    #[error("session data value holds a NUL character (\\u0000), which cannot be stored")]
    NulCharacter,
    /// The stored value is not of the type asked for (`422`).
    #[error("session data {key:?} is not of the requested type: {source}")]
    WrongType {
        /// The key asked for.
        key: String,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes of `[A-Za-z0-9_.:-]`, so a key is the same
/// in every store, needs no escaping in JSON, SQL or Lua, and cannot look like another.
///
/// ```
/// use tower_app_sessions::data::check_key;
/// assert!(check_key("cart.v2:items").is_ok());
/// assert!(check_key("théme").is_err());
/// assert!(check_key("").is_err());
/// ```
///
/// # Errors
/// [`DataError::InvalidKey`].
pub fn check_key(key: &str) -> Result<(), DataError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(allowed) {
        return Err(DataError::InvalidKey);
    }
    Ok(())
}

type Values = BTreeMap<String, Box<RawValue>>;

/// A session's data: keys to JSON values, each kept as the JSON text it was stored as.
///
/// Cloning is cheap (the map is shared); a record carries its data wherever it goes, so
/// reading a key costs no round trip. `Debug` shows the keys only: values may be personal.
#[derive(Clone, Default)]
pub struct SessionData(Arc<Values>);

impl SessionData {
    /// No data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Data from stored JSON: an object is the data; anything else (an array, a string,
    /// `null`, invalid JSON) is no data, logged, so a malformed value never fails a request.
    pub fn from_json(json: &str) -> Self {
        match serde_json::from_str::<Values>(json) {
            Ok(values) => Self(Arc::new(values)),
            Err(error) => {
                if json.trim() != "null" {
                    tracing::warn!(%error, "session data that is not a JSON object read as no data");
                }
                Self::default()
            }
        }
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The stored JSON text of `key`.
    pub fn get_raw(&self, key: &str) -> Option<&RawValue> {
        self.0.get(key).map(AsRef::as_ref)
    }

    /// The value of `key` as a `T`, `None` if there is none.
    ///
    /// # Errors
    /// [`DataError::WrongType`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        self.get_raw(key).map(|raw| decode(key, raw)).transpose()
    }

    /// Applies `patch`: its keys set, its removed keys gone.
    pub fn apply(&mut self, patch: &DataPatch) {
        if patch.is_empty() {
            return;
        }
        let values = Arc::make_mut(&mut self.0);
        for key in &patch.remove {
            values.remove(key);
        }
        for (key, value) in &patch.set {
            values.insert(key.clone(), value.clone());
        }
    }

    /// The bytes of the data's JSON object (what the size limit counts).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len_with(&DataPatch::new())
    }

    /// The bytes of the data's JSON object once `patch` is applied, without applying it.
    pub fn encoded_len_with(&self, patch: &DataPatch) -> usize {
        let kept = self
            .0
            .iter()
            .filter(|(key, _)| !patch.set.contains_key(*key) && !patch.remove.contains(*key));
        let members: Vec<usize> = kept
            .map(|(key, value)| member_len(key, value))
            .chain(patch.set.iter().map(|(key, value)| member_len(key, value)))
            .collect();
        // `{` `}` and a comma between members
        2 + members.iter().sum::<usize>() + members.len().saturating_sub(1)
    }

    /// The data as one JSON object (`{}` when empty).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// `"key":value`, with the key written as JSON writes it.
fn member_len(key: &str, value: &RawValue) -> usize {
    serde_json::to_string(key).map_or(key.len() + 2, |k| k.len()) + 1 + value.get().len()
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, raw: &RawValue) -> Result<T, DataError> {
    serde_json::from_str(raw.get()).map_err(|source| DataError::WrongType {
        key: key.to_owned(),
        source,
    })
}

/// Equal when both have the same keys with the same JSON values: `[1,2]` equals the
/// `[1, 2]` PostgreSQL's `jsonb` gives back.
impl PartialEq for SessionData {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &RawValue, b: &RawValue| {
            a.get() == b.get()
                || serde_json::from_str::<serde_json::Value>(a.get()).ok()
                    == serde_json::from_str::<serde_json::Value>(b.get()).ok()
        };
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
    }
}

impl Eq for SessionData {}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionData")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Serialize for SessionData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A stored `data` that is not an object is no data (logged), never a failed record.
impl<'de> Deserialize<'de> for SessionData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Self::from_json(raw.get()))
    }
}

/// A change to a session's data: keys to set (to JSON values) and keys to remove, applied
/// by a store atomically, key by key, to whatever the data is when it arrives.
#[derive(Clone, Default)]
pub struct DataPatch {
    set: Values,
    remove: BTreeSet<String>,
}

impl DataPatch {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` (replacing an earlier change of the key in this patch).
    ///
    /// # Errors
    /// [`DataError::InvalidKey`], [`DataError::Encode`] if `value` has no JSON form,
    /// [`DataError::NulCharacter`].
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), DataError> {
        check_key(key)?;
        let raw = serde_json::value::to_raw_value(value).map_err(DataError::Encode)?;
        if raw.get().contains("\\u0000") {
            return Err(DataError::NulCharacter);
        }
        self.remove.remove(key);
        self.set.insert(key.to_owned(), raw);
        Ok(())
    }

    /// Removes `key` (replacing an earlier change of the key in this patch).
    ///
    /// # Errors
    /// [`DataError::InvalidKey`].
    pub fn remove(&mut self, key: &str) -> Result<(), DataError> {
        check_key(key)?;
        self.set.remove(key);
        self.remove.insert(key.to_owned());
        Ok(())
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// What the patch says about `key`: `Some(Some(value))` set, `Some(None)` removed, `None`
    /// untouched.
    pub fn change(&self, key: &str) -> Option<Option<&RawValue>> {
        if let Some(value) = self.set.get(key) {
            return Some(Some(value));
        }
        self.remove.contains(key).then_some(None)
    }

    /// The keys set, with their JSON text.
    pub fn sets(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.set.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// The keys removed.
    pub fn removes(&self) -> impl Iterator<Item = &str> {
        self.remove.iter().map(String::as_str)
    }

    /// Puts back what the patch said about `key` before a change that is being undone.
    pub(crate) fn restore(&mut self, key: &str, previous: Option<Option<Box<RawValue>>>) {
        self.set.remove(key);
        self.remove.remove(key);
        match previous {
            Some(Some(value)) => {
                self.set.insert(key.to_owned(), value);
            }
            Some(None) => {
                self.remove.insert(key.to_owned());
            }
            None => {}
        }
    }

    /// The keys set, as one JSON object (`{}` when none): what a store merges.
    pub fn sets_json(&self) -> String {
        serde_json::to_string(&self.set).unwrap_or_else(|_| "{}".to_owned())
    }
}

impl fmt::Debug for DataPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPatch")
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_counts_the_json_object_with_the_change() {
        let data = SessionData::from_json(r#"{"a":1,"bb":"x"}"#);
        assert_eq!(data.encoded_len(), data.to_json().len());
        let mut patch = DataPatch::new();
        patch.set("a", &12345).unwrap();
        patch.set("c", &[1, 2]).unwrap();
        patch.remove("bb").unwrap();
        let mut applied = data.clone();
        applied.apply(&patch);
        assert_eq!(data.encoded_len_with(&patch), applied.to_json().len());
        assert_eq!(applied.to_json(), r#"{"a":12345,"c":[1,2]}"#);
        assert_eq!(SessionData::new().encoded_len(), 2);
    }

    #[test]
    fn values_keep_their_text_and_malformed_data_is_none() {
        let data =
            SessionData::from_json(r#"{"pi":3.141592653589793238,"big":12345678901234567890}"#);
        assert_eq!(data.get_raw("pi").unwrap().get(), "3.141592653589793238");
        assert_eq!(data.get_raw("big").unwrap().get(), "12345678901234567890");
        for malformed in ["[1,2]", "\"x\"", "null", "7", "{", ""] {
            assert!(SessionData::from_json(malformed).is_empty(), "{malformed}");
        }
        assert!(matches!(
            data.get::<String>("pi"),
            Err(DataError::WrongType { .. })
        ));
    }

    #[test]
    fn a_patch_keeps_the_last_change_of_a_key() {
        let mut patch = DataPatch::new();
        patch.set("k", &1).unwrap();
        patch.remove("k").unwrap();
        assert!(matches!(patch.change("k"), Some(None)));
        patch.set("k", &2).unwrap();
        assert_eq!(patch.change("k").unwrap().unwrap().get(), "2");
        assert_eq!(patch.removes().count(), 0);
        assert_eq!(patch.sets_json(), r#"{"k":2}"#);
    }
}
