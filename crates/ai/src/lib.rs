//! AI: bot opponents for Pong. See `docs/ai.md`.
//!
//! A bot is a player like any other: auth makes its identity (and signs the
//! `bot` role into its tokens, so game marks its seats and stats never
//! rates it), it joins matches through game's API with its own token, and
//! plays over realtime's socket with the presses and releases a keyboard
//! makes, looking at the match once a second.
//!
//! - how a bot plays, as pure functions: [`domain`]
//! - one bot in one match, over the socket: [`player`]
//! - the bots' identities and tokens: [`roster`]; seating bots: [`seater`]
//! - where a request lands: [`api`]; the SQL: [`store`]

pub mod api;
pub mod domain;
pub mod error;
pub mod player;
pub mod roster;
pub mod seater;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::db::Migrations;
use kit::http::Worker;
use kit::service::Setup;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;

use crate::player::Table;
use crate::roster::Roster;
use crate::store::{Game, Store};

/// The AI service's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "wants", include_str!("../migrations/sqlite/0002_wants.sql")),
        (3, "invitations", include_str!("../migrations/sqlite/0003_invitations.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "wants", include_str!("../migrations/postgres/0002_wants.sql")),
        (3, "invitations", include_str!("../migrations/postgres/0003_invitations.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// The AI service's settings: `[ai]` in `panal.toml`, `PANAL_AI__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How long a bot seated in a match waits for it to start (the other
    /// seats to fill) before it gives up.
    pub wait_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { wait_secs: 600 }
    }
}

/// What the AI service's handlers share.
pub struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) roster: Arc<Roster>,
    pub(crate) game: Arc<kit::peer::PeerClient>,
    table: Arc<Table>,
    /// Every bot's match runs as a task under these: cancelled and awaited
    /// when the service stops.
    players: TaskTracker,
    stop: CancellationToken,
    /// The (match, bot) pairs being played by this process.
    running: Arc<std::sync::Mutex<std::collections::HashSet<(uuid::Uuid, uuid::Uuid)>>>,
}

impl State {
    /// Starts a bot playing its match, unless it plays it already.
    pub(crate) fn spawn(&self, g: Game) {
        let key = (g.match_id, g.bot_id);
        if !self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key) {
            return;
        }
        let (table, stop, running) = (self.table.clone(), self.stop.child_token(), self.running.clone());
        self.players.spawn(async move {
            player::play(table, g, stop).await;
            running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        });
    }
}

pub(crate) type AppState = Arc<State>;

/// The AI service.
pub struct AiService;

impl kit::Service for AiService {
    const NAME: &'static str = "ai";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Bots are made, and their tokens asked for, in the service's name.
    const CLIENT_SCOPES: &'static [&'static str] = &["bots:act"];
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.wait_secs == 0 {
            anyhow::bail!("invalid configuration: ai.wait_secs must be above 0");
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let store = Arc::new(Store::new(setup.db()?));
        let auth = kit::peer::PeerClient::new("auth", setup.ctx.service_url("auth")?, Duration::from_secs(5))?;
        let game =
            Arc::new(kit::peer::PeerClient::new("game", setup.ctx.service_url("game")?, Duration::from_secs(5))?);
        let roster = Arc::new(Roster::new(store.clone(), auth, setup.service_token()?));
        let realtime = setup.ctx.service_url("realtime")?;
        let socket_url = format!(
            "{}/v1/ws",
            realtime.trim_end_matches('/').replacen("https://", "wss://", 1).replacen("http://", "ws://", 1)
        );
        let table = Arc::new(Table {
            store: store.clone(),
            roster: roster.clone(),
            game: game.clone(),
            socket_url,
            wait: Duration::from_secs(setup.settings.wait_secs),
        });
        Ok(State {
            store,
            roster,
            game,
            table,
            players: TaskTracker::new(),
            stop: CancellationToken::new(),
            running: Arc::default(),
        })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    /// Results of the matches bots play (a safety net: a bot's player
    /// records its result itself when it sees the last frame); matches the
    /// queue made for bots.
    fn handlers() -> kit::bus::Handlers {
        kit::bus::Handlers::new()
            .on::<contracts::game::MatchFinished, _>(|tx, e, _| {
                Box::pin(async move {
                    if e.players.iter().any(|p| p.bot) {
                        Store::finished(tx, e.match_id, e.winner, e.finished_at).await?;
                    }
                    Ok(())
                })
            })
            // A match game seated one of the bots in (a tournament's):
            // recorded here, played by the process's player worker.
            .on::<contracts::game::MatchStarted, _>(|tx, e, _| {
                Box::pin(async move {
                    for p in &e.players {
                        Store::adopt(tx, e.match_id, p.user_id, e.started_at).await?;
                    }
                    Ok(())
                })
            })
            // Served by the seater, outside the consumer's transaction
            // (seating calls auth and game).
            .on::<contracts::game::BotsWanted, _>(|tx, e, _| {
                Box::pin(async move {
                    let level = domain::Level::for_rating(e.rating);
                    Store::want(tx, e.match_id, level, e.wanted_at).await?;
                    Ok(())
                })
            })
            // A player invited one of the bots (from chat): the seater
            // accepts in the bot's name, and the bot plays.
            .on::<contracts::game::InvitationSent, _>(|tx, e, _| {
                Box::pin(async move {
                    if e.bot {
                        Store::invited(tx, e.invitation_id, e.to, e.invited_at).await?;
                    }
                    Ok(())
                })
            })
    }

    /// Plays every match a bot should be playing and is not (those of a
    /// previous run, and those game seated a bot in); at a stop, ends every
    /// bot's play and waits for it.
    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let seater = state.clone();
        let state = state.clone();
        vec![
            Box::new(move |stop: CancellationToken| Box::pin(seater::run(seater, stop))),
            Box::new(move |stop: CancellationToken| {
                Box::pin(async move {
                    loop {
                        match state.store.unfinished().await {
                            Ok(games) => {
                                for g in games {
                                    state.spawn(g);
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "the bots' unfinished matches could not be read"),
                        }
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                    state.stop.cancel();
                    state.players.close();
                    state.players.wait().await;
                })
            }),
        ]
    }
}
