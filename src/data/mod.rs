//! Session data: what a handler keeps in its session, stored with the record and changed by
//! patches of the keys that changed, never by rewriting the whole record.
//!
//! - [`SessionData`]: a session's keys and their JSON values, kept as the JSON text they were
//!   stored as, whitespace between tokens dropped (numbers keep their digits; a store's
//!   write of one key leaves every other key as it was);
//! - [`DataPatch`]: the keys one request set or removed, what a store applies atomically with
//!   [`SessionStore::update_data`](crate::SessionStore::update_data);
//! - the rules for keys (checked on every insert) and the limits ([`DataLimits`]: 16 KiB of compact
//!   JSON and 256 keys by default), which every store enforces where the data is stored,
//!   atomically with each change: no interleaving of requests stores more (see
//!   [the measure](size#the-measure) and [the rule](size#the-rule)).
//!
//! A request's changes are all or nothing: the layer saves them only when the handler's
//! answer is a success (a status below 400), and a change that is refused (a bad key or
//! value, a limit) abandons every change of the request, so none of it is saved.
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

mod draft;
pub mod size;

pub(crate) use draft::Draft;
use size::{compacted, member_len};
pub use size::{DataLimits, DataSize, DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_DATA_KEYS};

/// The body of the `413` answered when session data passes a limit.
pub(crate) const TOO_LARGE_BODY: &str = r#"{"error":"session_data_too_large"}"#;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

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
    /// The data would hold more keys than the layer allows, or the request removes more
    /// keys than a session can hold (`413`).
    #[error("session data would have {keys} keys, more than the {limit} allowed")]
    TooManyKeys {
        /// Keys with the change (or keys removed by the request).
        keys: usize,
        /// The layer's limit.
        limit: usize,
    },
    /// The store refused the request's changes: with what other requests stored since this
    /// one loaded the session, they would pass a limit (`413`). Nothing was written.
    #[error("session data limit reached in the store: the changes were not saved")]
    NoRoom,
    /// An earlier change in this request was refused, so none of the request's changes is
    /// saved, this one included (all or nothing) (`422`).
    #[error("an earlier session data change of this request was refused: nothing is saved")]
    Abandoned,
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
/// [`DataError::InvalidKey`] otherwise. Every insert checks it; users never need to.
pub(crate) fn check_key(key: &str) -> Result<(), DataError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(allowed) {
        return Err(DataError::InvalidKey);
    }
    Ok(())
}

type Values = BTreeMap<String, Box<RawValue>>;

/// A session's data: keys to JSON values, each kept as the JSON text it was stored as
/// (without whitespace between tokens).
///
/// Cloning is cheap (the map is shared); a record carries its data wherever it goes, so
/// reading a key costs no round trip. Its [size](Self::size) is kept with it, so measuring
/// costs nothing. `Debug` shows the keys only: values may be personal.
#[derive(Clone, Default)]
pub struct SessionData(Arc<Stored>);

#[derive(Clone)]
struct Stored {
    values: Values,
    size: DataSize,
}

impl Default for Stored {
    fn default() -> Self {
        Self {
            values: Values::new(),
            size: DataSize::EMPTY,
        }
    }
}

impl Stored {
    fn new(mut values: Values) -> Self {
        let mut size = DataSize::EMPTY;
        for (key, value) in &mut values {
            // PostgreSQL's `jsonb` gives `[1, 2]` back for `[1,2]`: kept compact, the data is
            // measured alike whichever store it came from.
            if let Some(compact) = compacted(value) {
                *value = compact;
            }
            size = size.replacing(None, Some(member_len(key, value)));
        }
        Self { values, size }
    }
}

impl SessionData {
    /// No data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Data from stored JSON: an object is the data; anything else (an array, a string,
    /// `null`, invalid JSON) is no data, logged, so a malformed value never fails a request.
    /// Whitespace between the values' tokens is dropped.
    pub fn from_json(json: &str) -> Self {
        match serde_json::from_str::<Values>(json) {
            Ok(values) => Self(Arc::new(Stored::new(values))),
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
        self.0.values.is_empty()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.values.len()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.values.keys().map(String::as_str)
    }

    /// The stored JSON text of `key`.
    pub fn get_raw(&self, key: &str) -> Option<&RawValue> {
        self.0.values.get(key).map(AsRef::as_ref)
    }

    /// The value of `key` as a `T`, `None` if there is none.
    ///
    /// # Errors
    /// [`DataError::WrongType`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        self.get_raw(key).map(|raw| decode(key, raw)).transpose()
    }

    /// Applies `patch`: its keys set, its removed keys gone. Costs the patch's keys, not
    /// the data's.
    pub fn apply(&mut self, patch: &DataPatch) {
        if patch.is_empty() {
            return;
        }
        let stored = Arc::make_mut(&mut self.0);
        for key in &patch.remove {
            if let Some(old) = stored.values.remove(key) {
                stored.size = stored.size.replacing(Some(member_len(key, &old)), None);
            }
        }
        for (key, value) in &patch.set {
            let old = stored.values.insert(key.clone(), value.clone());
            let old = old.as_deref().map(|old| member_len(key, old));
            stored.size = stored.size.replacing(old, Some(member_len(key, value)));
        }
    }

    /// The data's [size](size#the-measure): bytes of its compact JSON object and keys.
    /// Kept with the data: no cost.
    pub fn size(&self) -> DataSize {
        self.0.size
    }

    /// The data's size once `patch` is applied, without applying it. Costs the patch's
    /// keys, not the data's.
    pub fn size_with(&self, patch: &DataPatch) -> DataSize {
        let mut size = self.size();
        for key in patch.remove.iter().filter(|k| !patch.set.contains_key(*k)) {
            if let Some(old) = self.get_raw(key) {
                size = size.replacing(Some(member_len(key, old)), None);
            }
        }
        for (key, value) in &patch.set {
            let old = self.get_raw(key).map(|old| member_len(key, old));
            size = size.replacing(old, Some(member_len(key, value)));
        }
        size
    }

    /// The bytes of the data's JSON object (what the size limit counts): `size().bytes`.
    pub fn encoded_len(&self) -> usize {
        self.size().bytes
    }

    /// The bytes of the data's JSON object once `patch` is applied, without applying it:
    /// `size_with(patch).bytes`.
    pub fn encoded_len_with(&self, patch: &DataPatch) -> usize {
        self.size_with(patch).bytes
    }

    /// The data as one JSON object (`{}` when empty).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// `value` as JSON text for a store: any `Serialize` value, but no NUL character.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, DataError> {
    let raw = serde_json::value::to_raw_value(value).map_err(DataError::Encode)?;
    if raw.get().contains("\\u0000") {
        return Err(DataError::NulCharacter);
    }
    Ok(raw)
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
        let (ours, theirs) = (&self.0.values, &other.0.values);
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
    }
}

impl Eq for SessionData {}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionData")
            .field(&self.0.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Serialize for SessionData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.values.serialize(serializer)
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
        self.set_raw(key, encode(value)?);
        Ok(())
    }

    /// Removes `key` (replacing an earlier change of the key in this patch).
    ///
    /// # Errors
    /// [`DataError::InvalidKey`].
    pub fn remove(&mut self, key: &str) -> Result<(), DataError> {
        check_key(key)?;
        self.remove_checked(key);
        Ok(())
    }

    /// Sets a checked `key` to an encoded value.
    fn set_raw(&mut self, key: &str, raw: Box<RawValue>) {
        self.remove.remove(key);
        self.set.insert(key.to_owned(), raw);
    }

    /// Removes a checked `key`.
    fn remove_checked(&mut self, key: &str) {
        self.set.remove(key);
        self.remove.insert(key.to_owned());
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
    fn keys_outside_the_alphabet_or_length_are_refused() {
        assert!(check_key("cart.v2:items").is_ok());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for bad in ["", "théme", "a b", "a\"b", long.as_str()] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_size_counts_the_json_object_with_the_change() {
        let data = SessionData::from_json(r#"{"a":1,"bb":"x"}"#);
        assert_eq!(data.encoded_len(), data.to_json().len());
        assert_eq!(data.size().keys, 2);
        let mut patch = DataPatch::new();
        patch.set("a", &12345).unwrap();
        patch.set("c", &[1, 2]).unwrap();
        patch.remove("bb").unwrap();
        let mut applied = data.clone();
        applied.apply(&patch);
        assert_eq!(data.encoded_len_with(&patch), applied.to_json().len());
        assert_eq!(applied.size(), data.size_with(&patch));
        assert_eq!(applied.size().bytes, applied.to_json().len());
        assert_eq!(applied.to_json(), r#"{"a":12345,"c":[1,2]}"#);
        assert_eq!(SessionData::new().encoded_len(), 2);
        // Keys another writer escaped count as JSON writes them back.
        let escaped = SessionData::from_json(r#"{"th\u0065me":"x","q\"":1}"#);
        assert_eq!(escaped.size().bytes, escaped.to_json().len());
    }

    #[test]
    fn whitespace_between_tokens_is_dropped_on_reading() {
        // What PostgreSQL's `jsonb` gives back, and what another writer may store.
        let data = SessionData::from_json(r#"{"cart": [1, {"sku": "a b"}], "n" : 2}"#);
        assert_eq!(data.to_json(), r#"{"cart":[1,{"sku":"a b"}],"n":2}"#);
        assert_eq!(data.size().bytes, data.to_json().len());
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

    /// Found by the `session_data` fuzz target: serde_json's default float parser is not
    /// correctly rounded, so a float written and read back could come back one unit in the
    /// last place off. The crate turns on serde_json's `float_roundtrip`.
    #[test]
    fn floats_read_back_exactly() {
        for text in [
            "1.3333333313333333e20",
            "1.3333333313333332e20",
            "133333333133333333332",
            "0.1",
            "5e-324",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
        ] {
            let x: f64 = text.parse().unwrap();
            let mut patch = DataPatch::new();
            patch.set("k", &x).unwrap();
            let mut data = SessionData::new();
            data.apply(&patch);
            assert_eq!(data.get::<f64>("k").unwrap(), Some(x), "{text}");
            let again = SessionData::from_json(&data.to_json());
            assert_eq!(
                again.get::<f64>("k").unwrap(),
                Some(x),
                "{text}, stored and read"
            );
        }
    }
}
