//! Tournament (port 8006): single-elimination and Swiss tournaments of
//! Pong, online and local. See `docs/tournament.md`.
//!
//! Every change to a running tournament — its start, a result — is one
//! transaction that locks the tournament, asks the rules what comes next
//! ([`domain::next`]), writes it, and records the events
//! (`tournament_started`, `round_started`, `tournament_finished`) and the
//! realtime pushes (next-match calls on `user:<id>`, `tournament:<id>`).
//! Online matches are made in game by the [`scheduler`]; their results come
//! back as game's `match_finished`.
//!
//! - the rules, pure: [`domain`]; the SQL and the transactions: [`store`]
//! - where a request lands: [`api`]

pub mod api;
pub mod domain;
pub mod error;
pub mod scheduler;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::db::Migrations;
use kit::http::Worker;
use kit::service::Setup;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::store::{Store, StoreError};

/// The tournament service's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "game_matches", include_str!("../migrations/sqlite/0002_game_matches.sql")),
        (3, "points", include_str!("../migrations/sqlite/0003_points.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "game_matches", include_str!("../migrations/postgres/0002_game_matches.sql")),
        (3, "points", include_str!("../migrations/postgres/0003_points.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// The tournament service's settings: `[tournament]` (none yet).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Settings {}

/// What the tournament service's handlers share.
pub struct State {
    pub(crate) store: Arc<Store>,
    /// Bots for entrants come from the AI service.
    pub(crate) ai: kit::peer::PeerClient,
    scheduler: Arc<scheduler::Scheduler>,
}

pub(crate) type AppState = Arc<State>;

/// The tournament service.
pub struct TournamentService;

impl kit::Service for TournamentService {
    const NAME: &'static str = "tournament";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Entrants are players, under aliases they chose: export and erasure.
    const PERSONAL_DATA: bool = true;
    /// Online matches are made in game, and players called in chat, in the
    /// service's own name.
    const CLIENT_SCOPES: &'static [&'static str] = &["game:matches", "chat:post"];
    type Settings = Settings;
    type State = State;

    async fn state(setup: Setup<Self::Settings>) -> anyhow::Result<State> {
        let store = Arc::new(Store::new(setup.db()?));
        let game = kit::peer::PeerClient::new("game", setup.ctx.service_url("game")?, Duration::from_secs(5))?;
        let chat = kit::peer::PeerClient::new("chat", setup.ctx.service_url("chat")?, Duration::from_secs(5))?;
        let token = setup.service_token()?;
        let scheduler = Arc::new(scheduler::Scheduler { store: store.clone(), game, chat, token });
        let ai = kit::peer::PeerClient::new("ai", setup.ctx.service_url("ai")?, Duration::from_secs(5))?;
        Ok(State { store, ai, scheduler })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Online matches' results from game; duel ratings from stats, for
    /// seeding; erasures.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new()
            .on::<contracts::game::MatchFinished, _>(|tx, e, _| {
                Box::pin(async move {
                    if e.origin != "tournament" {
                        return Ok(());
                    }
                    match Store::from_game(tx, e.match_id, e.winner, e.finished_at).await {
                        Ok(()) => Ok(()),
                        Err(StoreError::Database(e)) => Err(e.into()),
                        // A result the bracket cannot take is never retried.
                        Err(e) => Err(kit::bus::Rejected(e.to_string()).into()),
                    }
                })
            })
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

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let scheduler = state.scheduler.clone();
        vec![Box::new(move |stop: CancellationToken| Box::pin(scheduler.run(stop)))]
    }
}
