//! Consuming events: handlers per event type, each delivery applied in a
//! transaction that also records the event id (the inbox), retries with
//! backoff, dead letters, and replay.
//!
//! Deliveries are spread over lanes by subject: events about one aggregate are
//! handled in order, one at a time, while a failing event holds up only its
//! own lane, and only for its retries; then it is dead-lettered and the lane
//! moves on.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::{Envelope, Event};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::store::{self, DeadLetter};
use super::{Bus, Delivery};
use crate::db::Db;
pub use crate::db::Tx;
use crate::http::Worker;
use crate::trace::TraceContext;

/// What a handler knows about the event besides its payload.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub id: Uuid,
    pub source: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    pub traceparent: Option<String>,
    /// The trace this handling belongs to: the producer's trace continued with
    /// a span of its own. Pass `trace.header_value()` on as the `traceparent`
    /// of events or calls the handler makes.
    pub trace: TraceContext,
    /// 1 for the first try.
    pub attempt: u32,
}

type HandlerFn =
    Arc<dyn for<'a> Fn(&'a mut Tx, &'a Envelope, &'a EventMeta) -> BoxFuture<'a, Result<(), Failure>> + Send + Sync>;

/// Why a handler did not apply an event.
#[derive(Debug)]
pub enum Failure {
    /// Worth trying again (a database hiccup, a dependency down).
    Retry(anyhow::Error),
    /// Will never work (the payload does not decode): dead-letter at once.
    Reject(anyhow::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(e) | Failure::Reject(e) => write!(f, "{e:#}"),
        }
    }
}

/// The handlers of one consumer, by event type.
#[derive(Default, Clone)]
pub struct Handlers {
    by_type: HashMap<String, HandlerFn>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers").field("types", &self.types()).finish()
    }
}

impl Handlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles events of type `E` with `f`, which runs inside the transaction
    /// that records the event in the inbox: write through `tx`, and the write
    /// and the record commit together.
    pub fn on<E, F>(mut self, f: F) -> Self
    where
        E: Event + Send + 'static,
        F: for<'a> Fn(&'a mut Tx, E, &'a EventMeta) -> BoxFuture<'a, anyhow::Result<()>> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let handler: HandlerFn = Arc::new(move |tx, envelope, meta| {
            let f = f.clone();
            Box::pin(async move {
                let event = E::deserialize(&envelope.data)
                    .map_err(|e| Failure::Reject(anyhow::anyhow!("the payload is not a valid {}: {e}", E::TYPE)))?;
                f(tx, event, meta).await.map_err(Failure::Retry)
            })
        });
        self.by_type.insert(E::TYPE.to_owned(), handler);
        self
    }

    /// Handles events of type `kind` given as the whole envelope (for handlers
    /// of types not known at compile time, such as generic projections).
    pub fn on_envelope<F>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Tx, &'a Envelope, &'a EventMeta) -> BoxFuture<'a, anyhow::Result<()>>
            + Send
            + Sync
            + 'static,
    {
        let f = Arc::new(f);
        let handler: HandlerFn = Arc::new(move |tx, envelope, meta| {
            let f = f.clone();
            Box::pin(async move { f(tx, envelope, meta).await.map_err(Failure::Retry) })
        });
        self.by_type.insert(kind.into(), handler);
        self
    }

    /// The event types handled, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.by_type.keys().cloned().collect();
        types.sort();
        types
    }
}

/// Consumer and broker settings: `[bus]` in `panal.toml`, `PANAL_BUS__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConsumerSettings {
    /// How long JetStream waits for an acknowledgement before it delivers a
    /// message again (NATS only; must exceed the retries' total backoff).
    pub ack_wait_ms: u64,
    /// Tries per delivery before an event is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; each next one doubles, up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A message the broker has handed out more often than this without being
    /// settled (its consumer keeps crashing on it) is dead-lettered unread.
    pub max_deliveries: u32,
    /// Events handled at once, each lane in order.
    pub lanes: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            ack_wait_ms: 30_000,
            max_attempts: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 5_000,
            max_deliveries: 5,
            lanes: 8,
        }
    }
}

impl ConsumerSettings {
    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self.backoff_base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
        Duration::from_millis(ms.min(self.backoff_max_ms))
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
    DeadLettered,
    /// Not settled: the broker will deliver it again.
    Deferred,
}

/// What replaying a dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Applied,
    /// The event had been applied meanwhile (a redelivery got through).
    AlreadyApplied,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter {0}")]
    NotFound(Uuid),
    #[error("the dead letter is not a CloudEvents envelope: {0}")]
    Malformed(String),
    #[error("no handler for {0} in consumer {1}")]
    NoHandler(String, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The labels of `bus_consumed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    consumer: String,
    outcome: &'static str,
}

/// A durable consumer: a name, a database with the bus tables, handlers.
#[derive(Clone)]
pub struct Consumer {
    name: String,
    db: Db,
    handlers: Handlers,
    settings: ConsumerSettings,
    outcomes: prometheus_client::metrics::family::Family<OutcomeLabels, prometheus_client::metrics::counter::Counter>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("handlers", &self.handlers).finish()
    }
}

impl Consumer {
    pub fn new(name: impl Into<String>, db: Db, handlers: Handlers) -> Self {
        Self { name: name.into(), db, handlers, settings: ConsumerSettings::default(), outcomes: Default::default() }
    }

    /// Adds `bus_consumed_total{consumer,outcome}` to a service's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "bus_consumed",
            "Deliveries handled, by outcome (applied, duplicate, ignored, dead_lettered, deferred)",
            self.outcomes.clone(),
        );
    }

    pub fn with_settings(mut self, settings: ConsumerSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The consumer as a service worker on `bus`.
    pub fn worker(self, bus: Bus) -> Worker {
        Box::new(move |shutdown| Box::pin(self.run(bus, shutdown)))
    }

    /// Subscribes and handles deliveries until `shutdown`, resubscribing after
    /// broker failures.
    pub async fn run(self, bus: Bus, shutdown: CancellationToken) {
        let types = self.handlers.types();
        let this = Arc::new(self);
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let mut deliveries = match bus.subscribe(&this.name, &types).await {
                Ok(d) => {
                    failures = 0;
                    d
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)));
                    tracing::warn!(consumer = %this.name, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot subscribe");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            let lanes = this.settings.lanes.max(1);
            let mut senders = Vec::with_capacity(lanes);
            let mut tasks = Vec::with_capacity(lanes);
            for _ in 0..lanes {
                let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
                let me = this.clone();
                senders.push(tx);
                tasks.push(tokio::spawn(async move {
                    while let Some(delivery) = rx.recv().await {
                        me.process(delivery).await;
                    }
                }));
            }
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => None,
                    next = deliveries.next() => Some(next),
                };
                match next {
                    None => break,
                    Some(None) => {
                        tracing::warn!(consumer = %this.name, "the subscription ended; subscribing again");
                        break;
                    }
                    Some(Some(Err(e))) => {
                        tracing::warn!(consumer = %this.name, error = %e, "delivery failed; subscribing again");
                        break;
                    }
                    Some(Some(Ok(delivery))) => {
                        let lane = lane_of(&delivery, lanes);
                        if senders[lane].send(delivery).is_err() {
                            break;
                        }
                    }
                }
            }
            // Let the lanes finish what they hold; unsettled deliveries come back.
            drop(senders);
            drop(deliveries);
            for task in tasks {
                let _ = task.await;
            }
            if !shutdown.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Handles one delivery to the end: applied, duplicate, ignored or
    /// dead-lettered (then acknowledged), or deferred (negatively acknowledged).
    pub async fn process(&self, delivery: Delivery) -> Outcome {
        let outcome = self.decide(&delivery).await;
        let label = match outcome {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Deferred => "deferred",
        };
        self.outcomes.get_or_create(&OutcomeLabels { consumer: self.name.clone(), outcome: label }).inc();
        let settled = match outcome {
            Outcome::Deferred => delivery.nack().await,
            _ => delivery.ack().await,
        };
        if let Err(e) = settled {
            tracing::warn!(consumer = %self.name, error = %e, "could not settle a delivery; it will come again");
        }
        outcome
    }

    async fn decide(&self, delivery: &Delivery) -> Outcome {
        let envelope = match serde_json::from_slice::<Envelope>(&delivery.payload) {
            Ok(e) => e,
            Err(e) => {
                let raw = String::from_utf8_lossy(&delivery.payload).into_owned();
                return self
                    .dead_letter(None, &delivery.kind, raw, format!("not a CloudEvents envelope: {e}"), 0)
                    .await;
            }
        };
        let Some(handler) = self.handlers.by_type.get(&envelope.kind).cloned() else {
            return Outcome::Ignored;
        };
        let payload = || String::from_utf8_lossy(&delivery.payload).into_owned();
        if delivery.delivery_count > self.settings.max_deliveries {
            let error = format!(
                "delivered {} times without being settled (the consumer may be crashing on it)",
                delivery.delivery_count
            );
            return self.dead_letter(Some(envelope.id), &envelope.kind, payload(), error, 0).await;
        }

        let trace =
            envelope.traceparent.as_deref().and_then(TraceContext::parse_parent).unwrap_or_else(TraceContext::new_root);
        let span = tracing::info_span!(
            "event",
            consumer = %self.name,
            event_id = %envelope.id,
            event_type = %envelope.kind,
            trace_id = %trace.trace_id_hex(),
            span_id = %trace.span_id_hex(),
        );
        async {
            let mut last = String::new();
            let mut attempts = 0;
            for attempt in 1..=self.settings.max_attempts.max(1) {
                attempts = attempt;
                match self.apply(&handler, &envelope, &trace, attempt, None).await {
                    Ok(true) => return Outcome::Applied,
                    Ok(false) => return Outcome::Duplicate,
                    Err(Failure::Reject(e)) => {
                        last = format!("{e:#}");
                        break;
                    }
                    Err(Failure::Retry(e)) => {
                        last = format!("{e:#}");
                        tracing::warn!(attempt, error = %last, "event handler failed");
                        if attempt < self.settings.max_attempts {
                            tokio::time::sleep(self.settings.backoff(attempt)).await;
                        }
                    }
                }
            }
            tracing::error!(attempts, error = %last, "event dead-lettered");
            self.dead_letter(Some(envelope.id), &envelope.kind, payload(), last, attempts).await
        }
        .instrument(span)
        .await
    }

    /// One try: inbox claim and handler in one transaction. `Ok(false)` when
    /// the event was applied before. With `dead_letter`, the dead letter is
    /// removed in the same transaction.
    async fn apply(
        &self,
        handler: &HandlerFn,
        envelope: &Envelope,
        trace: &TraceContext,
        attempt: u32,
        dead_letter: Option<Uuid>,
    ) -> Result<bool, Failure> {
        let retry = |e: sqlx::Error| Failure::Retry(e.into());
        let mut tx = self.db.begin().await.map_err(retry)?;
        let id = envelope.id.to_string();
        if !store::inbox_claim(&mut tx, &self.name, &id, &envelope.kind, Utc::now()).await.map_err(retry)? {
            if let Some(dl) = dead_letter {
                store::delete_dead_letter(&mut tx, dl).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
            } else {
                tx.rollback().await.map_err(retry)?;
            }
            return Ok(false);
        }
        let meta = EventMeta {
            id: envelope.id,
            source: envelope.source.clone(),
            subject: envelope.subject.clone(),
            time: envelope.time,
            traceparent: envelope.traceparent.clone(),
            trace: *trace,
            attempt,
        };
        let result = AssertUnwindSafe(handler(&mut tx, envelope, &meta)).catch_unwind().await;
        match result {
            Ok(Ok(())) => {
                if let Some(dl) = dead_letter {
                    store::delete_dead_letter(&mut tx, dl).await.map_err(retry)?;
                }
                tx.commit().await.map_err(retry)?;
                Ok(true)
            }
            Ok(Err(failure)) => {
                let _ = tx.rollback().await;
                Err(failure)
            }
            Err(panic) => {
                let _ = tx.rollback().await;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(Failure::Retry(anyhow::anyhow!("the handler panicked: {message}")))
            }
        }
    }

    async fn dead_letter(
        &self,
        event_id: Option<Uuid>,
        kind: &str,
        payload: String,
        error: String,
        attempts: u32,
    ) -> Outcome {
        let now = Utc::now();
        let letter = DeadLetter {
            id: Uuid::now_v7(),
            consumer: self.name.clone(),
            event_id: event_id.map(|id| id.to_string()),
            event_type: kind.to_owned(),
            payload,
            error,
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            first_failed_at: now,
            last_failed_at: now,
        };
        match store::insert_dead_letter(&self.db, &letter).await {
            Ok(()) => Outcome::DeadLettered,
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "cannot store a dead letter; the event will come again");
                Outcome::Deferred
            }
        }
    }

    /// Handles a dead letter again (after its handler was fixed). Applied, it
    /// leaves the dead letters in the same transaction; failing, it stays with
    /// the new error.
    pub async fn replay(&self, id: Uuid) -> Result<Replay, ReplayError> {
        let letter = store::dead_letter(&self.db, id).await?.ok_or(ReplayError::NotFound(id))?;
        let envelope: Envelope =
            serde_json::from_str(&letter.payload).map_err(|e| ReplayError::Malformed(e.to_string()))?;
        let handler = self
            .handlers
            .by_type
            .get(&envelope.kind)
            .cloned()
            .ok_or_else(|| ReplayError::NoHandler(envelope.kind.clone(), self.name.clone()))?;
        let attempt = u32::try_from(letter.attempts).unwrap_or(0).saturating_add(1);
        let trace =
            envelope.traceparent.as_deref().and_then(TraceContext::parse_parent).unwrap_or_else(TraceContext::new_root);
        match self.apply(&handler, &envelope, &trace, attempt, Some(id)).await {
            Ok(true) => Ok(Replay::Applied),
            Ok(false) => Ok(Replay::AlreadyApplied),
            Err(failure) => {
                let message = failure.to_string();
                store::dead_letter_failed_again(&self.db, id, &message, Utc::now()).await?;
                Ok(Replay::Failed(message))
            }
        }
    }

    /// Replays every dead letter of this consumer, oldest first.
    pub async fn replay_all(&self) -> Result<Vec<(Uuid, Result<Replay, ReplayError>)>, ReplayError> {
        let mut results = Vec::new();
        for letter in store::dead_letters(&self.db).await?.into_iter().filter(|l| l.consumer == self.name) {
            results.push((letter.id, self.replay(letter.id).await));
        }
        Ok(results)
    }
}

/// The lane of a delivery: by subject, so one aggregate's events stay in order.
fn lane_of(delivery: &Delivery, lanes: usize) -> usize {
    #[derive(Deserialize)]
    struct Subject<'a> {
        #[serde(borrow)]
        subject: Option<std::borrow::Cow<'a, str>>,
    }
    let subject = serde_json::from_slice::<Subject<'_>>(&delivery.payload).ok().and_then(|s| s.subject);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    subject.as_deref().unwrap_or("").hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}
