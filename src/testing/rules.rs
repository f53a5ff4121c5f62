//! The rules of the store contract, one function each; [`Rule::run`] dispatches by name.
//!
//! Each rule starts at the shared clock's reading and only moves forward from there (the
//! runner moves the clock past everything a rule wrote before the next one starts).

use std::time::Duration;

use crate::{AppContext, Scope, SessionId, SessionStore};

use super::support::{ensure, ensure_eq, live, record, Checked, Failure, Setup, MINUTE, SHORT};

/// A rule of the contract.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rule {
    Isolation,
    Extend,
    Delete,
    DataPatch,
    DataLimits,
    MetadataBounds,
    Rotate,
    Expiry,
    UserSessions,
    ListingAsOfNow,
    ReadyLoads,
}

impl Rule {
    /// The rules every store keeps, in the order of [`super::RULES`].
    pub(super) const ALL: [Rule; 10] = [
        Rule::Isolation,
        Rule::Extend,
        Rule::Delete,
        Rule::DataPatch,
        Rule::DataLimits,
        Rule::MetadataBounds,
        Rule::Rotate,
        Rule::Expiry,
        Rule::UserSessions,
        Rule::ListingAsOfNow,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Rule::ReadyLoads => "ready_loads",
            other => super::RULES[other as usize],
        }
    }

    pub(super) async fn run(self, store: &dyn SessionStore, s: &Setup) -> Checked {
        match self {
            Rule::Isolation => isolation(store, s).await,
            Rule::Extend => extend(store, s).await,
            Rule::Delete => delete(store, s).await,
            Rule::DataPatch => super::data::data_patch(store, s).await,
            Rule::DataLimits => super::data::data_limits(store, s).await,
            Rule::MetadataBounds => metadata_bounds(store, s).await,
            Rule::Rotate => rotate(store, s).await,
            Rule::Expiry => expiry(store, s).await,
            Rule::UserSessions => user_sessions(store, s).await,
            Rule::ListingAsOfNow => listing_as_of_now(store, s).await,
            Rule::ReadyLoads => ready_loads(store, s).await,
        }
    }
}

/// `save` and `load` are scoped by context: a record is found in its own only.
async fn isolation(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let id = SessionId::generate()?;
    let rec = record(s.user, t, MINUTE);
    store.save(&web, &id, &rec, t).await?;
    ensure_eq!(
        store.load(&web, &id, t).await?,
        Some(rec.clone()),
        "saved, then loaded"
    );
    ensure_eq!(
        store.load(&admin, &id, t).await?,
        None,
        "web session visible in admin"
    );
    ensure_eq!(
        store.load(&s.third, &id, t).await?,
        None,
        "web session visible in {}",
        s.third
    );
    let unknown = SessionId::generate()?;
    ensure_eq!(
        store.load(&web, &unknown, t).await?,
        None,
        "an id never saved"
    );
    ensure!(
        store.delete(&web, &id, t).await?,
        "delete of a live record reports false"
    );
    Ok(())
}

/// `extend` moves `expires_at` (and the TTL) of a live record in its own context only,
/// keeping the rest, and never resurrects a deleted one.
async fn extend(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let id = SessionId::generate()?;
    let rec = record(s.user, t, MINUTE);
    store.save(&web, &id, &rec, t).await?;
    let later = rec.expires_at + 30_000;
    ensure!(
        !store.extend(&admin, &id, later, t).await?,
        "extended across contexts"
    );
    ensure!(
        store.extend(&web, &id, later, t).await?,
        "a live record was not extended"
    );
    let extended = live(store.load(&web, &id, t).await?, "extended")?;
    ensure_eq!(extended.expires_at, later);
    ensure_eq!(extended.created_at, rec.created_at);
    ensure_eq!(extended.ip, rec.ip);
    ensure_eq!(
        store.load(&admin, &id, t).await?,
        None,
        "extend created an admin session"
    );
    // extended past the original expiry: live after it
    s.clock.set(rec.expires_at + 1);
    let t = s.clock.now_ms();
    ensure!(
        store.load(&web, &id, t).await?.is_some(),
        "not live past its old expiry"
    );
    ensure!(store.delete(&web, &id, t).await?);
    ensure!(
        !store.extend(&web, &id, later + 60_000, t).await?,
        "a deleted record was extended"
    );
    ensure_eq!(
        store.load(&web, &id, t).await?,
        None,
        "extend resurrected a deleted session"
    );
    Ok(())
}

/// `delete` in another context does nothing; in its own, it deletes once and says so.
async fn delete(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let id = SessionId::generate()?;
    store.save(&web, &id, &record(s.user, t, MINUTE), t).await?;
    ensure!(
        !store.delete(&admin, &id, t).await?,
        "deleted across contexts"
    );
    ensure!(
        store.load(&web, &id, t).await?.is_some(),
        "a delete elsewhere removed it"
    );
    ensure!(
        store.delete(&web, &id, t).await?,
        "delete of a live record reports false"
    );
    ensure!(!store.delete(&web, &id, t).await?, "deleted twice");
    ensure_eq!(store.load(&web, &id, t).await?, None, "loaded after delete");
    Ok(())
}

/// User agents (and client addresses) are stored cut to their maximum, on a character
/// boundary, whatever a caller put in the record.
async fn metadata_bounds(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, t) = (AppContext::Web, s.clock.now_ms());
    let chatty = SessionId::generate()?;
    let mut long = record(s.user, t, MINUTE);
    long.user_agent = Some("é".repeat(5_000));
    store.save(&web, &chatty, &long, t).await?;
    let stored = live(store.load(&web, &chatty, t).await?, "saved")?;
    let ua = stored.user_agent.unwrap_or_default();
    ensure_eq!(
        ua.len(),
        crate::record::MAX_USER_AGENT_BYTES,
        "stored user agent bytes"
    );
    ensure!(ua.chars().all(|c| c == 'é'), "cut inside a character");
    ensure!(store.delete(&web, &chatty, t).await?);
    Ok(())
}

/// `rotate` moves a live record to a new id, once, in its own context only; never a deleted
/// or expired one, and then writes nothing.
async fn rotate(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let user = s.user;
    let moving = SessionId::generate()?;
    let moving_rec = record(user, t, MINUTE);
    store.save(&web, &moving, &moving_rec, t).await?;
    let (moved_to, elsewhere) = (SessionId::generate()?, SessionId::generate()?);
    let across = store.rotate(&admin, &moving, &elsewhere, &user, t).await?;
    ensure_eq!(across, None, "rotated across contexts");
    let moved = store.rotate(&web, &moving, &moved_to, &user, t).await?;
    ensure_eq!(
        moved,
        Some(moving_rec.clone()),
        "a live record moves as it is"
    );
    ensure_eq!(
        store.load(&web, &moving, t).await?,
        None,
        "the old id still loads"
    );
    ensure_eq!(
        store.load(&web, &moved_to, t).await?,
        Some(moving_rec.clone()),
        "the new id"
    );
    let twice = store.rotate(&web, &moving, &elsewhere, &user, t).await?;
    ensure_eq!(twice, None, "the old id moved twice");
    ensure!(store.delete(&web, &moved_to, t).await?);
    let deleted = store.rotate(&web, &moved_to, &elsewhere, &user, t).await?;
    ensure_eq!(deleted, None, "a deleted session moved");
    let expiring = SessionId::generate()?;
    let expiring_rec = record(user, t, SHORT);
    store.save(&web, &expiring, &expiring_rec, t).await?;
    s.clock.set(expiring_rec.expires_at);
    let t = s.clock.now_ms();
    let expired = store.rotate(&web, &expiring, &elsewhere, &user, t).await?;
    ensure_eq!(expired, None, "an expired session moved");
    for ctx in [&web, &admin] {
        ensure_eq!(
            store.load(ctx, &elsewhere, t).await?,
            None,
            "a failed move wrote"
        );
    }
    // (whether the expired record is gone or only expired is the store's affair)
    store.delete(&web, &expiring, t).await?;
    Ok(())
}

/// A record is live until `expires_at`, never returned from then on, never extended after.
async fn expiry(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, t) = (AppContext::Web, s.clock.now_ms());
    let short = SessionId::generate()?;
    let short_rec = record(s.user, t, SHORT);
    store.save(&web, &short, &short_rec, t).await?;
    let deadline = short_rec.expires_at;
    s.clock.set(deadline - 1);
    let before = store.load(&web, &short, s.clock.now_ms()).await?;
    ensure!(before.is_some(), "not live a millisecond before its expiry");
    s.clock.advance(Duration::from_millis(1));
    let t = s.clock.now_ms();
    ensure_eq!(
        store.load(&web, &short, t).await?,
        None,
        "live at its expiry"
    );
    let extended = store.extend(&web, &short, deadline + 60_000, t).await?;
    ensure!(!extended, "an expired record was extended");
    ensure_eq!(
        store.load(&web, &short, t).await?,
        None,
        "extend revived an expired record"
    );
    store.delete(&web, &short, t).await?;
    Ok(())
}

/// A user's sessions are listed and ended by scope, and no one else's are touched.
async fn user_sessions(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, admin, t) = (AppContext::Web, AppContext::Admin, s.clock.now_ms());
    let (user, other) = (s.user, s.other);
    let mut ids = Vec::new();
    for ctx in [&web, &web, &admin, &s.third] {
        let id = SessionId::generate()?;
        store.save(ctx, &id, &record(user, t, MINUTE), t).await?;
        ids.push((ctx.clone(), id));
    }
    let others = SessionId::generate()?;
    store
        .save(&web, &others, &record(other, t, MINUTE), t)
        .await?;

    let listed = store
        .list_user_sessions(&user, Scope::Context(&web), t)
        .await?;
    ensure_eq!(listed.len(), 2, "sessions listed in web");
    ensure!(
        listed
            .iter()
            .all(|l| l.context == web && l.record.user_id == user),
        "a listing in web returned another context's or user's session"
    );
    ensure_eq!(
        listed[0].record.user_agent.as_deref(),
        Some("contract/1"),
        "listed record"
    );
    let all = store
        .list_user_sessions(&user, Scope::AllContexts, t)
        .await?;
    ensure_eq!(all.len(), 4, "sessions listed in every context");

    // a session deleted on its own disappears from the list
    store.delete(&ids[3].0, &ids[3].1, t).await?;
    let after = store
        .list_user_sessions(&user, Scope::AllContexts, t)
        .await?;
    ensure_eq!(after.len(), 3, "listed after one was deleted");

    let ended = store
        .delete_user_sessions(&user, Scope::Context(&web), t)
        .await?;
    ensure_eq!(ended, 2, "sessions ended in web");
    ensure_eq!(
        store.load(&web, &ids[0].1, t).await?,
        None,
        "a web session outlived its end"
    );
    ensure!(
        store.load(&admin, &ids[2].1, t).await?.is_some(),
        "ending web ended admin"
    );
    let ended = store
        .delete_user_sessions(&user, Scope::AllContexts, t)
        .await?;
    ensure_eq!(ended, 1, "sessions ended in every context");
    let left = store
        .list_user_sessions(&user, Scope::AllContexts, t)
        .await?;
    ensure!(
        left.is_empty(),
        "{} sessions listed after all were ended",
        left.len()
    );
    let touched = store.load(&web, &others, t).await?;
    ensure!(touched.is_some(), "another user's session was touched");
    store.delete(&web, &others, t).await?;
    Ok(())
}

/// Listing is as of `now`: nothing is listed once the session has expired.
async fn listing_as_of_now(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, t) = (AppContext::Web, s.clock.now_ms());
    let id = SessionId::generate()?;
    let rec = record(s.other, t, SHORT);
    store.save(&web, &id, &rec, t).await?;
    let listed = store
        .list_user_sessions(&s.other, Scope::AllContexts, t)
        .await?;
    ensure_eq!(listed.len(), 1, "sessions listed while live");
    s.clock.set(rec.expires_at);
    let t = s.clock.now_ms();
    let expired = store
        .list_user_sessions(&s.other, Scope::AllContexts, t)
        .await?;
    ensure!(expired.is_empty(), "an expired session is listed");
    store.delete(&web, &id, t).await?;
    Ok(())
}

/// The fast path's half of the contract: a store in process (or a decorator around one)
/// answers a load, found or not, without a future to await, so the layer serves the request
/// in `call`. A miss is one lookup: the answer to a forged id is ready too.
async fn ready_loads(store: &dyn SessionStore, s: &Setup) -> Checked {
    let (web, t) = (AppContext::Web, s.clock.now_ms());
    let id = SessionId::generate()?;
    let rec = record(s.user, t, MINUTE);
    store.save(&web, &id, &rec, t).await?;
    let found = store.load(&web, &id, t);
    ensure!(found.is_ready(), "a hit must not wait: {found:?}");
    ensure_eq!(found.await?, Some(rec), "the ready hit");
    let missing = SessionId::generate()?;
    let miss = store.load(&web, &missing, t);
    ensure!(miss.is_ready(), "a miss must not wait: {miss:?}");
    ensure_eq!(miss.await?, None, "the ready miss");
    ensure!(store.delete(&web, &id, t).await?);
    Ok(())
}
