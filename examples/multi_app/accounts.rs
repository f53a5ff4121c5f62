//! Accounts: checking a password (logins and re-authentication), starting a session,
//! registering. Every password goes through the login throttle.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use tower_app_sessions::users::{canonical_email, UserError};
use tower_app_sessions::{Role, Session, SessionMetadata, User};

use super::{ApiError, App, MAX_PASSWORD, MIN_PASSWORD};

impl App {
    /// A new user (role `user`): every check before the (throttled) password hash.
    pub async fn register(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        email: &str,
        password: String,
    ) -> Result<Arc<User>, ApiError> {
        let client = self.throttle.client_address(peer, headers);
        self.throttle.admit(client, email)?;
        let email =
            canonical_email(email).map_err(|error| ApiError::unprocessable(error.to_string()))?;
        if password.chars().count() < MIN_PASSWORD {
            return Err(ApiError::unprocessable(format!(
                "password must be at least {MIN_PASSWORD} characters"
            )));
        }
        if password.len() > MAX_PASSWORD {
            return Err(ApiError::unprocessable(format!(
                "password must be at most {MAX_PASSWORD} bytes"
            )));
        }
        let hash = self
            .throttle
            .verify({
                let passwords = Arc::clone(&self.passwords);
                move || passwords.hash(&password)
            })
            .await?
            .map_err(ApiError::unavailable)?;
        let user = User::new(email, Role::User).with_password_hash(hash);
        match self.users.create(user).await {
            Ok(user) => Ok(user),
            Err(UserError::EmailTaken) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "email already registered",
            )),
            Err(error) => Err(ApiError::unavailable(error)),
        }
    }
}

impl App {
    /// The user whose email and password these are, or `None` (wrong email, wrong password,
    /// a role this app does not admit: the same answer). Counted by the throttle first, for
    /// known and unknown emails alike; every answer costs one password verification.
    pub async fn check_password(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        email: &str,
        password: String,
    ) -> Result<Option<Arc<User>>, ApiError> {
        let client = self.throttle.client_address(peer, headers);
        self.throttle.admit(client, email)?;
        // An address no user can have, or a password no user can have: the wrong-password
        // answer, before any I/O (a NUL byte must not reach the database).
        let Ok(email) = canonical_email(email) else {
            return Ok(None);
        };
        if password.len() > MAX_PASSWORD {
            return Ok(None);
        }
        let user = self
            .users
            .find_by_email(&email)
            .await
            .map_err(ApiError::unavailable)?;
        // Always verify a hash, a dummy one for unknown emails (and users without a
        // password), so the answer's timing does not tell which emails exist.
        let hash = user
            .as_ref()
            .and_then(|user| user.hashed_password.as_deref())
            .map_or_else(|| Arc::clone(&self.dummy_hash), Arc::from);
        let password_ok = self
            .throttle
            .verify({
                let passwords = Arc::clone(&self.passwords);
                move || passwords.verify(&password, &hash)
            })
            .await?;
        match user {
            Some(user) if password_ok => {
                if self.admits.is_some_and(|roles| !roles.contains(&user.role)) {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden"));
                }
                Ok(Some(user))
            }
            _ => Ok(None),
        }
    }

    /// Starts a session for `user`: a fresh id every time (the request's own session, if
    /// any, is replaced: fixation); the user's sessions on other devices stay.
    pub async fn sign_in(
        &self,
        session: &Session,
        user: &User,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<tower_app_sessions::SessionId, ApiError> {
        let metadata = SessionMetadata::from_headers(headers).ip(peer.ip().to_string());
        let id = session.login(user.id, metadata).await?;
        if let Err(error) = self.users.record_login(&user.id).await {
            tracing::warn!(%error, "could not record the login time");
        }
        tracing::info!(context = %session.context(), user = %user.id, "logged in");
        if self.admits.is_some() {
            // Read once by the next `GET /me` (saved with the new session after this handler).
            session.flash(
                "notice",
                "Signed in to the admin panel: sessions end after 30 minutes idle.",
            )?;
        }
        Ok(id)
    }
}
