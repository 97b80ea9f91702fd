//! `panal dev`: tools for drills and benchmarks, hidden from `--help`. They
//! drive the real bus code (outbox, relay, consumer) against any broker.

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
}

async fn open(url: &str, config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(url, &config.settings.db).await.with_context(|| format!("opening {url}"))?;
    probe::prepare(&db).await?;
    Ok(db)
}

#[allow(clippy::print_stdout)]
pub async fn run(config: Config, command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::BusProduce { db, kind, count, subjects, no_relay, pace_us } => {
            let db = open(&db, &config).await?;
            // The relay runs while events are committed, as in a service, so a
            // kill lands anywhere between commit, publish and mark.
            let relay = if no_relay {
                None
            } else {
                let relay = Relay::new("dev", db.clone(), crate::connect_bus(&config).await?);
                let signal = relay.signal();
                let token = CancellationToken::new();
                let task = tokio::spawn(relay.run(token.clone()));
                Some((signal, token, task))
            };
            let started = Instant::now();
            for n in 0..count {
                let envelope = Envelope {
                    specversion: "1.0".into(),
                    id: uuid::Uuid::now_v7(),
                    source: "dev".into(),
                    kind: kind.clone(),
                    subject: format!("s{}", n % subjects.max(1)),
                    time: chrono::Utc::now(),
                    datacontenttype: "application/json".into(),
                    data: serde_json::json!({ "n": n }),
                    traceparent: None,
                };
                with_db!(write &db, pool => async {
                    let mut tx = pool.begin().await?;
                    outbox_append!(&mut *tx, &envelope)?;
                    tx.commit().await
                }.await)?;
                if let Some((signal, _, _)) = &relay {
                    signal.notify();
                }
                if pace_us > 0 {
                    tokio::time::sleep(Duration::from_micros(pace_us)).await;
                }
            }
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
            let bus = crate::connect_bus(&config).await?;
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

/// Runs a relay until the outbox is empty.
#[allow(clippy::print_stdout)]
async fn relay_all(config: &Config, db: &Db) -> anyhow::Result<()> {
    let bus = crate::connect_bus(config).await?;
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
