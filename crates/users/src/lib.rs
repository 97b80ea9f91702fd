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

use kit::bus::Handlers;
use kit::db::Migrations;
use kit::peer::PeerClient;
use kit::service::Setup;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::avatars::{AvatarStore, StorageSettings};
use crate::store::Store;

/// Users' migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "presence", include_str!("../migrations/sqlite/0002_presence.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "presence", include_str!("../migrations/postgres/0002_presence.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Users' settings: `[users]` in `panal.toml`, `PANAL_USERS__*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub avatars: StorageSettings,
}

/// What users' handlers share.
pub struct State {
    pub(crate) store: Store,
    pub(crate) avatars: AvatarStore,
    /// The other services that hold data about users (they declared
    /// it), for the export fan-out: `GET /v1/<service>/me/export` each.
    pub(crate) exporters: Vec<PeerClient>,
}

pub(crate) type AppState = Arc<State>;

/// The users service.
pub struct Users;

impl kit::Service for Users {
    const NAME: &'static str = "users";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    const PERSONAL_DATA: bool = true;
    // Avatars are uploaded here, bigger than the usual body limit.
    const BODY_LIMITS: &'static [(&'static str, usize)] =
        &[("/v1/users/me/avatar", avatars::MAX_UPLOAD_BYTES + 64 * 1024)];
    type Settings = Settings;
    type State = State;

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        kit::install_crypto();
        let config = &setup.ctx.config;
        let avatars = AvatarStore::from_settings(&setup.settings.avatars, &config.settings.data_dir)?;
        let exporters = setup
            .ctx
            .peers
            .iter()
            .filter(|p| p.personal_data && p.name != Self::NAME)
            .map(|p| PeerClient::new(p.name, p.url.clone(), Duration::from_secs(10)))
            .collect::<Result<_, _>>()?;
        Ok(State { store: Store::new(setup.db()?), avatars, exporters })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn handlers() -> Handlers {
        events::handlers()
    }
}
