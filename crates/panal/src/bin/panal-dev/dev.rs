//! `panal-dev`'s commands: tools for drills and benchmarks. They drive the
//! real bus code (outbox, relay, consumer) against any broker.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use contracts::Envelope;
use kit::bus::{ConsumerSettings, Relay, probe, store};
use kit::config::Config;
use kit::db::Db;
use kit::{outbox_append, with_db};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
#[allow(clippy::enum_variant_names)] // they are the command names: bus-produce, …
pub enum DevCommand {
    /// Write events to a database's outbox, each in its own transaction, and
    /// (unless --no-relay) publish them all.
    BusProduce {
        #[arg(long)]
        db: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        count: u64,
        /// Subjects the events are spread over.
        #[arg(long, default_value_t = 16)]
        subjects: u64,
        /// Only commit to the outbox; publish nothing.
        #[arg(long)]
        no_relay: bool,
        /// Pause between events, in microseconds (spreads the load).
        #[arg(long, default_value_t = 0)]
        pace_us: u64,
        /// Events committed per transaction.
        #[arg(long, default_value_t = 1)]
        per_tx: u64,
    },
    /// Publish whatever a database's outbox holds, then exit.
    BusRelay {
        #[arg(long)]
        db: String,
    },
    /// Consume events of `kind` with the probe handler until stopped.
    BusConsume {
        #[arg(long)]
        db: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        kind: String,
    },
    /// Print what the probe applied in a database: rows, most times one was
    /// applied, and latency percentiles.
    BusReport {
        #[arg(long)]
        db: String,
    },
    /// Producer, relay and consumer in one process (as in `panal up`): commit
    /// `count` events, wait until the consumer applied them all, print the
    /// rate and the commit-to-handler latency.
    BusPipeline {
        #[arg(long)]
        producer_db: String,
        #[arg(long)]
        consumer_db: String,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        per_tx: u64,
        #[arg(long, default_value_t = 0)]
        pace_us: u64,
    },
    /// The broker alone, for comparison: publish `count` messages with
    /// confirmations and consume them with acknowledgements, using the same
    /// client library as the bus, and print the rate and latency.
    BusRaw {
        /// `nats://…` or `amqp://…`.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        count: u64,
    },
    /// Many WebSocket subscribers to one channel: memory per connection and
    /// fan-out latency (bench/realtime.sh).
    WsFanout(crate::dev_ws::Fanout),
}

async fn open(url: &str, config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(url, &config.settings.db).await.with_context(|| format!("opening {url}"))?;
    probe::prepare(&db).await?;
    Ok(db)
}

#[allow(clippy::print_stdout)]
pub async fn run(config: Config, command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::BusProduce { db, kind, count, subjects, no_relay, pace_us, per_tx } => {
            let db = open(&db, &config).await?;
            // The relay runs while events are committed, as in a service, so a
            // kill lands anywhere between commit, publish and mark.
            let relay = if no_relay {
                None
            } else {
                let relay = Relay::new("dev", db.clone(), kit::bus::connect_configured(&config).await?);
                let signal = relay.signal();
                let token = CancellationToken::new();
                let task = tokio::spawn(relay.run(token.clone()));
                Some((signal, token, task))
            };
            let started = Instant::now();
            commit_events(&db, &kind, count, subjects, per_tx, pace_us, relay.as_ref().map(|r| &r.0)).await?;
            println!("committed {count} events in {:.2} s", started.elapsed().as_secs_f64());
            if let Some((_, token, task)) = relay {
                while store::outbox_backlog(&db).await? > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                token.cancel();
                let _ = task.await;
                println!("published all in {:.2} s", started.elapsed().as_secs_f64());
            }
            db.close().await;
            Ok(())
        }
        DevCommand::BusRelay { db } => {
            let db = open(&db, &config).await?;
            relay_all(&config, &db).await?;
            db.close().await;
            Ok(())
        }
        DevCommand::BusConsume { db, name, kind } => {
            let db = open(&db, &config).await?;
            let bus = kit::bus::connect_configured(&config).await?;
            let settings: ConsumerSettings = config.section("bus")?;
            let consumer = probe::consumer(&name, &[kind], &db, Arc::new(AtomicBool::new(false)), settings);
            let token = CancellationToken::new();
            let task = tokio::spawn(consumer.run(bus, token.clone()));
            println!("consuming");
            kit::http::shutdown_signal().await;
            token.cancel();
            let _ = task.await;
            db.close().await;
            Ok(())
        }
        DevCommand::BusRaw { url, count } => crate::dev_raw::run(&url, count).await,
        DevCommand::WsFanout(fanout) => crate::dev_ws::run(fanout).await,
        DevCommand::BusPipeline { producer_db, consumer_db, count, per_tx, pace_us } => {
            let producer = open(&producer_db, &config).await?;
            let consumer_db = open(&consumer_db, &config).await?;
            let bus = kit::bus::connect_configured(&config).await?;
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let kind = format!("panal.pipe{tag}.tick.v1");
            let settings: ConsumerSettings = config.section("bus")?;
            let consumer = probe::consumer(
                &format!("pipe{tag}"),
                std::slice::from_ref(&kind),
                &consumer_db,
                Arc::new(AtomicBool::new(false)),
                settings,
            );
            let token = CancellationToken::new();
            let consuming = tokio::spawn(consumer.run(bus.clone(), token.clone()));
            let relay = Relay::new("dev", producer.clone(), bus.clone());
            let signal = relay.signal();
            let relaying = tokio::spawn(relay.run(token.clone()));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = Instant::now();
            commit_events(&producer, &kind, count, 16, per_tx, pace_us, Some(&signal)).await?;
            while probe::applied_count(&consumer_db).await? < i64::try_from(count).unwrap_or(i64::MAX) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            token.cancel();
            let _ = consuming.await;
            let _ = relaying.await;
            let _ = bus.remove_consumer(&format!("pipe{tag}")).await;
            let (applied, max_times) = probe::applied(&consumer_db).await?;
            let latencies = probe::latencies(&consumer_db).await?;
            let pct = |p: f64| -> f64 {
                latencies.get(((latencies.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0) as f64
                    / 1000.0
            };
            println!(
                "{{\"applied\":{applied},\"max_times\":{max_times},\"seconds\":{secs:.3},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
                count as f64 / secs,
                pct(0.5),
                pct(0.99)
            );
            producer.close().await;
            consumer_db.close().await;
            Ok(())
        }
        DevCommand::BusReport { db } => {
            let db = open(&db, &config).await?;
            let (rows, max_times) = probe::applied(&db).await?;
            let latencies = probe::latencies(&db).await?;
            let pct = |p: f64| -> f64 {
                if latencies.is_empty() {
                    return 0.0;
                }
                let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
                latencies[i.min(latencies.len() - 1)] as f64 / 1000.0
            };
            let letters = store::dead_letters(&db).await?.len();
            println!(
                "{{\"applied\":{rows},\"max_times\":{max_times},\"dead_letters\":{letters},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
                pct(0.5),
                pct(0.99),
                pct(1.0)
            );
            db.close().await;
            Ok(())
        }
    }
}

/// Commits `count` events of `kind` to `db`'s outbox, `per_tx` per
/// transaction, waking `signal` after each commit.
async fn commit_events(
    db: &Db,
    kind: &str,
    count: u64,
    subjects: u64,
    per_tx: u64,
    pace_us: u64,
    signal: Option<&kit::bus::OutboxSignal>,
) -> anyhow::Result<()> {
    let per_tx = per_tx.max(1);
    let mut n = 0;
    while n < count {
        let batch: Vec<Envelope> = (n..(n + per_tx).min(count))
            .map(|i| Envelope {
                specversion: "1.0".into(),
                id: uuid::Uuid::now_v7(),
                source: "dev".into(),
                kind: kind.to_owned(),
                subject: format!("s{}", i % subjects.max(1)),
                time: chrono::Utc::now(),
                datacontenttype: "application/json".into(),
                data: serde_json::json!({ "n": i }),
                traceparent: None,
            })
            .collect();
        n += batch.len() as u64;
        with_db!(write db, pool => async {
            let mut tx = pool.begin().await?;
            for envelope in &batch {
                outbox_append!(&mut *tx, envelope)?;
            }
            tx.commit().await
        }.await)?;
        if let Some(signal) = signal {
            signal.notify();
        }
        if pace_us > 0 {
            tokio::time::sleep(Duration::from_micros(pace_us)).await;
        }
    }
    Ok(())
}

/// Runs a relay until the outbox is empty.
#[allow(clippy::print_stdout)]
async fn relay_all(config: &Config, db: &Db) -> anyhow::Result<()> {
    let bus = kit::bus::connect_configured(config).await?;
    let relay = Relay::new("dev", db.clone(), bus);
    let started = Instant::now();
    let mut published = 0;
    loop {
        match relay.run_once().await {
            Ok(0) => break,
            Ok(n) => published += n,
            Err(e) => {
                tracing::warn!(error = %e, "relay round failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let backlog = store::outbox_backlog(db).await?;
    println!("published {published} events in {:.2} s; {backlog} left", started.elapsed().as_secs_f64());
    Ok(())
}
