//! The data rules: patches applied key by key to live records only, and the data limits
//! checked in the same atomic step.

use crate::data::{DataLimits, DataPatch, SessionData};
use crate::store::DataUpdate::{Applied, NotLive, OverLimit};
use crate::{AppContext, SessionId, SessionStore};

use super::support::{ensure, ensure_eq, live, record, Checked, Failure, Setup, MINUTE, SHORT};

/// A patch sets and removes keys of a live record, atomically, in its own context only;
/// every other key (byte for byte), the expiry and the metadata stay; an ended record is
/// never recreated; `extend` and `rotate` keep the data.
pub(super) async fn data_patch(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let user = s.user;
    let holder = SessionId::generate()?;
    let mut with_data = record(user, t, MINUTE);
    let mut first = DataPatch::new();
    first.set("theme", "dark")?;
    first.set("pi", &serde_json::json!(1.2345678901234567))?;
    first.set("cart", &serde_json::json!([1, {"sku": "a/b"}]))?;
    with_data.data.apply(&first);
    store.save(&web, &holder, &with_data, t).await?;
    let saved = store.load(&web, &holder, t).await?;
    ensure_eq!(
        saved,
        Some(with_data.clone()),
        "saved data did not come back as it was"
    );
    let mut change = DataPatch::new();
    change.set("language", "ru")?;
    change.remove("cart")?;
    let limits = DataLimits::default();
    let across = store
        .update_data(&admin, &holder, &change, limits, t)
        .await?;
    ensure_eq!(across, NotLive, "patched across contexts");
    let applied = store.update_data(&web, &holder, &change, limits, t).await?;
    ensure_eq!(applied, Applied, "a patch of a live record");
    let updated = live(store.load(&web, &holder, t).await?, "patched")?;
    let mut expected = with_data.clone();
    expected.data.apply(&change);
    ensure_eq!(updated, expected, "a patch changed more than its keys");
    let pi = updated.data.get_raw("pi").map(|raw| raw.get().to_owned());
    ensure_eq!(
        pi.as_deref(),
        Some("1.2345678901234567"),
        "an untouched value was re-encoded"
    );
    ensure_eq!(
        store.load(&admin, &holder, t).await?,
        None,
        "a patch created an admin session"
    );
    // removing every key leaves no data
    let mut clear = DataPatch::new();
    for key in ["theme", "pi", "language"] {
        clear.remove(key)?;
    }
    let cleared = store.update_data(&web, &holder, &clear, limits, t).await?;
    ensure_eq!(cleared, Applied, "removing every key");
    let empty = live(store.load(&web, &holder, t).await?, "cleared")?;
    ensure!(empty.data.is_empty(), "data left after removing every key");
    let refilled = store.update_data(&web, &holder, &first, limits, t).await?;
    ensure_eq!(refilled, Applied, "a patch after clearing");
    let slid = with_data.expires_at + 10_000;
    ensure!(
        store.extend(&web, &holder, slid, t).await?,
        "a live record was not extended"
    );
    let extended = live(store.load(&web, &holder, t).await?, "extended")?;
    ensure_eq!(
        (extended.expires_at, &extended.data),
        (slid, &with_data.data),
        "extend"
    );
    let rotated = SessionId::generate()?;
    let moved = store.rotate(&web, &holder, &rotated, &user, t).await?;
    let moved = live(moved, "a live record moves")?;
    ensure_eq!(moved.data, with_data.data, "rotation lost the data");
    let reloaded = live(store.load(&web, &rotated, t).await?, "rotated")?;
    ensure_eq!(reloaded.data, with_data.data, "the rotated record's data");
    let old = store.update_data(&web, &holder, &change, limits, t).await?;
    ensure_eq!(old, NotLive, "the old id took data");
    ensure!(store.delete(&web, &rotated, t).await?);
    let deleted = store
        .update_data(&web, &rotated, &change, limits, t)
        .await?;
    ensure_eq!(deleted, NotLive, "a deleted record took data");
    let gone = store.load(&web, &rotated, t).await?;
    ensure_eq!(gone, None, "a data patch recreated a deleted session");
    let expiring = SessionId::generate()?;
    let mut expiring_rec = record(user, t, SHORT);
    expiring_rec.data = with_data.data.clone();
    store.save(&web, &expiring, &expiring_rec, t).await?;
    s.clock.set(expiring_rec.expires_at);
    let t = s.clock.now_ms();
    let expired = store
        .update_data(&web, &expiring, &change, limits, t)
        .await?;
    ensure_eq!(expired, NotLive, "an expired record took data");
    store.delete(&web, &expiring, t).await?;
    Ok(())
}

/// The data limits: a patch is applied only if the data it leaves, as stored, is within
/// both limits (bytes of its compact JSON, keys), measured alike on every store; data past
/// them (written so by another writer) may shrink but not grow; a refused patch changes
/// nothing.
pub(super) async fn data_limits(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, t, user, minute) = (AppContext::Web, s.clock.now_ms(), s.user, MINUTE);
    let fresh = |data: &str| {
        let mut rec = record(user, t, minute);
        rec.data = SessionData::from_json(data);
        rec
    };
    let patch = |sets: &[(&str, serde_json::Value)], removes: &[&str]| {
        let mut patch = DataPatch::new();
        for (key, value) in sets {
            patch.set(key, value)?;
        }
        for key in removes {
            patch.remove(key)?;
        }
        Ok::<_, Failure>(patch)
    };

    // The measure is the same everywhere: data of exactly the limit is stored, one byte
    // less refuses it. (Nested values, strings with `,` and `:`, escapes: PostgreSQL's
    // `jsonb` writes them with spaces, which do not count.)
    let start = r#"{"cart":[1,{"sku":"a b"},[]],"q":"x, y: "z""}"#;
    let add = patch(
        &[(
            "n",
            serde_json::json!({"k": [1, 2, {"d": "é
"}]}),
        )],
        &["q"],
    )?;
    let mut expected = SessionData::from_json(start);
    expected.apply(&add);
    let exact = expected.size();
    ensure_eq!(exact.bytes, expected.to_json().len());
    for (max_bytes, outcome) in [(exact.bytes - 1, OverLimit), (exact.bytes, Applied)] {
        let id = SessionId::generate()?;
        store.save(&web, &id, &fresh(start), t).await?;
        let limits = DataLimits::new(max_bytes, 10);
        ensure_eq!(
            store.update_data(&web, &id, &add, limits, t).await?,
            outcome,
            "limit {max_bytes} for data of {} bytes",
            exact.bytes
        );
        let after = stored(store, &id, t).await?;
        let want = if outcome == Applied {
            &expected
        } else {
            &SessionData::from_json(start)
        };
        ensure_eq!(
            &after,
            want,
            "limit {max_bytes}: the data is not what the outcome says"
        );
        ensure!(after.size().bytes <= max_bytes.max(SessionData::from_json(start).size().bytes));
        store.delete(&web, &id, t).await?;
    }

    // Keys: at most `max_keys`; replacing a key is not adding one.
    let id = SessionId::generate()?;
    store.save(&web, &id, &fresh(r#"{"a":1,"b":2}"#), t).await?;
    let three = DataLimits::new(1000, 3);
    let outcomes = [
        (patch(&[("c", 3.into())], &[])?, Applied),
        (patch(&[("d", 4.into())], &[])?, OverLimit),
        (patch(&[("a", 10.into()), ("b", 20.into())], &[])?, Applied),
        (patch(&[("d", 4.into())], &["c"])?, Applied),
    ];
    for (i, (change, outcome)) in outcomes.iter().enumerate() {
        ensure_eq!(
            store.update_data(&web, &id, change, three, t).await?,
            *outcome,
            "step {i}"
        );
    }
    ensure_eq!(
        stored(store, &id, t).await?,
        SessionData::from_json(r#"{"a":10,"b":20,"d":4}"#)
    );
    store.delete(&web, &id, t).await?;

    // Data past the limits (another writer's): growth is refused, shrinking goes through.
    let id = SessionId::generate()?;
    let big = format!(
        r#"{{"a":"{}","b":"{}","c":1}}"#,
        "x".repeat(600),
        "y".repeat(600)
    );
    store.save(&web, &id, &fresh(&big), t).await?;
    let small = DataLimits::new(500, 2);
    let outcomes = [
        (patch(&[("c", 2.into())], &[])?, Applied),
        (patch(&[("c", "longer".into())], &[])?, OverLimit),
        (patch(&[("d", 1.into())], &["c"])?, Applied),
        (patch(&[("e", 1.into())], &[])?, OverLimit),
        (patch(&[], &["a"])?, Applied),
        (patch(&[("b", "short".into())], &[])?, Applied),
        (patch(&[("b", "x".repeat(500).into())], &[])?, OverLimit),
    ];
    for (i, (change, outcome)) in outcomes.iter().enumerate() {
        ensure_eq!(
            store.update_data(&web, &id, change, small, t).await?,
            *outcome,
            "step {i}"
        );
    }
    ensure_eq!(
        stored(store, &id, t).await?,
        SessionData::from_json(r#"{"b":"short","d":1}"#)
    );
    store.delete(&web, &id, t).await?;
    Ok(())
}

async fn stored(store: &dyn SessionStore, id: &SessionId, t: i64) -> Result<SessionData, Failure> {
    let record = store.load(&AppContext::Web, id, t).await?;
    Ok(live(record, "a session with data")?.data)
}
