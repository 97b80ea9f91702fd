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

/// What a handler returns (inside its `anyhow::Error`) for an event that
/// can never be applied — it contradicts itself — so that it goes to the
/// dead letters at once instead of being retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// A handler's error as the consumer treats it: [`Rejected`] dead-letters
/// at once, anything else is retried.
fn failure(e: anyhow::Error) -> Failure {
    if e.is::<Rejected>() { Failure::Reject(e) } else { Failure::Retry(e) }
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
                f(tx, event, meta).await.map_err(failure)
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
            Box::pin(async move { f(tx, envelope, meta).await.map_err(failure) })
        });
        self.by_type.insert(kind.into(), handler);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
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
    /// Keeps this deployment's streams, subjects, exchanges and queues apart
    /// from others' on a shared NATS or RabbitMQ server (see
    /// [`Namespace`](super::Namespace)); empty: the plain names.
    pub namespace: String,
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
            namespace: String::new(),
        }
    }
}

impl ConsumerSettings {
    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self.backoff_base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
        Duration::from_millis(ms.min(self.backoff_max_ms))
    }
}

/// The scope a handler runs in: events it records continue the trace of the
/// event it handles, and its problems and logs quote the event id.
fn handler_scope(envelope: &Envelope, trace: &TraceContext) -> crate::scope::Scope {
    crate::scope::Scope { request_id: Arc::from(envelope.id.to_string()), trace: *trace }
}

/// Days inbox records are kept: far longer than any broker redelivers.
const INBOX_RETENTION_DAYS: i64 = 7;

/// Most deliveries of one lane applied in one transaction.
const MAX_BATCH: usize = 64;

/// A delivery ready for its handler.
struct Candidate {
    envelope: Envelope,
    handler: HandlerFn,
    trace: TraceContext,
}

enum Screened {
    Done(Outcome),
    Apply(Box<Candidate>),
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

/// The labels of `bus_handler_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RetryLabels {
    consumer: String,
}

/// A durable consumer: a name, a database with the bus tables, handlers.
#[derive(Clone)]
pub struct Consumer {
    name: String,
    db: Db,
    handlers: Handlers,
    settings: ConsumerSettings,
    outcomes: prometheus_client::metrics::family::Family<OutcomeLabels, prometheus_client::metrics::counter::Counter>,
    /// Handler failures that were tried again (the attempt after a
    /// transient error), by consumer.
    retries: prometheus_client::metrics::family::Family<RetryLabels, prometheus_client::metrics::counter::Counter>,
    /// How old the last event it applied was when applied (commit to apply).
    lag: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("handlers", &self.handlers).finish()
    }
}

impl Consumer {
    pub fn new(name: impl Into<String>, db: Db, handlers: Handlers) -> Self {
        Self {
            name: name.into(),
            db,
            handlers,
            settings: ConsumerSettings::default(),
            outcomes: Default::default(),
            retries: Default::default(),
            lag: Default::default(),
        }
    }

    /// Adds `bus_consumed_total{consumer,outcome}`, `bus_handler_retries_total`
    /// and `bus_consumer_lag_seconds` to a service's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "bus_consumed",
            "Deliveries handled, by outcome (applied, duplicate, ignored, dead_lettered, deferred)",
            self.outcomes.clone(),
        );
        registry.register(
            "bus_handler_retries",
            "Handler attempts that failed transiently and were tried again",
            self.retries.clone(),
        );
        registry.register(
            "bus_consumer_lag_seconds",
            "Age of the last event applied, from its commit to its handling (how far behind the consumer is)",
            self.lag.clone(),
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
        // Inbox records only need to outlive redeliveries; keep a week.
        let pruner = {
            let db = this.db.clone();
            let token = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) =
                        store::prune_inbox(&db, Utc::now() - chrono::Duration::days(INBOX_RETENTION_DAYS)).await
                    {
                        tracing::warn!(error = %e, "pruning the inbox failed");
                    }
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            })
        };
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
                    while let Some(first) = rx.recv().await {
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        me.process_batch(batch).await;
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
        let _ = pruner.await;
    }

    /// Handles one delivery to the end: applied, duplicate, ignored or
    /// dead-lettered (then acknowledged), or deferred (negatively acknowledged).
    pub async fn process(&self, delivery: Delivery) -> Outcome {
        let outcome = self.decide(&delivery).await;
        self.settle(delivery, outcome).await
    }

    async fn decide(&self, delivery: &Delivery) -> Outcome {
        match self.screen(delivery).await {
            Screened::Done(outcome) => outcome,
            Screened::Apply(candidate) => self.apply_with_retries(delivery, &candidate).await,
        }
    }

    /// Settles what needs no handler (malformed, not ours, crash-looping) and
    /// readies the rest.
    async fn screen(&self, delivery: &Delivery) -> Screened {
        let envelope = match serde_json::from_slice::<Envelope>(&delivery.payload) {
            Ok(e) => e,
            Err(e) => {
                let raw = String::from_utf8_lossy(&delivery.payload).into_owned();
                let error = format!("not a CloudEvents envelope: {e}");
                return Screened::Done(self.dead_letter(None, &delivery.kind, raw, error, 0).await);
            }
        };
        let Some(handler) = self.handlers.by_type.get(&envelope.kind).cloned() else {
            return Screened::Done(Outcome::Ignored);
        };
        if delivery.delivery_count > self.settings.max_deliveries {
            let error = format!(
                "delivered {} times without being settled (the consumer may be crashing on it)",
                delivery.delivery_count
            );
            let payload = String::from_utf8_lossy(&delivery.payload).into_owned();
            return Screened::Done(self.dead_letter(Some(envelope.id), &envelope.kind, payload, error, 0).await);
        }
        let trace =
            envelope.traceparent.as_deref().and_then(TraceContext::parse_parent).unwrap_or_else(TraceContext::new_root);
        Screened::Apply(Box::new(Candidate { envelope, handler, trace }))
    }

    /// The span an event is handled in: exported, when traces are, as a
    /// child of the span that published it.
    fn span(&self, c: &Candidate) -> tracing::Span {
        let span = tracing::info_span!(
            "event",
            consumer = %self.name,
            event_id = %c.envelope.id,
            event_type = %c.envelope.kind,
            trace_id = %c.trace.trace_id_hex(),
            span_id = %c.trace.span_id_hex(),
        );
        // The sampling decision stays the envelope's, which is the
        // publisher's: the handler's own calls carry that.
        crate::telemetry::adopt(&span, &mut c.trace.clone());
        crate::telemetry::describe(
            &span,
            || format!("{} process", c.envelope.kind),
            || {
                use opentelemetry::KeyValue;
                vec![
                    KeyValue::new("messaging.operation.type", "process"),
                    KeyValue::new("messaging.message.id", c.envelope.id.to_string()),
                    KeyValue::new("messaging.destination.name", c.envelope.kind.clone()),
                    KeyValue::new("messaging.consumer.group.name", self.name.clone()),
                ]
            },
        );
        span
    }

    /// Tries one event up to `max_attempts` times, then dead-letters it.
    async fn apply_with_retries(&self, delivery: &Delivery, c: &Candidate) -> Outcome {
        async {
            let mut last = String::new();
            let mut attempts = 0;
            for attempt in 1..=self.settings.max_attempts.max(1) {
                attempts = attempt;
                match self.apply(&c.handler, &c.envelope, &c.trace, attempt, None).await {
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
                            self.retries.get_or_create(&RetryLabels { consumer: self.name.clone() }).inc();
                            tokio::time::sleep(self.settings.backoff(attempt)).await;
                        }
                    }
                }
            }
            tracing::error!(attempts, error = %last, "event dead-lettered");
            let payload = String::from_utf8_lossy(&delivery.payload).into_owned();
            self.dead_letter(Some(c.envelope.id), &c.envelope.kind, payload, last, attempts).await
        }
        .instrument(self.span(c))
        .await
    }

    /// Handles deliveries that arrived together in one lane, in order, as few
    /// transactions as possible: each event under a savepoint of one
    /// transaction, so a commit (an fsync) serves many events. A failing event
    /// ends the batch: what came before it commits, it goes through the retry
    /// path alone, and the rest follow — so one subject's order holds.
    pub async fn process_batch(&self, deliveries: Vec<Delivery>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(deliveries.len());
        let mut pending: std::collections::VecDeque<(Delivery, Candidate)> = std::collections::VecDeque::new();
        for delivery in deliveries {
            match self.screen(&delivery).await {
                Screened::Done(outcome) => outcomes.push(self.settle(delivery, outcome).await),
                Screened::Apply(c) => pending.push_back((delivery, *c)),
            }
        }
        while !pending.is_empty() {
            let batch: Vec<(Delivery, Candidate)> = pending.drain(..).collect();
            let (done, failed_at) = self.apply_batch(&batch).await;
            let mut batch = batch.into_iter();
            for outcome in done {
                if let Some((delivery, c)) = batch.next() {
                    self.note_lag(&c, &outcome);
                    outcomes.push(self.settle(delivery, outcome).await);
                }
            }
            if failed_at.is_some()
                && let Some((delivery, c)) = batch.next()
            {
                let outcome = self.apply_with_retries(&delivery, &c).await;
                self.note_lag(&c, &outcome);
                outcomes.push(self.settle(delivery, outcome).await);
            }
            pending.extend(batch);
        }
        outcomes
    }

    /// Applies `batch` in one transaction, event by event, stopping at the
    /// first failure. Returns the outcomes of the events committed (a prefix)
    /// and the index of the event that failed, if one did.
    async fn apply_batch(&self, batch: &[(Delivery, Candidate)]) -> (Vec<Outcome>, Option<usize>) {
        let Ok(mut tx) = self.db.begin().await else { return (Vec::new(), Some(0)) };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut failed_at = None;
        for (i, (_, c)) in batch.iter().enumerate() {
            match self.apply_in(&mut tx, c).instrument(self.span(c)).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(()) => {
                    failed_at = Some(i);
                    break;
                }
            }
        }
        if outcomes.is_empty() {
            let _ = tx.rollback().await;
            return (Vec::new(), failed_at.or(Some(0)));
        }
        match tx.commit().await {
            Ok(()) => (outcomes, failed_at),
            // Nothing was applied: the whole batch takes the slow path.
            Err(_) => (Vec::new(), Some(0)),
        }
    }

    /// One event inside a batch transaction, under a savepoint.
    async fn apply_in(&self, tx: &mut Tx, c: &Candidate) -> Result<Outcome, ()> {
        exec(tx, "SAVEPOINT panal_event").await.map_err(|_| ())?;
        let id = c.envelope.id.to_string();
        let claimed = store::inbox_claim(tx, &self.name, &id, &c.envelope.kind, Utc::now()).await;
        let result = match claimed {
            Err(_) => Err(()),
            Ok(false) => Ok(Outcome::Duplicate),
            Ok(true) => {
                let meta = EventMeta {
                    id: c.envelope.id,
                    source: c.envelope.source.clone(),
                    subject: c.envelope.subject.clone(),
                    time: c.envelope.time,
                    traceparent: c.envelope.traceparent.clone(),
                    trace: c.trace,
                    attempt: 1,
                };
                let handled = AssertUnwindSafe((c.handler)(tx, &c.envelope, &meta)).catch_unwind();
                match handler_scope(&c.envelope, &c.trace).run(handled).await {
                    Ok(Ok(())) => Ok(Outcome::Applied),
                    _ => Err(()),
                }
            }
        };
        match result {
            Ok(outcome) => {
                exec(tx, "RELEASE SAVEPOINT panal_event").await.map_err(|_| ())?;
                Ok(outcome)
            }
            Err(()) => {
                let _ = exec(tx, "ROLLBACK TO SAVEPOINT panal_event").await;
                let _ = exec(tx, "RELEASE SAVEPOINT panal_event").await;
                Err(())
            }
        }
    }

    /// The consumer's lag, from an event it applied.
    fn note_lag(&self, c: &Candidate, outcome: &Outcome) {
        if matches!(outcome, Outcome::Applied) {
            let age = (chrono::Utc::now() - c.envelope.time).as_seconds_f64().max(0.0);
            self.lag.set(age);
        }
    }

    async fn settle(&self, delivery: Delivery, outcome: Outcome) -> Outcome {
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
        let result = handler_scope(envelope, trace)
            .run(AssertUnwindSafe(handler(&mut tx, envelope, &meta)).catch_unwind())
            .await;
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

/// Runs one statement (a savepoint command) in `tx`.
async fn exec(tx: &mut Tx, sql: &'static str) -> Result<(), sqlx::Error> {
    crate::with_tx!(tx, conn => sqlx::query(sql).execute(conn).await.map(|_| ()))
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
