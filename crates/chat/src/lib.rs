//! Chat: direct messages and rooms.
//!
//! Rooms are public, password-protected or private (by invitation), with
//! owner, admins and members; kicks, bans, timed mutes and slow mode;
//! messages numbered per conversation, edited or deleted (a tombstone
//! stays), read markers and unread counts, full-text search, typing
//! indicators, reports and an audit log of every moderation action.
//! Services post notices and cards (a game invitation) into conversations.
//! Every change is delivered live through realtime (`chat:<conversation>`
//! channels, recorded in the same transaction); blocks from users' events
//! are honoured on the server. See `docs/chat.md`.
//!
//! - where a request lands: [`api`]; the rules: [`domain`]
//! - the SQL: [`store`]; events in and out: [`events`]

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::sync::Arc;

use kit::bus::Handlers;
use kit::db::Migrations;
use kit::limit::{Limiter, Quota};
use kit::service::Setup;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::store::Store;

/// Chat's migrations, for SQLite and PostgreSQL.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// Chat's settings: `[chat]` in `panal.toml`, `PANAL_CHAT__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// Messages one user may post in one conversation per minute…
    pub messages_per_minute: u32,
    /// …in bursts of up to this many.
    pub message_burst: u32,
    /// Rooms one user may own.
    pub rooms_per_user: u32,
    /// Members a room may hold.
    pub max_room_members: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_message_chars: 2_000,
            messages_per_minute: 30,
            message_burst: 10,
            rooms_per_user: 20,
            max_room_members: 1_000,
        }
    }
}

/// What chat's handlers share.
pub struct State {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
    /// Messages per (user, conversation), in this process.
    pub(crate) posting: Limiter<(Uuid, Uuid)>,
}

pub(crate) type AppState = Arc<State>;

/// The chat service.
pub struct Chat;

impl kit::Service for Chat {
    const NAME: &'static str = "chat";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;

    fn validate(s: &Settings) -> anyhow::Result<()> {
        if s.max_message_chars == 0 || s.messages_per_minute == 0 || s.message_burst == 0 || s.max_room_members < 2 {
            anyhow::bail!(
                "invalid configuration: chat's max_message_chars, messages_per_minute and message_burst must be above 0, max_room_members at least 2"
            );
        }
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let settings = setup.settings.clone();
        let posting = Limiter::new(Quota::per_minute(settings.messages_per_minute, settings.message_burst));
        Ok(State { store: Store::new(setup.db()?), settings, posting })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn handlers() -> Handlers {
        events::handlers()
    }
}
