//! Several game processes share the live matches: each live match is run
//! by exactly one process at a time, the holder of its lease (columns
//! `owner`, `owner_url`, `lease_until` of `matches`, in the database every
//! game process shares).
//!
//! - A process that makes a match live (a join, the queue, an invitation,
//!   a rematch) claims it at once and runs it.
//! - Every third of the lease ([`run`]) it renews the leases it holds and
//!   takes over live matches whose lease ran out (their owner died), from
//!   their last snapshot (taken at every goal and pause), paused until their
//!   players are back: the score is never lost.
//! - Never two owners: snapshots and results are written only by the
//!   holder (`WHERE owner = me`), a process whose renewal finds a match
//!   gone stops running it, and one that cannot renew for two thirds of the
//!   lease stops running all of its matches before anyone may take them.
//!   This relies on the processes' clocks agreeing to well under a lease
//!   (NTP does that by milliseconds).
//! - At a clean shutdown a process snapshots its matches and releases
//!   them, so another takes them over at once.
//!
//! Players' inputs reach the owner whichever process they land on: the API
//! forwards them to the owner's `owner_url` ([`crate::api`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::arena::Arena;
use crate::store::{Match, Store};

/// Claims a match that just became live, and runs it when the claim holds
/// (another process may have claimed it first: then that one runs it).
pub async fn run_here(store: &Store, arena: &Arena, m: &Match) -> Result<(), sqlx::Error> {
    if store.claim(m.id, Utc::now()).await? {
        arena.start(m);
    }
    Ok(())
}

/// Renews, takes over and, at shutdown, hands over; see the module
/// documentation.
pub async fn run(store: Arc<Store>, arena: Arc<Arena>, max_live: usize, stop: CancellationToken) {
    let lease = store.owner().lease;
    let period = lease / 3;
    let mut renewed = Instant::now();
    loop {
        // What ran before the renewal: a match claimed meanwhile is not
        // mistaken for one lost.
        let running = arena.ids();
        match store.renew(Utc::now()).await {
            Ok(held) => {
                renewed = Instant::now();
                let held: HashSet<_> = held.into_iter().collect();
                for id in running.into_iter().filter(|id| !held.contains(id)) {
                    if arena.runs(id) {
                        tracing::warn!(match_id = %id, "the lease of a match was lost; another process runs it now");
                        arena.drop_match(id);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leases were not renewed");
                if renewed.elapsed() >= lease * 2 / 3 {
                    tracing::error!("leases could not be renewed in time: this process stops running its matches");
                    for id in arena.ids() {
                        arena.drop_match(id);
                    }
                }
            }
        }
        match store.claim_orphans(max_live.saturating_sub(arena.len()), Utc::now()).await {
            Ok(ids) => {
                for id in ids {
                    match store.get(id).await {
                        Ok(Some(m)) => {
                            tracing::info!(match_id = %id, "took over a live match");
                            arena.start(&m);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, match_id = %id, "a match taken over could not be read"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "live matches without an owner could not be taken over"),
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(period) => {}
        }
    }
    // Hand over: the latest state of every match, then the leases.
    for (id, snapshot) in arena.snapshots() {
        if let Err(e) = store.snapshot(id, &snapshot).await {
            tracing::warn!(error = %e, match_id = %id, "a match's last snapshot was not saved");
        }
        arena.drop_match(id);
    }
    if let Err(e) = store.release().await {
        tracing::warn!(error = %e, "leases were not released; they run out by themselves");
    }
}
