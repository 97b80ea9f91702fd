//! Sessions that end early close their sockets.
//!
//! Auth publishes `panal.auth.session_revoked.v1` when a session ends before
//! its tokens expire (logout, revocation, password change, ban, erasure).
//! Every realtime process follows it (a consumer of its own per instance,
//! `realtime.instance_id`: each must hear every revocation) and closes the
//! connections of that session with 3503 — the SDKs do not reconnect on it.
//! The delay is auth's relay plus the bus: well under a second here.
//! Following needs no inbox: closing twice closes once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use contracts::Event;
use contracts::auth::SessionRevoked;
use futures_util::StreamExt;
use kit::bus::Bus;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The open connections of each session, by connection id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<Uuid, HashMap<u64, CancellationToken>>>,
}

impl Sessions {
    /// Registers connection `link` of `session`; `revoked` is cancelled if
    /// the session is revoked while it is open.
    pub fn open(&self, session: Uuid, link: u64, revoked: CancellationToken) {
        self.lock().entry(session).or_default().insert(link, revoked);
    }

    pub fn close(&self, session: Uuid, link: u64) {
        let mut open = self.lock();
        if let Some(links) = open.get_mut(&session) {
            links.remove(&link);
            if links.is_empty() {
                open.remove(&session);
            }
        }
    }

    /// Tells every connection of `session` to go; returns how many there were.
    pub fn revoke(&self, session: Uuid) -> usize {
        let links = self.lock().remove(&session).unwrap_or_default();
        for revoked in links.values() {
            revoked.cancel();
        }
        links.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashMap<u64, CancellationToken>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Follows `session_revoked` for as long as realtime runs, resubscribing
/// after a broker failure.
pub fn worker(state: crate::AppState, bus: Bus, consumer: String) -> kit::http::Worker {
    Box::new(move |stop: CancellationToken| {
        Box::pin(async move {
            let types = [SessionRevoked::TYPE.to_owned()];
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
                            let closed = state.sessions.revoke(event.session_id);
                            if closed > 0 {
                                tracing::info!(session_id = %event.session_id, closed, "session revoked: its sockets are closed");
                            }
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
