//! `panal admin …` and `panal auth …`: operator commands on auth's database
//! (PANAL_DATABASE_URL, or `<data_dir>/auth.db` as `panal up` keeps it).

#![allow(clippy::print_stdout)]

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kit::config::Config;
use kit::db::Db;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an administrator account. The password is read from standard
    /// input (one line), never from the command line, and must meet the
    /// password policy. There is no default administrator.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: String,
        /// Where the SQLite files live, when PANAL_DATABASE_URL is not used.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Make an existing account an administrator.
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Add a new signing key: published at once, signing after
    /// `--activate-in` seconds (default auth.key_publish_delay_secs); the old
    /// key stays published until every token it signed has expired.
    RotateKeys {
        #[arg(long, value_name = "SECONDS")]
        activate_in: Option<u64>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List the signing keys and their periods.
    Keys {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Service clients of the client-credentials grant.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and secret (shown only now).
    Create {
        #[arg(long)]
        name: String,
        /// Scopes it may ask for, e.g. `--scope users:read --scope ledger:write`.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Register (or bring up to date) the clients the services that call
    /// others in their own name use, from files the operator made once:
    /// `<service>-client-id` (a UUID) and `<service>-client-secret` (32+
    /// characters) in DIR — the same files those services read
    /// (`PANAL_CLIENTS__<SERVICE>__ID_FILE`, `…__SECRET_FILE`). Scopes come
    /// from the services themselves. Run before the services start, at every
    /// deployment (a compose one-shot, a Kubernetes Job); safe to repeat.
    Provision {
        #[arg(long, value_name = "DIR")]
        secrets_dir: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List clients.
    List {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Disable a client.
    Disable {
        client_id: String,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

async fn auth_db(config: &mut Config, data_dir: Option<PathBuf>) -> anyhow::Result<Db> {
    service_db(config, "auth", data_dir).await
}

/// A service's database for an operator command: PANAL_DATABASE_URL, or
/// `<data_dir>/<service>.db` as `panal up` keeps it.
pub(crate) async fn service_db(config: &mut Config, service: &str, data_dir: Option<PathBuf>) -> anyhow::Result<Db> {
    if let Some(dir) = data_dir {
        config.settings.data_dir = dir;
    }
    let url = match &config.settings.database_url {
        Some(url) => url.expose().clone(),
        None => {
            std::fs::create_dir_all(&config.settings.data_dir)
                .with_context(|| format!("creating {}", config.settings.data_dir.display()))?;
            Db::sqlite_url(&config.settings.data_dir.join(format!("{service}.db")))
        }
    };
    Db::connect(&url, &config.settings.db).await.with_context(|| format!("opening {service}'s database"))
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (8 to 128 characters; input is not hidden, prefer piping it): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!("no password on standard input (e.g. `panal admin create … < password-file`)");
    }
    Ok(password)
}

pub async fn admin(mut config: Config, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Create { email, display_name, data_dir } => {
            let password = read_password()?;
            let db = auth_db(&mut config, data_dir).await?;
            let id = auth::ops::create_admin(&db, &config, &email, &display_name, &password).await?;
            db.close().await;
            println!("administrator created: {id} ({email})");
        }
        AdminCommand::Grant { email, data_dir } => {
            let db = auth_db(&mut config, data_dir).await?;
            let id = auth::ops::grant_admin(&db, &email).await?;
            db.close().await;
            println!("{email} ({id}) is an administrator");
        }
    }
    Ok(())
}

fn print_keys(keys: &[auth::store::KeyRecord]) {
    let now = chrono::Utc::now();
    println!("{:<44}  {:<8}  {:<25}  {:<25}  PUBLISHED UNTIL", "KID", "STATE", "SIGNS FROM", "RETIRES");
    for k in keys {
        let state = if k.signs_at(now) {
            "signing"
        } else if k.signs_from > now {
            "next"
        } else if k.published_at(now) {
            "retired"
        } else {
            "expired"
        };
        let t = |d: Option<chrono::DateTime<chrono::Utc>>| d.map_or("-".to_owned(), |d| d.to_rfc3339());
        println!(
            "{:<44}  {:<8}  {:<25}  {:<25}  {}",
            k.material.kid,
            state,
            k.signs_from.to_rfc3339(),
            t(k.retired_at),
            t(k.expires_at)
        );
    }
}

pub async fn auth(mut config: Config, command: AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::RotateKeys { activate_in, data_dir } => {
            let db = auth_db(&mut config, data_dir).await?;
            let (key, signs_from, keys) = auth::ops::rotate_keys(&db, &config, activate_in).await?;
            db.close().await;
            println!("new key {} is published now and signs from {}", key.kid, signs_from.to_rfc3339());
            print_keys(&keys);
        }
        AuthCommand::Keys { data_dir } => {
            let db = auth_db(&mut config, data_dir).await?;
            let keys = auth::ops::keys(&db).await?;
            db.close().await;
            print_keys(&keys);
        }
        AuthCommand::Clients { command } => match command {
            ClientsCommand::Create { name, scopes, data_dir } => {
                let db = auth_db(&mut config, data_dir).await?;
                let (id, secret) = auth::ops::create_client(&db, &name, &scopes).await?;
                db.close().await;
                println!(
                    "client_id:     {id}\nclient_secret: {secret}\n(the secret is shown only now; only its hash is kept)"
                );
            }
            ClientsCommand::Provision { secrets_dir, data_dir } => {
                let db = auth_db(&mut config, data_dir).await?;
                for (service, scopes) in crate::service_clients() {
                    let read = |what: &str| {
                        let path = secrets_dir.join(format!("{service}-client-{what}"));
                        std::fs::read_to_string(&path)
                            .map(|s| s.trim().to_owned())
                            .with_context(|| format!("reading {}", path.display()))
                    };
                    let (id, secret) = (read("id")?, read("secret")?);
                    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
                    auth::ops::ensure_client(&db, &id, &format!("panal-{service}"), &secret, &scopes)
                        .await
                        .with_context(|| format!("the {service} client"))?;
                    println!("{service:<12} {id}  {}", scopes.join(" "));
                }
                db.close().await;
            }
            ClientsCommand::List { data_dir } => {
                let db = auth_db(&mut config, data_dir).await?;
                let clients = auth::ops::clients(&db).await?;
                db.close().await;
                println!("{:<36}  {:<20}  {:<8}  SCOPES", "CLIENT ID", "NAME", "STATE");
                for c in clients {
                    let state = if c.disabled_at.is_some() { "disabled" } else { "enabled" };
                    println!("{:<36}  {:<20}  {:<8}  {}", c.client_id, c.name, state, c.scopes.join(" "));
                }
            }
            ClientsCommand::Disable { client_id, data_dir } => {
                let db = auth_db(&mut config, data_dir).await?;
                let changed = auth::ops::disable_client(&db, &client_id).await?;
                db.close().await;
                println!("{}", if changed { "disabled" } else { "no enabled client has this id" });
            }
        },
    }
    Ok(())
}
