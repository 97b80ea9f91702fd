//! `panal`: the one binary. Runs every service in one process (`panal up`), one
//! service alone (`panal serve <service>`), applies migrations, and looks after
//! the event bus (`panal events`).

mod authcli;
mod dev;
mod dev_raw;
mod events;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit::catalog;
use kit::config::Config;
use kit::db::{Db, Migrations};
use kit::http::Service;
use tokio_util::sync::CancellationToken;

/// The services this build of Panal implements, in start order.
const IMPLEMENTED: &[&str] = &["auth", "users", "gateway"];

#[derive(Debug, Parser)]
#[command(name = "panal", version, about = "Panal: a microservices backend in one binary", long_about = None)]
struct Cli {
    /// Configuration file (default: ./panal.toml when it exists). Environment
    /// variables PANAL_* override it.
    #[arg(long, global = true, env = "PANAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every implemented service in this process, each on its own port with
    /// its own SQLite database under the data directory. Ctrl-C stops cleanly.
    Up {
        /// Where the SQLite files live (overrides PANAL_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Added to every service's port, to run a second copy beside the first.
        #[arg(long, default_value_t = 0, value_name = "N")]
        port_offset: u16,
    },
    /// Run exactly one service. Its database is PANAL_DATABASE_URL (sqlite:… or
    /// postgres://…), or a SQLite file under the data directory; other services
    /// are reached at PANAL_<SERVICE>_URL.
    Serve {
        /// The service to run (see `panal services`).
        service: String,
        /// Port to listen on (default: the service's port in `panal services`).
        #[arg(long, env = "PANAL_PORT")]
        port: Option<u16>,
    },
    /// List the services, their ports and whether this build implements them.
    Services,
    /// Watch the event bus, list and replay dead letters.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Administrators: create the first one, grant the role.
    Admin {
        #[command(subcommand)]
        command: authcli::AdminCommand,
    },
    /// Auth's keys and service clients.
    Auth {
        #[command(subcommand)]
        command: authcli::AuthCommand,
    },
    /// Tools for drills and benchmarks.
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        command: dev::DevCommand,
    },
    /// Apply database migrations and exit, without serving.
    Migrate {
        /// Only this service (default: every implemented service with a database).
        #[arg(long)]
        service: Option<String>,
        /// Where the SQLite files live, when PANAL_DATABASE_URL is not used.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let started = Instant::now();
    kit::install_crypto();
    let cli = Cli::parse();
    if let Command::Services = cli.command {
        print_services();
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = kit::telemetry::init(&config.settings.log, config.settings.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up { data_dir, port_offset } => up(config, data_dir, port_offset, started).await,
            Command::Serve { service, port } => serve(config, &service, port).await,
            Command::Migrate { service, data_dir } => migrate(config, service, data_dir).await,
            Command::Events { command } => events::run(config, command).await,
            Command::Admin { command } => authcli::admin(config, command).await,
            Command::Auth { command } => authcli::auth(config, command).await,
            Command::Dev { command } => dev::run(config, command).await,
            Command::Services => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "panal stopped with an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_services() {
    println!("{:<11} {:>5}  {:<12} owns", "SERVICE", "PORT", "STATUS");
    for s in catalog::SERVICES {
        let status = if IMPLEMENTED.contains(&s.name) { "implemented" } else { "planned" };
        println!("{:<11} {:>5}  {:<12} {}", s.name, s.port, status, s.owns);
    }
}

fn migrations_of(service: &str) -> Option<&'static Migrations> {
    match service {
        "auth" => Some(&auth::MIGRATIONS),
        "users" => Some(&users::MIGRATIONS),
        _ => None,
    }
}

fn port_of(service: &str) -> anyhow::Result<u16> {
    catalog::find(service).map(|s| s.port).ok_or_else(|| {
        let names: Vec<_> = catalog::SERVICES.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown service {service:?}; services are: {}", names.join(", "))
    })
}

fn check_implemented(service: &str) -> anyhow::Result<()> {
    port_of(service)?;
    if !IMPLEMENTED.contains(&service) {
        anyhow::bail!(
            "service {service:?} is not implemented in this build yet (implemented: {})",
            IMPLEMENTED.join(", ")
        );
    }
    Ok(())
}

/// The implemented services that have a database, or just `only`.
fn services_with_db(only: Option<&str>) -> anyhow::Result<Vec<&'static str>> {
    match only {
        Some(s) => {
            check_implemented(s)?;
            let name = IMPLEMENTED.iter().copied().find(|n| *n == s).unwrap_or("unknown");
            if migrations_of(name).is_none() {
                anyhow::bail!("service {s:?} has no database");
            }
            Ok(vec![name])
        }
        None => Ok(IMPLEMENTED.iter().copied().filter(|s| migrations_of(s).is_some()).collect()),
    }
}

/// The event types `service` consumes.
fn consumed_by(service: &str) -> Vec<&'static str> {
    match service {
        "auth" => auth::CONSUMES.to_vec(),
        "users" => users::CONSUMES.to_vec(),
        "gateway" => gateway::CONSUMES.to_vec(),
        _ => Vec::new(),
    }
}

/// The event consumers `service` runs on `db`, for replaying their dead
/// letters.
fn consumers_of(service: &str, db: &Db) -> Vec<kit::bus::Consumer> {
    let settings = kit::bus::ConsumerSettings::default();
    match service {
        "auth" => vec![auth::consumer(db.clone(), settings)],
        "users" => vec![users::consumer(db.clone(), settings)],
        _ => Vec::new(),
    }
}

fn sqlite_file(config: &Config, service: &str) -> String {
    Db::sqlite_url(&config.settings.data_dir.join(format!("{service}.db")))
}

/// Connects to the configured broker (the embedded one by default).
async fn connect_bus(config: &Config) -> anyhow::Result<kit::bus::Bus> {
    let url = config.settings.bus_url.as_ref().map(|s| s.expose().as_str());
    let settings: kit::bus::ConsumerSettings = config.section("bus")?;
    kit::bus::connect(url, &config.settings.data_dir, &settings).await.context("connecting to the event bus")
}

/// Builds one service. `upstreams` is only used by the gateway.
async fn build(
    ctx: &kit::Context,
    service: &str,
    database_url: Option<String>,
    upstreams: Vec<gateway::Upstream>,
) -> anyhow::Result<Service> {
    let config = &ctx.config;
    match service {
        "gateway" => gateway::service(ctx, upstreams),
        "auth" => {
            let url = database_url.unwrap_or_else(|| sqlite_file(config, service));
            let db = Db::connect(&url, &config.settings.db)
                .await
                .with_context(|| format!("opening the {service} database"))?;
            auth::service(ctx, db).await
        }
        "users" => {
            let url = database_url.unwrap_or_else(|| sqlite_file(config, service));
            let db = Db::connect(&url, &config.settings.db)
                .await
                .with_context(|| format!("opening the {service} database"))?;
            users::service(ctx, db).await
        }
        other => anyhow::bail!("service {other:?} is not implemented in this build yet"),
    }
}

#[allow(clippy::print_stdout)]
async fn up(mut config: Config, data_dir: Option<PathBuf>, port_offset: u16, started: Instant) -> anyhow::Result<()> {
    if let Some(dir) = data_dir {
        config.settings.data_dir = dir;
    }
    std::fs::create_dir_all(&config.settings.data_dir)
        .with_context(|| format!("creating the data directory {}", config.settings.data_dir.display()))?;
    let host = config.settings.host;
    let bus = connect_bus(&config).await?;
    let bus_label = match &config.settings.bus_url {
        Some(_) => bus.backend().to_owned(),
        None => format!("embedded ({})", config.settings.data_dir.join("bus.db").display()),
    };
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    let mut rows = Vec::new();
    let mut upstreams = Vec::new();

    // Bind every port first, so each service knows where the others answer.
    let mut listeners = Vec::new();
    let mut services = std::collections::BTreeMap::new();
    for &name in IMPLEMENTED {
        let port = port_of(name)?.checked_add(port_offset).context("--port-offset pushes a port past 65535")?;
        let listener = kit::http::bind(SocketAddr::new(host, port)).await?;
        let addr = listener.local_addr()?;
        let name = catalog::find(name).map(|s| s.name).unwrap_or("unknown");
        services.insert(name, format!("http://{addr}"));
        if name != "gateway" {
            upstreams.push(gateway::Upstream { service: name, url: format!("http://{addr}") });
        }
        listeners.push((name, listener, addr));
    }
    let ctx = kit::Context { config: config.clone(), bus, services: std::sync::Arc::new(services) };

    for (name, listener, addr) in listeners {
        let service = build(&ctx, name, None, upstreams.clone()).await?;
        let db = if migrations_of(name).is_some() { sqlite_file(&config, name) } else { "-".to_owned() };
        rows.push((name, format!("http://{addr}"), db));
        let http = config.settings.http.clone();
        let token = shutdown.clone();
        running.push((name, tokio::spawn(async move { kit::http::serve(listener, service, &http, token).await })));
    }

    println!("Panal is up ({} services, ready in {} ms)\n", rows.len(), started.elapsed().as_millis());
    println!("  {:<9} {:<24} database", "service", "url");
    for (name, url, db) in &rows {
        println!("  {name:<9} {url:<24} {db}");
    }
    println!("\nevent bus: {bus_label}");
    if let Some((_, url, _)) = rows.iter().find(|(n, _, _)| *n == "gateway") {
        println!("API: {url}/v1/...   docs: {url}/docs   stop: Ctrl-C");
    }
    tracing::info!(ready_ms = started.elapsed().as_millis() as u64, "panal is up");

    tokio::select! {
        () = kit::http::shutdown_signal() => tracing::info!("shutting down"),
        () = first_exit(&mut running) => tracing::error!("a service stopped unexpectedly; shutting down"),
    }
    shutdown.cancel();
    let mut failed = None;
    for (name, handle) in running {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(anyhow::anyhow!("{name}: {e}")),
            Err(e) => failed = Some(anyhow::anyhow!("{name}: {e}")),
        }
    }
    tracing::info!("stopped");
    failed.map_or(Ok(()), Err)
}

/// Resolves when any of the services' tasks ends (which should not happen before
/// shutdown).
async fn first_exit(running: &mut [(&str, tokio::task::JoinHandle<std::io::Result<()>>)]) {
    loop {
        if running.iter().any(|(_, h)| h.is_finished()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn serve(config: Config, service: &str, port: Option<u16>) -> anyhow::Result<()> {
    check_implemented(service)?;
    let port = match port.or(config.settings.port) {
        Some(p) => p,
        None => port_of(service)?,
    };
    let mut upstreams = Vec::new();
    if service == "gateway" {
        for &name in IMPLEMENTED.iter().filter(|n| **n != "gateway") {
            let service_name = catalog::find(name).map(|s| s.name).unwrap_or("unknown");
            upstreams.push(gateway::Upstream { service: service_name, url: config.service_url(name)? });
        }
    }
    let database_url = config.settings.database_url.as_ref().map(|s| s.expose().clone());
    let listener = kit::http::bind(SocketAddr::new(config.settings.host, port)).await?;
    let addr = listener.local_addr()?;
    let bus = connect_bus(&config).await?;
    let ctx = kit::Context { config: config.clone(), bus, services: Default::default() };
    let built = build(&ctx, service, database_url, upstreams).await?;
    tracing::info!(service, %addr, "serving");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let http = config.settings.http.clone();
    let task = tokio::spawn(async move { kit::http::serve(listener, built, &http, token).await });
    kit::http::shutdown_signal().await;
    tracing::info!(service, "shutting down");
    shutdown.cancel();
    task.await??;
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn migrate(mut config: Config, only: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = data_dir {
        config.settings.data_dir = dir;
    }
    let services = services_with_db(only.as_deref())?;
    let explicit = config.settings.database_url.as_ref().map(|s| s.expose().clone());
    if explicit.is_some() && services.len() > 1 {
        anyhow::bail!("PANAL_DATABASE_URL names one database; choose its service with --service");
    }
    for service in services {
        let url = explicit.clone().unwrap_or_else(|| sqlite_file(&config, service));
        let db =
            Db::connect(&url, &config.settings.db).await.with_context(|| format!("opening the {service} database"))?;
        if let Some(m) = migrations_of(service) {
            db.migrate(m).await.with_context(|| format!("migrating {service}"))?;
            db.migrate(&kit::bus::store::MIGRATIONS)
                .await
                .with_context(|| format!("migrating {service}'s bus tables"))?;
        }
        db.close().await;
        println!("{service}: migrations applied");
    }
    Ok(())
}
