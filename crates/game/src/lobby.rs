//! The players waiting in the matchmaking queue of this process, and the
//! worker that makes matches of them four times a second (the grouping
//! rule is [`crate::matchmaking`]). The queue lives in memory: `panal up`
//! runs one game process; several game processes would need it shared
//! (Redis), which is not built yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::arena::Arena;
use crate::domain::Mode;
use crate::matchmaking::{self, Waiting};
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub mode: Mode,
    pub rating: f64,
    pub since: Instant,
}

#[derive(Default)]
pub struct Lobby {
    waiting: Mutex<HashMap<Uuid, Entry>>,
}

impl Lobby {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a player; false when they are queued already.
    pub fn join(&self, user: Uuid, mode: Mode, rating: f64) -> bool {
        let mut waiting = self.lock();
        if waiting.contains_key(&user) {
            return false;
        }
        waiting.insert(user, Entry { mode, rating, since: Instant::now() });
        true
    }

    pub fn leave(&self, user: Uuid) -> bool {
        self.lock().remove(&user).is_some()
    }

    pub fn entry(&self, user: Uuid) -> Option<Entry> {
        self.lock().get(&user).copied()
    }

    /// Takes the groups that can play now out of the queue.
    fn take_groups(&self) -> Vec<(Mode, Vec<(Uuid, Entry)>)> {
        let mut waiting = self.lock();
        let now = Instant::now();
        let mut made = Vec::new();
        for mode in [Mode::Duel, Mode::FourPlayers] {
            let candidates: Vec<Waiting> = waiting
                .iter()
                .filter(|(_, e)| e.mode == mode)
                .map(|(&user, e)| Waiting { user, rating: e.rating, waited: now.duration_since(e.since) })
                .collect();
            for group in matchmaking::groups(&candidates, mode.seats()) {
                let taken = group.into_iter().filter_map(|u| waiting.remove(&u).map(|e| (u, e))).collect();
                made.push((mode, taken));
            }
        }
        made
    }

    /// Makes matches until `stop`.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<Store>,
        arena: Arc<Arena>,
        metrics: Arc<crate::metrics::Metrics>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            for (mode, group) in self.take_groups() {
                let players: Vec<Uuid> = group.iter().map(|(u, _)| *u).collect();
                match store.from_queue(mode, &players, Utc::now()).await {
                    Ok(m) => {
                        metrics.matches_made.inc();
                        if let Err(e) = crate::leases::run_here(&store, &arena, &m).await {
                            // Live without an owner: a lease sweep takes it over.
                            tracing::warn!(error = %e, match_id = %m.id, "a match from the queue was not claimed");
                        }
                    }
                    Err(e) => {
                        // Back in the queue, as they were: the next round tries again.
                        tracing::error!(error = %e, "a match from the queue was not created");
                        let mut waiting = self.lock();
                        for (user, entry) in group {
                            waiting.entry(user).or_insert(entry);
                        }
                    }
                }
            }
        }
    }
}
