//! `panal`: the one binary. Runs every service in one process (`panal up`), one
//! service alone (`panal serve <service>`), applies migrations, and looks after
//! the event bus (`panal events`).

mod authcli;
mod events;
mod ledgercli;
mod pong;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit::catalog;
use kit::config::Config;
use kit::db::Db;
use kit::service::{Mount, Peer};
use tokio_util::sync::CancellationToken;

/// The services this build of Panal mounts, in start order: the one list
/// `up`, `serve`, `migrate`, `events` and `services` read. Adding a service
/// to the binary is one line here.
pub(crate) const SERVICES: &[&dyn Mount] = &[
    &auth::Auth,
    &users::Users,
    &realtime::Realtime,
    &chat::Chat,
    &game::GameService,
    &stats::StatsService,
    &tournament::TournamentService,
    &ai::AiService,
    &ledger::LedgerService,
    &notify::NotifyService,
    &gateway::Gateway,
];

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
    /// Stats' read models.
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
    /// Check tournament results against the ledger and its chain.
    Ledger {
        #[command(subcommand)]
        command: ledgercli::LedgerCommand,
    },
    /// Play Pong in the terminal through a gateway: sign in, queue (or
    /// accept an invitation, or join a match), play with the arrow keys.
    Pong(pong::PongArgs),
    /// Ask a running Panal whether it is ready: exit 0 when
    /// `GET <url>` answers 2xx within 3 seconds, 1 otherwise. For container
    /// health checks (the image has no shell or curl).
    Healthcheck {
        /// What to ask (default: `http://127.0.0.1:<port>/readyz`).
        #[arg(long)]
        url: Option<String>,
        /// The port to ask on 127.0.0.1 (default: PANAL_PORT, else 8000).
        #[arg(long, env = "PANAL_PORT")]
        port: Option<u16>,
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

#[derive(Debug, Subcommand)]
enum StatsCommand {
    /// Rebuild ratings, records, histories, charts and leaderboards from
    /// the journal of finished matches, in one transaction (safe while stats
    /// runs: matches arriving meanwhile wait for it). Ratings that come out
    /// different are announced with `rating_changed`.
    Rebuild {
        /// Where the SQLite files live, when PANAL_DATABASE_URL is not used.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// `panal healthcheck`: one GET, 2xx or not.
fn healthcheck(url: &str) -> ExitCode {
    let asked =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |rt| {
                rt.block_on(async {
                    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
                    Ok(http.get(url).send().await?.status())
                })
            },
        );
    match asked {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{url}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    kit::install_crypto();
    let cli = Cli::parse();
    if let Command::Services = cli.command {
        print_services();
        return ExitCode::SUCCESS;
    }
    // Clients, not services: no configuration, no logs over the screen.
    if let Command::Ledger { command } = cli.command {
        let result = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(ledgercli::run(command)));
        return match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Healthcheck { url, port } = &cli.command {
        let url = url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", port.unwrap_or(8000)));
        return healthcheck(&url);
    }
    if let Command::Pong(args) = cli.command {
        let result = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(pong::run(args)));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Traces name the process after the one service it serves, else "panal".
    let process = match &cli.command {
        Command::Serve { service, .. } => service.as_str(),
        _ => "panal",
    };
    let (config, telemetry) = match kit::telemetry::start(cli.config.as_deref(), process, runtime.handle()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
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
            Command::Stats { command: StatsCommand::Rebuild { data_dir } } => stats_rebuild(config, data_dir).await,
            Command::Services | Command::Pong(_) | Command::Ledger { .. } | Command::Healthcheck { .. } => Ok(()),
        }
    });
    telemetry.shutdown();
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
    println!("{:<11} {:>5}  {:<12} {:<8} owns", "SERVICE", "PORT", "STATUS", "PERSONAL");
    for s in catalog::SERVICES {
        let service = mounted(s.name);
        let status = if service.is_some() { "implemented" } else { "planned" };
        // Whether it holds data about users: the GDPR export and erasure
        // reach it (`GET /v1/<service>/me/export`, `user_erased`).
        let personal = match service {
            Some(m) if m.personal_data() => "yes",
            Some(_) => "no",
            None => "-",
        };
        println!("{:<11} {:>5}  {:<12} {:<8} {}", s.name, s.port, status, personal, s.owns);
    }
}

/// The mounted service called `name`.
pub(crate) fn mounted(name: &str) -> Option<&'static dyn Mount> {
    SERVICES.iter().copied().find(|s| s.name() == name)
}

fn port_of(service: &str) -> anyhow::Result<u16> {
    catalog::find(service).map(|s| s.port).ok_or_else(|| {
        let names: Vec<_> = catalog::SERVICES.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown service {service:?}; services are: {}", names.join(", "))
    })
}

/// The mounted service `service`, or an error that says what exists.
fn implemented(service: &str) -> anyhow::Result<&'static dyn Mount> {
    port_of(service)?;
    mounted(service).ok_or_else(|| {
        let names: Vec<_> = SERVICES.iter().map(|s| s.name()).collect();
        anyhow::anyhow!("service {service:?} is not implemented in this build yet (implemented: {})", names.join(", "))
    })
}

/// The mounted services that have a database, or just `only`.
pub(crate) fn services_with_db(only: Option<&str>) -> anyhow::Result<Vec<&'static dyn Mount>> {
    match only {
        Some(name) => {
            let service = implemented(name)?;
            if service.migrations().is_none() {
                anyhow::bail!("service {name:?} has no database");
            }
            Ok(vec![service])
        }
        None => Ok(SERVICES.iter().copied().filter(|s| s.migrations().is_some()).collect()),
    }
}

pub(crate) fn sqlite_file(config: &Config, service: &str) -> String {
    Db::sqlite_url(&config.settings.data_dir.join(format!("{service}.db")))
}

/// Connects to the configured broker (the embedded one by default).
pub(crate) async fn connect_bus(config: &Config) -> anyhow::Result<kit::bus::Bus> {
    kit::bus::connect_configured(config).await
}

/// Opens `service`'s database when it declares one: `database_url`, else
/// its SQLite file under the data directory.
async fn open_db(config: &Config, service: &dyn Mount, database_url: Option<String>) -> anyhow::Result<Option<Db>> {
    if service.migrations().is_none() {
        return Ok(None);
    }
    let name = service.name();
    let url = database_url.unwrap_or_else(|| sqlite_file(config, name));
    let db = Db::connect(&url, &config.settings.db).await.with_context(|| format!("opening the {name} database"))?;
    Ok(Some(db))
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

    // Bind every port first, so each service knows where the others answer.
    let mut listeners = Vec::new();
    let mut peers = Vec::new();
    for &service in SERVICES {
        let port =
            port_of(service.name())?.checked_add(port_offset).context("--port-offset pushes a port past 65535")?;
        let listener = kit::http::bind(SocketAddr::new(host, port)).await?;
        let addr = listener.local_addr()?;
        peers.push(Peer::of(service, format!("http://{addr}")));
        listeners.push((service, listener, addr));
    }
    let ctx = kit::Context { config: config.clone(), bus, peers: std::sync::Arc::new(peers) };

    let mut auth_db = None;
    for (service, listener, addr) in listeners {
        let name = service.name();
        let db = open_db(&config, service, None).await?;
        let db_label = if db.is_some() { sqlite_file(&config, name) } else { "-".to_owned() };
        if name == "auth" {
            auth_db.clone_from(&db);
        }
        let ctx = with_service_client(&ctx, service, auth_db.as_ref()).await?;
        let service = service.build(&ctx, db).await.with_context(|| format!("starting {name}"))?;
        rows.push((name, format!("http://{addr}"), db_label));
        let http = config.settings.http.clone();
        let token = shutdown.clone();
        running.push((name, tokio::spawn(async move { kit::http::serve(listener, service, &http, token).await })));
    }

    println!("Panal is up ({} services, ready in {} ms)\n", rows.len(), started.elapsed().as_millis());
    println!("  {:<10} {:<24} database", "service", "url");
    for (name, url, db) in &rows {
        println!("  {name:<10} {url:<24} {db}");
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

/// The services that call others in their own name, with the scopes their
/// client needs (what `panal auth clients provision` registers).
pub(crate) fn service_clients() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    SERVICES.iter().filter(|s| !s.client_scopes().is_empty()).map(|s| (s.name(), s.client_scopes()))
}

/// The context `service` is built with: for a service that calls others in
/// its own name (`CLIENT_SCOPES`) and has no client configured, a service
/// client registered in auth's database now, named after it, with a fresh
/// secret each start (kept in memory only). Auth is built first, so its
/// database is migrated by then.
async fn with_service_client(
    ctx: &kit::Context,
    service: &dyn Mount,
    auth_db: Option<&Db>,
) -> anyhow::Result<kit::Context> {
    let name = service.name();
    let configured = ctx.config.section::<std::collections::HashMap<String, serde_json::Value>>("clients")?;
    if service.client_scopes().is_empty() || configured.contains_key(name) {
        return Ok(ctx.clone());
    }
    let auth_db =
        auth_db.with_context(|| format!("{name} needs a service client, and auth is not part of this process"))?;
    let scopes: Vec<String> = service.client_scopes().iter().map(|s| (*s).to_owned()).collect();
    let (id, secret) = auth::ops::provision_client(auth_db, &format!("panal-{name}"), &scopes).await?;
    let config = ctx
        .config
        .with_value(&format!("clients.{name}"), kit::credentials::IssuedCredentials { id: &id, secret: &secret })?;
    Ok(kit::Context { config, bus: ctx.bus.clone(), peers: ctx.peers.clone() })
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
    let mount = implemented(service)?;
    let port = match port.or(config.settings.port) {
        Some(p) => p,
        None => port_of(service)?,
    };
    // The others, where the configuration says they answer.
    let mut peers = Vec::new();
    for &other in SERVICES.iter().filter(|s| s.name() != service) {
        peers.push(Peer::of(other, config.service_url(other.name())?));
    }
    let database_url = config.settings.database_url.as_ref().map(|s| s.expose().clone());
    let db = open_db(&config, mount, database_url).await?;
    let listener = kit::http::bind(SocketAddr::new(config.settings.host, port)).await?;
    let addr = listener.local_addr()?;
    let bus = connect_bus(&config).await?;
    let ctx = kit::Context { config: config.clone(), bus, peers: std::sync::Arc::new(peers) };
    let built = mount.build(&ctx, db).await?;
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
async fn stats_rebuild(mut config: Config, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let db = authcli::service_db(&mut config, "stats", data_dir).await?;
    kit::service::migrate(implemented("stats")?, &db).await.context("migrating stats")?;
    let started = Instant::now();
    let rebuilt = stats::rebuild(&db).await?;
    db.close().await;
    println!(
        "stats rebuilt from {} matches in {} ms: {} player lines, {} ratings changed",
        rebuilt.matches,
        started.elapsed().as_millis(),
        rebuilt.lines,
        rebuilt.changed
    );
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
        let name = service.name();
        let Some(db) = open_db(&config, service, explicit.clone()).await? else { continue };
        kit::service::migrate(service, &db).await.with_context(|| format!("migrating {name}"))?;
        db.close().await;
        println!("{name}: migrations applied");
    }
    Ok(())
}
