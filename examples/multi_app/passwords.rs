//! Argon2id password hashing whose working memory is kept and reused.
//!
//! Argon2id with the default parameters needs 19 MiB per hash. The `argon2` crate's
//! `hash_password` / `verify_password` allocate that buffer on every call; glibc's allocator
//! then raises its mmap threshold after the first one is freed, and later buffers come from
//! per-thread heaps that do not shrink: under a flood of logins, even with at most two
//! verifications at once, the process kept about 600 MB resident (measured here). The
//! crate's own `hash_password_into_with_memory` takes a caller's buffer instead, so this
//! module keeps the buffers (as many as verifications ran at once: the login throttle bounds
//! that) and the memory stays flat. The PHC encoding, parameter parsing and constant-time
//! comparison are the `password-hash` crate's, as in `verify_password`.

use std::sync::{Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Reusable Argon2 working memory; share one per process.
#[derive(Default)]
pub struct Passwords {
    buffers: Mutex<Vec<Vec<Block>>>,
}

impl Passwords {
    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`, with a random salt.
    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let output = self.compute(
            Algorithm::Argon2id,
            Version::V0x13,
            &params,
            password.as_bytes(),
            salt.as_salt(),
            Params::DEFAULT_OUTPUT_LEN,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `hash` (any Argon2 variant and parameters,
    /// as the TypeScript apps may have written them); anything unreadable never matches.
    pub fn verify(&self, password: &str, hash: &str) -> bool {
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

    /// A buffer of at least `blocks` blocks (its contents do not matter: Argon2 writes every
    /// block before it reads it).
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

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn interoperates_with_the_argon2_crate_both_ways() {
        let passwords = Passwords::default();
        let ours = passwords.hash("correct horse").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(passwords.verify("battery staple", &theirs));
        assert!(!passwords.verify("battery stapl", &theirs));
        // Other parameters and variants, as other apps may have chosen.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 3, 1, None).unwrap(),
        );
        let other = argon2i
            .hash_password(b"x", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(passwords.verify("x", &other));
        for garbage in [
            "",
            "$argon2id$",
            "not a hash",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(!passwords.verify("x", garbage), "{garbage:?}");
        }
    }
}
