//! Game: server-authoritative Pong. See `docs/game.md`.
//!
//! Matches are created and joined over HTTP; once every seat is taken the
//! match is live and this process steps it at 60 Hz ([`arena`]), taking
//! players' presses and releases and keeping the frame clients render.
//! A match's start and end are recorded with `match_started` and
//! `match_finished` in the same transaction as the change.
//!
//! - the rules, as a pure deterministic simulation: [`domain`]
//! - the live matches and the clock: [`arena`]
//! - where a request lands: [`api`]; the SQL: [`store`]

pub mod api;
pub mod arena;
pub mod cards;
pub mod domain;
pub mod error;
pub mod invitations;
pub mod lobby;
pub mod matchmaking;
pub mod metrics;
pub mod publisher;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::db::Migrations;
use kit::http::Worker;
use kit::service::Setup;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::arena::{Arena, Timing};
use crate::store::Store;

/// Game's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "invitations", include_str!("../migrations/sqlite/0002_invitations.sql")),
        (3, "ratings", include_str!("../migrations/sqlite/0003_ratings.sql")),
        (4, "rematches", include_str!("../migrations/sqlite/0004_rematches.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "invitations", include_str!("../migrations/postgres/0002_invitations.sql")),
        (3, "ratings", include_str!("../migrations/postgres/0003_ratings.sql")),
        (4, "rematches", include_str!("../migrations/postgres/0004_rematches.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Game's settings: `[game]` in `panal.toml`, `PANAL_GAME__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// A player not heard from (an input or a heartbeat) for this long is
    /// away: the match pauses.
    pub absent_after_ms: u64,
    /// How long an away player has to come back before they forfeit.
    pub reconnect_grace_secs: u64,
    /// Live matches this process runs at most; more are refused (503).
    pub max_live_matches: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { absent_after_ms: 5_000, reconnect_grace_secs: 30, max_live_matches: 2_000 }
    }
}

/// What game's handlers share.
pub struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) arena: Arc<Arena>,
    pub(crate) settings: Settings,
    /// Every broadcast's frames, from the clock to the publisher.
    frames: tokio::sync::watch::Sender<Arc<arena::Broadcast>>,
    metrics: Arc<metrics::Metrics>,
    realtime: Arc<kit::peer::PeerClient>,
    pub(crate) invitations: invitations::Invitations,
    pub(crate) lobby: Arc<lobby::Lobby>,
    pub(crate) chat: kit::peer::PeerClient,
    pub(crate) token: Arc<kit::credentials::ServiceToken>,
}

pub(crate) type AppState = Arc<State>;

/// The game service.
pub struct GameService;

impl kit::Service for GameService {
    const NAME: &'static str = "game";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Frames go to realtime, invitation cards to chat, in game's own name.
    const CLIENT_SCOPES: &'static [&'static str] = &["realtime:publish", "chat:post"];
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.absent_after_ms == 0 || s.max_live_matches == 0 {
            anyhow::bail!("invalid configuration: game's absent_after_ms and max_live_matches must be above 0");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let settings = setup.settings.clone();
        let store = Arc::new(Store::new(setup.db()?));
        let invitations = invitations::Invitations::new(setup.db()?);
        let chat = kit::peer::PeerClient::new("chat", setup.ctx.service_url("chat")?, Duration::from_secs(5))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let timing = Timing {
            absent_after: Duration::from_millis(settings.absent_after_ms),
            reconnect_grace: Duration::from_secs(settings.reconnect_grace_secs),
        };
        let arena = Arc::new(Arena::new(timing, metrics.clone()));
        // Live matches a previous run left: resumed from their last
        // snapshot, paused until their players are back.
        for m in store.live().await? {
            arena.start(&m);
        }
        let realtime = Arc::new(kit::peer::PeerClient::new(
            "realtime",
            setup.ctx.service_url("realtime")?,
            Duration::from_secs(2),
        )?);
        let (frames, _) = tokio::sync::watch::channel(Arc::new(arena::Broadcast::default()));
        let lobby = Arc::new(lobby::Lobby::default());
        Ok(State {
            store,
            arena,
            settings,
            frames,
            metrics,
            realtime,
            invitations,
            lobby,
            chat,
            token: setup.service_token()?,
        })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Ratings from stats, which matchmaking groups by.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new().on::<contracts::stats::RatingChanged, _>(|tx, e, _| {
            Box::pin(async move {
                Store::set_rating(tx, e.user_id, &e.mode, e.rating, e.changed_at).await?;
                Ok(())
            })
        })
    }

    fn finish(mut server: kit::http::Server, state: &Arc<State>) -> anyhow::Result<kit::http::Server> {
        state.metrics.register(server.metrics_mut().registry_mut());
        Ok(server)
    }

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let (arena, store, frames) = (state.arena.clone(), state.store.clone(), state.frames.clone());
        let (receiver, realtime, token) = (state.frames.subscribe(), state.realtime.clone(), state.token.clone());
        let (lobby, lobby_store, lobby_arena) = (state.lobby.clone(), state.store.clone(), state.arena.clone());
        let (lobby_metrics, publisher_metrics) = (state.metrics.clone(), state.metrics.clone());
        vec![
            Box::new(move |stop: CancellationToken| Box::pin(lobby.run(lobby_store, lobby_arena, lobby_metrics, stop))),
            Box::new(move |stop: CancellationToken| Box::pin(arena.run(store, frames, stop))),
            Box::new(move |stop: CancellationToken| {
                Box::pin(publisher::run(receiver, realtime, token, publisher_metrics, stop))
            }),
        ]
    }
}
