//! [`Change`]: what changed, as every invalidation channel carries it — the cache's bus
//! between processes and PostgreSQL's notifications — so both speak one format.
//!
//! | message | meaning |
//! |---|---|
//! | `s:<context>:<id>` | one session ended or changed (revoked, deleted, data, shortened) |
//! | `u:<user id>` | one user changed (role, email, password, verification, permissions, deleted) |
//! | `all` (or anything unreadable) | anything may have changed |

use uuid::Uuid;

use crate::{AppContext, SessionId};

/// The Redis channel invalidations travel on.
pub const CHANNEL: &str = "tower-app-sessions:invalidate";

/// What a cache or a trusted copy must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
// Built without a channel (no Redis bus, no notifications), nothing decodes one.
#[cfg_attr(not(any(feature = "cache", feature = "postgres")), allow(dead_code))]
pub(crate) enum Change {
    Session(AppContext, SessionId),
    User(Uuid),
    Everything,
    /// Names something no instance of this crate can hold (an id or context it never
    /// accepts): nothing to drop.
    Nothing,
}

impl Change {
    #[cfg(any(all(feature = "redis", feature = "cache"), test))]
    pub(crate) fn encode(&self) -> String {
        match self {
            Change::Session(context, id) => format!("s:{}:{}", context.as_str(), id.as_str()),
            Change::User(id) => format!("u:{id}"),
            Change::Everything | Change::Nothing => "all".to_owned(),
        }
    }

    /// Anything unreadable is [`Change::Everything`]: an unknown message must not leave stale
    /// entries. A well-formed session message naming an id or context this crate never
    /// accepts from a request is [`Change::Nothing`] (the TypeScript apps may keep sessions of
    /// other shapes in the same table).
    #[cfg_attr(
        not(any(all(feature = "redis", feature = "cache"), feature = "postgres")),
        allow(dead_code)
    )]
    pub(crate) fn decode(message: &[u8]) -> Change {
        let Ok(message) = std::str::from_utf8(message) else {
            return Change::Everything;
        };
        if let Some(rest) = message.strip_prefix("s:") {
            let Some((context, id)) = rest.rsplit_once(':') else {
                return Change::Everything;
            };
            return match (context.parse::<AppContext>(), SessionId::parse(id)) {
                (Ok(context), Some(id)) => Change::Session(context, id),
                _ => Change::Nothing,
            };
        }
        if let Some(id) = message.strip_prefix("u:") {
            return id.parse().map_or(Change::Everything, Change::User);
        }
        Change::Everything
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_garbage_drops_everything() {
        let id = SessionId::generate().unwrap();
        for change in [
            Change::Session(AppContext::Admin, id.clone()),
            Change::Session(AppContext::custom("telegram-bot").unwrap(), id),
            Change::User(Uuid::new_v4()),
            Change::Everything,
        ] {
            assert_eq!(Change::decode(change.encode().as_bytes()), change);
        }
        for garbage in [
            &b""[..],
            b"\xff",
            b"s:",
            b"s:no-colon",
            b"u:not-a-uuid",
            b"all",
            b"x",
        ] {
            assert_eq!(Change::decode(garbage), Change::Everything, "{garbage:?}");
        }
        // Well-formed, but nothing this crate holds: a short id, an unknown label.
        for foreign in [
            &b"s:web:short"[..],
            b"s:Web:AAAAAAAAAAAAAAAAAAAA",
            b"s:web:a b",
        ] {
            assert_eq!(Change::decode(foreign), Change::Nothing, "{foreign:?}");
        }
    }
}
