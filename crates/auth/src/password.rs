//! Password hashing with Argon2id, bounded so a flood of logins can neither
//! exhaust memory nor starve other requests.
//!
//! Each hash takes `memory_kib` of memory and a core for tens of milliseconds.
//! Hashes run on the blocking pool, at most `concurrency` at a time; a request
//! that cannot get a slot within `queue_timeout` gets a 503 instead of waiting
//! without bound.

use std::sync::Arc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// Argon2id parameters. The defaults are OWASP's floor (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once; 0 means one per CPU.
    pub concurrency: usize,
    /// How long a request waits for a hashing slot, in milliseconds.
    pub queue_timeout_ms: u64,
}

impl Default for HashSettings {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, concurrency: 0, queue_timeout_ms: 5_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot stayed busy for the whole queue timeout.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but hashed with weaker parameters than today's: store a new hash.
    YesRehash,
}

#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
    params: Params,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password, verified when the account does not exist so
    /// that the answer takes as long as for a wrong password.
    dummy: Arc<String>,
}

impl Hasher {
    pub fn new(settings: &HashSettings) -> anyhow::Result<Self> {
        if settings.memory_kib < 19_456 || settings.iterations < 2 || settings.parallelism < 1 {
            anyhow::bail!(
                "invalid configuration: auth.password (m={} KiB, t={}, p={}) is below OWASP's floor (m=19456 KiB, t=2, p=1)",
                settings.memory_kib,
                settings.iterations,
                settings.parallelism
            );
        }
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid configuration: auth.password: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let concurrency = match settings.concurrency {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let random: [u8; 16] = rand::random();
        let dummy =
            argon.hash_password(&random).map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?.to_string();
        Ok(Self {
            argon,
            params,
            slots: Arc::new(Semaphore::new(concurrency)),
            queue_timeout: Duration::from_millis(settings.queue_timeout_ms),
            dummy: Arc::new(dummy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&argon);
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        self.run(move |argon| argon.hash_password(password.as_bytes()).map(|h| h.to_string()))
            .await?
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Checks `password` against a stored PHC string.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verified, HashError> {
        let (password, phc) = (password.to_owned(), phc.to_owned());
        let current = self.params.clone();
        self.run(move |argon| {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Verified::No;
            };
            if argon.verify_password(password.as_bytes(), &parsed).is_err() {
                return Verified::No;
            }
            let weaker = Params::try_from(&parsed).map_or(true, |p| {
                p.m_cost() < current.m_cost() || p.t_cost() < current.t_cost() || p.p_cost() < current.p_cost()
            });
            if weaker || parsed.algorithm.as_str() != "argon2id" { Verified::YesRehash } else { Verified::Yes }
        })
        .await
    }

    /// Spends the same work as a real check, for accounts that do not exist.
    pub async fn verify_dummy(&self, password: &str) -> Result<(), HashError> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_at_owasp_parameters_and_verify() {
        let h = Hasher::new(&HashSettings::default()).unwrap();
        let phc = h.hash("correct horse battery").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(h.verify("correct horse battery", &phc).await.unwrap(), Verified::Yes);
        assert_eq!(h.verify("wrong horse battery", &phc).await.unwrap(), Verified::No);
        assert_eq!(h.verify("anything", "not a phc string").await.unwrap(), Verified::No);
    }

    #[tokio::test]
    async fn hashes_made_with_weaker_parameters_ask_for_a_rehash() {
        let strong = Hasher::new(&HashSettings { memory_kib: 32_768, ..Default::default() }).unwrap();
        let weak = Hasher::new(&HashSettings::default()).unwrap();
        let phc = weak.hash("correct horse battery").await.unwrap();
        assert_eq!(strong.verify("correct horse battery", &phc).await.unwrap(), Verified::YesRehash);
    }

    #[test]
    fn parameters_below_the_floor_are_refused() {
        let err = Hasher::new(&HashSettings { memory_kib: 4096, ..Default::default() }).err().unwrap();
        assert!(err.to_string().contains("OWASP"));
    }

    #[tokio::test]
    async fn a_saturated_hasher_answers_busy_instead_of_queueing_forever() {
        let h = Hasher::new(&HashSettings { concurrency: 1, queue_timeout_ms: 1, ..Default::default() }).unwrap();
        let held = h.slots.clone().acquire_owned().await.unwrap();
        assert!(matches!(h.hash("correct horse battery").await, Err(HashError::Busy)));
        drop(held);
        assert!(h.hash("correct horse battery").await.is_ok());
    }
}
