//! The `SessionStore` contract, run against every store and decorator: memory, write-through,
//! tiered and publishing in `contract.rs`; Redis, Redis Cluster, PostgreSQL and their tiers in
//! their own modules.

use std::time::Duration;

use tower_app_sessions::data::{DataLimits, DataPatch, SessionData};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::DataUpdate::{Applied, NotLive, OverLimit};
use tower_app_sessions::{
    AppContext, Scope, SessionId, SessionMetadata, SessionRecord, SessionStore,
};
use uuid::Uuid;

fn record(user: Uuid, now: i64, ttl: Duration) -> SessionRecord {
    SessionRecord::new(
        user,
        SessionMetadata::new()
            .ip("203.0.113.9")
            .user_agent("contract/1"),
        now,
        ttl,
    )
}

fn rec_expiry_plus(record: &SessionRecord, ms: i64) -> i64 {
    record.expires_at + ms
}

/// Every rule of the store contract; each call uses fresh ids and users, so it can run
/// concurrently with other tests on the same backend.
pub(crate) async fn store_contract(store: &dyn SessionStore) {
    let bot = AppContext::custom("telegram-bot").unwrap();
    store_contract_with(store, Uuid::new_v4(), Uuid::new_v4(), bot).await;
}

/// The contract with given users (for backends whose sessions reference a `users` table) and
/// a third context (`AppContext::Admin` again for backends that only know web and admin).
pub(crate) async fn store_contract_with(
    store: &dyn SessionStore,
    user: Uuid,
    other: Uuid,
    bot: AppContext,
) {
    let (web, admin) = (AppContext::Web, AppContext::Admin);
    let minute = Duration::from_secs(60);
    // Time is an input of every operation: the contract walks a timeline from `t`, so expiry
    // is checked at exact instants, without waiting for it.
    let t = now_ms();

    // save / load, scoped by context
    let id = SessionId::generate().unwrap();
    let rec = record(user, t, minute);
    store.save(&web, &id, &rec, t).await.unwrap();
    assert_eq!(store.load(&web, &id, t).await.unwrap(), Some(rec.clone()));
    assert_eq!(
        store.load(&admin, &id, t).await.unwrap(),
        None,
        "web session visible in admin"
    );
    assert_eq!(store.load(&bot, &id, t).await.unwrap(), None);
    assert_eq!(
        store
            .load(&web, &SessionId::generate().unwrap(), t)
            .await
            .unwrap(),
        None
    );

    // extend moves expires_at (and the TTL) in its own context only
    let later = rec.expires_at + 30_000;
    assert!(!store.extend(&admin, &id, later, t).await.unwrap());
    assert!(store.extend(&web, &id, later, t).await.unwrap());
    let extended = store.load(&web, &id, t).await.unwrap().unwrap();
    assert_eq!(extended.expires_at, later);
    assert_eq!(extended.created_at, rec.created_at);
    assert_eq!(extended.ip, rec.ip);
    assert_eq!(
        store.load(&admin, &id, t).await.unwrap(),
        None,
        "extend created an admin session"
    );
    // extended past the original expiry: live after it
    assert!(store
        .load(&web, &id, rec.expires_at + 1)
        .await
        .unwrap()
        .is_some());

    // delete in another context does nothing; in its own, it deletes, once
    assert!(!store.delete(&admin, &id, t).await.unwrap());
    assert!(store.load(&web, &id, t).await.unwrap().is_some());
    assert!(store.delete(&web, &id, t).await.unwrap());
    assert!(!store.delete(&web, &id, t).await.unwrap());
    assert_eq!(store.load(&web, &id, t).await.unwrap(), None);
    // a deleted session is never resurrected by extend
    assert!(!store.extend(&web, &id, later, t).await.unwrap());
    assert_eq!(store.load(&web, &id, t).await.unwrap(), None);

    // data: a patch sets and removes keys of a live record, atomically, in its own context
    // only; every other key, the expiry and the metadata stay; an ended record is never
    // recreated; extend and rotate keep the data
    let holder = SessionId::generate().unwrap();
    let mut with_data = record(user, t, minute);
    let mut first = DataPatch::new();
    first.set("theme", "dark").unwrap();
    first
        .set("pi", &serde_json::json!(1.2345678901234567))
        .unwrap();
    first
        .set("cart", &serde_json::json!([1, {"sku": "a/b"}]))
        .unwrap();
    with_data.data.apply(&first);
    store.save(&web, &holder, &with_data, t).await.unwrap();
    assert_eq!(
        store.load(&web, &holder, t).await.unwrap(),
        Some(with_data.clone()),
        "saved data did not come back as it was"
    );
    let mut change = DataPatch::new();
    change.set("language", "ru").unwrap();
    change.remove("cart").unwrap();
    let limits = DataLimits::default();
    assert_eq!(
        store
            .update_data(&admin, &holder, &change, limits, t)
            .await
            .unwrap(),
        NotLive
    );
    assert_eq!(
        store
            .update_data(&web, &holder, &change, limits, t)
            .await
            .unwrap(),
        Applied
    );
    let updated = store.load(&web, &holder, t).await.unwrap().unwrap();
    let mut expected = with_data.clone();
    expected.data.apply(&change);
    assert_eq!(updated, expected, "a patch changed more than its keys");
    assert_eq!(
        updated.data.get_raw("pi").unwrap().get(),
        "1.2345678901234567",
        "an untouched value was re-encoded"
    );
    assert_eq!(store.load(&admin, &holder, t).await.unwrap(), None);
    // removing every key leaves no data
    let mut clear = DataPatch::new();
    for key in ["theme", "pi", "language"] {
        clear.remove(key).unwrap();
    }
    assert_eq!(
        store
            .update_data(&web, &holder, &clear, limits, t)
            .await
            .unwrap(),
        Applied
    );
    assert!(store
        .load(&web, &holder, t)
        .await
        .unwrap()
        .unwrap()
        .data
        .is_empty());
    assert_eq!(
        store
            .update_data(&web, &holder, &first, limits, t)
            .await
            .unwrap(),
        Applied
    );
    let slid = rec_expiry_plus(&with_data, 10_000);
    assert!(store.extend(&web, &holder, slid, t).await.unwrap());
    let extended = store.load(&web, &holder, t).await.unwrap().unwrap();
    assert_eq!(
        (extended.expires_at, &extended.data),
        (slid, &with_data.data)
    );
    let rotated_holder = SessionId::generate().unwrap();
    let moved = store
        .rotate(&web, &holder, &rotated_holder, &user, t)
        .await
        .unwrap()
        .expect("a live record moves");
    assert_eq!(moved.data, with_data.data, "rotation lost the data");
    assert_eq!(
        store
            .load(&web, &rotated_holder, t)
            .await
            .unwrap()
            .unwrap()
            .data,
        with_data.data
    );
    assert_eq!(
        store
            .update_data(&web, &holder, &change, limits, t)
            .await
            .unwrap(),
        NotLive,
        "the old id took data"
    );
    assert!(store.delete(&web, &rotated_holder, t).await.unwrap());
    assert_eq!(
        store
            .update_data(&web, &rotated_holder, &change, limits, t)
            .await
            .unwrap(),
        NotLive
    );
    assert_eq!(
        store.load(&web, &rotated_holder, t).await.unwrap(),
        None,
        "a data patch recreated a deleted session"
    );
    let expiring_data = SessionId::generate().unwrap();
    store
        .save(&web, &expiring_data, &with_data, t)
        .await
        .unwrap();
    assert_eq!(
        store
            .update_data(&web, &expiring_data, &change, limits, with_data.expires_at)
            .await
            .unwrap(),
        NotLive
    );
    store.delete(&web, &expiring_data, t).await.unwrap();

    data_limits(store, user, t).await;

    // user agents (and client addresses) are stored cut to their maximum, whatever a caller
    // put in the record
    let chatty = SessionId::generate().unwrap();
    let mut long = record(user, t, minute);
    long.user_agent = Some("é".repeat(5_000));
    store.save(&web, &chatty, &long, t).await.unwrap();
    let stored = store.load(&web, &chatty, t).await.unwrap().unwrap();
    let ua = stored.user_agent.unwrap();
    assert_eq!(ua.len(), tower_app_sessions::record::MAX_USER_AGENT_BYTES);
    assert!(ua.chars().all(|c| c == 'é'), "cut inside a character");
    assert!(store.delete(&web, &chatty, t).await.unwrap());

    // rotate moves a live record to a new id, once, in its own context only; never a deleted
    // or expired one, and then writes nothing
    let moving = SessionId::generate().unwrap();
    let moving_rec = record(user, t, minute);
    store.save(&web, &moving, &moving_rec, t).await.unwrap();
    let (moved_to, elsewhere) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    assert_eq!(
        store
            .rotate(&admin, &moving, &elsewhere, &user, t)
            .await
            .unwrap(),
        None,
        "rotated across contexts"
    );
    assert_eq!(
        store
            .rotate(&web, &moving, &moved_to, &user, t)
            .await
            .unwrap(),
        Some(moving_rec.clone())
    );
    assert_eq!(store.load(&web, &moving, t).await.unwrap(), None);
    assert_eq!(
        store.load(&web, &moved_to, t).await.unwrap(),
        Some(moving_rec.clone())
    );
    assert_eq!(
        store
            .rotate(&web, &moving, &elsewhere, &user, t)
            .await
            .unwrap(),
        None,
        "the old id moved twice"
    );
    assert!(store.delete(&web, &moved_to, t).await.unwrap());
    assert_eq!(
        store
            .rotate(&web, &moved_to, &elsewhere, &user, t)
            .await
            .unwrap(),
        None,
        "a deleted session moved"
    );
    let expiring = SessionId::generate().unwrap();
    store.save(&web, &expiring, &moving_rec, t).await.unwrap();
    assert_eq!(
        store
            .rotate(&web, &expiring, &elsewhere, &user, moving_rec.expires_at)
            .await
            .unwrap(),
        None,
        "an expired session moved"
    );
    for ctx in [&web, &admin] {
        assert_eq!(
            store.load(ctx, &elsewhere, t).await.unwrap(),
            None,
            "a failed move wrote"
        );
    }
    // (whether the expired record is gone or only expired is the store's affair)
    store.delete(&web, &expiring, t).await.unwrap();

    // expiry: live until expires_at, never returned from then on, never extended after it
    let short = SessionId::generate().unwrap();
    let short_rec = record(user, t, Duration::from_secs(5));
    store.save(&web, &short, &short_rec, t).await.unwrap();
    let deadline = short_rec.expires_at;
    assert!(store
        .load(&web, &short, deadline - 1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.load(&web, &short, deadline).await.unwrap(), None);
    assert!(!store
        .extend(&web, &short, deadline + 60_000, deadline)
        .await
        .unwrap());
    assert_eq!(store.load(&web, &short, deadline).await.unwrap(), None);
    // From here on the clock stands at that deadline: time never runs backwards for a store.
    let t = deadline;

    // per-user list and revoke, by scope
    let mut ids = Vec::new();
    for ctx in [&web, &web, &admin, &bot] {
        let id = SessionId::generate().unwrap();
        store
            .save(ctx, &id, &record(user, t, minute), t)
            .await
            .unwrap();
        ids.push((ctx.clone(), id));
    }
    let others = SessionId::generate().unwrap();
    store
        .save(&web, &others, &record(other, t, minute), t)
        .await
        .unwrap();

    let listed = store
        .list_user_sessions(&user, Scope::Context(&web), t)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|s| s.context == web && s.record.user_id == user));
    assert_eq!(listed[0].record.user_agent.as_deref(), Some("contract/1"));
    let all = store
        .list_user_sessions(&user, Scope::AllContexts, t)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);

    // a session deleted on its own disappears from the list
    store.delete(&bot, &ids[3].1, t).await.unwrap();
    assert_eq!(
        store
            .list_user_sessions(&user, Scope::AllContexts, t)
            .await
            .unwrap()
            .len(),
        3
    );

    assert_eq!(
        store
            .delete_user_sessions(&user, Scope::Context(&web), t)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.load(&web, &ids[0].1, t).await.unwrap(), None);
    assert!(store.load(&admin, &ids[2].1, t).await.unwrap().is_some());
    assert_eq!(
        store
            .delete_user_sessions(&user, Scope::AllContexts, t)
            .await
            .unwrap(),
        1
    );
    assert!(store
        .list_user_sessions(&user, Scope::AllContexts, t)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store.load(&web, &others, t).await.unwrap().is_some(),
        "another user's session was touched"
    );
    // listing is as of `now`: nothing is live once the session has expired (last: a store may
    // prune what it finds dead)
    assert_eq!(
        store
            .list_user_sessions(&other, Scope::AllContexts, t)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .list_user_sessions(&other, Scope::AllContexts, t + 60_000)
        .await
        .unwrap()
        .is_empty());
    store.delete(&web, &others, t).await.unwrap();
}

/// The data limits: a patch is applied only if the data it leaves, as stored, is within
/// both limits (bytes of its compact JSON, keys), measured alike on every store; data past
/// them (written so by another writer) may shrink but not grow; a refused patch changes
/// nothing.
async fn data_limits(store: &dyn SessionStore, user: Uuid, t: i64) {
    let web = AppContext::Web;
    let minute = Duration::from_secs(60);
    let fresh = |data: &str| {
        let mut rec = record(user, t, minute);
        rec.data = SessionData::from_json(data);
        rec
    };
    let patch = |sets: &[(&str, serde_json::Value)], removes: &[&str]| {
        let mut patch = DataPatch::new();
        for (key, value) in sets {
            patch.set(key, value).unwrap();
        }
        for key in removes {
            patch.remove(key).unwrap();
        }
        patch
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
    );
    let mut expected = SessionData::from_json(start);
    expected.apply(&add);
    let exact = expected.size();
    assert_eq!(exact.bytes, expected.to_json().len());
    for (max_bytes, outcome) in [(exact.bytes - 1, OverLimit), (exact.bytes, Applied)] {
        let id = SessionId::generate().unwrap();
        store.save(&web, &id, &fresh(start), t).await.unwrap();
        let limits = DataLimits::new(max_bytes, 10);
        assert_eq!(
            store.update_data(&web, &id, &add, limits, t).await.unwrap(),
            outcome,
            "limit {max_bytes} for data of {} bytes",
            exact.bytes
        );
        let after = stored(store, &id, t).await;
        let want = if outcome == Applied {
            &expected
        } else {
            &SessionData::from_json(start)
        };
        assert_eq!(
            &after, want,
            "limit {max_bytes}: the data is not what the outcome says"
        );
        assert!(after.size().bytes <= max_bytes.max(SessionData::from_json(start).size().bytes));
        store.delete(&web, &id, t).await.unwrap();
    }

    // Keys: at most `max_keys`; replacing a key is not adding one.
    let id = SessionId::generate().unwrap();
    store
        .save(&web, &id, &fresh(r#"{"a":1,"b":2}"#), t)
        .await
        .unwrap();
    let three = DataLimits::new(1000, 3);
    let outcomes = [
        (patch(&[("c", 3.into())], &[]), Applied),
        (patch(&[("d", 4.into())], &[]), OverLimit),
        (patch(&[("a", 10.into()), ("b", 20.into())], &[]), Applied),
        (patch(&[("d", 4.into())], &["c"]), Applied),
    ];
    for (i, (change, outcome)) in outcomes.iter().enumerate() {
        assert_eq!(
            store
                .update_data(&web, &id, change, three, t)
                .await
                .unwrap(),
            *outcome,
            "step {i}"
        );
    }
    assert_eq!(
        stored(store, &id, t).await,
        SessionData::from_json(r#"{"a":10,"b":20,"d":4}"#)
    );
    store.delete(&web, &id, t).await.unwrap();

    // Data past the limits (another writer's): growth is refused, shrinking goes through.
    let id = SessionId::generate().unwrap();
    let big = format!(
        r#"{{"a":"{}","b":"{}","c":1}}"#,
        "x".repeat(600),
        "y".repeat(600)
    );
    store.save(&web, &id, &fresh(&big), t).await.unwrap();
    let small = DataLimits::new(500, 2);
    let outcomes = [
        (patch(&[("c", 2.into())], &[]), Applied),
        (patch(&[("c", "longer".into())], &[]), OverLimit),
        (patch(&[("d", 1.into())], &["c"]), Applied),
        (patch(&[("e", 1.into())], &[]), OverLimit),
        (patch(&[], &["a"]), Applied),
        (patch(&[("b", "short".into())], &[]), Applied),
        (patch(&[("b", "x".repeat(500).into())], &[]), OverLimit),
    ];
    for (i, (change, outcome)) in outcomes.iter().enumerate() {
        assert_eq!(
            store
                .update_data(&web, &id, change, small, t)
                .await
                .unwrap(),
            *outcome,
            "step {i}"
        );
    }
    assert_eq!(
        stored(store, &id, t).await,
        SessionData::from_json(r#"{"b":"short","d":1}"#)
    );
    store.delete(&web, &id, t).await.unwrap();
}

async fn stored(store: &dyn SessionStore, id: &SessionId, t: i64) -> SessionData {
    let record = store.load(&AppContext::Web, id, t).await.unwrap();
    record.expect("a live session").data
}

/// The fast path's half of the contract: a store in process (or a decorator around one)
/// answers a load, found or not, without a future to await, so the layer serves the request
/// in `call`. A miss is one lookup: the answer to a forged id is ready too.
pub(crate) async fn loads_are_ready(store: &dyn SessionStore) {
    let (web, t) = (AppContext::Web, now_ms());
    let id = SessionId::generate().unwrap();
    let rec = record(Uuid::new_v4(), t, Duration::from_secs(60));
    store.save(&web, &id, &rec, t).await.unwrap();
    let found = store.load(&web, &id, t);
    assert!(found.is_ready(), "a hit must not wait: {found:?}");
    assert_eq!(found.await.unwrap(), Some(rec));
    let missing = SessionId::generate().unwrap();
    let miss = store.load(&web, &missing, t);
    assert!(miss.is_ready(), "a miss must not wait: {miss:?}");
    assert_eq!(miss.await.unwrap(), None);
    assert!(store.delete(&web, &id, t).await.unwrap());
}
