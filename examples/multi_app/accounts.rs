//! Accounts: checking a password (logins and re-authentication), starting a session,
//! registering. The security rules (the throttle's order, device cookies, the dummy hash for
//! unknown emails, the role check, the password bounds) are the crate's `PasswordLogin`;
//! this module maps its answers to the example's messages.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tower_app_sessions::login::{Credentials, LoginError};
use tower_app_sessions::{Role, Session, User};

use super::{ApiError, App};

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::WrongCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid email or password")
            }
            LoginError::NotAdmitted => ApiError::new(StatusCode::FORBIDDEN, "forbidden"),
            LoginError::InvalidEmail(error) => ApiError::unprocessable(error.to_string()),
            LoginError::PasswordTooShort { min } => {
                ApiError::unprocessable(format!("password must be at least {min} characters"))
            }
            LoginError::PasswordTooLong { max } => {
                ApiError::unprocessable(format!("password must be at most {max} bytes"))
            }
            LoginError::EmailTaken => {
                ApiError::new(StatusCode::CONFLICT, "email already registered")
            }
            // 429/503 with Retry-After, 401, the session's own answers: the crate's.
            other => ApiError(Box::new(other.into_response())),
        }
    }
}

impl App {
    /// A new user (role `user`): every check before the (throttled) password hash.
    pub(crate) async fn register(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        email: &str,
        password: String,
    ) -> Result<Arc<User>, ApiError> {
        let credentials = Credentials::new(email, password);
        Ok(self
            .login
            .register(peer, headers, credentials, Role::User)
            .await?)
    }

    /// The user whose email and password these are, or `None` (wrong email or password:
    /// the same answer); `403` for the right password of a role this app does not admit.
    pub(crate) async fn check_password(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        email: &str,
        password: String,
    ) -> Result<Option<Arc<User>>, ApiError> {
        let credentials = Credentials::new(email, password);
        match self.login.authenticate(peer, headers, credentials).await {
            Ok(user) => Ok(Some(user)),
            Err(LoginError::WrongCredentials) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts a session for `user`: a fresh id every time (the request's own session, if
    /// any, is replaced: fixation), and the device cookie renewed; the user's sessions on
    /// other devices stay.
    pub(crate) async fn sign_in(
        &self,
        session: &Session,
        user: &User,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<tower_app_sessions::SessionId, ApiError> {
        let id = self.login.sign_in(session, user, peer, headers).await?;
        if self.admin {
            // Read once by the next `GET /me` (saved with the new session after this handler).
            session.flash(
                "notice",
                "Signed in to the admin panel: sessions end after 30 minutes idle.",
            )?;
        }
        Ok(id)
    }

    /// Whether `password` is the signed-in user's (re-authentication), counted against this
    /// session's own budget: guesses against the account elsewhere never block it.
    pub(crate) async fn reauthenticate(
        &self,
        session: &Session,
        password: String,
    ) -> Result<bool, ApiError> {
        match self.login.reauthenticate(session, password).await {
            Ok(_) => Ok(true),
            Err(LoginError::WrongCredentials | LoginError::NotSignedIn) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
