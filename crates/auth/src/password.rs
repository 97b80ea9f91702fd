//! Password hashing with Argon2id, bounded so a flood of logins can neither
//! exhaust memory nor starve other requests.
//!
//! Each hash takes `memory_kib` of memory and a core for tens of milliseconds.
//! Hashes run on the blocking pool, at most `concurrency` at a time; a request
//! that cannot get a slot within `queue_timeout` gets a 503 instead of waiting
//! without bound. Each slot keeps its working memory between hashes.

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
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
    /// One Argon2 working area per slot, reused: allocating and faulting in
    /// 19 MiB of fresh memory for every hash costs about a third of the hash.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    queue_timeout: Duration,
    /// A hash of a random password, verified when the account does not exist so
    /// that the answer takes as long as for a wrong password.
    dummy: Arc<String>,
    /// Argon2id computations done (hashes and checks, dummy ones included):
    /// the work a request cost, which an unknown e-mail must not save.
    runs: prometheus_client::metrics::counter::Counter,
}

fn failed(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
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
        let mut memory = vec![Block::default(); params.block_count()];
        let random: [u8; 16] = rand::random();
        let dummy = hash_with(&argon, &params, &random, &mut memory)
            .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?;
        drop(memory);
        Ok(Self {
            argon,
            params,
            slots: Arc::new(Semaphore::new(concurrency)),
            // The self-test's area is let go: an idle service should not hold
            // 19 MiB it may never use. Areas are made on first use and kept.
            memory: Arc::new(Mutex::new(Vec::new())),
            queue_timeout: Duration::from_millis(settings.queue_timeout_ms),
            dummy: Arc::new(dummy),
            runs: Default::default(),
        })
    }

    /// Adds `auth_password_hashes_total` to auth's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "auth_password_hashes",
            "Argon2id computations (hashes and checks, those for unknown accounts included)",
            self.runs.clone(),
        );
    }

    /// Runs `f` on the blocking pool once a slot is free, with a working area.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>, &Params, &mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let (argon, params, pool) = (self.argon.clone(), self.params.clone(), self.memory.clone());
        let runs = self.runs.clone();
        tokio::task::spawn_blocking(move || {
            // At most one area per slot exists, since areas are taken under a permit.
            let taken = pool.lock().ok().and_then(|mut areas| areas.pop());
            let mut area = taken.unwrap_or_else(|| vec![Block::default(); params.block_count()]);
            let out = f(&argon, &params, &mut area);
            runs.inc();
            if let Ok(mut areas) = pool.lock() {
                areas.push(area);
            }
            drop(permit);
            out
        })
        .await
        .map_err(failed)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        self.run(move |argon, params, area| hash_with(argon, params, password.as_bytes(), area)).await?
    }

    /// Checks `password` against a stored PHC string. An account without a
    /// password (signed up through a provider, or erased) costs the same work
    /// as a wrong password and never matches.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verified, HashError> {
        if PasswordHash::new(phc).is_err() {
            let dummy = self.dummy.clone();
            let password = password.to_owned();
            self.run(move |_, current, area| verify_with(password.as_bytes(), &dummy, current, area)).await?;
            return Ok(Verified::No);
        }
        let (password, phc) = (password.to_owned(), phc.to_owned());
        self.run(move |_, current, area| verify_with(password.as_bytes(), &phc, current, area)).await
    }

    /// Spends the same work as a real check, for accounts that do not exist.
    pub async fn verify_dummy(&self, password: &str) -> Result<(), HashError> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

fn hash_with(argon: &Argon2<'_>, params: &Params, password: &[u8], area: &mut [Block]) -> Result<String, HashError> {
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    let area = area.get_mut(..params.block_count()).ok_or_else(|| failed("working area too small"))?;
    argon.hash_password_into_with_memory(password, &salt, &mut out, area).map_err(failed)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(Salt::new(&salt).map_err(failed)?),
        hash: Some(Output::new(&out).map_err(failed)?),
    };
    Ok(phc.to_string())
}

fn verify_with(password: &[u8], phc: &str, current: &Params, area: &mut [Block]) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else { return Verified::No };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return Verified::No };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return Verified::No };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else { return Verified::No };
    let Ok(params) = Params::try_from(&parsed) else { return Verified::No };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    // A hash made with more memory than today's settings needs its own area.
    let computed = match area.get_mut(..params.block_count()) {
        Some(area) => argon.hash_password_into_with_memory(password, salt, &mut out, area),
        None => argon.hash_password_into(password, salt, &mut out),
    };
    // `Output`'s equality is constant-time.
    if computed.is_err() || Output::new(&out).ok().as_ref() != Some(expected) {
        return Verified::No;
    }
    let weaker = params.m_cost() < current.m_cost()
        || params.t_cost() < current.t_cost()
        || params.p_cost() < current.p_cost()
        || algorithm != Algorithm::Argon2id;
    if weaker { Verified::YesRehash } else { Verified::Yes }
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
    async fn hashes_interoperate_with_the_argon2_crates_own_phc_functions() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let h = Hasher::new(&HashSettings::default()).unwrap();
        let ours = h.hash("correct horse battery").await.unwrap();
        let reference = Argon2::default();
        assert!(reference.verify_password(b"correct horse battery", ours.as_str()).is_ok());
        assert!(reference.verify_password(b"wrong horse battery", ours.as_str()).is_err());
        let theirs = reference.hash_password(b"correct horse battery").unwrap().to_string();
        assert_eq!(h.verify("correct horse battery", &theirs).await.unwrap(), Verified::Yes);
        // Argon2i from elsewhere still verifies, and asks to be upgraded.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default());
        let old = argon2i.hash_password(b"correct horse battery").unwrap().to_string();
        assert_eq!(h.verify("correct horse battery", &old).await.unwrap(), Verified::YesRehash);
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
