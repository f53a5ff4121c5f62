//! [`PasswordVerifier`]: how [`PasswordLogin`](super::PasswordLogin) hashes and checks
//! passwords. The crate never stores a plain password: only what `hash` returns.

use std::fmt;

/// Makes and checks password hashes (a PHC string such as `$argon2id$v=19$…`, or any format
/// your users table holds). Both methods run on a blocking thread, through the login
/// throttle's verification slots, so they may take tens of milliseconds.
///
/// [`Argon2Verifier`](super::Argon2Verifier) (feature `argon2`) reads and writes the Argon2
/// PHC hashes the TypeScript apps store. Another algorithm:
///
/// ```
/// use tower_app_sessions::login::{PasswordHashError, PasswordVerifier};
///
/// /// A stand-in for your hashing library.
/// struct Reversed;
///
/// impl PasswordVerifier for Reversed {
///     fn hash(&self, password: &str) -> Result<String, PasswordHashError> {
///         Ok(format!("$rev${}", password.chars().rev().collect::<String>()))
///     }
///     fn verify(&self, password: &str, hash: &str) -> bool {
///         self.hash(password).is_ok_and(|h| h == hash) // use a constant-time comparison
///     }
/// }
/// assert!(Reversed.verify("abc", "$rev$cba"));
/// ```
pub trait PasswordVerifier: Send + Sync + 'static {
    /// A new hash of `password`, with a fresh random salt, in the form
    /// [`verify`](Self::verify) reads.
    ///
    /// # Errors
    /// [`PasswordHashError`] if it cannot be computed.
    fn hash(&self, password: &str) -> Result<String, PasswordHashError>;

    /// Whether `password` matches `hash`. A hash that cannot be read never matches; the
    /// comparison must take the same time whichever byte differs.
    fn verify(&self, password: &str, hash: &str) -> bool;
}

/// A password hash that could not be computed (the verifier's own message).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordHashError(pub String);

impl fmt::Debug for PasswordHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PasswordHashError").field(&self.0).finish()
    }
}

/// A shared verifier (one per process, also used to seed users at startup).
impl<T: PasswordVerifier + ?Sized> PasswordVerifier for std::sync::Arc<T> {
    fn hash(&self, password: &str) -> Result<String, PasswordHashError> {
        (**self).hash(password)
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        (**self).verify(password, hash)
    }
}
