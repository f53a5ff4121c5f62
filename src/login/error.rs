//! [`LoginError`] and [`SetupError`]: why a login did not succeed, with its HTTP answer, and
//! why a [`PasswordLogin`](super::PasswordLogin) could not be set up.

use http::StatusCode;

use super::PasswordHashError;
use crate::config::ConfigError;
use crate::throttle::Throttled;
use crate::users::EmailError;
use crate::{RandomError, Rejection, SessionError, SessionStatus, StoreError};

/// Why a login, a registration or a re-authentication did not succeed. Every variant says
/// its HTTP status ([`status`](Self::status)); [`response`](Self::response) builds the whole
/// answer (axum: `IntoResponse`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Wrong email or password, an email no user can have, a password over the bound, or a
    /// user without a password: one answer for all (`401`).
    #[error("wrong email or password")]
    WrongCredentials,
    /// The password was right, but this context does not admit the user's role (`403`).
    #[error("this account cannot sign in here")]
    NotAdmitted,
    /// Re-authentication without a signed-in session (`401`).
    #[error("not signed in")]
    NotSignedIn,
    /// Over an attempt limit (`429`) or every verification slot busy (`503`).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// Registration: the email has no canonical form (`422`).
    #[error(transparent)]
    InvalidEmail(EmailError),
    /// Registration: the password is shorter than the bound, in characters (`422`).
    #[error("the password must be at least {min} characters")]
    PasswordTooShort {
        /// The bound.
        min: usize,
    },
    /// Registration: the password is longer than the bound, in bytes (`422`).
    #[error("the password must be at most {max} bytes")]
    PasswordTooLong {
        /// The bound.
        max: usize,
    },
    /// Registration: another user has this email (`409`).
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The session could not be started ([`SessionError`]'s answer: `503` for a backend
    /// failure, `409` over the per-user session limit).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The user store failed (`503`).
    #[error("the user store failed: {0}")]
    Unavailable(StoreError),
    /// A password could not be hashed (`503`).
    #[error(transparent)]
    Hash(#[from] PasswordHashError),
}

impl LoginError {
    /// The HTTP status this answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            LoginError::WrongCredentials | LoginError::NotSignedIn => StatusCode::UNAUTHORIZED,
            LoginError::NotAdmitted => StatusCode::FORBIDDEN,
            LoginError::Throttled(throttled) => throttled.status(),
            LoginError::InvalidEmail(_)
            | LoginError::PasswordTooShort { .. }
            | LoginError::PasswordTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LoginError::EmailTaken => StatusCode::CONFLICT,
            LoginError::Session(error) => crate::session::rejection_quietly(error).status(),
            LoginError::Unavailable(_) | LoginError::Hash(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The whole answer: the status, a JSON body `{"error":"<code>"}` that never repeats the
    /// input, `Retry-After` on `429` and `503`. Backend failures are logged here.
    pub fn response<B: From<&'static str>>(&self) -> http::Response<B> {
        Rejection::from(self).response()
    }
}

/// [`LoginError::response`]'s answer.
impl From<&LoginError> for Rejection {
    fn from(error: &LoginError) -> Self {
        let body = match error {
            LoginError::Throttled(throttled) => return Rejection::from(throttled),
            LoginError::Session(error) => return Rejection::from(error),
            LoginError::Unavailable(_) | LoginError::Hash(_) => {
                tracing::warn!(%error, "login unavailable");
                return Rejection::without_user(SessionStatus::Unavailable);
            }
            LoginError::WrongCredentials => r#"{"error":"invalid_credentials"}"#,
            LoginError::NotAdmitted => r#"{"error":"forbidden"}"#,
            LoginError::NotSignedIn => r#"{"error":"unauthorized"}"#,
            LoginError::InvalidEmail(_) => r#"{"error":"invalid_email"}"#,
            LoginError::PasswordTooShort { .. } => r#"{"error":"password_too_short"}"#,
            LoginError::PasswordTooLong { .. } => r#"{"error":"password_too_long"}"#,
            LoginError::EmailTaken => r#"{"error":"email_taken"}"#,
        };
        Rejection::new(error.status(), body)
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for LoginError {
    fn into_response(self) -> axum_core::response::Response {
        self.response()
    }
}

/// Why a [`PasswordLogin`](super::PasswordLogin) could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A variable of the environment is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The dummy hash (for unknown emails) could not be made.
    #[error(transparent)]
    Hash(#[from] PasswordHashError),
    /// No random key for the device cookies could be made.
    #[error(transparent)]
    Random(#[from] RandomError),
}
