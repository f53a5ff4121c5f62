//! What a [`Session`](crate::Session) answers when it refuses: the [`Rejection`] for a
//! request without a user and for each [`SessionError`]. Kept beside the session so that
//! [`Rejection`] itself depends on nothing of the crate (the cross-origin check, low in the
//! module graph, answers with it too).

use http::StatusCode;

use super::{SessionError, SessionStatus};
use crate::data::DataError;
use crate::rejection::Rejection;

impl Rejection {
    /// The answer to a request that needs a user and has none: `503`
    /// (`{"error":"session service unavailable"}`) when a backend failed, otherwise `401`
    /// (`{"error":"unauthorized"}`, the same for every reason).
    pub const fn without_user(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Unavailable => Self::UNAVAILABLE,
            _ => Self::UNAUTHORIZED,
        }
    }
}

/// The answer to a failed [`Session`](crate::Session) operation: `401` if the session ended
/// meanwhile (or there was none for its data), `409 {"error":"session_limit"}` over the
/// per-user session limit, `413`/`422` for refused session data, `503` for a backend
/// failure (logged at WARN); never `500`.
impl From<&SessionError> for Rejection {
    fn from(error: &SessionError) -> Self {
        match error {
            SessionError::Ended | SessionError::Data(_) | SessionError::LimitReached => {
                if let SessionError::Data(error) = error {
                    tracing::debug!(%error, "session data refused");
                }
            }
            _ => tracing::warn!(%error, "session operation failed"),
        }
        quietly(error)
    }
}

/// The answer to `error`, without logging it: for a caller that only asks the status
/// ([`LoginError::status`](crate::login::LoginError::status)) and may answer later.
pub(crate) fn quietly(error: &SessionError) -> Rejection {
    match error {
        SessionError::Ended | SessionError::Data(DataError::NoSession) => Rejection::UNAUTHORIZED,
        SessionError::LimitReached => {
            Rejection::new(StatusCode::CONFLICT, r#"{"error":"session_limit"}"#)
        }
        SessionError::Data(
            DataError::TooLarge { .. } | DataError::TooManyKeys { .. } | DataError::NoRoom,
        ) => Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, crate::data::TOO_LARGE_BODY),
        SessionError::Data(_) => Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"session_data"}"#,
        ),
        _ => Rejection::UNAVAILABLE,
    }
}
