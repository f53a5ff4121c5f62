//! The record decoder, `SessionRecord::from_json`: every stored value of every backend goes
//! through it, in the TypeScript apps' format (without `data`) and this crate's (with it).
//!
//! Properties:
//! - decode → encode → decode is the identity, and encoding is a fixpoint (the bytes of a
//!   record this crate wrote do not change when read and written again);
//! - the encoding is the TypeScript apps' format: the fields in their order, `ip` and
//!   `user_agent` left out when unknown, `data` last and only when it holds a key;
//! - every field stays byte-compatible with the input: the same user id, the same integer
//!   timestamps, the same strings, the same data values (as JSON values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower_app_sessions::SessionRecord;

fuzz_target!(|bytes: &[u8]| {
    let Ok(record) = SessionRecord::from_json(bytes) else {
        return;
    };
    let encoded = record.to_json();
    let again = SessionRecord::from_json(encoded.as_bytes()).expect("an encoded record decodes");
    assert_eq!(again, record, "decode, encode, decode");
    assert_eq!(again.to_json(), encoded, "encoding is a fixpoint");

    // The order and presence of the fields, as the TypeScript apps write them.
    let Ok(out) = serde_json::from_str::<Map<String, Value>>(&encoded) else {
        // Data values are kept as stored, byte for byte. One that JavaScript writes and
        // reads but a strict parser refuses (a lone UTF-16 surrogate escape, `"\ud800"`)
        // stays so: then the input was not strict JSON either.
        assert!(
            serde_json::from_slice::<Map<String, Value>>(bytes).is_err(),
            "a strict input encoded into what a strict parser refuses: {encoded}"
        );
        return;
    };
    let order: Vec<&str> = out.keys().map(String::as_str).collect();
    let mut expected = vec!["user_id", "created_at", "expires_at"];
    expected.extend(record.ip.is_some().then_some("ip"));
    expected.extend(record.user_agent.is_some().then_some("user_agent"));
    expected.extend((!record.data.is_empty()).then_some("data"));
    let mut sorted = expected.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "the fields present");
    let positions: Vec<usize> = expected
        .iter()
        .map(|k| encoded.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order in {encoded}"
    );

    // Byte-compatible with the input, field by field (where the input is plain JSON).
    let Ok(input) = serde_json::from_slice::<Map<String, Value>>(bytes) else {
        return;
    };
    let user_id: uuid::Uuid = input["user_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(user_id, record.user_id);
    assert_eq!(
        out["user_id"],
        Value::String(user_id.hyphenated().to_string())
    );
    for field in ["created_at", "expires_at"] {
        if let Some(n) = input[field].as_i64() {
            assert_eq!(out[field].as_i64(), Some(n), "{field}");
        }
    }
    for field in ["ip", "user_agent"] {
        match input.get(field) {
            Some(Value::String(s)) => assert_eq!(out[field].as_str(), Some(s.as_str()), "{field}"),
            _ => assert!(!out.contains_key(field), "{field}"),
        }
    }
    match input.get("data") {
        Some(Value::Object(data)) if !data.is_empty() => {
            let written = out["data"].as_object().expect("data stays an object");
            assert_eq!(written, data, "data values");
            assert_eq!(record.data.len(), data.len());
        }
        _ => assert!(!out.contains_key("data")),
    }
});
