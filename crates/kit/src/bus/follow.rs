//! Following an event type without an inbox: for state every process keeps
//! for itself and that applying twice leaves unchanged (the gateway's list of
//! revoked sessions; realtime closing a revoked session's sockets).
//!
//! Each process follows under a consumer name of its own, so each hears
//! every event. A subscription that fails (the broker restarted) is made
//! again; every delivery is acknowledged once handled, an unreadable one
//! included (logged: there is nothing to retry).

use std::time::Duration;

use contracts::Event;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Bus;
use crate::http::Worker;

/// A worker that hands every `E` published on `bus` to `apply`, for as long
/// as the service runs, as consumer `consumer`. Events are applied one at a
/// time, in order: the next waits for `apply`'s future (which may retry
/// for as long as it needs; a sync body returns `std::future::ready(())`).
pub fn follow<E, F, Fut>(bus: Bus, consumer: String, apply: F) -> Worker
where
    E: Event + Send + 'static,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    Box::new(move |stop: CancellationToken| {
        Box::pin(async move {
            let types = [E::TYPE.to_owned()];
            loop {
                let mut deliveries = match bus.subscribe(&consumer, &types).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(event = E::TYPE, error = %e, "cannot follow an event type; retrying");
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
                    match serde_json::from_slice::<contracts::Envelope>(&delivery.payload).map(|e| e.decode::<E>()) {
                        Ok(Some(Ok(event))) => apply(event).await,
                        _ => tracing::warn!(kind = %delivery.kind, "ignored an unreadable event"),
                    }
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(event = E::TYPE, error = %e, "could not acknowledge an event");
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
