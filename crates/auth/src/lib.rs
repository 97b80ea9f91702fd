//! Auth: Panal's identity service.
//!
//! Accounts and their passwords (Argon2id), sessions with rotating refresh
//! tokens, and short-lived access tokens signed with Ed25519 keys that auth keeps
//! in its own database and publishes as a JWKS. See `docs/auth.md`.
//!
//! - where a request lands: [`api`]
//! - the rules: [`domain`], [`password`], [`tokens`]
//! - the SQL: [`store`]

pub mod api;
pub mod domain;
pub mod error;
mod events;
mod key_source;
pub mod mail;
pub mod oauth;
pub mod ops;
pub mod password;
pub mod policy;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod totp;

use std::sync::Arc;
use std::time::Duration;

use key_source::DbKeySource;
use kit::Context;
use kit::auth::KeySource;
use kit::bus::Handlers;
use kit::db::{Db, Migrations};
use kit::http::Server;
use kit::service::Setup;
use utoipa_axum::router::OpenApiRouter;

use crate::mail::Mailer;
use crate::oauth::Providers;
use crate::password::Hasher;
use crate::store::Store;
use crate::throttle::Throttle;
use crate::tokens::KeyRing;

pub use crate::settings::Settings;

/// Auth's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "complete", include_str!("../migrations/sqlite/0002_complete.sql")),
        (3, "bots", include_str!("../migrations/sqlite/0003_bots.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "complete", include_str!("../migrations/postgres/0002_complete.sql")),
        (3, "bots", include_str!("../migrations/postgres/0003_bots.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Everything the handlers share.
pub struct State {
    pub store: Store,
    pub hasher: Hasher,
    pub settings: Settings,
    pub issuer: String,
    pub audience: String,
    pub keys: KeyRing,
    pub throttle: Throttle,
    pub mailer: Mailer,
    pub providers: Providers,
    /// Where links in mail point.
    pub app_url: String,
    /// Leeway verifiers allow on expiry, in seconds.
    pub leeway_secs: u64,
}

/// What a process running auth can reach besides its HTTP API.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Mail auth handed to notify.
    pub mailer: Mailer,
}

pub(crate) type AppState = Arc<State>;

/// The auth service.
pub struct Auth;

impl kit::Service for Auth {
    const NAME: &'static str = "auth";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;

    fn validate(settings: &Settings) -> anyhow::Result<()> {
        settings.validate()
    }

    /// Auth verifies its own tokens with the keys in its own database.
    fn key_source(_ctx: &Context, db: Option<&Db>) -> anyhow::Result<Box<dyn KeySource>> {
        let db = db.ok_or_else(|| anyhow::anyhow!("auth needs its database"))?;
        Ok(Box::new(DbKeySource { store: Store::new(db.clone()) }))
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let config = &setup.ctx.config;
        let store = Store::new(setup.db()?);
        let settings = setup.settings;
        // A signing key exists from here on, so the verifier can load it.
        let keys = KeyRing::load(
            store.clone(),
            Duration::from_secs(settings.key_reload_secs),
            settings.signing_algorithm,
            settings.key_grace(config.settings.tokens.leeway_secs),
        )
        .await?;
        setup.verifier.refresh(true).await?;
        let tokens = &config.settings.tokens;
        let hasher = Hasher::new(&settings.password)?;
        let mailer = Mailer::new(&setup.ctx.service_url("notify")?)?;
        let providers = Providers::new(&settings.providers, config)?;
        let app_url = settings.app_url.clone().unwrap_or_else(|| config.settings.public_url.clone());
        Ok(State {
            store,
            hasher,
            throttle: Throttle::new(settings.throttle.clone()),
            settings,
            issuer: config.issuer(),
            audience: tokens.audience.clone(),
            keys,
            mailer,
            providers,
            app_url: app_url.trim_end_matches('/').to_owned(),
            leeway_secs: tokens.leeway_secs,
        })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn handlers() -> Handlers {
        events::handlers()
    }

    fn finish(mut server: Server, state: &Arc<State>) -> anyhow::Result<Server> {
        state.hasher.register_metrics(server.metrics_mut().registry_mut());
        Ok(server)
    }
}

/// Builds auth on `db` with a [`Handle`] on what it sends (tests read the
/// mail it would have sent).
pub async fn build(ctx: &Context, db: Db) -> anyhow::Result<(Server, Handle)> {
    let (server, state) = kit::service::build::<Auth>(ctx, Some(db)).await?;
    Ok((server, Handle { mailer: state.mailer.clone() }))
}
