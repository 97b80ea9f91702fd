//! Revoked sessions, refused at the edge before their access tokens expire.
//!
//! Auth writes `panal.auth.session_revoked.v1` for every session that ends
//! early (logout, revocation, password change, disabled or banned account);
//! the gateway subscribes to it on the bus and keeps each session id for the
//! longest an access token can live (plus leeway), refusing tokens of those
//! sessions with 401. The delay between the revocation and the refusal is
//! auth's outbox relay plus the bus (milliseconds; measured in
//! docs/benchmarks.md). Entries are idempotent, so the subscription needs no
//! inbox: a replay only re-inserts. A new subscription on the embedded bus or
//! NATS JetStream starts at the oldest retained event, so a replica that joins
//! later loads the revocations that still matter; a new RabbitMQ queue only
//! gets what is published after it is declared.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use contracts::auth::SessionRevoked;
use kit::bus::Bus;
use thread_local::ThreadLocal;
use uuid::Uuid;

use crate::AppState;

/// The revoked sessions, each until its tokens have all expired.
///
/// Every request asks; revocations are rare. So the list is a log that only
/// grows (until it is compacted), and each serving thread keeps a map of
/// its own that it brings up to date when the log's version moved on: a
/// request reads one atomic and its thread's map, and takes no lock (see
/// [`kit::local`]). A revocation is seen by the next request on any thread.
#[derive(Debug)]
pub struct DenyList {
    keep: Duration,
    log: RwLock<Log>,
    /// Moves on with every change of `log` (made while holding its lock).
    version: AtomicU64,
    local: ThreadLocal<RefCell<Local>>,
}

#[derive(Debug, Default)]
struct Log {
    /// Moves on when the log is compacted: threads' maps are then rebuilt.
    epoch: u64,
    entries: Vec<(Uuid, Instant)>,
}

#[derive(Debug, Default)]
struct Local {
    version: u64,
    epoch: u64,
    /// How much of the log the map holds.
    applied: usize,
    map: HashMap<Uuid, Instant>,
}

impl DenyList {
    pub fn new(keep: Duration) -> Self {
        Self { keep, log: RwLock::new(Log::default()), version: AtomicU64::new(0), local: ThreadLocal::new() }
    }

    /// Records a session revoked at `revoked_at`, for what remains of the
    /// time its tokens could live; one revoked longer ago is not kept (a new
    /// replica replaying the retained events loads only what still matters).
    pub fn insert_revoked_at(&self, session: Uuid, revoked_at: chrono::DateTime<chrono::Utc>) {
        let age = (chrono::Utc::now() - revoked_at).to_std().unwrap_or(Duration::ZERO);
        if let Some(left) = self.keep.checked_sub(age) {
            self.insert_for(session, left);
        }
    }

    fn insert_for(&self, session: Uuid, keep: Duration) {
        let now = Instant::now();
        if let Ok(mut log) = self.log.write() {
            // Compacted when mostly past: entries past their time hold
            // nothing a token could still use.
            if log.entries.len() % 1024 == 1023 {
                let live = log.entries.iter().filter(|(_, until)| *until > now).count();
                if live * 2 < log.entries.len() {
                    log.entries.retain(|(_, until)| *until > now);
                    log.epoch += 1;
                }
            }
            log.entries.push((session, now + keep));
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn contains(&self, session: Uuid) -> bool {
        self.contains_at(session, Instant::now())
    }

    /// Whether `session` is refused at `now`.
    pub fn contains_at(&self, session: Uuid, now: Instant) -> bool {
        let version = self.version.load(Ordering::Acquire);
        let mut local = self.local.get_or_default().borrow_mut();
        if local.version != version {
            self.catch_up(&mut local);
        }
        local.map.get(&session).is_some_and(|until| *until > now)
    }

    /// Brings a thread's map up to the log.
    fn catch_up(&self, local: &mut Local) {
        let Ok(log) = self.log.read() else { return };
        if local.epoch != log.epoch || local.applied > log.entries.len() {
            *local = Local { epoch: log.epoch, ..Local::default() };
        }
        for (session, until) in &log.entries[local.applied..] {
            local.map.insert(*session, *until);
        }
        local.applied = log.entries.len();
        // Read under the lock: writers move it on while holding the write lock.
        local.version = self.version.load(Ordering::Acquire);
    }

    /// Sessions refused now.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let Ok(log) = self.log.read() else { return 0 };
        let mut live: HashMap<Uuid, Instant> = HashMap::new();
        for (session, until) in &log.entries {
            live.insert(*session, *until);
        }
        live.values().filter(|until| **until > now).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows `session_revoked` on the bus for as long as the gateway runs.
pub(crate) fn worker(state: AppState, bus: Bus) -> kit::http::Worker {
    let consumer = format!("{}-revocations", state.settings.instance_id);
    kit::bus::follow(bus, consumer, move |event: SessionRevoked| {
        state.denied.insert_revoked_at(event.session_id, event.revoked_at);
        tracing::debug!(session_id = %event.session_id, "session revoked: its tokens are refused");
        std::future::ready(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_revocations_are_not_kept_and_recent_ones_only_for_what_remains() {
        let list = DenyList::new(Duration::from_secs(3600));
        let (old, recent) = (Uuid::now_v7(), Uuid::now_v7());
        list.insert_revoked_at(old, chrono::Utc::now() - chrono::Duration::hours(2));
        list.insert_revoked_at(recent, chrono::Utc::now() - chrono::Duration::minutes(10));
        assert!(!list.contains(old), "its tokens have all expired");
        assert!(list.contains(recent));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn every_thread_sees_a_revocation_at_once_and_compaction_keeps_the_live_ones() {
        let list = std::sync::Arc::new(DenyList::new(Duration::from_secs(3600)));
        let first = Uuid::now_v7();
        // A thread that has read the list before, and reads it again after.
        let (ask, asked) = std::sync::mpsc::channel::<Uuid>();
        let (answer, answers) = std::sync::mpsc::channel::<bool>();
        let reader = {
            let list = list.clone();
            std::thread::spawn(move || {
                for session in asked {
                    let _ = answer.send(list.contains(session));
                }
            })
        };
        let contains = |session| {
            ask.send(session).unwrap();
            answers.recv().unwrap()
        };
        assert!(!contains(first));
        list.insert_for(first, Duration::from_secs(60));
        assert!(contains(first), "a thread whose map was built before the revocation");
        // Many short-lived entries, then more: the log is compacted, and what
        // still matters stays refused on every thread.
        for _ in 0..2000 {
            list.insert_for(Uuid::now_v7(), Duration::ZERO);
        }
        let last = Uuid::now_v7();
        list.insert_for(last, Duration::from_secs(60));
        assert!(list.log.read().unwrap().epoch > 0, "compacted");
        assert!(contains(first) && contains(last));
        assert!(list.contains(first) && list.contains(last));
        assert_eq!(list.len(), 2);
        drop(ask);
        reader.join().unwrap();
    }
}
