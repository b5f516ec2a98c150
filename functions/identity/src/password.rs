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
    #[error("the hashing threads are gone")]
    PoolGone,
}

/// Argon2 is memory-hard on purpose (19 MiB per hash with the default parameters). Hashes
/// run on this many dedicated threads, so a burst of logins costs bounded CPU and memory
/// (the allocator keeps one arena per thread that hashed: a few threads, not the whole
/// blocking pool) and a login flood queues instead of starving the other functions.
const HASHING_THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

fn hashing_pool() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<Job>> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..HASHING_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        std::sync::Mutex::new(tx)
    })
}

async fn run_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    hashing_pool()
        .lock()
        .map_err(|_| HashError::PoolGone)?
        .send(job)
        .map_err(|_| HashError::PoolGone)?;
    result.await.map_err(|_| HashError::PoolGone)
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
