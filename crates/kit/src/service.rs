//! The service skeleton: a service says what it is, kit does the wiring.
//!
//! A service crate implements [`Service`] for a unit struct: its name, its
//! migrations, its settings, the state its handlers share, its routes, its
//! event handlers and workers, and whether it holds personal data. kit
//! builds the rest ([`build`]): the settings read and validated, the
//! migrations applied (its own and the bus tables), the token verifier, the
//! outbox relay, the event consumer, metrics, readiness, and the
//! [`Server`] that [`crate::http::serve`] runs.
//!
//! The `panal` binary lists the services it mounts once, as `&dyn`
//! [`Mount`] (every [`Service`] is one); `panal up`, `panal serve`,
//! `panal migrate`, replay and the catalog all read that list.
//!
//! ```ignore
//! pub struct Chat;
//!
//! impl kit::Service for Chat {
//!     const NAME: &'static str = "chat";
//!     const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
//!     const PERSONAL_DATA: bool = true;
//!     type Settings = Settings;
//!     type State = State;
//!
//!     async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
//!         Ok(State { store: Store::new(setup.db()?), settings: setup.settings })
//!     }
//!     fn routes(state: &Arc<State>) -> OpenApiRouter { api::router(state.clone()) }
//!     fn handlers() -> Handlers { events::handlers() }
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::Context;
use crate::auth::{HttpKeySource, KeySource, TokenVerifier};
use crate::bus::{Consumer, ConsumerSettings, Handlers, Relay};
use crate::credentials::{ClientCredentials, ServiceToken};
use crate::db::{Db, Migrations};
use crate::http::{Server, Worker};

/// What a service declares about itself; see the module documentation.
pub trait Service: Send + Sync + 'static {
    /// Its name: in the catalog, on the command line, in `/v1/<name>/…`,
    /// in `[name]` settings and `PANAL_<NAME>_URL`.
    const NAME: &'static str;

    /// The migrations of its own database, one list per backend; `None`
    /// for a service without a database (it then has no outbox either).
    const MIGRATIONS: Option<&'static Migrations> = None;

    /// It holds data about users: it answers `GET /v1/<name>/me/export`
    /// (its part of a GDPR export, with the caller's token) and erases what
    /// it holds on `panal.users.user_erased.v1`. Users' export fan-out
    /// finds it from this.
    const PERSONAL_DATA: bool = false;

    /// Paths (or route templates) whose bodies may exceed `http.body_limit`,
    /// with their own limit in bytes: uploads. The gateway allows the same.
    const BODY_LIMITS: &'static [(&'static str, usize)] = &[];

    /// Event types it follows without an inbox, from a worker of its own
    /// (the gateway's revocation list); listed as consumed beside those of
    /// [`Service::handlers`].
    const FOLLOWS: &'static [&'static str] = &[];

    /// The scopes it calls other services with in its own name (a service
    /// client of auth, `[clients.<name>]`): [`Setup::service_token`] then
    /// holds its token. See [`crate::credentials`].
    const CLIENT_SCOPES: &'static [&'static str] = &[];

    /// Its section of the configuration (`[name]`, `PANAL_<NAME>__*`).
    type Settings: DeserializeOwned + Default + Send + Sync + 'static;

    /// What its handlers share.
    type State: Send + Sync + 'static;

    /// Refuses settings the service cannot run with, with a message that
    /// names the setting.
    fn validate(_settings: &Self::Settings) -> anyhow::Result<()> {
        Ok(())
    }

    /// Where its token verifier gets auth's public keys: auth's JWKS by
    /// default (auth reads its own database instead).
    fn key_source(ctx: &Context, _db: Option<&Db>) -> anyhow::Result<Box<dyn KeySource>> {
        let auth = ctx.service_url("auth")?;
        Ok(Box::new(HttpKeySource::new(format!("{auth}/.well-known/jwks.json"))))
    }

    /// Builds the state from its settings, database and context.
    fn state(setup: Setup<Self::Settings>) -> impl Future<Output = anyhow::Result<Self::State>> + Send;

    /// Its HTTP API, documented.
    fn routes(state: &Arc<Self::State>) -> OpenApiRouter;

    /// Its event handlers; the event types it consumes are theirs.
    fn handlers() -> Handlers {
        Handlers::new()
    }

    /// Its background tasks besides the relay and the consumer.
    fn workers(_state: &Arc<Self::State>) -> Vec<Worker> {
        Vec::new()
    }

    /// Last touches to the server kit built (a front, readiness of its own).
    fn finish(server: Server, _state: &Arc<Self::State>) -> anyhow::Result<Server> {
        Ok(server)
    }
}

/// What a service gets to build its state from.
pub struct Setup<S> {
    pub ctx: Context,
    pub settings: S,
    db: Option<Db>,
    /// Verifies access tokens (the [`Caller`](crate::auth::Caller)
    /// extractor uses the same one).
    pub verifier: Arc<TokenVerifier>,
    service_token: Option<Arc<ServiceToken>>,
}

impl<S> Setup<S> {
    /// Its database, migrated.
    pub fn db(&self) -> anyhow::Result<Db> {
        self.db.clone().ok_or_else(|| anyhow::anyhow!("this service declares no migrations, so it has no database"))
    }

    /// Its own access token toward other services, when it declares
    /// [`Service::CLIENT_SCOPES`].
    pub fn service_token(&self) -> anyhow::Result<Arc<ServiceToken>> {
        self.service_token.clone().ok_or_else(|| anyhow::anyhow!("this service declares no client scopes"))
    }
}

/// Builds `S` on `db` (which its declaration says it has, or `None`).
/// Returns the state too, for what a test or a command wants to reach.
pub async fn build<S: Service>(ctx: &Context, db: Option<Db>) -> anyhow::Result<(Server, Arc<S::State>)> {
    let config = &ctx.config;
    let settings: S::Settings = config.section(S::NAME)?;
    S::validate(&settings).map_err(|e| anyhow::anyhow!("invalid configuration: {}.{e:#}", S::NAME))?;
    let db = match (db, S::MIGRATIONS) {
        (Some(db), Some(migrations)) => {
            apply(migrations, &db).await?;
            Some(db)
        }
        (None, Some(_)) => anyhow::bail!("{} needs a database", S::NAME),
        (_, None) => None,
    };
    let tokens = &config.settings.tokens;
    let verifier = Arc::new(TokenVerifier::new(
        S::key_source(ctx, db.as_ref())?,
        &config.issuer(),
        &tokens.audience,
        Duration::from_secs(tokens.jwks_refetch_interval_secs),
        Duration::from_secs(tokens.leeway_secs),
    ));
    let service_token = if S::CLIENT_SCOPES.is_empty() {
        None
    } else {
        let clients: std::collections::HashMap<String, ClientCredentials> = config.section("clients")?;
        let Some(credentials) = clients.get(S::NAME).filter(|c| !c.id.is_empty()).cloned() else {
            anyhow::bail!(
                "{name} calls other services in its own name and needs a service client with the scopes {scopes}: \
                 register one (`panal auth clients create --name {name} --scope …`) and set \
                 PANAL_CLIENTS__{upper}__ID and PANAL_CLIENTS__{upper}__SECRET (`panal up` does this by itself)",
                name = S::NAME,
                scopes = S::CLIENT_SCOPES.join(", "),
                upper = S::NAME.to_uppercase(),
            );
        };
        let secret = config.live_secret(&format!("clients.{}.secret", S::NAME), credentials.secret);
        Some(Arc::new(ServiceToken::new(&ctx.service_url("auth")?, credentials.id, secret, S::CLIENT_SCOPES)?))
    };
    let setup = Setup { ctx: ctx.clone(), settings, db: db.clone(), verifier: verifier.clone(), service_token };
    let state = Arc::new(S::state(setup).await?);
    let (router, openapi) = S::routes(&state).split_for_parts();
    let mut server = Server::new(S::NAME, router, openapi).with_bus(ctx.bus.clone()).with_verifier(verifier);
    for (path, bytes) in S::BODY_LIMITS {
        server = server.with_body_limit(path, *bytes);
    }
    if let Some(db) = db {
        server = server.with_db(db.clone()).with_relay(Relay::new(S::NAME, db.clone(), ctx.bus.clone()));
        let handlers = S::handlers();
        if !handlers.is_empty() {
            let settings: ConsumerSettings = config.section("bus")?;
            let consumer = Consumer::new(S::NAME, db, handlers).with_settings(settings);
            server = server.with_consumer(consumer, ctx.bus.clone());
        }
    }
    for worker in S::workers(&state) {
        server = server.with_worker(worker);
    }
    Ok((S::finish(server, &state)?, state))
}

/// Applies `service`'s migrations to `db`, and the bus tables beside them
/// (`panal migrate`; [`build`] does the same at start).
pub async fn migrate(service: &dyn Mount, db: &Db) -> anyhow::Result<()> {
    match service.migrations() {
        Some(migrations) => apply(migrations, db).await,
        None => Ok(()),
    }
}

async fn apply(migrations: &Migrations, db: &Db) -> anyhow::Result<()> {
    db.migrate(migrations).await?;
    db.migrate(&crate::bus::store::MIGRATIONS).await.map_err(|e| anyhow::anyhow!("the bus tables: {e}"))
}

/// A service as the binary sees it: object safe, so one list holds them
/// all. Every [`Service`] is one.
pub trait Mount: Send + Sync {
    fn name(&self) -> &'static str;
    fn migrations(&self) -> Option<&'static Migrations>;
    fn personal_data(&self) -> bool;
    fn body_limits(&self) -> &'static [(&'static str, usize)];
    /// See [`Service::CLIENT_SCOPES`].
    fn client_scopes(&self) -> &'static [&'static str];
    /// The event types it consumes.
    fn consumes(&self) -> Vec<String>;
    /// Its consumer on `db`, when it consumes anything (to replay dead
    /// letters from the command line).
    fn consumer(&self, db: Db, settings: ConsumerSettings) -> Option<Consumer>;
    /// Builds it; `db` is its database when it declares migrations.
    fn build<'a>(&'a self, ctx: &'a Context, db: Option<Db>) -> BoxFuture<'a, anyhow::Result<Server>>;
}

impl<S: Service> Mount for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        S::MIGRATIONS
    }

    fn personal_data(&self) -> bool {
        S::PERSONAL_DATA
    }

    fn body_limits(&self) -> &'static [(&'static str, usize)] {
        S::BODY_LIMITS
    }

    fn client_scopes(&self) -> &'static [&'static str] {
        S::CLIENT_SCOPES
    }

    fn consumes(&self) -> Vec<String> {
        let mut types = S::handlers().types();
        types.extend(S::FOLLOWS.iter().map(|t| (*t).to_owned()));
        types
    }

    fn consumer(&self, db: Db, settings: ConsumerSettings) -> Option<Consumer> {
        let handlers = S::handlers();
        (!handlers.is_empty()).then(|| Consumer::new(S::NAME, db, handlers).with_settings(settings))
    }

    fn build<'a>(&'a self, ctx: &'a Context, db: Option<Db>) -> BoxFuture<'a, anyhow::Result<Server>> {
        Box::pin(async move { build::<S>(ctx, db).await.map(|(server, _)| server) })
    }
}

/// Another service of the platform, as the process running this one knows
/// it: where it answers, and what it declared.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: &'static str,
    /// `http://host:port`, no trailing slash.
    pub url: String,
    /// See [`Service::PERSONAL_DATA`].
    pub personal_data: bool,
    /// See [`Service::BODY_LIMITS`].
    pub body_limits: &'static [(&'static str, usize)],
}

impl Peer {
    /// A service of this name at `url` that declares nothing else (a test's
    /// stand-in, a service of another build).
    pub fn at(name: &'static str, url: impl Into<String>) -> Self {
        Self { name, url: url.into(), personal_data: false, body_limits: &[] }
    }

    /// `service` reached at `url`.
    pub fn of(service: &dyn Mount, url: String) -> Self {
        Self { name: service.name(), url, personal_data: service.personal_data(), body_limits: service.body_limits() }
    }
}
