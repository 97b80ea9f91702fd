//! NATS JetStream.
//!
//! One stream, `PANAL`, holds every subject `panal.>` (an event's subject is its
//! type). With a `bus.namespace`, say `staging`, the stream is `PANAL_STAGING`
//! and the subjects `staging.panal.>`: durable consumers live in their
//! stream, so they are the namespace's too. Publishes carry the event id as `Nats-Msg-Id`, so the stream drops a
//! republished event within its duplicate window. Each consumer is a durable
//! pull consumer with explicit acks and bounded redeliveries.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use bytes::Bytes;
use contracts::Envelope;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use super::{Acker, Broker, BusError, Deliveries, Delivery, Namespace};

const BACKEND: &str = "nats";

/// JetStream stops redelivering after this many deliveries; consumers
/// dead-letter well before (see `ConsumerSettings::max_deliveries`).
const MAX_DELIVER: i64 = 20;
/// Unacknowledged messages one consumer may hold.
const MAX_ACK_PENDING: i64 = 512;
/// How long the stream remembers event ids to drop republished ones.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the stream keeps events (consumers created later replay them).
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn err(e: impl std::fmt::Display) -> BusError {
    BusError::new(BACKEND, e)
}

pub struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// How long a delivery may stay unacknowledged before JetStream hands it
    /// out again.
    ack_wait: Duration,
    /// `""` or `"<namespace>."`, before every subject.
    prefix: String,
}

impl Nats {
    pub async fn connect(url: &str, ack_wait: Duration, namespace: Namespace) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(err)?;
        let js = jetstream::new(client.clone());
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            js.get_or_create_stream(stream::Config {
                name: namespace.nats_stream(),
                subjects: vec![format!("{}panal.>", namespace.prefix())],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: RETENTION,
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| err(format!("no answer from JetStream at {}", redact(url))))?
        .map_err(err)?;
        Ok(Self { client, js, stream, ack_wait, prefix: namespace.prefix() })
    }

    /// Every subject of this namespace.
    fn all_subjects(&self) -> String {
        format!("{}panal.>", self.prefix)
    }
}

/// The URL without credentials, for messages.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_and_user, host)) => {
            let scheme = scheme_and_user.split("://").next().unwrap_or("nats");
            format!("{scheme}://…@{host}")
        }
        None => url.to_owned(),
    }
}

struct NatsAcker(jetstream::Message);

impl Acker for NatsAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move { self.0.ack().await.map_err(err) })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move { self.0.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await.map_err(err) })
    }
}

impl Broker for Nats {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn publish<'a>(&'a self, events: &'a [Envelope]) -> BoxFuture<'a, Result<usize, BusError>> {
        Box::pin(async move {
            // Send every publish first, then collect the acknowledgements in
            // order: the server keeps the order of one connection.
            let mut pending = Vec::with_capacity(events.len());
            for event in events {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.to_string().as_str());
                headers.insert("Content-Type", "application/cloudevents+json");
                let payload = Bytes::from(serde_json::to_vec(event).map_err(err)?);
                let subject = format!("{}{}", self.prefix, event.kind);
                match self.js.publish_with_headers(subject, headers, payload).await {
                    Ok(ack) => pending.push(ack),
                    Err(e) => {
                        tracing::warn!(error = %e, "nats: publish failed");
                        break;
                    }
                }
            }
            let mut confirmed = 0;
            for ack in pending {
                match ack.await {
                    Ok(_) => confirmed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "nats: publish not acknowledged");
                        break;
                    }
                }
            }
            Ok(confirmed)
        })
    }

    fn subscribe<'a>(&'a self, consumer: &'a str, types: &'a [String]) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(async move {
            // Filtering on several subjects needs NATS 2.10; with more than one
            // type the consumer takes every event and ignores the others.
            let filter_subject = match types {
                [one] => format!("{}{one}", self.prefix),
                _ => self.all_subjects(),
            };
            let config = pull::Config {
                durable_name: Some(consumer.to_owned()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                max_deliver: MAX_DELIVER,
                max_ack_pending: MAX_ACK_PENDING,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            };
            // Creates the durable consumer, or updates its subjects.
            let pull = self.stream.create_consumer(config).await.map_err(err)?;
            let messages = pull.messages().await.map_err(err)?;
            let prefix = self.prefix.clone();
            let deliveries: Deliveries = Box::pin(messages.map_err(err).map(move |m| {
                let message = m?;
                let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                let subject = message.subject.as_str();
                let kind = subject.strip_prefix(prefix.as_str()).unwrap_or(subject).to_owned();
                let payload = message.payload.clone();
                Ok(Delivery::new(kind, payload, u32::try_from(delivered).unwrap_or(1), Box::new(NatsAcker(message))))
            }));
            Ok(deliveries)
        })
    }

    fn tail(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BusError>>, BusError>> {
        Box::pin(async move {
            let config = pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                filter_subject: self.all_subjects(),
                ..Default::default()
            };
            let ordered = self.stream.create_consumer(config).await.map_err(err)?;
            let messages = ordered.messages().await.map_err(err)?;
            let tail: BoxStream<'static, Result<Bytes, BusError>> =
                Box::pin(messages.map(|m| m.map(|m| m.payload.clone()).map_err(err)));
            Ok(tail)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(2), self.client.flush())
                .await
                .map_err(|_| err("no answer within 2 s"))?
                .map_err(err)
        })
    }

    fn remove_consumer<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move { self.stream.delete_consumer(consumer).await.map(|_| ()).map_err(err) })
    }
}
