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
pub mod mail;
pub mod oauth;
pub mod ops;
pub mod password;
pub mod policy;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod totp;

use std::sync::Arc;
use std::time::Duration;

use key_source::DbKeySource;
use kit::Context;
use kit::auth::TokenVerifier;
use kit::bus::{OutboxSignal, Relay};
use kit::db::{Db, Migrations};
use kit::http::Service;
use serde::Deserialize;

use crate::mail::Mailer;
use crate::oauth::{ProviderSettings, Providers};
use crate::password::{HashSettings, Hasher};
use crate::store::Store;
use crate::throttle::{Throttle, ThrottleSettings};
use crate::tokens::KeyRing;

/// Auth's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "complete", include_str!("../migrations/sqlite/0002_complete.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "complete", include_str!("../migrations/postgres/0002_complete.sql")),
    ],
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
            Box::pin(async move {
                Store::disable_account(tx, e.user_id, "banned", None, e.banned_at, None).await?;
                Ok(())
            })
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
    /// Brute-force throttling of login, second factor and reset.
    pub throttle: ThrottleSettings,
    /// How long the second step of a sign-in may wait for its code, in seconds.
    pub mfa_challenge_ttl_secs: u64,
    /// Lifetime of an email-verification link, in seconds.
    pub verify_email_ttl_secs: u64,
    /// Lifetime of a password-reset link, in seconds.
    pub reset_password_ttl_secs: u64,
    /// How long `panal auth rotate-keys` publishes a new key before it signs,
    /// in seconds: longer than verifiers cache the JWKS (5 minutes).
    pub key_publish_delay_secs: u64,
    /// How often auth re-reads its keys (to see rotations made by the CLI).
    pub key_reload_secs: u64,
    /// Lifetime of service clients' access tokens, in seconds.
    pub client_token_ttl_secs: u64,
    /// The web application's address, for links in mail
    /// (`<app_url>/verify-email#token=…`); default: `public_url`.
    pub app_url: Option<String>,
    /// The sender of auth's mail.
    pub mail_from: String,
    /// The issuer name shown in authenticator apps.
    pub totp_issuer: String,
    /// External identity providers by name: `[auth.providers.42]`, ….
    pub providers: std::collections::BTreeMap<String, ProviderSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            password: HashSettings::default(),
            throttle: ThrottleSettings::default(),
            mfa_challenge_ttl_secs: 300,
            verify_email_ttl_secs: 24 * 3600,
            reset_password_ttl_secs: 30 * 60,
            key_publish_delay_secs: 600,
            key_reload_secs: 30,
            client_token_ttl_secs: 15 * 60,
            app_url: None,
            mail_from: "Panal <no-reply@panal.localhost>".to_owned(),
            totp_issuer: "Panal".to_owned(),
            providers: Default::default(),
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
        if !(300..=3600).contains(&self.reset_password_ttl_secs) {
            anyhow::bail!("invalid configuration: auth.reset_password_ttl_secs must be between 300 and 3600");
        }
        if !(60..=3600).contains(&self.client_token_ttl_secs) {
            anyhow::bail!("invalid configuration: auth.client_token_ttl_secs must be between 60 and 3600");
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
    pub keys: KeyRing,
    pub throttle: Throttle,
    pub mailer: Mailer,
    pub providers: Providers,
    /// Where links in mail point.
    pub app_url: String,
    /// Leeway verifiers allow on expiry, in seconds.
    pub leeway_secs: u64,
    /// Wakes the outbox relay after a commit that wrote events.
    pub outbox: OutboxSignal,
}

/// What a process running auth can reach besides its HTTP API.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Mail auth sent (or logged, without SMTP).
    pub mailer: Mailer,
}

pub(crate) type AppState = Arc<State>;

/// Builds the auth service on `db`, applying its migrations and making sure a
/// signing key exists. Its events go to `ctx.bus` through the outbox relay.
pub async fn service(ctx: &Context, db: Db) -> anyhow::Result<Service> {
    Ok(build(ctx, db).await?.0)
}

/// [`service`], with a [`Handle`] on what it sends.
pub async fn build(ctx: &Context, db: Db) -> anyhow::Result<(Service, Handle)> {
    let config = &ctx.config;
    let settings: Settings = config.section("auth")?;
    settings.validate()?;
    db.migrate(&MIGRATIONS).await?;
    db.migrate(&kit::bus::store::MIGRATIONS).await?;
    let store = Store::new(db.clone());
    let relay = Relay::new("auth", db.clone(), ctx.bus.clone());

    let keys = KeyRing::load(store.clone(), Duration::from_secs(settings.key_reload_secs)).await?;

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
    let mailer = Mailer::new(config.settings.smtp_url.as_ref().map(|s| s.expose().as_str()), &settings.mail_from)?;
    let providers = Providers::new(&settings.providers, &config.settings.public_url)?;
    let app_url = settings.app_url.clone().unwrap_or_else(|| config.settings.public_url.clone());
    let state = Arc::new(State {
        store,
        hasher,
        throttle: Throttle::new(settings.throttle.clone()),
        settings,
        issuer: config.issuer(),
        audience: tokens.audience.clone(),
        keys,
        mailer: mailer.clone(),
        providers,
        app_url: app_url.trim_end_matches('/').to_owned(),
        leeway_secs: tokens.leeway_secs,
        outbox: relay.signal(),
    });
    let (router, openapi) = api::router(state).split_for_parts();
    let bus_settings: kit::bus::ConsumerSettings = config.section("bus")?;
    let service = Service::new("auth", router, openapi)
        .with_db(db.clone())
        .with_bus(ctx.bus.clone())
        .with_verifier(verifier)
        .with_relay(relay)
        .with_consumer(consumer(db, bus_settings), ctx.bus.clone());
    Ok((service, Handle { mailer }))
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
