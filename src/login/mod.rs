//! [`PasswordLogin`]: signing in with an email and a password, registering, and asking for
//! the password again inside a session, with every security rule of those flows in one
//! place (feature `throttle`; [`Argon2Verifier`] with feature `argon2`).
//!
//! What it does, in this order, so that no application has to get the order right itself:
//!
//! 1. **throttle first, before any I/O** ([`LoginThrottle`]): an attempt from a device that
//!    signed in to the account before (a valid [device cookie](DeviceCookies)) spends that
//!    device's own budget; any other attempt spends its client address's (IPv6: its /64's)
//!    and the account's. Counted for known and unknown emails alike, so `429` tells nothing
//!    about which emails exist, and guesses from anywhere else never lock the owner's device
//!    out;
//! 2. **refuse what no user can have** (an email without a [canonical
//!    form](crate::users::canonical_email), a password over the length bound) with the
//!    wrong-password answer, before the user store is asked;
//! 3. **always verify a hash**: the user's, or a dummy one for unknown emails and users
//!    without a password, so the answer takes as long whether the email exists or not; at
//!    most N at once on blocking threads (the throttle's slots);
//! 4. **check the role last**: a context that admits only some roles
//!    ([`admit_roles`](PasswordLogin::admit_roles), as the layer's own) refuses the others
//!    with [`LoginError::NotAdmitted`] (`403`) only once the password was right, so the
//!    difference tells nothing to someone without it;
//! 5. **sign in** ([`sign_in`](PasswordLogin::sign_in)): a fresh session id
//!    ([`Session::login`]), the client's address and user agent in its metadata, the login
//!    time recorded, and the device cookie renewed for this account.
//!
//! Registration ([`register`](PasswordLogin::register)) goes through the same throttle,
//! checks the email and the password's length bounds, then hashes. Re-authentication inside
//! a session ([`reauthenticate`](PasswordLogin::reauthenticate), before "sign out my other
//! devices" or a password change) is throttled **per session**, never per account: a thief
//! who holds a stolen session cannot keep the owner from proving themselves in theirs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use axum::{extract::ConnectInfo, routing::post, Json, Router};
//! use tower::ServiceExt;
//! use tower_app_sessions::login::{Argon2Params, Argon2Verifier, Credentials, LoginError, PasswordLogin};
//! use tower_app_sessions::{AppContext, Role, Session, Sessions, UserRepository as _};
//!
//! let sessions = Sessions::memory();
//! // Small Argon2 parameters for the example; keep the defaults in production.
//! let argon2 = Argon2Verifier::with_params(Argon2Params::new(1024, 1, 1, None).unwrap());
//! let login = PasswordLogin::new(Arc::clone(sessions.user_repository()), argon2).unwrap();
//! login
//!     .register("127.0.0.1:1".parse().unwrap(), &http::HeaderMap::new(),
//!               Credentials::new("kate@example.com", "correct horse"), Role::User)
//!     .await
//!     .unwrap();
//!
//! let app = Router::new()
//!     .route("/login", post(
//!         |ConnectInfo(peer): ConnectInfo<SocketAddr>, session: Session, headers: http::HeaderMap,
//!          Json(credentials): Json<Credentials>| async move {
//!             login.login(&session, peer, &headers, credentials).await.map(|_| "welcome")
//!         },
//!     ))
//!     .layer(sessions.layer(AppContext::Web));
//! let attempt = |password: &str| {
//!     let mut req = http::Request::post("/login")
//!         .header("content-type", "application/json")
//!         .body(axum::body::Body::from(format!(r#"{{"email":"kate@example.com","password":"{password}"}}"#)))
//!         .unwrap();
//!     req.extensions_mut().insert(ConnectInfo("203.0.113.7:50000".parse::<SocketAddr>().unwrap()));
//!     req
//! };
//! assert_eq!(app.clone().oneshot(attempt("wrong")).await.unwrap().status(), 401);
//! let ok = app.oneshot(attempt("correct horse")).await.unwrap();
//! assert_eq!(ok.status(), 200);
//! // The session cookie, and the device cookie that gives this device its own budget.
//! assert_eq!(ok.headers().get_all("set-cookie").iter().count(), 2);
//! # });
//! ```

#[cfg(feature = "argon2")]
mod argon2;
mod error;
mod verifier;

#[cfg(feature = "argon2")]
pub use self::argon2::Argon2Verifier;
/// The Argon2 parameters of [`Argon2Verifier::with_params`] (the `argon2` crate's).
#[cfg(feature = "argon2")]
pub use ::argon2::Params as Argon2Params;
pub use error::{LoginError, SetupError};
pub use verifier::{PasswordHashError, PasswordVerifier};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

use crate::throttle::{DeviceCookies, LoginThrottle, Throttled};
use crate::users::{canonical_email, UserError};
use crate::{RandomError, Role, Session, SessionId, SessionMetadata, User, UserRepository};

/// The shortest password [`register`](PasswordLogin::register) accepts by default, in
/// characters.
pub const DEFAULT_MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted by default, in bytes: Argon2 takes longer ones, but nobody
/// needs them and they cost hashing time.
pub const DEFAULT_MAX_PASSWORD_BYTES: usize = 1024;

/// An email and a password as a client sent them (JSON or form fields `email` and
/// `password`). `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// The email, as typed.
    pub email: String,
    /// The password, as typed.
    pub password: String,
}

impl Credentials {
    /// Credentials from an email and a password.
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A sign-in that succeeded: the user and the new session's id (for API clients that want a
/// bearer token; browsers get the cookie).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignedIn {
    /// Who signed in.
    pub user: Arc<User>,
    /// The new session's id.
    pub id: SessionId,
}

/// Password sign-in, registration and re-authentication over a [`UserRepository`], a
/// [`PasswordVerifier`], a [`LoginThrottle`] and [`DeviceCookies`]; see the [module
/// docs](self). Clones share the throttle's budgets and slots, the device key and the
/// verifier: build one per process, and derive one per context that admits fewer roles
/// ([`admit_roles`](Self::admit_roles)).
#[derive(Clone)]
pub struct PasswordLogin {
    users: Arc<dyn UserRepository>,
    passwords: Arc<dyn PasswordVerifier>,
    throttle: LoginThrottle,
    devices: DeviceCookies,
    /// Verified for unknown emails and users without a password, so their answers take as
    /// long as a wrong password's.
    dummy_hash: Arc<str>,
    admits: Option<Arc<[Role]>>,
    min_password_chars: usize,
    max_password_bytes: usize,
}

impl fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("throttle", &self.throttle)
            .field("devices", &self.devices)
            .field("admits", &self.admits)
            .field("min_password_chars", &self.min_password_chars)
            .field("max_password_bytes", &self.max_password_bytes)
            .finish_non_exhaustive()
    }
}

impl PasswordLogin {
    /// Logins for the users of `users`, their passwords checked by `passwords`, with the
    /// default [`LoginThrottle`] and device cookies signed with a random key of this process
    /// (use [`from_env`](Self::from_env), or [`device_cookies`](Self::device_cookies), to
    /// share a key between instances). Hashes one throwaway password (the dummy hash for
    /// unknown emails) on the calling thread: build it at startup.
    ///
    /// # Errors
    /// [`SetupError::Hash`] if the dummy hash cannot be made, [`SetupError::Random`] without
    /// an OS random source.
    pub fn new(
        users: Arc<dyn UserRepository>,
        passwords: impl PasswordVerifier,
    ) -> Result<Self, SetupError> {
        let mut throwaway = [0u8; 16];
        getrandom::fill(&mut throwaway).map_err(RandomError::from)?;
        let throwaway: String = throwaway.iter().map(|b| format!("{b:02x}")).collect();
        let dummy_hash = passwords.hash(&throwaway)?;
        Ok(Self {
            users,
            passwords: Arc::new(passwords),
            throttle: LoginThrottle::new(),
            devices: DeviceCookies::random()?,
            dummy_hash: dummy_hash.into(),
            admits: None,
            min_password_chars: DEFAULT_MIN_PASSWORD_CHARS,
            max_password_bytes: DEFAULT_MAX_PASSWORD_BYTES,
        })
    }

    /// [`new`](Self::new) configured through `lookup`: the throttle's limits
    /// ([`LoginThrottle::from_lookup`]: `LOGIN_LIMIT_PER_ADDRESS`, `LOGIN_LIMIT_PER_ACCOUNT`,
    /// `LOGIN_LIMIT_PER_DEVICE`, `LOGIN_LIMIT_PER_SESSION`) and the device cookies' key
    /// ([`DeviceCookies::from_lookup`]: `SESSION_DEVICE_KEY`, a warning when unset).
    ///
    /// # Errors
    /// As [`new`](Self::new), and [`SetupError::Config`] naming a variable that is not valid.
    pub fn from_lookup(
        users: Arc<dyn UserRepository>,
        passwords: impl PasswordVerifier,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
        let throttle = LoginThrottle::from_lookup(&lookup)?;
        let devices = DeviceCookies::from_lookup(&lookup)?;
        Ok(Self::new(users, passwords)?
            .throttle(throttle)
            .device_cookies(devices))
    }

    /// [`from_lookup`](Self::from_lookup) on the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env(
        users: Arc<dyn UserRepository>,
        passwords: impl PasswordVerifier,
    ) -> Result<Self, SetupError> {
        Self::from_lookup(users, passwords, |var| std::env::var(var).ok())
    }

    /// Counts attempts and bounds verifications with `throttle` (share one per process).
    #[must_use]
    pub fn throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    /// Recognizes and issues device cookies with `devices`.
    #[must_use]
    pub fn device_cookies(mut self, devices: DeviceCookies) -> Self {
        self.devices = devices;
        self
    }

    /// Signs in only users of these roles ([`LoginError::NotAdmitted`] for the others, once
    /// their password was right). Give the layer of the context the same list
    /// ([`SessionLayer::admit_roles`](crate::SessionLayer::admit_roles)): it enforces it on
    /// every request; this refuses up front, with an answer the user can understand.
    #[must_use]
    pub fn admit_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.admits = Some(roles.into_iter().collect());
        self
    }

    /// The password length bounds: at least `min_chars` characters to register, at most
    /// `max_bytes` bytes anywhere (defaults [`DEFAULT_MIN_PASSWORD_CHARS`],
    /// [`DEFAULT_MAX_PASSWORD_BYTES`]).
    #[must_use]
    pub fn password_bounds(mut self, min_chars: usize, max_bytes: usize) -> Self {
        self.min_password_chars = min_chars;
        self.max_password_bytes = max_bytes;
        self
    }

    /// The user whose credentials these are; see the [module docs](self) for the order of
    /// the checks. `peer` is the socket's address (axum's `ConnectInfo`), `headers` the
    /// request's (the device cookie, and the client address when the throttle trusts a proxy
    /// header).
    ///
    /// # Errors
    /// [`LoginError::Throttled`] first, then [`LoginError::WrongCredentials`] for any wrong
    /// email or password, [`LoginError::NotAdmitted`] for a right password of a role this
    /// login does not admit, [`LoginError::Unavailable`] if the user store fails.
    pub async fn authenticate(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        credentials: Credentials,
    ) -> Result<Arc<User>, LoginError> {
        let Credentials { email, password } = credentials;
        match self.devices.recognize(headers, &email) {
            Some(device) => self.throttle.admit_device(&device)?,
            None => self
                .throttle
                .admit(self.throttle.client_address(peer, headers), &email)?,
        }
        // An address no user can have, or a password no user can have: the wrong-password
        // answer, before any I/O (a NUL byte must not reach the database).
        let Ok(email) = canonical_email(&email) else {
            return Err(LoginError::WrongCredentials);
        };
        if password.len() > self.max_password_bytes {
            return Err(LoginError::WrongCredentials);
        }
        let user = self
            .users
            .find_by_email(&email)
            .await
            .map_err(LoginError::Unavailable)?;
        let hash = user
            .as_ref()
            .and_then(|user| user.hashed_password.as_deref())
            .map_or_else(|| Arc::clone(&self.dummy_hash), Arc::from);
        let proved = self.verify(password, hash).await?;
        match user {
            Some(user) if proved && user.hashed_password.is_some() => {
                if self
                    .admits
                    .as_ref()
                    .is_some_and(|roles| !roles.contains(&user.role))
                {
                    return Err(LoginError::NotAdmitted);
                }
                Ok(user)
            }
            _ => Err(LoginError::WrongCredentials),
        }
    }

    /// Starts a session for `user` on `session` (a fresh id, the request's old session
    /// deleted: fixation), with the client's address and user agent, records the login
    /// time, and has the response renew this device's device cookie for the account. Call
    /// it once the user proved who they are: after [`authenticate`](Self::authenticate), or
    /// after registering them.
    ///
    /// # Errors
    /// [`LoginError::Session`] if the session cannot be started.
    pub async fn sign_in(
        &self,
        session: &Session,
        user: &User,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<SessionId, LoginError> {
        let client = self.throttle.client_address(peer, headers);
        let metadata = SessionMetadata::from_headers(headers).ip(client);
        let id = session.login(user.id, metadata).await?;
        if let Err(error) = self.users.record_login(&user.id).await {
            tracing::warn!(%error, "could not record the login time");
        }
        if let Some(cookie) = self.devices.issue(headers, &user.email) {
            session.add_cookie(cookie);
        }
        tracing::info!(context = %session.context(), user = %user.id, "signed in");
        Ok(id)
    }

    /// [`authenticate`](Self::authenticate), then [`sign_in`](Self::sign_in).
    ///
    /// # Errors
    /// As those two.
    pub async fn login(
        &self,
        session: &Session,
        peer: SocketAddr,
        headers: &HeaderMap,
        credentials: Credentials,
    ) -> Result<SignedIn, LoginError> {
        let user = self.authenticate(peer, headers, credentials).await?;
        let id = self.sign_in(session, &user, peer, headers).await?;
        Ok(SignedIn { user, id })
    }

    /// Registers a new user of `role` with these credentials: throttled as a login from an
    /// unknown device, the email and the password's bounds checked before the (throttled)
    /// hash. Not signed in: call [`sign_in`](Self::sign_in) for that.
    ///
    /// # Errors
    /// [`LoginError::Throttled`], [`LoginError::InvalidEmail`],
    /// [`LoginError::PasswordTooShort`], [`LoginError::PasswordTooLong`],
    /// [`LoginError::EmailTaken`], [`LoginError::Hash`], [`LoginError::Unavailable`].
    pub async fn register(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        credentials: Credentials,
        role: Role,
    ) -> Result<Arc<User>, LoginError> {
        let Credentials { email, password } = credentials;
        self.throttle
            .admit(self.throttle.client_address(peer, headers), &email)?;
        let email = canonical_email(&email).map_err(LoginError::InvalidEmail)?;
        if password.chars().count() < self.min_password_chars {
            return Err(LoginError::PasswordTooShort {
                min: self.min_password_chars,
            });
        }
        if password.len() > self.max_password_bytes {
            return Err(LoginError::PasswordTooLong {
                max: self.max_password_bytes,
            });
        }
        let passwords = Arc::clone(&self.passwords);
        let hash = self
            .throttle
            .verify(move || passwords.hash(&password))
            .await??;
        match self
            .users
            .create(User::new(email, role).hashed_password(hash))
            .await
        {
            Ok(user) => Ok(user),
            Err(UserError::EmailTaken) => Err(LoginError::EmailTaken),
            Err(UserError::InvalidEmail(error)) => Err(LoginError::InvalidEmail(error)),
            Err(UserError::Store(error)) => Err(LoginError::Unavailable(error)),
        }
    }

    /// Proves, inside the signed-in `session`, that its user knows the password (before
    /// "sign out my other devices", a password or email change), and returns the user as
    /// stored now. Counted against this session's own budget
    /// ([`LoginThrottle::admit_reauthentication`]), never the account's.
    ///
    /// # Errors
    /// [`LoginError::NotSignedIn`] without a session, [`LoginError::Throttled`],
    /// [`LoginError::WrongCredentials`] for a wrong password (or a user gone meanwhile),
    /// [`LoginError::Unavailable`].
    pub async fn reauthenticate(
        &self,
        session: &Session,
        password: String,
    ) -> Result<Arc<User>, LoginError> {
        let Some((id, record)) = session.current() else {
            return Err(LoginError::NotSignedIn);
        };
        self.throttle.admit_reauthentication(&id.handle())?;
        if password.len() > self.max_password_bytes {
            return Err(LoginError::WrongCredentials);
        }
        let user = self
            .users
            .resolve(session.context(), &record.user_id)
            .await
            .map_err(LoginError::Unavailable)?
            .ok_or(LoginError::WrongCredentials)?;
        let hash = user
            .hashed_password
            .as_deref()
            .map_or_else(|| Arc::clone(&self.dummy_hash), Arc::from);
        if self.verify(password, hash).await? && user.hashed_password.is_some() {
            Ok(user)
        } else {
            Err(LoginError::WrongCredentials)
        }
    }

    /// Whether `password` matches `hash`, in one of the throttle's verification slots.
    async fn verify(&self, password: String, hash: Arc<str>) -> Result<bool, Throttled> {
        let passwords = Arc::clone(&self.passwords);
        self.throttle
            .verify(move || passwords.verify(&password, &hash))
            .await
    }
}
