//! `panal dev bus-raw`: the broker alone, through the same client libraries
//! as the bus (async-nats, lapin) with the same settings (durable storage,
//! confirmed publishes in pipelined batches, explicit acks), but no outbox,
//! no inbox, no database. What the bus adds is the difference.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// Messages published before their confirmations are awaited.
const BATCH: u64 = 256;

fn payload(n: u64) -> Bytes {
    let now = chrono::Utc::now().timestamp_micros();
    // About the size of an event envelope.
    Bytes::from(format!(
        r#"{{"specversion":"1.0","id":"{}","source":"raw","type":"panalraw.tick.v1","subject":"s{}","time":"{now}","datacontenttype":"application/json","data":{{"n":{n}}},"sent_us":{now}}}"#,
        uuid::Uuid::now_v7(),
        n % 16
    ))
}

fn sent_us(payload: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("sent_us")?.as_i64()
}

#[allow(clippy::print_stdout)]
fn report(count: u64, started: Instant, mut latencies: Vec<i64>) {
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies.get(((latencies.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0) as f64 / 1000.0
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"messages\":{count},\"seconds\":{secs:.2},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        count as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}

pub async fn run(url: &str, count: u64) -> anyhow::Result<()> {
    if url.starts_with("nats://") { nats(url, count).await } else { amqp(url, count).await }
}

async fn nats(url: &str, count: u64) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let client = async_nats::connect(url).await.context("connecting to NATS")?;
    let js = jetstream::new(client);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "PANALRAW".into(),
            subjects: vec!["panalraw.>".into()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await?;
    let subject = format!("panalraw.{tag}");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("raw{tag}")),
            filter_subject: subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 512,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (done_tx, mut done_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count as usize);
        while let Some(Ok(m)) = messages.next().await {
            if let Some(sent) = sent_us(&m.payload) {
                latencies.push(chrono::Utc::now().timestamp_micros() - sent);
            }
            let _ = m.ack().await;
            if latencies.len() as u64 >= count {
                break;
            }
        }
        let _ = done_tx.send(latencies).await;
    });
    let started = Instant::now();
    let mut n = 0;
    while n < count {
        let mut acks = Vec::new();
        for _ in 0..BATCH.min(count - n) {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, uuid::Uuid::now_v7().to_string().as_str());
            acks.push(js.publish_with_headers(subject.clone(), headers, payload(n)).await?);
            n += 1;
        }
        for ack in acks {
            ack.await?;
        }
    }
    let latencies = done_rx.recv().await.unwrap_or_default();
    report(count, started, latencies);
    let _ = stream.delete_consumer(&format!("raw{tag}")).await;
    Ok(())
}

async fn amqp(url: &str, count: u64) -> anyhow::Result<()> {
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
    let connection =
        Connection::connect(url, ConnectionProperties::default()).await.context("connecting to RabbitMQ")?;
    let publisher = connection.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    publisher
        .exchange_declare(
            "panalraw".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let queue = format!("panalraw.{tag}");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let consuming = connection.create_channel().await?;
    consuming.basic_qos(256, BasicQosOptions::default()).await?;
    consuming
        .queue_declare(queue.clone().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await?;
    consuming
        .queue_bind(
            queue.clone().into(),
            "panalraw".into(),
            queue.clone().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = consuming
        .basic_consume(queue.clone().into(), "raw".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let (done_tx, mut done_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count as usize);
        while let Some(Ok(d)) = deliveries.next().await {
            if let Some(sent) = sent_us(&d.data) {
                latencies.push(chrono::Utc::now().timestamp_micros() - sent);
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
            if latencies.len() as u64 >= count {
                break;
            }
        }
        let _ = done_tx.send(latencies).await;
    });
    let started = Instant::now();
    let mut n = 0;
    while n < count {
        let mut confirms = Vec::new();
        for _ in 0..BATCH.min(count - n) {
            let properties = BasicProperties::default().with_delivery_mode(2);
            confirms.push(
                publisher
                    .basic_publish(
                        "panalraw".into(),
                        queue.clone().into(),
                        BasicPublishOptions::default(),
                        &payload(n),
                        properties,
                    )
                    .await?,
            );
            n += 1;
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    let latencies = done_rx.recv().await.unwrap_or_default();
    report(count, started, latencies);
    let _ = consuming.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    Ok(())
}
