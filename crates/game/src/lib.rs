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
//! - which process runs which live match, takeover and handover: [`leases`];
//!   the shared queue's matchmaker: [`lobby`]
//! - where a request lands: [`api`]; the SQL: [`store`]

pub mod api;
pub mod arena;
pub mod cards;
pub mod domain;
pub mod error;
pub mod invitations;
pub mod leases;
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
        (5, "leases", include_str!("../migrations/sqlite/0005_leases.sql")),
        (6, "queue", include_str!("../migrations/sqlite/0006_queue.sql")),
        (7, "bots", include_str!("../migrations/sqlite/0007_bots.sql")),
        (8, "references", include_str!("../migrations/sqlite/0008_references.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "invitations", include_str!("../migrations/postgres/0002_invitations.sql")),
        (3, "ratings", include_str!("../migrations/postgres/0003_ratings.sql")),
        (4, "rematches", include_str!("../migrations/postgres/0004_rematches.sql")),
        (5, "leases", include_str!("../migrations/postgres/0005_leases.sql")),
        (6, "queue", include_str!("../migrations/postgres/0006_queue.sql")),
        (7, "bots", include_str!("../migrations/postgres/0007_bots.sql")),
        (8, "references", include_str!("../migrations/postgres/0008_references.sql")),
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
    /// How long a process's hold on a live match lasts unrenewed: when a
    /// game process dies, another takes its matches over after at most this.
    pub lease_secs: u64,
    /// Where the other game processes reach this one, to forward players'
    /// inputs for the matches it runs (e.g. `http://10.0.0.5:8005`). Needed
    /// only when several game processes share a database.
    pub advertise_url: Option<String>,
    /// A player the queue found nobody for after this long gets a match
    /// whose other seats the AI service fills with bots (`bots_wanted`);
    /// 0: never.
    pub bots_after_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            absent_after_ms: 5_000,
            reconnect_grace_secs: 30,
            max_live_matches: 2_000,
            lease_secs: 5,
            advertise_url: None,
            bots_after_secs: 20,
        }
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
    pub(crate) chat: kit::peer::PeerClient,
    pub(crate) token: Arc<kit::credentials::ServiceToken>,
    /// Inputs for matches another game process runs go to it with this.
    pub(crate) forward: reqwest::Client,
}

pub(crate) type AppState = Arc<State>;

/// The game service.
pub struct GameService;

impl kit::Service for GameService {
    const NAME: &'static str = "game";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Frames go to realtime, invitation cards to chat, in game's own name.
    const CLIENT_SCOPES: &'static [&'static str] = &["realtime:publish", "chat:post"];
    /// Seats, results and invitations name users: export and erasure.
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.absent_after_ms == 0 || s.max_live_matches == 0 || s.lease_secs == 0 {
            anyhow::bail!(
                "invalid configuration: game's absent_after_ms, max_live_matches and lease_secs must be above 0"
            );
        }
        if let Some(url) = &s.advertise_url
            && reqwest::Url::parse(url).is_err()
        {
            anyhow::bail!("invalid configuration: game.advertise_url {url:?} is not a URL");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let settings = setup.settings.clone();
        let owner = store::Owner {
            id: uuid::Uuid::new_v4().simple().to_string(),
            url: settings.advertise_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
            lease: Duration::from_secs(settings.lease_secs),
        };
        let store = Arc::new(Store::new(setup.db()?, owner));
        let invitations = invitations::Invitations::new(setup.db()?);
        let chat = kit::peer::PeerClient::new("chat", setup.ctx.service_url("chat")?, Duration::from_secs(5))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let timing = Timing {
            absent_after: Duration::from_millis(settings.absent_after_ms),
            reconnect_grace: Duration::from_secs(settings.reconnect_grace_secs),
        };
        // Live matches a previous run (or a process that died) left are
        // taken over by the lease worker, from their last snapshot.
        let arena = Arc::new(Arena::new(timing, metrics.clone()));
        let realtime = Arc::new(kit::peer::PeerClient::new(
            "realtime",
            setup.ctx.service_url("realtime")?,
            Duration::from_secs(2),
        )?);
        let (frames, _) = tokio::sync::watch::channel(Arc::new(arena::Broadcast::default()));
        Ok(State {
            store,
            arena,
            settings,
            frames,
            metrics,
            realtime,
            invitations,
            chat,
            token: setup.service_token()?,
            forward: reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?,
        })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Ratings from stats, which matchmaking groups by; erasures.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new()
            .on::<contracts::stats::RatingChanged, _>(|tx, e, _| {
                Box::pin(async move {
                    Store::set_rating(tx, e.user_id, &e.mode, e.rating, e.changed_at).await?;
                    Ok(())
                })
            })
            .on::<contracts::ai::BotCreated, _>(|tx, e, _| {
                Box::pin(async move {
                    Store::bot_created(tx, e.bot_id, e.created_at).await?;
                    Ok(())
                })
            })
            .on::<contracts::users::UserErased, _>(|tx, e, _| {
                Box::pin(async move {
                    Store::erase(tx, e.user_id, e.erased_at).await?;
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
        let (lobby_store, lobby_arena) = (state.store.clone(), state.arena.clone());
        let (lobby_metrics, publisher_metrics) = (state.metrics.clone(), state.metrics.clone());
        let bots_after =
            (state.settings.bots_after_secs > 0).then(|| Duration::from_secs(state.settings.bots_after_secs));
        let (lease_store, lease_arena, max_live) =
            (state.store.clone(), state.arena.clone(), state.settings.max_live_matches);
        vec![
            Box::new(move |stop: CancellationToken| Box::pin(leases::run(lease_store, lease_arena, max_live, stop))),
            Box::new(move |stop: CancellationToken| {
                Box::pin(lobby::run(lobby_store, lobby_arena, lobby_metrics, bots_after, stop))
            }),
            Box::new(move |stop: CancellationToken| Box::pin(arena.run(store, frames, stop))),
            Box::new(move |stop: CancellationToken| {
                Box::pin(publisher::run(receiver, realtime, token, publisher_metrics, stop))
            }),
        ]
    }
}
