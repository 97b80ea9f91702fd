//! The notary: signs a checkpoint when entries were appended, and anchors
//! each checkpoint on the chain, oldest first. Each round is one
//! transaction holding the log's lock, so two ledger processes never sign
//! or anchor the same thing twice, and a checkpoint is marked anchored in
//! the same transaction that stores the chain's block.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use tokio_util::sync::CancellationToken;

use crate::chain::{Chain, ChainError};
use crate::domain::{self, Checkpoint};
use crate::store::{self, Store};

pub struct Notary {
    pub store: Arc<Store>,
    pub chain: Arc<Chain>,
    pub key: SigningKey,
    pub origin: String,
    /// The most entries one checkpoint adds.
    pub batch: u64,
    pub interval: Duration,
}

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The size of the checkpoint signed.
    pub signed: Option<u64>,
    /// The size of the checkpoint anchored.
    pub anchored: Option<u64>,
}

impl Notary {
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut failing = false;
        loop {
            let wait = match self.round(Utc::now()).await {
                Ok(r) => {
                    failing = false;
                    // More to do: go on at once.
                    if r.signed.is_some() || r.anchored.is_some() { Duration::ZERO } else { self.interval }
                }
                Err(e) => {
                    // Said once per run of failures, not twice a second.
                    if !failing {
                        tracing::warn!(error = %e, "the ledger could not sign or anchor; retrying");
                    }
                    failing = true;
                    self.interval.max(Duration::from_secs(5))
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Signs a checkpoint for up to `batch` new entries, and anchors the
    /// oldest checkpoint not anchored yet.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Round, ChainError> {
        let mut tx = self.store.db().begin().await?;
        let size = store::lock(&mut tx).await?;
        let signed = store::signed_size(&mut tx).await?;
        let mut round = Round::default();
        if size > signed {
            let n = size.min(signed + self.batch);
            let leaves = store::leaves_in(&mut tx, n).await?;
            let root = domain::root(&leaves);
            let note = Checkpoint { origin: self.origin.clone(), size: n, root }.sign(&self.key);
            store::add_checkpoint(&mut tx, n, &root, &note, now).await?;
            round.signed = Some(n);
        }
        if let Some((size, root, before)) = store::unanchored(&mut tx).await? {
            let results = store::results_between(&mut tx, before, size).await?;
            match self.chain.anchor(&mut tx, size, &root, &results, now).await {
                Ok(anchor) => {
                    store::set_anchor(&mut tx, size, &anchor).await?;
                    round.anchored = Some(size);
                }
                // The checkpoint stays signed; anchoring is tried again.
                Err(e) if round.signed.is_some() => {
                    tracing::warn!(error = %e, size, "the checkpoint could not be anchored; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = tx.commit().await {
            // The chain's new blocks were not stored: replay from storage.
            self.chain.forget().await;
            return Err(e.into());
        }
        Ok(round)
    }
}
