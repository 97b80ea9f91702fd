//! Tournament (port 8006): single-elimination and Swiss tournaments of
//! Pong, online and local. See `docs/tournament.md`.
//!
//! Every change to a running tournament — its start, a result — is one
//! transaction that locks the tournament, asks the rules what comes next
//! ([`domain::next`]), writes it, and records the events
//! (`tournament_started`, `round_started`, `tournament_finished`) and the
//! realtime pushes (next-match calls on `user:<id>`, `tournament:<id>`).
//!
//! - the rules, pure: [`domain`]; the SQL and the transactions: [`store`]
//! - where a request lands: [`api`]

pub mod api;
pub mod domain;
pub mod error;
pub mod store;

use std::sync::Arc;

use kit::db::Migrations;
use kit::service::Setup;
use utoipa_axum::router::OpenApiRouter;

use crate::store::Store;

/// The tournament service's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// The tournament service's settings: `[tournament]` (none yet).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Settings {}

/// What the tournament service's handlers share.
pub struct State {
    pub(crate) store: Store,
}

pub(crate) type AppState = Arc<State>;

/// The tournament service.
pub struct TournamentService;

impl kit::Service for TournamentService {
    const NAME: &'static str = "tournament";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Entrants are players, under aliases they chose: export and erasure.
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;

    async fn state(setup: Setup<Self::Settings>) -> anyhow::Result<State> {
        Ok(State { store: Store::new(setup.db()?) })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Duel ratings from stats, for seeding; erasures.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new()
            .on::<contracts::stats::RatingChanged, _>(|tx, e, _| {
                Box::pin(async move {
                    if e.mode == "duel" {
                        Store::set_rating(tx, e.user_id, e.rating, e.changed_at).await?;
                    }
                    Ok(())
                })
            })
            .on::<contracts::users::UserErased, _>(|tx, e, _| {
                Box::pin(async move {
                    Store::erase(tx, e.user_id).await?;
                    Ok(())
                })
            })
    }
}
