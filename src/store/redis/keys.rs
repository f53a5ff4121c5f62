//! The one place Redis key names are built.
//!
//! | key | type | what |
//! |---|---|---|
//! | `session:<context>:<id>` | string | the record's JSON, `SET … EX <ttl>` (the TypeScript apps' format) |
//! | `session:<id>` | string | a pre-migration (legacy) record, read only through the fallback |
//! | `user-sessions:{<user_id>}` | sorted set | member `<context>:<id>`, score `expires_at`: revoke-all, listing and limits without scanning |
//! | `user-revocations:{<user_id>}` | integer | revocations of the user's sessions, counted at start and end |
//! | `session-quarantine:<handle>` | any | a legacy key that held no session record, set aside by the migration's quarantine (TTL kept) |
//!
//! The per-user and quarantine keys deliberately do not match `session:*`, the pattern the
//! TypeScript apps' cleanup check counts. Ids reach here validated ([`SessionId::parse`]), so no request can
//! inject a key.

use uuid::Uuid;

use crate::{AppContext, SessionHandle, SessionId};

/// Prefix of every session key, context-scoped or legacy.
pub const SESSION_PREFIX: &str = "session:";

/// `session:<context>:<id>`
pub fn session(context: &AppContext, id: &SessionId) -> String {
    format!("{SESSION_PREFIX}{}:{}", context.as_str(), id.as_str())
}

/// `session:<id>`: the key the TypeScript apps wrote before the migration.
pub fn legacy(id: &SessionId) -> String {
    format!("{SESSION_PREFIX}{}", id.as_str())
}

/// `user-sessions:{<user_id>}`: the per-user index (the hash tag keeps one user's index in
/// one cluster slot).
pub fn user_index(user_id: &Uuid) -> String {
    format!("user-sessions:{{{user_id}}}")
}

/// `user-revocations:{<user_id>}`: how many times the user's sessions were revoked, counted
/// twice per revocation (odd while one runs), so a rotation can tell that one overlapped it.
pub fn user_revocations(user_id: &Uuid) -> String {
    format!("user-revocations:{{{user_id}}}")
}

/// Prefix of the keys the legacy migration's quarantine renames non-records to.
pub const QUARANTINE_PREFIX: &str = "session-quarantine:";

/// `session-quarantine:<handle>`: where the quarantine
/// ([`LegacyMigration::quarantine`](super::LegacyMigration::quarantine)) puts a legacy key
/// `session:<id>` that holds no session record. Named by the handle, so the id (possibly a
/// live secret) is not in it; it does not match `session:*`, so the cleanup check stops
/// counting it.
pub fn quarantine(id: &SessionId) -> String {
    format!("{QUARANTINE_PREFIX}{}", id.handle())
}

/// `<context>:<id>`: a member of the per-user index.
pub fn index_member(context: &AppContext, id: &SessionId) -> String {
    format!("{}:{}", context.as_str(), id.as_str())
}

/// The context and id of an index member, `None` for anything else.
pub fn parse_index_member(member: &str) -> Option<(AppContext, SessionId)> {
    let (context, id) = member.rsplit_once(':')?;
    Some((context.parse().ok()?, SessionId::parse(id)?))
}

/// `session:<context>:*`: what [`count_sessions`](super::RedisStore::count_sessions) scans.
pub fn context_pattern(context: &AppContext) -> String {
    format!("{SESSION_PREFIX}{}:*", context.as_str())
}

/// `session:*`: every session key, legacy ones among them.
pub const ALL_SESSIONS: &str = "session:*";

/// The id of a legacy key `session:<id>`, or `None` for any other key.
pub fn parse_legacy(key: &str) -> Option<SessionId> {
    key.strip_prefix(SESSION_PREFIX).and_then(SessionId::parse)
}

/// The context and id of a context-scoped key `session:<context>:<id>`, `None` for any
/// other key (legacy ones included).
pub fn parse_session(key: &str) -> Option<(AppContext, SessionId)> {
    // The same `<context>:<id>` as an index member, after the prefix.
    key.strip_prefix(SESSION_PREFIX)
        .and_then(parse_index_member)
}

/// What of a session key may be logged: its context part (`session:web`), never the id.
pub(super) fn loggable(key: &str) -> &str {
    key.rsplit_once(':').map_or("session", |(prefix, _)| prefix)
}

/// The handle of the session a key `session:<context>:<id>` or `session:<id>` names (what
/// logs and reports show instead of the id).
pub(super) fn handle_of(key: &str) -> Option<SessionHandle> {
    parse_session(key)
        .map(|(_, id)| id)
        .or_else(|| parse_legacy(key))
        .map(|id| id.handle())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_typescript_apps_keys() {
        let id = SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA").unwrap();
        assert_eq!(
            session(&AppContext::Web, &id),
            "session:web:Q2xhc3NpY1Nlc3Npb25JZA"
        );
        assert_eq!(
            session(&AppContext::Admin, &id),
            "session:admin:Q2xhc3NpY1Nlc3Npb25JZA"
        );
        assert_eq!(legacy(&id), "session:Q2xhc3NpY1Nlc3Npb25JZA");
        for per_user in [user_index(&Uuid::nil()), user_revocations(&Uuid::nil())] {
            assert!(!per_user.starts_with(SESSION_PREFIX), "{per_user}");
        }
        assert_eq!(
            parse_legacy("session:Q2xhc3NpY1Nlc3Npb25JZA"),
            Some(id.clone())
        );
        assert_eq!(parse_legacy("session:web:Q2xhc3NpY1Nlc3Npb25JZA"), None);
        let member = index_member(&AppContext::Admin, &id);
        assert_eq!(
            parse_index_member(&member),
            Some((AppContext::Admin, id.clone()))
        );
        assert_eq!(parse_index_member("admin:short"), None);
        assert_eq!(
            loggable("session:web:Q2xhc3NpY1Nlc3Npb25JZA"),
            "session:web"
        );
        let quarantined = quarantine(&id);
        assert_eq!(quarantined, format!("session-quarantine:{}", id.handle()));
        assert!(!quarantined.starts_with(SESSION_PREFIX));
        assert!(!quarantined.contains(id.as_str()));
        assert_eq!(handle_of(&legacy(&id)), Some(id.handle()));
        assert_eq!(
            handle_of(&session(&AppContext::Web, &id)),
            Some(id.handle())
        );
        assert_eq!(handle_of("session:short"), None);
    }
}
