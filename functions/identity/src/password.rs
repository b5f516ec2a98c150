//! Argon2id password hashing (default parameters, PHC strings), run on a few dedicated
//! threads behind a bounded queue, so a hash never stalls the async runtime and a flood of
//! logins is refused quickly instead of queueing without end.

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
    /// The queue is full: answer 503 at once rather than make the caller wait behind it.
    #[error("the hashing queue is full")]
    Busy,
}

/// Argon2 is memory-hard on purpose (19 MiB per hash with the default parameters). Hashes
/// run on this many dedicated threads, so a burst of logins costs bounded CPU and memory
/// (the allocator keeps one arena per thread that hashed: a few threads, not the whole
/// blocking pool) and a login flood cannot starve the other functions.
pub const HASHING_THREADS: usize = 2;

/// Hashes waiting for a thread, at most. At roughly 50 ms a hash on two threads that is
/// about 1.5 s of waiting; beyond it a flood would only grow the queue and every caller's
/// wait (and their clients would time out and retry, adding more), so the extra ones get a
/// 503 with `Retry-After` at once.
pub const HASHING_QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// Dedicated hashing threads behind a bounded queue. A job whose caller has gone (its
/// request future dropped: the client hung up, the invocation timed out) is skipped when
/// its turn comes instead of burning a hash nobody will read.
pub struct HashingPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    skipped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HashingPool {
    pub fn new(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, not while hashing.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every sender is gone: the pool was dropped.
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        HashingPool {
            jobs,
            skipped: Default::default(),
            waiting: Default::default(),
        }
    }

    /// The pool of this execution environment.
    pub fn global() -> std::sync::Arc<HashingPool> {
        static POOL: OnceLock<std::sync::Arc<HashingPool>> = OnceLock::new();
        POOL.get_or_init(|| std::sync::Arc::new(HashingPool::new(HASHING_THREADS, HASHING_QUEUE)))
            .clone()
    }

    /// Jobs skipped because their caller had gone.
    pub fn skipped(&self) -> usize {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Jobs queued and not yet started.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Queues `work` for a hashing thread (`Busy` at once when the queue is full); its
    /// result arrives on the receiver. Dropping the receiver before the job's turn skips it.
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let (skipped, waiting) = (self.skipped.clone(), self.waiting.clone());
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            if done.is_closed() {
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("caller gone; hash skipped");
                return;
            }
            let _ = done.send(work());
        });
        // Counted before it can start, so the count never goes below zero.
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.jobs.try_send(job).map_err(|e| {
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            match e {
                std::sync::mpsc::TrySendError::Full(_) => HashError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => HashError::PoolGone,
            }
        })?;
        Ok(result)
    }

    /// Runs `work` on a hashing thread and waits for it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.submit(work)?.await.map_err(|_| HashError::PoolGone)
    }

    /// A PHC string (`$argon2id$v=19$...`) for `password`, with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.expose().to_string();
        self.run(move || hash_blocking(&password)).await?
    }

    /// Whether `candidate` matches `phc`. With `None` (unknown user) it checks against a
    /// dummy hash made with the same parameters and answers false, so both cases cost the
    /// same time.
    pub async fn verify(&self, phc: Option<String>, candidate: &str) -> Result<bool, HashError> {
        let candidate = candidate.to_string();
        self.run(move || {
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
}

/// `HashingPool::hash` on this execution environment's pool.
pub async fn hash(password: &Password) -> Result<String, HashError> {
    HashingPool::global().hash(password).await
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

/// `HashingPool::verify` on this execution environment's pool.
pub async fn verify(phc: Option<String>, candidate: &str) -> Result<bool, HashError> {
    HashingPool::global().verify(phc, candidate).await
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

    /// Occupies the pool's only thread until the returned sender is dropped.
    async fn block_thread(pool: &HashingPool) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let result = pool
            .submit(move || {
                let _ = started_tx.send(());
                let _ = wait.recv();
            })
            .expect("queued");
        // Its receiver must live, or the job would be skipped as abandoned.
        tokio::spawn(result);
        started.await.expect("the blocking job started");
        release
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once_instead_of_waiting() {
        let pool = HashingPool::new(1, 2);
        let release = block_thread(&pool).await;
        // Two more fill the queue.
        let queued: Vec<_> = (0..2)
            .map(|_| pool.submit(|| 42).expect("room in the queue"))
            .collect();
        let started = std::time::Instant::now();
        let pw = Password::parse("correct horse battery").expect("valid");
        let err = pool.hash(&pw).await.expect_err("queue full");
        assert!(matches!(err, HashError::Busy), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(50),
            "refused in {:?}",
            started.elapsed()
        );
        // Once the thread is free, the queued ones run, and new work is accepted again.
        drop(release);
        for q in queued {
            assert_eq!(q.await.expect("ran"), 42);
        }
        assert!(pool.verify(None, "x").await.is_ok());
    }

    #[tokio::test]
    async fn a_caller_that_went_away_costs_no_hash() {
        let pool = HashingPool::new(1, 4);
        let release = block_thread(&pool).await;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        // The client hangs up while its hash waits in the queue: the future is dropped.
        let gone = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            pool.run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst)),
        )
        .await;
        assert!(gone.is_err(), "still queued behind the blocked thread");
        drop(release);
        // A later job runs, so the skipped one has had its turn.
        assert_eq!(pool.run(|| 7).await.expect("runs"), 7);
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the abandoned hash ran"
        );
        assert_eq!(pool.skipped(), 1);
    }
}
