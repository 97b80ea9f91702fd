//! Stats: read models built only from game's events. See `docs/stats.md`.
//!
//! Every `match_finished` is journaled and applied in one transaction:
//! Glicko-2 ratings per mode (moved only by matches between people), wins,
//! losses, forfeits and streaks, a match history per player, per-day points
//! for charts, and a leaderboard per mode. `panal stats rebuild` replays
//! the journal into fresh read models and arrives at the same numbers.
//! A rated match announces each player's new rating (`rating_changed`),
//! which game's matchmaking follows.
//!
//! - the rules: [`domain`]; the SQL: [`store`]
//! - where a request lands: [`api`]; events in: [`events`]

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::sync::Arc;

use kit::bus::Handlers;
use kit::db::{Db, Migrations};
use kit::service::Setup;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::store::{Rebuilt, Store};

/// Stats' migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Stats' settings: `[stats]` in `panal.toml`, `PANAL_STATS__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Rated matches a player needs before they appear on a leaderboard.
    pub ranked_after: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { ranked_after: 1 }
    }
}

/// What stats' handlers share.
pub struct State {
    pub(crate) store: Store,
}

pub(crate) type AppState = Arc<State>;

/// The stats service.
pub struct StatsService;

impl kit::Service for StatsService {
    const NAME: &'static str = "stats";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.ranked_after == 0 {
            anyhow::bail!("invalid configuration: stats' ranked_after must be at least 1");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        Ok(State { store: Store::new(setup.db()?, setup.settings.ranked_after) })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn handlers() -> Handlers {
        events::handlers()
    }
}

/// `panal stats rebuild`: replays the journal in stats' (migrated)
/// database into fresh read models.
pub async fn rebuild(db: &Db) -> anyhow::Result<Rebuilt> {
    Ok(Store::new(db.clone(), 1).rebuild(chrono::Utc::now()).await?)
}
