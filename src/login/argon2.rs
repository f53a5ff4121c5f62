//! [`Argon2Verifier`]: Argon2id password hashing whose working memory is kept and reused
//! (feature `argon2`).
//!
//! Argon2id with the default parameters needs 19 MiB per hash. The `argon2` crate's
//! `hash_password` / `verify_password` allocate that buffer on every call; glibc's allocator
//! then raises its mmap threshold after the first one is freed, and later buffers come from
//! per-thread heaps that do not shrink: under a flood of logins, even with at most two
//! verifications at once, a process kept about 600 MB resident. The `argon2` crate's own
//! `hash_password_into_with_memory` takes a caller's buffer instead, so this verifier keeps
//! the buffers (as many as verifications ran at once: the login throttle bounds that) and the
//! memory stays flat. The PHC encoding, parameter parsing and constant-time comparison are
//! the `password-hash` crate's, as in `verify_password`.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::{PasswordHashError, PasswordVerifier};

/// Argon2 password hashes in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$…`), as the
/// TypeScript apps store them: new hashes are Argon2id with [`Params`] (default: the
/// `argon2` crate's, 19 MiB, 2 passes); any variant and parameters verify. Share one per
/// process: it keeps the working memory of past hashes for the next ones.
///
/// ```
/// use tower_app_sessions::login::{Argon2Params, Argon2Verifier, PasswordVerifier};
///
/// // Small parameters for the example; keep the defaults in production.
/// let argon2 = Argon2Verifier::with_params(Argon2Params::new(1024, 1, 1, None).unwrap());
/// let hash = argon2.hash("correct horse").unwrap();
/// assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
/// assert!(argon2.verify("correct horse", &hash));
/// assert!(!argon2.verify("battery staple", &hash));
/// assert!(!argon2.verify("correct horse", "not a hash"));
/// ```
pub struct Argon2Verifier {
    params: Params,
    buffers: Mutex<Vec<Vec<Block>>>,
}

impl Default for Argon2Verifier {
    fn default() -> Self {
        Self::with_params(Params::default())
    }
}

impl fmt::Debug for Argon2Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Argon2Verifier")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Argon2Verifier {
    /// New hashes with `params` (verification reads each hash's own).
    pub fn with_params(params: Params) -> Self {
        Self {
            params,
            buffers: Mutex::new(Vec::new()),
        }
    }

    fn compute(
        &self,
        algorithm: Algorithm,
        version: Version,
        params: &Params,
        password: &[u8],
        salt: argon2::password_hash::Salt<'_>,
        output_len: usize,
    ) -> Result<Output, argon2::password_hash::Error> {
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut memory = self.take(params.block_count());
        let output = Output::init_with(output_len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..])
                .map_err(Into::into)
        });
        self.give_back(memory);
        output
    }

    /// A buffer of `blocks` blocks (its contents do not matter: Argon2 writes every block
    /// before it reads it).
    fn take(&self, blocks: usize) -> Vec<Block> {
        let mut buffer = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        buffer.truncate(blocks);
        buffer
    }

    fn give_back(&self, buffer: Vec<Block>) {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}

impl PasswordVerifier for Argon2Verifier {
    fn hash(&self, password: &str) -> Result<String, PasswordHashError> {
        let error = |e: argon2::password_hash::Error| PasswordHashError(e.to_string());
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| PasswordHashError(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(error)?;
        let output = self
            .compute(
                Algorithm::Argon2id,
                Version::V0x13,
                &self.params,
                password.as_bytes(),
                salt.as_salt(),
                self.params
                    .output_len()
                    .unwrap_or(Params::DEFAULT_OUTPUT_LEN),
            )
            .map_err(error)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(error)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(phc) = PasswordHash::new(hash) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) =
            (Algorithm::try_from(phc.algorithm), Params::try_from(&phc))
        else {
            return false;
        };
        let version = match phc.version.map(Version::try_from).transpose() {
            Ok(version) => version.unwrap_or_default(),
            Err(_) => return false,
        };
        let computed = self.compute(
            algorithm,
            version,
            &params,
            password.as_bytes(),
            salt,
            expected.len(),
        );
        // `Output`'s equality is constant-time.
        computed.is_ok_and(|computed| computed == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier as _};

    #[test]
    fn interoperates_with_the_argon2_crate_both_ways() {
        let ours = Argon2Verifier::default();
        let hash = ours.hash("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(ours.verify("battery staple", &theirs));
        assert!(!ours.verify("battery stapl", &theirs));
        // Other parameters and variants, as other apps may have chosen.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 3, 1, None).unwrap(),
        );
        let other = argon2i.hash_password(b"x", &salt).unwrap().to_string();
        assert!(ours.verify("x", &other));
        for garbage in [
            "",
            "$argon2id$",
            "not a hash",
            "$2b$12$abcdefghijklmnopqrstuv",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
        ] {
            assert!(!ours.verify("x", garbage), "{garbage:?}");
        }
    }
}
