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

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use contracts::Event;
use contracts::auth::SessionRevoked;
use futures_util::StreamExt;
use kit::bus::Bus;
use uuid::Uuid;

use crate::AppState;

#[derive(Debug)]
pub struct DenyList {
    keep: Duration,
    sessions: RwLock<HashMap<Uuid, Instant>>,
}

impl DenyList {
    pub fn new(keep: Duration) -> Self {
        Self { keep, sessions: RwLock::new(HashMap::new()) }
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
        if let Ok(mut s) = self.sessions.write() {
            // Pruned on insert: entries past their time hold nothing a token
            // could still use.
            if s.len() % 1024 == 1023 {
                s.retain(|_, until| *until > now);
            }
            s.insert(session, now + keep);
        }
    }

    pub fn contains(&self, session: Uuid) -> bool {
        self.sessions.read().ok().and_then(|s| s.get(&session).copied()).is_some_and(|until| until > Instant::now())
    }

    pub fn len(&self) -> usize {
        self.sessions.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows `session_revoked` on the bus for as long as the gateway runs,
/// resubscribing after a broker failure.
pub(crate) fn worker(state: AppState, bus: Bus) -> kit::http::Worker {
    Box::new(move |stop: tokio_util::sync::CancellationToken| {
        Box::pin(async move {
            let types = [SessionRevoked::TYPE.to_owned()];
            let consumer = format!("{}-revocations", state.settings.instance_id);
            loop {
                let mut deliveries = match bus.subscribe(&consumer, &types).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot follow session revocations; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            () = stop.cancelled() => return,
                        }
                    }
                };
                loop {
                    let next = tokio::select! {
                        n = deliveries.next() => n,
                        () = stop.cancelled() => return,
                    };
                    let Some(Ok(delivery)) = next else { break };
                    match serde_json::from_slice::<contracts::Envelope>(&delivery.payload)
                        .map(|e| e.decode::<SessionRevoked>())
                    {
                        Ok(Some(Ok(event))) => {
                            state.denied.insert_revoked_at(event.session_id, event.revoked_at);
                            tracing::debug!(session_id = %event.session_id, "session revoked: its tokens are refused");
                        }
                        _ => tracing::warn!(kind = %delivery.kind, "ignored an unreadable session_revoked event"),
                    }
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, "could not acknowledge a revocation");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = stop.cancelled() => return,
                }
            }
        })
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
}
