//! Users: the single source of truth for profiles.
//!
//! Profiles (created from auth's `user_registered`), avatars, friends, blocks,
//! privacy settings, search, moderation, and GDPR export and erasure. Other
//! services copy what they need from users' events. See `docs/users.md`.
//!
//! - where a request lands: [`api`]
//! - the rules: [`domain`], [`avatars`]
//! - the SQL: [`store`]
//! - events in and out: [`events`]

pub mod api;
pub mod avatars;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::Context;
use kit::auth::{HttpKeySource, TokenVerifier};
use kit::bus::{Consumer, ConsumerSettings, OutboxSignal, Relay};
use kit::db::{Db, Migrations};
use kit::http::Service;
use serde::Deserialize;

use crate::avatars::{AvatarStore, StorageSettings};
use crate::store::Store;

pub use events::CONSUMES;

/// Users' migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Users' settings: `[users]` in `panal.toml`, `PANAL_USERS__*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub avatars: StorageSettings,
}

pub(crate) struct State {
    pub store: Store,
    pub avatars: AvatarStore,
    pub outbox: OutboxSignal,
    pub http: reqwest::Client,
    /// The services that hold data about users and answer
    /// `GET /v1/<service>/me/export`, for the export fan-out.
    pub exporters: Vec<(&'static str, String)>,
    /// Breaker and retry budget for the calls to those services.
    pub export_guard: kit::resilience::Guard,
}

pub(crate) type AppState = Arc<State>;

/// The consumer that turns auth's events into profiles.
pub fn consumer(db: Db, settings: ConsumerSettings) -> Consumer {
    Consumer::new("users", db, events::handlers()).with_settings(settings)
}

/// Builds the users service on `db`.
pub async fn service(ctx: &Context, db: Db) -> anyhow::Result<Service> {
    kit::install_crypto();
    let config = &ctx.config;
    let settings: Settings = config.section("users")?;
    db.migrate(&MIGRATIONS).await?;
    db.migrate(&kit::bus::store::MIGRATIONS).await?;
    let avatars = AvatarStore::from_settings(&settings.avatars, &config.settings.data_dir)?;
    let auth_url = ctx.service_url("auth")?;
    let tokens = &config.settings.tokens;
    let verifier = Arc::new(TokenVerifier::new(
        HttpKeySource::new(format!("{auth_url}/.well-known/jwks.json")),
        &config.issuer(),
        &tokens.audience,
        Duration::from_secs(tokens.jwks_refetch_interval_secs),
        Duration::from_secs(tokens.leeway_secs),
    ));
    let relay = Relay::new("users", db.clone(), ctx.bus.clone());
    let bus_settings: ConsumerSettings = config.section("bus")?;
    let state = Arc::new(State {
        store: Store::new(db.clone()),
        avatars,
        outbox: relay.signal(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        exporters: vec![("auth", auth_url)],
        export_guard: kit::resilience::Guard::new(Default::default(), Default::default()),
    });
    let (router, openapi) = api::router(state).split_for_parts();
    // Avatars are uploaded here, bigger than the usual body limit.
    Ok(Service::new("users", router, openapi)
        .with_body_limit("/v1/users/me/avatar", avatars::MAX_UPLOAD_BYTES + 64 * 1024)
        .with_db(db.clone())
        .with_bus(ctx.bus.clone())
        .with_verifier(verifier)
        .with_relay(relay)
        .with_consumer(consumer(db, bus_settings), ctx.bus.clone()))
}
