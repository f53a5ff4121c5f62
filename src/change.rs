//! [`Change`] and its wire format: what changed, as every invalidation channel carries it — the cache's bus
//! between processes and PostgreSQL's notifications — so both speak one format.
//!
//! | message | meaning |
//! |---|---|
//! | `s:<context>:<id>` | one session ended or changed (revoked, deleted, data, shortened) |
//! | `u:<user id>` | one user changed (role, email, password, verification, permissions, deleted) |
//! | `all` (or anything unreadable) | anything may have changed |

use uuid::Uuid;

use crate::{AppContext, SessionId};

/// What a cache or a trusted copy must drop: what a [`ChangeFeed`](crate::feed::ChangeFeed)
/// delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// One session ended or changed (revoked, deleted, its data, its expiry shortened).
    Session(AppContext, SessionId),
    /// One user changed (role, email, password, verification, permissions, deleted).
    User(Uuid),
    /// Anything may have changed.
    Everything,
}

impl Change {
    /// The message of the wire format above (Redis pub/sub and PostgreSQL's triggers).
    pub fn encode(&self) -> String {
        match self {
            Change::Session(context, id) => format!("s:{}:{}", context.as_str(), id.as_str()),
            Change::User(id) => format!("u:{id}"),
            Change::Everything => "all".to_owned(),
        }
    }

    /// Reads a message of the wire format above. Anything unreadable is
    /// [`Change::Everything`]: an unknown message must not leave stale entries. A well-formed
    /// session message naming an id or context this crate never accepts from a request is
    /// `None`, nothing to drop (the TypeScript apps may keep sessions of other shapes in the
    /// same table).
    ///
    /// ```
    /// use tower_app_sessions::feed::Change;
    ///
    /// assert_eq!(Change::decode(b"all"), Some(Change::Everything));
    /// assert_eq!(Change::decode(b"\xff"), Some(Change::Everything));
    /// assert_eq!(Change::decode(b"s:web:short"), None); // not an id this crate accepts
    /// ```
    pub fn decode(message: &[u8]) -> Option<Change> {
        let Ok(message) = std::str::from_utf8(message) else {
            return Some(Change::Everything);
        };
        if let Some(rest) = message.strip_prefix("s:") {
            let Some((context, id)) = rest.rsplit_once(':') else {
                return Some(Change::Everything);
            };
            return match (context.parse::<AppContext>(), SessionId::parse(id)) {
                (Ok(context), Some(id)) => Some(Change::Session(context, id)),
                _ => None,
            };
        }
        if let Some(id) = message.strip_prefix("u:") {
            return Some(id.parse().map_or(Change::Everything, Change::User));
        }
        Some(Change::Everything)
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
            assert_eq!(Change::decode(change.encode().as_bytes()), Some(change));
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
            assert_eq!(
                Change::decode(garbage),
                Some(Change::Everything),
                "{garbage:?}"
            );
        }
        // Well-formed, but nothing this crate holds: a short id, an unknown label.
        for foreign in [
            &b"s:web:short"[..],
            b"s:Web:AAAAAAAAAAAAAAAAAAAA",
            b"s:web:a b",
        ] {
            assert_eq!(Change::decode(foreign), None, "{foreign:?}");
        }
    }
}
