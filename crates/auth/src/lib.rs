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
use kit::auth::KeySource;
use kit::bus::Handlers;
use kit::db::{Db, Migrations};
use kit::http::Server;
use kit::service::Setup;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

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

/// Auth's event handlers: an erased user's account is erased, a banned one's
/// disabled.
fn handlers() -> Handlers {
    Handlers::new()
        .on::<contracts::users::UserErased, _>(|tx, e, _meta| {
            Box::pin(async move { Ok(Store::erase_account(tx, e.user_id, e.erased_at).await?) })
        })
        .on::<contracts::users::UserBanned, _>(|tx, e, _meta| {
            Box::pin(async move {
                Store::disable_account(tx, e.user_id, "banned", None, e.banned_at).await?;
                Ok(())
            })
        })
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
            anyhow::bail!("access_token_ttl_secs must be between 60 and 3600");
        }
        if self.refresh_token_ttl_secs < 60 || self.session_max_age_secs < self.refresh_token_ttl_secs.min(3600) {
            anyhow::bail!("refresh_token_ttl_secs and session_max_age_secs are too short");
        }
        if !(300..=3600).contains(&self.reset_password_ttl_secs) {
            anyhow::bail!("reset_password_ttl_secs must be between 300 and 3600");
        }
        if !(60..=3600).contains(&self.client_token_ttl_secs) {
            anyhow::bail!("client_token_ttl_secs must be between 60 and 3600");
        }
        Ok(())
    }
}

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
    /// Mail auth sent (or logged, without SMTP).
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
        let keys = KeyRing::load(store.clone(), Duration::from_secs(settings.key_reload_secs)).await?;
        setup.verifier.refresh(true).await?;
        let tokens = &config.settings.tokens;
        let hasher = Hasher::new(&settings.password)?;
        let mailer = Mailer::new(config.settings.smtp_url.as_ref().map(|s| s.expose().as_str()), &settings.mail_from)?;
        let providers = Providers::new(&settings.providers, &config.settings.public_url)?;
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
        handlers()
    }
}

/// Builds auth on `db` with a [`Handle`] on what it sends (tests read the
/// mail it would have sent).
pub async fn build(ctx: &Context, db: Db) -> anyhow::Result<(Server, Handle)> {
    let (server, state) = kit::service::build::<Auth>(ctx, Some(db)).await?;
    Ok((server, Handle { mailer: state.mailer.clone() }))
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
