//! Argon2id password hashing (default parameters, PHC strings), run on the blocking pool
//! so a hash never stalls the async runtime.

use crate::domain::Password;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use rand::RngCore as _;
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(argon2::password_hash::Error),
    #[error("hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Argon2 is memory-hard on purpose (19 MiB per hash with the default parameters): at
/// most this many run at once, so a burst of logins costs bounded memory and CPU instead of
/// starving the other functions of the execution environment (and a login flood cannot
/// exhaust it).
const CONCURRENT_HASHES: usize = 2;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);

async fn run_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = HASHING.acquire().await;
    tokio::task::spawn_blocking(work).await
}

/// A PHC string (`$argon2id$v=19$...`) for `password`, with a fresh random salt.
pub async fn hash(password: &Password) -> Result<String, HashError> {
    let password = password.expose().to_string();
    run_hashing(move || hash_blocking(&password)).await?
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let salt = SaltString::encode_b64(&raw).map_err(HashError::Argon2)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(HashError::Argon2)
}

/// Whether `candidate` matches `phc`. With `None` (unknown user) it checks against a dummy
/// hash made with the same parameters and answers false, so both cases cost the same time.
pub async fn verify(phc: Option<String>, candidate: &str) -> Result<bool, HashError> {
    let candidate = candidate.to_string();
    run_hashing(move || {
        let known = phc.is_some();
        let phc = match phc {
            Some(p) => p,
            None => dummy_hash()?.to_string(),
        };
        let Ok(parsed) = PasswordHash::new(&phc) else {
            tracing::error!("stored password hash is not a valid PHC string");
            return Ok(false);
        };
        let matches = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await?
}

/// Made once per execution environment, from a random password nobody knows.
fn dummy_hash() -> Result<&'static str, HashError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let h = hash_blocking(&hex::encode(raw))?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pw = Password::parse("correct horse battery").expect("valid");
        let phc = hash(&pw).await.expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(
            verify(Some(phc.clone()), "correct horse battery")
                .await
                .expect("verify")
        );
        assert!(
            !verify(Some(phc), "wrong horse battery")
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn the_same_password_gets_a_different_salt_each_time() {
        let pw = Password::parse("correct horse battery").expect("valid");
        assert_ne!(
            hash(&pw).await.expect("hash"),
            hash(&pw).await.expect("hash")
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify(None, "anything at all").await.expect("verify"));
    }
}
