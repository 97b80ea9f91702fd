//! The outbox relay: publishes a service's outbox to the broker, in commit
//! order, and marks rows sent only once the broker has confirmed them.
//!
//! A crash between the broker's confirmation and the mark republishes those
//! events on restart; the broker (where it can) and the consumers' inboxes
//! drop the duplicates. Nothing committed is ever skipped. On PostgreSQL, where
//! several instances of a service may run, one relay at a time holds an
//! advisory lock and publishes; the others wait, so per-aggregate order holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contracts::Envelope;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{self, OutboxRow};
use super::{Bus, BusError};
use crate::db::Db;
use crate::http::Worker;

/// Wakes the relay once a transaction that wrote to the outbox has committed,
/// so events leave at once instead of at the next poll. Each [`Db`] has one;
/// [`Tx::commit`](crate::db::Tx::commit) rings it.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Why a relay round stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading or marking the outbox: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BusError),
    #[error("the broker confirmed {confirmed} of {sent} events")]
    Partial { confirmed: usize, sent: usize },
}

/// Rows read per round.
const BATCH: i64 = 256;
/// How often the relay looks at the outbox when nothing woke it.
const POLL: Duration = Duration::from_millis(500);
/// How long published rows are kept (for inspection) before they are pruned.
const RETENTION: chrono::Duration = chrono::Duration::days(7);
/// The advisory-lock key the PostgreSQL relays of one database compete for.
const LEADER_LOCK: i64 = 0x7061_6e61_6c00; // "panal\0"

pub struct Relay {
    service: &'static str,
    db: Db,
    bus: Bus,
    signal: OutboxSignal,
    published: Counter,
    failures: Counter,
}

impl Relay {
    pub fn new(service: &'static str, db: Db, bus: Bus) -> Self {
        Self {
            service,
            signal: db.outbox_signal(),
            db,
            bus,
            published: Counter::default(),
            failures: Counter::default(),
        }
    }

    /// Adds the relay's counters to a service's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register("bus_published", "Events the relay handed to the broker (confirmed)", self.published.clone());
        registry.register(
            "bus_relay_failures",
            "Relay rounds that could not publish everything",
            self.failures.clone(),
        );
    }

    /// The handle the service uses to wake this relay after a commit.
    pub fn signal(&self) -> OutboxSignal {
        self.signal.clone()
    }

    /// Publishes one batch. Returns how many events were published.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let rows = store::unpublished(&self.db, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        for OutboxRow { seq, payload } in rows {
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(e) => {
                    events.push(e);
                    seqs.push(seq);
                }
                Err(e) => {
                    // Only kit writes this table, from an `Envelope`; a row that does
                    // not parse back was damaged by hand. Publishing stops here
                    // rather than skip it silently.
                    tracing::error!(service = self.service, seq, error = %e, "outbox row is not a CloudEvents envelope; fix or delete it");
                    break;
                }
            }
        }
        if events.is_empty() {
            return Err(RelayError::Partial { confirmed: 0, sent: 0 });
        }
        // One span per event while the broker confirms the batch: each a
        // child of the request (or event) that recorded it, and the parent
        // its consumers' spans name in the `traceparent` sent on.
        let spans = publish_spans(&mut events);
        let confirmed = self.bus.publish(&events).await?;
        drop(spans);
        self.published.inc_by(confirmed as u64);
        if confirmed > 0 {
            store::mark_published(&self.db, seqs[confirmed - 1], Utc::now()).await?;
        }
        if confirmed < events.len() {
            return Err(RelayError::Partial { confirmed, sent: events.len() });
        }
        Ok(confirmed)
    }

    /// Runs until `shutdown`, publishing whatever the outbox holds.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut leader: Option<sqlx::pool::PoolConnection<sqlx::Postgres>> = None;
        let mut failures = 0u32;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(pool) = self.db.postgres()
                && leader.is_none()
            {
                leader = try_lead(pool).await;
                if leader.is_none() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(POLL * 4) => continue,
                    }
                }
            }
            let wait = match self.run_once().await {
                Ok(0) => {
                    failures = 0;
                    Some(POLL)
                }
                Ok(_) => {
                    failures = 0;
                    None
                }
                Err(e) => {
                    self.failures.inc();
                    failures += 1;
                    let backoff = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)));
                    tracing::warn!(service = self.service, error = %e, retry_in_ms = backoff.as_millis() as u64, "relay could not publish");
                    if matches!(e, RelayError::Database(_)) {
                        leader = None;
                    }
                    Some(backoff)
                }
            };
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = tokio::time::Instant::now();
                if let Err(e) = store::prune_published(&self.db, Utc::now() - RETENTION).await {
                    tracing::warn!(service = self.service, error = %e, "pruning the outbox failed");
                }
            }
            if let Some(wait) = wait {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.signal.0.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        // Publish what is already committed before going, if the broker is there.
        if leader.is_some() || !matches!(self.db, Db::Postgres(_)) {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.run_once()).await;
        }
    }

    /// The relay as a service worker.
    pub fn worker(self) -> Worker {
        Box::new(move |shutdown| Box::pin(self.run(shutdown)))
    }
}

/// The spans of `events`' publication, when traces are exported; each
/// event's `traceparent` becomes its span's.
fn publish_spans(events: &mut [Envelope]) -> Vec<tracing::Span> {
    if !crate::telemetry::exporting() {
        return Vec::new();
    }
    events
        .iter_mut()
        .map(|event| {
            let span = tracing::debug_span!("publish", event_id = %event.id, event_type = %event.kind);
            let mut trace = crate::trace::TraceContext::from_value(event.traceparent.as_deref().map(str::as_bytes));
            crate::telemetry::adopt(&span, &mut trace);
            crate::telemetry::describe(
                &span,
                || format!("{} publish", event.kind),
                || {
                    use opentelemetry::KeyValue;
                    vec![
                        KeyValue::new("messaging.operation.type", "send"),
                        KeyValue::new("messaging.message.id", event.id.to_string()),
                        KeyValue::new("messaging.destination.name", event.kind.clone()),
                    ]
                },
            );
            event.traceparent = Some(trace.header_value());
            span
        })
        .collect()
}

/// Takes the relay's advisory lock on a connection kept for as long as this
/// instance leads; the lock goes with the connection if the process dies.
async fn try_lead(pool: &sqlx::PgPool) -> Option<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut conn = pool.acquire().await.ok()?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut *conn).await.ok()?;
    locked.then_some(conn)
}
