//! RabbitMQ (AMQP 0-9-1).
//!
//! Events go to the durable topic exchange `panal.events` with the event type
//! as routing key, persistent, with publisher confirms. Each consumer has a
//! durable quorum queue `panal.<consumer>` bound to its event types, manual
//! acks, and a delivery limit past which RabbitMQ moves the message to the
//! dead-letter exchange `panal.dead-letters` (queue `panal.dead-letters`): a
//! safety net for messages that crash their consumer before it can
//! dead-letter them itself. With a `bus.namespace`, say `staging`, every one
//! of those names starts with `staging.` (`staging.panal.events`, …).

use std::time::Duration;

use bytes::Bytes;
use contracts::Envelope;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{Acker, Broker, BusError, Deliveries, Delivery, Namespace};

const BACKEND: &str = "rabbitmq";
/// Deliveries after which RabbitMQ dead-letters a message itself; consumers
/// dead-letter well before (see `ConsumerSettings::max_deliveries`).
const DELIVERY_LIMIT: i64 = 20;
/// Unacknowledged messages one consumer may hold.
const PREFETCH: u16 = 256;

fn err(e: impl std::fmt::Display) -> BusError {
    BusError::new(BACKEND, e)
}

pub struct Amqp {
    url: String,
    names: Names,
    /// The connection and the publishing channel (in confirm mode), replaced
    /// when the connection is lost: lapin does not reconnect by itself.
    link: Mutex<Option<Link>>,
}

struct Link {
    connection: Connection,
    publisher: Channel,
}

impl Link {
    fn alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// The namespace's exchange and queue names.
struct Names {
    /// Where events are published (topic, routing key = event type).
    exchange: String,
    /// Where RabbitMQ moves what it dead-letters itself (fanout and queue).
    dead_letters: String,
    /// Before a consumer's name, for its queue.
    queue_prefix: String,
}

impl Names {
    fn new(namespace: &Namespace) -> Self {
        let p = namespace.prefix();
        Self {
            exchange: format!("{p}panal.events"),
            dead_letters: format!("{p}panal.dead-letters"),
            queue_prefix: format!("{p}panal."),
        }
    }

    fn queue(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.queue_prefix)
    }
}

impl Amqp {
    pub async fn connect(url: &str, namespace: Namespace) -> Result<Self, BusError> {
        let names = Names::new(&namespace);
        let link = Self::open(url, &names).await?;
        Ok(Self { url: url.to_owned(), names, link: Mutex::new(Some(link)) })
    }

    async fn open(url: &str, names: &Names) -> Result<Link, BusError> {
        let connection =
            tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, ConnectionProperties::default()))
                .await
                .map_err(|_| err("no answer from RabbitMQ within 10 s"))?
                .map_err(err)?;
        let channel = connection.create_channel().await.map_err(err)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(err)?;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(names.exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .map_err(err)?;
        channel
            .exchange_declare(names.dead_letters.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(err)?;
        channel
            .queue_declare(
                names.dead_letters.as_str().into(),
                QueueDeclareOptions { durable: true, ..Default::default() },
                quorum(),
            )
            .await
            .map_err(err)?;
        channel
            .queue_bind(
                names.dead_letters.as_str().into(),
                names.dead_letters.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        Ok(Link { connection, publisher: channel })
    }

    /// The live link, reconnecting first if the last one was lost.
    async fn link(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Link>>, BusError> {
        let mut guard = self.link.lock().await;
        if !guard.as_ref().is_some_and(Link::alive) {
            *guard = None;
            *guard = Some(Self::open(&self.url, &self.names).await?);
            tracing::info!("rabbitmq: connected");
        }
        Ok(guard)
    }

    /// A new channel on the live connection.
    async fn channel(&self) -> Result<Channel, BusError> {
        let guard = self.link().await?;
        let link = guard.as_ref().ok_or_else(|| err("not connected"))?;
        link.connection.create_channel().await.map_err(err)
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}

struct AmqpAcker(lapin::Acker);

/// The longest an acknowledgement is waited for. On a connection the broker
/// dropped (a restart), lapin's acknowledgement may never resolve; the
/// delivery comes back anyway (unacknowledged on a dead channel), and the
/// consumer must get on to subscribing again rather than wait forever.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

async fn settled<F: Future<Output = lapin::Result<()>>>(what: &str, f: F) -> Result<(), BusError> {
    match tokio::time::timeout(SETTLE_TIMEOUT, f).await {
        Ok(r) => r.map_err(err),
        Err(_) => Err(err(format!("rabbitmq: the {what} was not confirmed in {}s", SETTLE_TIMEOUT.as_secs()))),
    }
}

impl Acker for AmqpAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            settled("acknowledgement", async { self.0.ack(BasicAckOptions::default()).await.map(|_| ()) }).await
        })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            // RabbitMQ requeues at once; wait a little so a consumer that cannot
            // handle anything right now does not spin.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let options = BasicNackOptions { requeue: true, ..Default::default() };
            settled("negative acknowledgement", async { self.0.nack(options).await.map(|_| ()) }).await
        })
    }
}

/// How many times the message was delivered, this time included. Quorum
/// queues count earlier deliveries in `x-delivery-count`.
fn delivery_count(properties: &BasicProperties) -> u32 {
    let earlier = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::ShortInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(n)),
            _ => None,
        })
        .unwrap_or(0);
    earlier + 1
}

impl Broker for Amqp {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn publish<'a>(&'a self, events: &'a [Envelope]) -> BoxFuture<'a, Result<usize, BusError>> {
        Box::pin(async move {
            let guard = self.link().await?;
            let channel = &guard.as_ref().ok_or_else(|| err("not connected"))?.publisher;
            let mut pending = Vec::with_capacity(events.len());
            for event in events {
                let payload = serde_json::to_vec(event).map_err(err)?;
                let properties = BasicProperties::default()
                    .with_message_id(ShortString::from(event.id.to_string()))
                    .with_content_type("application/cloudevents+json".into())
                    .with_type(ShortString::from(event.kind.clone()))
                    .with_delivery_mode(2);
                match channel
                    .basic_publish(
                        self.names.exchange.as_str().into(),
                        event.kind.clone().into(),
                        BasicPublishOptions::default(),
                        &payload,
                        properties,
                    )
                    .await
                {
                    Ok(confirm) => pending.push(confirm),
                    Err(e) => {
                        tracing::warn!(error = %e, "rabbitmq: publish failed");
                        break;
                    }
                }
            }
            let mut confirmed = 0;
            for confirm in pending {
                match confirm.await {
                    Ok(Confirmation::Ack(_)) => confirmed += 1,
                    Ok(other) => {
                        tracing::warn!(?other, "rabbitmq: publish not confirmed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rabbitmq: publish not confirmed");
                        break;
                    }
                }
            }
            Ok(confirmed)
        })
    }

    fn subscribe<'a>(&'a self, consumer: &'a str, types: &'a [String]) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(async move {
            let channel = self.channel().await?;
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(err)?;
            let queue = self.names.queue(consumer);
            let mut args = quorum();
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.names.dead_letters.as_str().into()),
            );
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
            channel
                .queue_declare(queue.clone().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
                .await
                .map_err(err)?;
            for kind in types {
                channel
                    .queue_bind(
                        queue.clone().into(),
                        self.names.exchange.as_str().into(),
                        kind.clone().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(err)?;
            }
            let tag = format!("{consumer}-{}", uuid::Uuid::new_v4().simple());
            let consumer = channel
                .basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .map_err(err)?;
            // The channel must live as long as the consumer reads from it.
            let deliveries: Deliveries = Box::pin(consumer.map(move |d| {
                let _keep = &channel;
                let d = d.map_err(err)?;
                let count = delivery_count(&d.properties);
                Ok(Delivery::new(d.routing_key.to_string(), Bytes::from(d.data), count, Box::new(AmqpAcker(d.acker))))
            }));
            Ok(deliveries)
        })
    }

    fn tail(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BusError>>, BusError>> {
        Box::pin(async move {
            let channel = self.channel().await?;
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            channel
                .queue_bind(
                    queue.name().clone(),
                    self.names.exchange.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    "tail".into(),
                    BasicConsumeOptions { no_ack: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            let tail: BoxStream<'static, Result<Bytes, BusError>> = Box::pin(consumer.map(move |d| {
                let _keep = &channel;
                d.map(|d| Bytes::from(d.data)).map_err(err)
            }));
            Ok(tail)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.link().await.map(|_| ()) })
    }

    fn remove_consumer<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let channel = self.channel().await?;
            channel
                .queue_delete(self.names.queue(consumer).into(), lapin::options::QueueDeleteOptions::default())
                .await
                .map_err(err)?;
            let _ = channel.close(200, "done".into()).await;
            Ok(())
        })
    }
}
