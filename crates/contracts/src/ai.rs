//! Events emitted by the AI service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// The AI service made a bot (its id is auth's): services that seat
/// players themselves (game, for a tournament's match) know it is a bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BotCreated {
    pub bot_id: Uuid,
    pub name: String,
    /// `easy`, `medium` or `hard`.
    pub level: String,
    pub created_at: DateTime<Utc>,
}

impl Event for BotCreated {
    const TYPE: &'static str = "panal.ai.bot_created.v1";
    const SOURCE: &'static str = "ai";
    const SUMMARY: &'static str = "the AI service made a bot, a player that is not a person";
    fn subject(&self) -> String {
        self.bot_id.to_string()
    }
}
