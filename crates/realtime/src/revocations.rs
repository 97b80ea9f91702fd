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

use contracts::auth::SessionRevoked;
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

/// Follows `session_revoked` for as long as realtime runs.
pub fn worker(state: crate::AppState, bus: Bus, consumer: String) -> kit::http::Worker {
    kit::bus::follow(bus, consumer, move |event: SessionRevoked| {
        let closed = state.sessions.revoke(event.session_id);
        if closed > 0 {
            tracing::info!(session_id = %event.session_id, closed, "session revoked: its sockets are closed");
        }
        std::future::ready(())
    })
}
