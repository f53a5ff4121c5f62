//! Conversions between the `sessions` table's columns and the crate's types.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::BACKEND;
use crate::data::SessionData;
use crate::store::{Scope, StoreError};
use crate::SessionRecord;

pub(crate) use crate::users::postgres::{pg_context, pg_error};

pub(super) fn scope_labels(scope: Scope<'_>) -> Result<Vec<&'static str>, StoreError> {
    match scope {
        Scope::Context(context) => Ok(vec![pg_context(context)?]),
        Scope::AllContexts => Ok(vec!["web", "admin"]),
    }
}

pub(super) fn to_time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::backend(BACKEND, format!("timestamp {ms} ms out of range")))
}

/// Client addresses go into an `inet` column; anything that is not an address is dropped
/// rather than failing the login.
pub(super) fn inet(ip: Option<&str>) -> Option<String> {
    ip.and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_string())
}

/// A `sessions` row as [`COLUMNS`] selects it.
#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub(super) user_id: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// `data` as text: a row the TypeScript apps wrote (`{"theme":"dark"}`) reads as data;
    /// anything that is not an object as none.
    data: Option<String>,
}

impl From<Row> for SessionRecord {
    fn from(row: Row) -> Self {
        SessionRecord {
            user_id: row.user_id,
            created_at: row.created_at.timestamp_millis(),
            expires_at: row.expires_at.timestamp_millis(),
            ip: row.ip,
            user_agent: row.user_agent,
            data: row
                .data
                .as_deref()
                .map(SessionData::from_json)
                .unwrap_or_default(),
        }
    }
}

/// The stored form of a record's data: `NULL` when there is none.
pub(super) fn data_json(data: &SessionData) -> Option<String> {
    (!data.is_empty()).then(|| data.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppContext;

    #[test]
    fn only_the_enum_labels_are_contexts() {
        assert_eq!(pg_context(&AppContext::Web).unwrap(), "web");
        assert_eq!(pg_context(&AppContext::Admin).unwrap(), "admin");
        let bot = AppContext::custom("telegram-bot").unwrap();
        assert!(pg_context(&bot)
            .unwrap_err()
            .to_string()
            .contains("telegram-bot"));
    }

    #[test]
    fn addresses_are_validated_for_inet() {
        assert_eq!(inet(Some("203.0.113.7")).as_deref(), Some("203.0.113.7"));
        assert_eq!(inet(Some(" ::1 ")).as_deref(), Some("::1"));
        assert_eq!(inet(Some("not an ip'; DROP TABLE users")), None);
        assert_eq!(inet(None), None);
    }
}
