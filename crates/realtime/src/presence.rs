//! Who is connected, for users' "online" (friends list, profiles).
//!
//! Each replica counts its connections per user. The first connection of a
//! user here announces `presence_changed` (online), the last one closing
//! announces it offline; every minute a `presence_snapshot` names everyone
//! connected here, renewing their online status for [`VALID_SECS`]. Users
//! keeps one row per user and replica: a user is online while any replica
//! vouches for them, and a replica that dies stops vouching within
//! [`VALID_SECS`]. Events leave in order through one worker; if the bus
//! refuses one, the next snapshot corrects what users believes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use contracts::Envelope;
use contracts::realtime::{PresenceChanged, PresenceSnapshot};
use kit::bus::Bus;
use kit::http::Worker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long an announcement holds without renewal.
pub const VALID_SECS: u32 = 150;
/// How often a replica renews its users.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Users per snapshot event (a bus message stays well under 1 MB).
const SNAPSHOT_CHUNK: usize = 5_000;

pub struct Presence {
    replica: String,
    counts: Mutex<HashMap<Uuid, usize>>,
    changes: mpsc::Sender<PresenceChanged>,
    receiver: Mutex<Option<mpsc::Receiver<PresenceChanged>>>,
}

impl Presence {
    pub fn new(replica: String) -> Self {
        let (changes, receiver) = mpsc::channel(10_000);
        Self { replica, counts: Mutex::new(HashMap::new()), changes, receiver: Mutex::new(Some(receiver)) }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn announce(&self, user_id: Uuid, online: bool) {
        let change = PresenceChanged {
            user_id,
            replica: self.replica.clone(),
            online,
            at: chrono::Utc::now(),
            valid_secs: VALID_SECS,
        };
        // Full: the bus is far behind; the next snapshot says it again.
        let _ = self.changes.try_send(change);
    }

    pub fn connected(&self, user: Uuid) {
        let first = {
            let mut counts = self.counts();
            let n = counts.entry(user).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            self.announce(user, true);
        }
    }

    pub fn disconnected(&self, user: Uuid) {
        let last = {
            let mut counts = self.counts();
            match counts.get_mut(&user) {
                Some(1) => {
                    counts.remove(&user);
                    true
                }
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            }
        };
        if last {
            self.announce(user, false);
        }
    }

    /// Users connected here.
    pub fn online(&self) -> Vec<Uuid> {
        self.counts().keys().copied().collect()
    }

    /// The worker that sends the announcements and the snapshots.
    pub fn worker(self: std::sync::Arc<Self>, bus: Bus) -> Worker {
        Box::new(move |stop: CancellationToken| {
            Box::pin(async move {
                let Some(mut changes) = self.receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
                else {
                    return;
                };
                let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
                loop {
                    let envelopes = tokio::select! {
                        () = stop.cancelled() => return,
                        Some(change) = changes.recv() => vec![Envelope::new(&change, None)],
                        _ = tick.tick() => {
                            let online = self.online();
                            let at = chrono::Utc::now();
                            online
                                .chunks(SNAPSHOT_CHUNK)
                                .map(|part| Envelope::new(&PresenceSnapshot {
                                    replica: self.replica.clone(),
                                    online: part.to_vec(),
                                    at,
                                    valid_secs: VALID_SECS,
                                }, None))
                                .collect()
                        }
                    };
                    if !envelopes.is_empty()
                        && let Err(e) = bus.publish(&envelopes).await
                    {
                        tracing::warn!(error = %e, "could not announce presence; the next snapshot will");
                    }
                }
            })
        })
    }
}
