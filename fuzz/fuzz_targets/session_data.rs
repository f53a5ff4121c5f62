//! Session data: `SessionData::from_json` (the `data` of every record read), `DataPatch`
//! (what handlers write), the key rule, and the size every store's limits measure.
//!
//! Input: the first line is stored data (any bytes); each further line is a change,
//! `+key=json` (set) or `-key` (remove), with any key.
//!
//! Properties:
//! - stored data that is a JSON object reads as that object (the same keys, values equal as
//!   JSON, last duplicate wins); anything else reads as no data; nothing panics;
//! - the data's encoding reads back as itself, and its size is its encoding's bytes and keys;
//! - `check_key` accepts exactly `[A-Za-z0-9_.:-]{1,128}`, and a patch accepts a key exactly
//!   when `check_key` does;
//! - applying a patch gives the model's data (each key's last change in the patch wins), and
//!   `size_with(patch)` is the size after `apply(patch)`; `DataLimits::check` agrees with
//!   `admits`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;
use tower_app_sessions::data::{DataLimits, DataPatch, SessionData};
use tower_app_sessions::fuzzing::check_key;

fn key_shaped(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

fn check(data: &SessionData) {
    let json = data.to_json();
    let again = SessionData::from_json(&json);
    assert_eq!(&again, data, "the encoding reads back as the data");
    assert_eq!(again.to_json(), json, "encoding is a fixpoint");
    assert_eq!(
        data.size().bytes,
        json.len(),
        "size in bytes is the encoding's"
    );
    assert_eq!(data.size().keys, data.len());
    assert_eq!(data.keys().count(), data.len());
}

fuzz_target!(|bytes: &[u8]| {
    let mut lines = bytes.split(|b| *b == b'\n');
    let stored = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let mut data = SessionData::from_json(&stored);
    check(&data);

    match serde_json::from_str::<Value>(&stored) {
        Ok(Value::Object(object)) => {
            let read: Vec<&str> = data.keys().collect();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(read, keys, "the object's keys");
            for (key, value) in &object {
                let raw = data.get_raw(key).unwrap();
                let read: Value = serde_json::from_str(raw.get()).unwrap();
                assert_eq!(
                    &read, value,
                    "{key:?}: the value, compacted, means the same"
                );
            }
        }
        Ok(_) => assert!(data.is_empty(), "not an object: no data"),
        // serde_json's `Value` and the data's reader may disagree about numbers out of
        // range; whatever the data holds must still be consistent (checked above).
        Err(_) => {}
    }

    let mut patch = DataPatch::new();
    // The model: every key's last change.
    let mut model: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for line in lines.take(64) {
        let line = String::from_utf8_lossy(line);
        let shaped = |key: &str| {
            let ok = key_shaped(key);
            assert_eq!(check_key(key).is_ok(), ok, "check_key({key:?})");
            ok
        };
        if let Some(rest) = line.strip_prefix('+') {
            let (key, json) = rest.split_once('=').unwrap_or((rest, "null"));
            let Ok(value) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            let accepted = patch.set(key, &value).is_ok();
            let nul = serde_json::to_string(&value).unwrap().contains("\\u0000");
            assert_eq!(accepted, shaped(key) && !nul, "set {key:?}");
            if accepted {
                model.insert(key.to_owned(), Some(value));
            }
        } else if let Some(key) = line.strip_prefix('-') {
            let accepted = patch.remove(key).is_ok();
            assert_eq!(accepted, shaped(key), "remove {key:?}");
            if accepted {
                model.insert(key.to_owned(), None);
            }
        }
    }
    for (key, change) in &model {
        let told = patch
            .change(key)
            .map(|v| v.map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap()));
        assert_eq!(
            told.as_ref(),
            Some(&change.clone()),
            "the patch's change of {key:?}"
        );
    }
    assert_eq!(patch.is_empty(), model.is_empty());
    let sets: Value = serde_json::from_str(&patch.sets_json()).unwrap();
    assert_eq!(
        sets.as_object().unwrap().len(),
        model.values().filter(|c| c.is_some()).count()
    );

    let before = data.clone();
    let predicted = data.size_with(&patch);
    data.apply(&patch);
    check(&data);
    assert_eq!(
        data.size(),
        predicted,
        "size_with(patch) is the size after apply(patch)"
    );
    // Compared as JSON text: a stored value may hold what serde_json's `Value` refuses (a
    // number out of range), and the data keeps values as text anyway.
    let keys: std::collections::BTreeSet<&str> = before
        .keys()
        .chain(model.keys().map(String::as_str))
        .collect();
    for key in &keys {
        let now = data.get_raw(key).map(RawValue::get);
        let expected = match patch.change(key) {
            Some(change) => change.map(RawValue::get),
            None => before.get_raw(key).map(RawValue::get),
        };
        assert_eq!(now, expected, "{key:?} after the patch");
    }
    assert_eq!(
        data.len(),
        keys.iter().filter(|k| data.get_raw(k).is_some()).count()
    );

    let limits = DataLimits::new(bytes.len() % 97 + 2, bytes.len() % 5);
    assert_eq!(
        limits.admits(before.size(), predicted),
        limits.check(before.size(), predicted).is_ok()
    );
});
