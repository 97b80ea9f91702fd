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
pub mod password;
pub mod store;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use key_source::DbKeySource;
use kit::Context;
use kit::auth::TokenVerifier;
use kit::bus::{OutboxSignal, Relay};
use kit::db::{Db, Migrations};
use kit::http::Service;
use serde::Deserialize;

use crate::password::{HashSettings, Hasher};
use crate::store::Store;
use crate::tokens::KeyMaterial;

/// Auth's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// The event types auth consumes.
pub const CONSUMES: &[&str] = &[
    <contracts::users::UserErased as contracts::Event>::TYPE,
    <contracts::users::UserBanned as contracts::Event>::TYPE,
];

/// Auth's event handlers: an erased user's account is erased, a banned one's
/// disabled.
pub fn consumer(db: Db, settings: kit::bus::ConsumerSettings) -> kit::bus::Consumer {
    let handlers = kit::bus::Handlers::new()
        .on::<contracts::users::UserErased, _>(|tx, e, _meta| {
            Box::pin(async move { Ok(Store::erase_account(tx, e.user_id, e.erased_at).await?) })
        })
        .on::<contracts::users::UserBanned, _>(|tx, e, _meta| {
            Box::pin(async move { Ok(Store::disable_account(tx, e.user_id, "banned", e.banned_at).await?) })
        });
    kit::bus::Consumer::new("auth", db, handlers).with_settings(settings)
}

/// Auth's settings: `[auth]` in `panal.toml`, `PANAL_AUTH__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Lifetime of access tokens, in seconds (60 to 3600).
    pub access_token_ttl_secs: u64,
    /// Lifetime of each refresh token, in seconds; every use gives a new one.
    pub refresh_token_ttl_secs: u64,
    /// The longest a session lasts, however often it is refreshed, in seconds.
    pub session_max_age_secs: u64,
    /// Argon2id parameters and the hashing concurrency bound.
    pub password: HashSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            password: HashSettings::default(),
        }
    }
}

impl Settings {
    fn validate(&self) -> anyhow::Result<()> {
        if !(60..=3600).contains(&self.access_token_ttl_secs) {
            anyhow::bail!("invalid configuration: auth.access_token_ttl_secs must be between 60 and 3600");
        }
        if self.refresh_token_ttl_secs < 60 || self.session_max_age_secs < self.refresh_token_ttl_secs.min(3600) {
            anyhow::bail!(
                "invalid configuration: auth.refresh_token_ttl_secs and auth.session_max_age_secs are too short"
            );
        }
        Ok(())
    }
}

/// Everything the handlers share.
pub(crate) struct State {
    pub store: Store,
    pub hasher: Hasher,
    pub settings: Settings,
    pub issuer: String,
    pub audience: String,
    pub signing_key: KeyMaterial,
    /// Wakes the outbox relay after a commit that wrote events.
    pub outbox: OutboxSignal,
}

pub(crate) type AppState = Arc<State>;

/// Builds the auth service on `db`, applying its migrations and making sure a
/// signing key exists. Its events go to `ctx.bus` through the outbox relay.
pub async fn service(ctx: &Context, db: Db) -> anyhow::Result<Service> {
    let config = &ctx.config;
    let settings: Settings = config.section("auth")?;
    settings.validate()?;
    db.migrate(&MIGRATIONS).await?;
    db.migrate(&kit::bus::store::MIGRATIONS).await?;
    let store = Store::new(db.clone());
    let relay = Relay::new("auth", db.clone(), ctx.bus.clone());

    let signing_key = match store.signing_key().await? {
        Some(key) => key,
        None => {
            let key = KeyMaterial::generate()?;
            store.insert_signing_key(&key, chrono::Utc::now()).await?;
            tracing::info!(kid = %key.kid, "generated a new signing key");
            key
        }
    };

    let tokens = &config.settings.tokens;
    let verifier = Arc::new(TokenVerifier::new(
        DbKeySource { store: store.clone() },
        &config.issuer(),
        &tokens.audience,
        Duration::from_secs(tokens.jwks_refetch_interval_secs),
        Duration::from_secs(tokens.leeway_secs),
    ));
    verifier.refresh(true).await?;

    let hasher = Hasher::new(&settings.password)?;
    let state = Arc::new(State {
        store,
        hasher,
        settings,
        issuer: config.issuer(),
        audience: tokens.audience.clone(),
        signing_key,
        outbox: relay.signal(),
    });
    let (router, openapi) = api::router(state).split_for_parts();
    let bus_settings: kit::bus::ConsumerSettings = config.section("bus")?;
    Ok(Service::new("auth", router, openapi)
        .with_db(db.clone())
        .with_bus(ctx.bus.clone())
        .with_verifier(verifier)
        .with_relay(relay)
        .with_consumer(consumer(db, bus_settings), ctx.bus.clone()))
}

mod key_source {
    //! Auth verifies its own tokens with the keys in its own database, through
    //! the same verifier every other service uses with auth's JWKS.

    use kit::auth::{Jwks, KeySource, KeySourceError};

    use crate::store::Store;

    pub struct DbKeySource {
        pub store: Store,
    }

    impl KeySource for DbKeySource {
        fn fetch(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<Jwks, KeySourceError>> + Send + '_>> {
            Box::pin(
                async move { crate::api::published_jwks(&self.store).await.map_err(|e| KeySourceError(e.to_string())) },
            )
        }
    }
}
