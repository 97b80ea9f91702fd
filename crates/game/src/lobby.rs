//! The matchmaker: four times a second, the game process that holds the
//! `matchmaker` lease groups the players waiting in the queue (the table
//! every game process shares, so a player may queue through any of them)
//! and makes a live match of each group (the grouping rule is
//! [`crate::matchmaking`]). Only one process matches at a time, so no
//! player is put in two matches; if it dies, another takes the lease over
//! when it runs out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::arena::Arena;
use crate::domain::Mode;
use crate::matchmaking::{self, Waiting};
use crate::store::{Queued, Store};

/// The job's name in `singletons`.
const JOB: &str = "matchmaker";

/// How long a player has waited.
pub fn waited(entry: &Queued) -> Duration {
    (Utc::now() - entry.since).to_std().unwrap_or_default()
}

/// Makes matches until `stop`; then lets go of the job.
///
/// Players who found nobody after `bots_after` (when set) get a match of
/// their own whose other seats the AI service fills with bots.
pub async fn run(
    store: Arc<Store>,
    arena: Arc<Arena>,
    metrics: Arc<crate::metrics::Metrics>,
    bots_after: Option<Duration>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        match store.hold(JOB, Utc::now()).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the matchmaker's lease could not be taken");
                continue;
            }
        }
        let queue = match store.queue().await {
            Ok(queue) => queue,
            Err(e) => {
                tracing::warn!(error = %e, "the queue could not be read");
                continue;
            }
        };
        for mode in [Mode::Duel, Mode::FourPlayers] {
            let candidates: Vec<Waiting> = queue
                .iter()
                .filter(|e| e.mode == mode)
                .map(|e| Waiting { user: e.user, rating: e.rating, waited: waited(e) })
                .collect();
            let groups = matchmaking::groups(&candidates, mode.seats());
            if let Some(after) = bots_after {
                let placed: Vec<uuid::Uuid> = groups.iter().flatten().copied().collect();
                let left: Vec<Waiting> = candidates.iter().filter(|w| !placed.contains(&w.user)).cloned().collect();
                for lonely in matchmaking::for_bots(&left, mode.seats(), after) {
                    let players: Vec<(uuid::Uuid, f64)> = lonely
                        .iter()
                        .filter_map(|u| candidates.iter().find(|w| w.user == *u).map(|w| (w.user, w.rating)))
                        .collect();
                    match store.for_bots(mode, &players, Utc::now()).await {
                        Ok(Some(m)) => tracing::info!(match_id = %m.id, "players alone in the queue wait for bots"),
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = ?e, "a match for bots was not created"),
                    }
                }
            }
            for group in groups {
                match store.from_queue(mode, &group, Utc::now()).await {
                    Ok(Some(m)) => {
                        metrics.matches_made.inc();
                        if let Err(e) = crate::leases::run_here(&store, &arena, &m).await {
                            // Live without an owner: a lease sweep takes it over.
                            tracing::warn!(error = %e, match_id = %m.id, "a match from the queue was not claimed");
                        }
                    }
                    // One of them left meanwhile: the others wait for the next round.
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = ?e, "a match from the queue was not created"),
                }
            }
        }
    }
    if let Err(e) = store.let_go(JOB).await {
        tracing::warn!(error = %e, "the matchmaker's lease was not released; it runs out by itself");
    }
}
