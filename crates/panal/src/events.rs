//! `panal events`: watch the bus, list and replay dead letters.

use std::io::Write;

use anyhow::Context as _;
use clap::Subcommand;
use futures_util::StreamExt;
use kit::bus::{Consumer, Replay, store};
use kit::config::Config;
use kit::db::Db;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List every event type: who emits it, who consumes it in this build, and
    /// its payload's fields.
    Types {
        /// Print JSON, with each payload's JSON Schema.
        #[arg(long)]
        json: bool,
    },
    /// Print every event published from now on, one JSON object per line.
    Tail {
        /// Only events whose type starts with this (e.g. `panal.auth.`).
        #[arg(long)]
        r#type: Option<String>,
    },
    /// List the events consumers gave up on.
    DeadLetters {
        /// Only this service's (default: every implemented service).
        #[arg(long)]
        service: Option<String>,
        /// Print them whole, as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Handle dead letters again, after their handler was fixed. Applied, a
    /// dead letter is removed; failing again, it stays with the new error.
    Replay {
        /// The dead letter's id (see `panal events dead-letters`).
        id: Option<Uuid>,
        /// Every dead letter of the service(s).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        service: Option<String>,
    },
}

pub async fn run(config: Config, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Types { json } => {
            types(json);
            Ok(())
        }
        EventsCommand::Tail { r#type } => tail(&config, r#type.as_deref()).await,
        EventsCommand::DeadLetters { service, json } => dead_letters(&config, service.as_deref(), json).await,
        EventsCommand::Replay { id, all, service } => {
            if id.is_none() && !all {
                anyhow::bail!("name a dead letter to replay, or --all");
            }
            replay(&config, id, service.as_deref()).await
        }
    }
}

#[allow(clippy::print_stdout)]
fn types(json: bool) {
    let mut all = Vec::new();
    for info in contracts::catalogue() {
        let consumers: Vec<&str> = crate::SERVICES
            .iter()
            .filter(|s| s.consumes().iter().any(|kind| kind == info.kind))
            .map(|s| s.name())
            .collect();
        let fields: Vec<String> = info
            .schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if json {
            all.push(serde_json::json!({
                "type": info.kind,
                "source": info.source,
                "summary": info.summary,
                "consumers": consumers,
                "fields": fields,
                "schema": info.schema,
            }));
        } else {
            let consumers = if consumers.is_empty() { "-".to_owned() } else { consumers.join(", ") };
            println!("{}  from {}  to {}  ({})", info.kind, info.source, consumers, fields.join(", "));
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(all));
    }
}

#[allow(clippy::print_stdout)]
async fn tail(config: &Config, prefix: Option<&str>) -> anyhow::Result<()> {
    let bus = crate::connect_bus(config).await?;
    let mut events = bus.tail().await?;
    eprintln!("watching the {} bus; Ctrl-C to stop", bus.backend());
    let mut out = std::io::stdout().lock();
    loop {
        let next = tokio::select! {
            () = kit::http::shutdown_signal() => return Ok(()),
            next = events.next() => next,
        };
        let Some(item) = next else { return Ok(()) };
        let payload = item?;
        let text = String::from_utf8_lossy(&payload);
        if let Some(prefix) = prefix {
            let kind = serde_json::from_slice::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            if !kind.is_some_and(|k| k.starts_with(prefix)) {
                continue;
            }
        }
        writeln!(out, "{text}")?;
        out.flush()?;
    }
}

/// The databases of the services to look at.
async fn databases(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<(&'static str, Db)>> {
    let services = crate::services_with_db(only)?;
    let explicit = config.settings.database_url.as_ref().map(|s| s.expose().clone());
    if explicit.is_some() && services.len() > 1 {
        anyhow::bail!("PANAL_DATABASE_URL names one database; choose its service with --service");
    }
    let mut out = Vec::new();
    for service in services.into_iter().map(|s| s.name()) {
        let url = explicit.clone().unwrap_or_else(|| crate::sqlite_file(config, service));
        let db =
            Db::connect(&url, &config.settings.db).await.with_context(|| format!("opening the {service} database"))?;
        db.migrate(&store::MIGRATIONS).await?;
        out.push((service, db));
    }
    Ok(out)
}

#[allow(clippy::print_stdout)]
async fn dead_letters(config: &Config, only: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut total = 0;
    for (service, db) in databases(config, only).await? {
        for letter in store::dead_letters(&db).await? {
            total += 1;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({ "service": service, "dead_letter": letter }))?
                );
            } else {
                let error: String = letter.error.chars().take(80).collect();
                println!(
                    "{}  {service}/{}  {}  attempts={}  last={}  {error}",
                    letter.id,
                    letter.consumer,
                    letter.event_type,
                    letter.attempts,
                    letter.last_failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                );
            }
        }
        db.close().await;
    }
    if !json {
        eprintln!("{total} dead letter(s)");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn replay(config: &Config, id: Option<Uuid>, only: Option<&str>) -> anyhow::Result<()> {
    let mut found = false;
    for (service, db) in databases(config, only).await? {
        let letters = store::dead_letters(&db).await?;
        let wanted: Vec<_> = letters.iter().filter(|l| id.is_none_or(|id| l.id == id)).collect();
        if wanted.is_empty() {
            continue;
        }
        found = true;
        for letter in wanted {
            let Some(consumer) = consumer_of(service, &letter.consumer, &db) else {
                println!("{}  {service}/{}: no consumer of that name in this build", letter.id, letter.consumer);
                continue;
            };
            let outcome = match consumer.replay(letter.id).await {
                Ok(Replay::Applied) => "applied".to_owned(),
                Ok(Replay::AlreadyApplied) => "had already been applied; removed".to_owned(),
                Ok(Replay::Failed(e)) => format!("failed again: {e}"),
                Err(e) => format!("not replayed: {e}"),
            };
            println!("{}  {service}/{}  {}: {outcome}", letter.id, letter.consumer, letter.event_type);
        }
        db.close().await;
    }
    if !found {
        match id {
            Some(id) => anyhow::bail!("no dead letter {id}"),
            None => eprintln!("no dead letters"),
        }
    }
    Ok(())
}

/// The consumer `name` of `service`, as built into this binary.
fn consumer_of(service: &str, name: &str, db: &Db) -> Option<Consumer> {
    let settings = kit::bus::ConsumerSettings::default();
    crate::mounted(service)?.consumer(db.clone(), settings).filter(|c| c.name() == name)
}
