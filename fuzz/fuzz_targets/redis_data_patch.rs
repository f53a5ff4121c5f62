//! Differential: the Redis data script (`src/store/redis/scripts/data_patch.lua`, run by
//! `RedisStore::update_data`) against a reference merge in Rust.
//!
//! Each input builds a record as other writers may have stored it (fields in any order,
//! whitespace, escaped key names, unicode, nesting, extra fields; `data` absent, `null`, not
//! an object, or an object with duplicate and escaped keys), and a patch of sets and
//! removals, with data limits. The record is written raw to a throwaway Redis, patched
//! through the public `SessionStore::update_data`, and read back raw. Then:
//! - the outcome (`Applied` or `OverLimit`) is the reference's: the data object as it would
//!   be stored (the kept members' bytes as they were, the patch's compact), measured in
//!   bytes and distinct keys, against the limits, growth refused only past a limit
//!   (`data::size`, "The measure" and "The rule");
//! - the data, parsed, is the reference merge (the stored object, last duplicate winning,
//!   without the patch's removed and set keys, with its set values);
//! - every other field of the record is byte-exact; a refused patch changes no byte;
//! - for a record in this crate's own form (compact data, plain unique keys) the reference
//!   measure is the memory store's (`SessionData::size_with`, `DataLimits::admits`).
//!
//! The Redis is `FUZZ_REDIS_URL` (`scripts/fuzz` starts one on a free loopback port); the
//! target refuses to run without it, and refuses port 6379.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Result as AResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tower_app_sessions::data::{DataLimits, DataPatch, SessionData};
use tower_app_sessions::store::redis::RedisConfig;
use tower_app_sessions::store::{DataUpdate, RedisStore};
use tower_app_sessions::{AppContext, SessionId, SessionStore};

const ID: &str = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuz";
const NOW: i64 = 1_700_000_000_000;

struct Env {
    runtime: tokio::runtime::Runtime,
    store: RedisStore,
    raw: redis::aio::MultiplexedConnection,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let url = std::env::var("FUZZ_REDIS_URL")
            .expect("FUZZ_REDIS_URL: a throwaway Redis (scripts/fuzz starts one)");
        assert!(
            !url.contains(":6379"),
            "FUZZ_REDIS_URL must be a throwaway Redis, never the one on port 6379"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (store, raw) = runtime.block_on(async {
            // Generous timeouts: the fuzzer shares a loaded machine, and a slow answer is not
            // what this target looks for (the store's 1 s default failed a run under load).
            let patient = Duration::from_secs(60);
            let config = RedisConfig::new(url.clone())
                .connect_timeout(patient)
                .response_timeout(patient);
            let store = RedisStore::connect(config).await.unwrap();
            let client = redis::Client::open(url.as_str()).unwrap();
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(patient))
                .set_response_timeout(Some(patient));
            let raw = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap();
            (store, raw)
        });
        Env {
            runtime,
            store,
            raw,
        }
    })
}

// ------------------------------------------------------------------ generation ---

const SPACES: &[&str] = &["", "", "", " ", "\n", "\t", " \r\n  "];
const NAMES: &[&str] = &[
    "theme",
    "cart",
    "a",
    "b",
    "x.y",
    "new",
    "k-1",
    "data",
    "é",
    "日本",
    "a\"b",
    "a\\b",
    "",
    "\u{1F600}",
    "nul\u{0}",
];
const PATCH_KEYS: &[&str] = &[
    "theme", "cart", "a", "b", "x.y", "new", "k-1", "data", "K:2",
];
const STRINGS: &[&str] = &[
    r#""""#,
    r#""dark""#,
    r#""a\"b""#,
    r#""\\""#,
    r#""}{][,:""#,
    r#""\u00e9t\u00E9""#,
    r#""é日本""#,
    r#""\ud83d\ude00""#,
    r#""line\nbreak\t""#,
    r#""\/slash""#,
    r#""\u0000""#,
    "\"\u{1F600}\"",
];
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1.5",
    "1e3",
    "1E-2",
    "12345678901234567890",
    "0.1",
    "4102444800000.0",
];

fn ws(u: &mut Unstructured) -> AResult<&'static str> {
    u.choose(SPACES).copied()
}

/// A JSON string for `name`, written plainly or with some characters `\u` escaped.
fn key_text(u: &mut Unstructured, name: &str) -> AResult<String> {
    let plain = serde_json::to_string(name).unwrap();
    if !u.ratio(1, 3)? {
        return Ok(plain);
    }
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if u.ratio(1, 2)? => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04X}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

fn value_text(u: &mut Unstructured, depth: u32) -> AResult<String> {
    let kind = if depth >= 3 {
        u.int_in_range(0..=3)?
    } else {
        u.int_in_range(0..=5)?
    };
    Ok(match kind {
        0 => u.choose(STRINGS)?.to_string(),
        1 => u.choose(NUMBERS)?.to_string(),
        2 => u.choose(&["true", "false", "null"])?.to_string(),
        3 => {
            let s: String = u.arbitrary()?;
            serde_json::to_string(&s).unwrap()
        }
        4 => {
            let n = u.int_in_range(0..=3)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(format!("{}{}{}", ws(u)?, value_text(u, depth + 1)?, ws(u)?));
            }
            format!("[{}{}]", items.join(","), ws(u)?)
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let mut items = Vec::new();
            for _ in 0..n {
                let name = *u.choose(NAMES)?;
                items.push(format!(
                    "{}{}{}:{}{}{}",
                    ws(u)?,
                    key_text(u, name)?,
                    ws(u)?,
                    ws(u)?,
                    value_text(u, depth + 1)?,
                    ws(u)?
                ));
            }
            format!("{{{}{}}}", items.join(","), ws(u)?)
        }
    })
}

/// A member of the stored data object: its decoded name and its text as stored, from the
/// key's opening quote to the value's end.
struct Member {
    name: String,
    text: String,
    value: String,
}

enum Data {
    Absent,
    Other(String),
    Object { members: Vec<Member>, text: String },
}

struct Case {
    record: String,
    /// The top-level fields other than `data`, with their values' text.
    fields: Vec<(String, String)>,
    data: Data,
    patch: DataPatch,
    limits: DataLimits,
}

fn case(u: &mut Unstructured) -> AResult<Case> {
    let mut fields: Vec<(String, String)> = vec![
        (
            "user_id".into(),
            r#""3f1c2a9e-8b7d-4c6e-9f00-1a2b3c4d5e6f""#.into(),
        ),
        (
            "created_at".into(),
            u.choose(&["1699999999999", "1699999999999.0", "1.699999999999e12"])?
                .to_string(),
        ),
        (
            "expires_at".into(),
            u.choose(&["4102444800000", "4102444800000.0", "4.1024448e12"])?
                .to_string(),
        ),
    ];
    if u.arbitrary()? {
        fields.push((
            "ip".into(),
            u.choose(&[r#""203.0.113.7""#, r#""::1""#, "null"])?
                .to_string(),
        ));
    }
    if u.arbitrary()? {
        fields.push(("user_agent".into(), value_text(u, 3)?));
    }
    for extra in ["csrf", "v", "meta"] {
        if u.ratio(1, 3)? {
            fields.push((extra.into(), value_text(u, 1)?));
        }
    }
    // Shuffle the fields.
    for i in (1..fields.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        fields.swap(i, j);
    }

    let data = match u.int_in_range(0..=5)? {
        0 => Data::Absent,
        1 => Data::Other("null".into()),
        2 => Data::Other(
            u.choose(&["[]", "[1,{\"a\":1}]", "\"text\"", "7", "true"])?
                .to_string(),
        ),
        _ => {
            let n = u.int_in_range(0..=6)?;
            let mut members = Vec::new();
            for _ in 0..n {
                let name = if u.ratio(3, 4)? {
                    *u.choose(&PATCH_KEYS[..7])?
                } else {
                    *u.choose(NAMES)?
                };
                let value = value_text(u, 1)?;
                let text = format!("{}{}:{}{}", key_text(u, name)?, ws(u)?, ws(u)?, value);
                members.push(Member {
                    name: name.to_owned(),
                    text,
                    value,
                });
            }
            let mut text = String::from("{");
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(ws(u)?);
                text.push_str(&m.text);
                text.push_str(ws(u)?);
            }
            text.push_str(ws(u)?);
            text.push('}');
            Data::Object { members, text }
        }
    };

    let mut parts: Vec<String> = Vec::new();
    for (name, value) in &fields {
        parts.push(format!(
            "{}{}{}:{}{}{}",
            ws(u)?,
            key_text(u, name)?,
            ws(u)?,
            ws(u)?,
            value,
            ws(u)?
        ));
    }
    let data_text = match &data {
        Data::Absent => None,
        Data::Other(text) | Data::Object { text, .. } => Some(text.clone()),
    };
    if let Some(text) = data_text {
        let at = u.int_in_range(0..=parts.len())?;
        parts.insert(
            at,
            format!(
                "{}{}{}:{}{}{}",
                ws(u)?,
                key_text(u, "data")?,
                ws(u)?,
                ws(u)?,
                text,
                ws(u)?
            ),
        );
    }
    let record = format!("{}{{{}}}{}", ws(u)?, parts.join(","), ws(u)?);

    let mut patch = DataPatch::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let key = *u.choose(PATCH_KEYS)?;
        if u.ratio(1, 3)? {
            patch.remove(key).unwrap();
        } else {
            let text = value_text(u, 1)?;
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = patch.set(key, &value); // a NUL character is refused, as for users
            }
        }
    }
    let limits = DataLimits::new(u.int_in_range(2..=200)?, u.int_in_range(0..=6)?);
    Ok(Case {
        record,
        fields,
        data,
        patch,
        limits,
    })
}

// ------------------------------------------------------------------- reference ---

/// The stored data object, parsed (the last of duplicate keys wins, as in every reader).
fn parsed_data(record: &str) -> Option<Map<String, Value>> {
    let top: Map<String, Value> = serde_json::from_str(record).ok()?;
    match top.get("data") {
        Some(Value::Object(data)) => Some(data.clone()),
        _ => Some(Map::new()),
    }
}

struct Expected {
    over: bool,
    data: Map<String, Value>,
    /// The measure before and after, as the reference computes it.
    before: (usize, usize),
    after: (usize, usize),
}

fn reference(case: &Case) -> Option<Expected> {
    let stored = parsed_data(&case.record)?;
    let drop: BTreeSet<&str> = case
        .patch
        .sets()
        .map(|(k, _)| k)
        .chain(case.patch.removes())
        .collect();
    let (members, before_bytes): (&[Member], usize) = match &case.data {
        Data::Object { members, text } => (members, text.len()),
        _ => (&[], 2),
    };
    let before_keys = members
        .iter()
        .map(|m| m.name.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let kept: Vec<&Member> = members
        .iter()
        .filter(|m| !drop.contains(m.name.as_str()))
        .collect();
    let mut texts: Vec<String> = kept.iter().map(|m| m.text.clone()).collect();
    texts.extend(
        case.patch
            .sets()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v.get())),
    );
    let after_bytes =
        2 + texts.iter().map(String::len).sum::<usize>() + texts.len().saturating_sub(1);
    let after_keys = kept
        .iter()
        .map(|m| m.name.as_str())
        .collect::<BTreeSet<_>>()
        .len()
        + case.patch.sets().count();
    let limits = case.limits;
    let over = (after_bytes > limits.max_bytes && after_bytes > before_bytes)
        || (after_keys > limits.max_keys && after_keys > before_keys);

    let mut data = stored;
    for key in &drop {
        data.remove(*key);
    }
    for (key, raw) in case.patch.sets() {
        data.insert(key.to_owned(), serde_json::from_str(raw.get()).ok()?);
    }
    Some(Expected {
        over,
        data,
        before: (before_bytes, before_keys),
        after: (after_bytes, after_keys),
    })
}

/// The top-level members of a record with their values' exact text.
fn fields(record: &str) -> BTreeMap<String, String> {
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_str(record).expect("the record stays JSON");
    map.into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(case) = case(&mut u) else { return };
    // Inputs serde_json refuses (a number out of range) are outside the comparison.
    let Some(expected) = reference(&case) else {
        return;
    };

    // This crate's own form: the memory store's measure is the reference's.
    if let Data::Object { members, text } = &case.data {
        let data = SessionData::from_json(text);
        let own = data.to_json() == *text
            && members.iter().all(|m| {
                m.text == format!("{}:{}", serde_json::to_string(&m.name).unwrap(), m.value)
            });
        if own {
            let before = data.size();
            let after = data.size_with(&case.patch);
            assert_eq!(
                (before.bytes, before.keys),
                expected.before,
                "the memory store's measure, before"
            );
            assert_eq!(
                (after.bytes, after.keys),
                expected.after,
                "the memory store's measure, after"
            );
            assert_eq!(
                case.limits.admits(before, after),
                !expected.over,
                "the memory store's verdict"
            );
        }
    }

    let env = env();
    let id = SessionId::parse(ID).unwrap();
    let key = format!("session:web:{ID}");
    let (outcome, after) = env.runtime.block_on(async {
        let mut raw = env.raw.clone();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&case.record)
            .arg("EX")
            .arg(3600)
            .query_async(&mut raw)
            .await
            .unwrap();
        let outcome = env
            .store
            .update_data(&AppContext::Web, &id, &case.patch, case.limits, NOW)
            .await
            .unwrap();
        let after: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(ttl > 0, "the TTL is kept");
        (outcome, after)
    });

    let context = || {
        format!(
            "\nrecord: {}\npatch: sets {} removes {:?}\nlimits: {:?}\nafter: {}",
            case.record,
            case.patch.sets_json(),
            case.patch.removes().collect::<Vec<_>>(),
            case.limits,
            after
        )
    };
    if expected.over {
        assert_eq!(
            outcome,
            DataUpdate::OverLimit,
            "the limits' verdict{}",
            context()
        );
        assert_eq!(
            after,
            case.record,
            "a refused patch changes nothing{}",
            context()
        );
        return;
    }
    assert_eq!(
        outcome,
        DataUpdate::Applied,
        "the limits' verdict{}",
        context()
    );
    let data = parsed_data(&after).unwrap_or_else(|| panic!("the record stays JSON{}", context()));
    assert_eq!(data, expected.data, "the data{}", context());

    // Every other field, byte for byte.
    let mut before = fields(&case.record);
    let mut now = fields(&after);
    before.remove("data");
    let data_after = now.remove("data");
    assert_eq!(now, before, "the other fields{}", context());
    let expected_fields: BTreeSet<&str> = case.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        now.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected_fields
    );
    if !expected.data.is_empty() {
        assert!(
            data_after.is_some_and(|d| d.starts_with('{')),
            "data stays an object{}",
            context()
        );
    }
});
