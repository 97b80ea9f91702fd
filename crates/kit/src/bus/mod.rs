//! The event bus: how services react to each other's changes without calling
//! each other, and without losing or double-applying anything.
//!
//! ```text
//!  producer service                      broker                   consumer service
//!  ┌───────────────────────┐                                 ┌─────────────────────────┐
//!  │ tx: change + outbox   │── relay ──▶ embedded │ NATS │ ──▶│ tx: inbox id + handler  │
//!  └───────────────────────┘  (publish,   JetStream │ AMQP    │ (retries, dead letters) │
//!                              confirm,                      └─────────────────────────┘
//!                              mark sent)
//! ```
//!
//! - [`outbox`](crate::outbox): events are written in the same transaction as
//!   the change that caused them.
//! - [`relay`]: publishes the outbox in order and marks rows sent only after the
//!   broker confirmed them; a crash in between republishes (brokers deduplicate
//!   by event id where they can, inboxes everywhere).
//! - [`consumer`]: each delivery is handled in a transaction that also records
//!   the event id in the inbox, so a redelivered event changes nothing twice;
//!   failures are retried with backoff, then dead-lettered into the consumer's
//!   database, from where they can be listed and replayed.
//! - Brokers ([`Broker`]): [`embedded`] (a durable log in a SQLite file, for
//!   `panal up`), [`nats`] (JetStream) and [`amqp`] (RabbitMQ), chosen by
//!   `PANAL_BUS_URL`. All three pass the same conformance suite.

pub mod amqp;
pub mod consumer;
pub mod embedded;
pub mod follow;
pub mod nats;
pub mod probe;
pub mod relay;
pub mod store;

use std::sync::Arc;

use bytes::Bytes;
use contracts::Envelope;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use consumer::{Consumer, ConsumerSettings, EventMeta, Handlers, Outcome, Rejected, Replay, Tx};
pub use follow::follow;
pub use relay::{OutboxSignal, Relay};

/// A broker failure. Brokers are retried; nothing here is a client error.
#[derive(Debug, thiserror::Error)]
#[error("event bus ({backend}): {message}")]
pub struct BusError {
    pub backend: &'static str,
    pub message: String,
}

impl BusError {
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self { backend, message: message.to_string() }
    }
}

/// A message handed to a consumer. It must be acknowledged (done) or negatively
/// acknowledged (deliver again later); dropped unacknowledged, it is delivered
/// again after the broker's timeout.
pub struct Delivery {
    /// The event type (subject or routing key).
    pub kind: String,
    /// The raw CloudEvents JSON, parsed by the consumer so that a malformed
    /// message can be dead-lettered rather than lost.
    pub payload: Bytes,
    /// How many times the broker has handed this message out, this time included.
    pub delivery_count: u32,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(kind: String, payload: Bytes, delivery_count: u32, acker: Box<dyn Acker>) -> Self {
        Self { kind, payload, delivery_count, acker }
    }

    /// The message is done with: the broker forgets it.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// The message could not be handled now: deliver it again later.
    pub async fn nack(self) -> Result<(), BusError> {
        self.acker.nack().await
    }
}

/// How a broker settles one delivery.
pub trait Acker: Send + Sync {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
}

/// Deliveries of a durable subscription.
pub type Deliveries = BoxStream<'static, Result<Delivery, BusError>>;

/// What every backend provides.
pub trait Broker: Send + Sync + 'static {
    /// `embedded`, `nats` or `rabbitmq`.
    fn backend(&self) -> &'static str;

    /// Publishes `events` in order and returns how many of them, from the
    /// first, the broker has durably accepted (confirmed). Publishing an event
    /// id again must be harmless (consumers deduplicate; some brokers too).
    fn publish<'a>(&'a self, events: &'a [Envelope]) -> BoxFuture<'a, Result<usize, BusError>>;

    /// The durable subscription named `consumer` to `types`: every event of
    /// those types published since the subscription was first created, each
    /// handed to one of the subscription's subscribers until acknowledged.
    fn subscribe<'a>(&'a self, consumer: &'a str, types: &'a [String]) -> BoxFuture<'a, Result<Deliveries, BusError>>;

    /// Every event published from now on, without acknowledgement (for
    /// `panal events tail`).
    fn tail(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BusError>>, BusError>>;

    /// Whether the broker answers, for `/readyz`.
    fn check(&self) -> BoxFuture<'_, Result<(), BusError>>;

    /// Forgets the durable subscription `consumer` and whatever it had not
    /// acknowledged (an operator's clean-up; tests use it too).
    fn remove_consumer<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<(), BusError>>;
}

/// A handle on the configured broker, shared by every service of a process.
pub type Bus = Arc<dyn Broker>;

/// Connects to the broker `config` names (`bus_url`; the embedded bus under
/// the data directory by default).
pub async fn connect_configured(config: &crate::config::Config) -> anyhow::Result<Bus> {
    use anyhow::Context as _;
    let url = config.settings.bus_url.as_ref().map(|s| s.expose().as_str());
    let settings: ConsumerSettings = config.section("bus")?;
    connect(url, &config.settings.data_dir, &settings).await.context("connecting to the event bus")
}

/// Connects to the broker named by `url`: `nats://…`, `amqp://…`, or `None` for
/// the embedded bus kept in `<data_dir>/bus.db`.
pub async fn connect(
    url: Option<&str>,
    data_dir: &std::path::Path,
    settings: &ConsumerSettings,
) -> Result<Bus, BusError> {
    match url {
        None | Some("") | Some("embedded") => {
            let path = data_dir.join("bus.db");
            Ok(Arc::new(embedded::Embedded::open(&path).await?))
        }
        Some(u) if u.starts_with("nats://") => {
            let namespace = Namespace::new(&settings.namespace)?;
            let ack_wait = std::time::Duration::from_millis(settings.ack_wait_ms);
            Ok(Arc::new(nats::Nats::connect(u, ack_wait, namespace).await?))
        }
        Some(u) if u.starts_with("amqp://") || u.starts_with("amqps://") => {
            Ok(Arc::new(amqp::Amqp::connect(u, Namespace::new(&settings.namespace)?).await?))
        }
        Some(u) if u.starts_with("sqlite:") => Ok(Arc::new(embedded::Embedded::open_url(u).await?)),
        Some(_) => {
            Err(BusError::new("config", "unsupported bus URL (expected nats://, amqp:// or none for the embedded bus)"))
        }
    }
}

/// `bus.namespace`: what keeps one deployment's objects on a shared broker
/// apart from another's (staging and production on one NATS server, or
/// every CI run on this machine's). Empty — the default — is the names
/// Panal always had; otherwise every NATS stream and subject and every
/// RabbitMQ exchange and queue carries the namespace, so a consumer of one
/// namespace can never receive another's events. The embedded bus is one
/// file per data directory and has no use for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(String);

/// Longest namespace: broker names have limits (RabbitMQ's 255 bytes,
/// NATS's stream names), and a namespace is a short label.
const NAMESPACE_MAX: usize = 32;

impl Namespace {
    /// Lowercase ASCII letters, digits and `-`, starting with a letter or a
    /// digit, at most 32 characters — safe in a NATS subject token, a NATS
    /// stream name and a RabbitMQ name alike.
    pub fn new(name: &str) -> Result<Self, BusError> {
        let fits = name.len() <= NAMESPACE_MAX
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if fits {
            Ok(Self(name.to_owned()))
        } else {
            Err(BusError::new(
                "config",
                format!(
                    "bus.namespace {name:?} is not a namespace: use up to {NAMESPACE_MAX} lowercase letters, digits \
                     and '-', starting with a letter or digit"
                ),
            ))
        }
    }

    /// What goes before a subject, an exchange or a queue name: `""` or
    /// `"staging."`.
    pub fn prefix(&self) -> String {
        if self.0.is_empty() { String::new() } else { format!("{}.", self.0) }
    }

    /// The JetStream stream holding the namespace's events: `PANAL`, or
    /// `PANAL_STAGING` (stream names take no dots).
    pub fn nats_stream(&self) -> String {
        if self.0.is_empty() {
            "PANAL".to_owned()
        } else {
            format!("PANAL_{}", self.0.to_uppercase().replace('-', "_"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Namespace;

    #[test]
    fn namespaces_are_short_lowercase_labels() {
        for good in ["", "staging", "ci-42", "0a"] {
            assert!(Namespace::new(good).is_ok(), "{good}");
        }
        for bad in ["Staging", "a.b", "a>", "a*", "-a", "a_b", "a b", &"x".repeat(33)] {
            assert!(Namespace::new(bad).is_err(), "{bad}");
        }
        assert_eq!(Namespace::new("").unwrap().prefix(), "");
        assert_eq!(Namespace::new("").unwrap().nats_stream(), "PANAL");
        assert_eq!(Namespace::new("ci-42").unwrap().prefix(), "ci-42.");
        assert_eq!(Namespace::new("ci-42").unwrap().nats_stream(), "PANAL_CI_42");
    }
}
