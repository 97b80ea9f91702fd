//! Events emitted by the game service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A player's seat in a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatchPlayer {
    pub user_id: Uuid,
    /// 0 and 1 in a duel (left, right); 0–3 with four players (left, right,
    /// top, bottom).
    pub seat: u8,
    /// A bot of the AI service, never rated as a person.
    pub bot: bool,
}

/// Every seat was taken: the match is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatchStarted {
    pub match_id: Uuid,
    /// `duel` or `four_players`.
    pub mode: String,
    pub players: Vec<MatchPlayer>,
    /// Goals a player may concede before they are out.
    pub points_to_win: u8,
    /// The match was created for a tournament, an invitation or the queue.
    pub origin: String,
    pub started_at: DateTime<Utc>,
}

impl Event for MatchStarted {
    const TYPE: &'static str = "panal.game.match_started.v1";
    const SOURCE: &'static str = "game";
    const SUMMARY: &'static str = "every seat of a match was taken and play began";
    fn subject(&self) -> String {
        self.match_id.to_string()
    }
}

/// One player's line in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlayerResult {
    pub user_id: Uuid,
    pub seat: u8,
    pub bot: bool,
    /// Goals credited to them.
    pub scored: u8,
    /// Goals they let in.
    pub conceded: u8,
    /// 1 for the winner, then by how long they stayed in.
    pub place: u8,
    /// Left the match or did not come back in time.
    pub forfeited: bool,
}

/// A match ended: the full result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatchFinished {
    pub match_id: Uuid,
    pub mode: String,
    pub origin: String,
    pub winner: Uuid,
    pub players: Vec<PlayerResult>,
    /// Someone forfeited (left, or did not come back in time).
    pub forfeit: bool,
    /// Played time, pauses left out.
    pub duration_ms: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl Event for MatchFinished {
    const TYPE: &'static str = "panal.game.match_finished.v1";
    const SOURCE: &'static str = "game";
    const SUMMARY: &'static str = "a match ended, with every player's score, place and whether anyone forfeited";
    fn subject(&self) -> String {
        self.match_id.to_string()
    }
}

/// Players waited in the queue with nobody to play: game made their match
/// with free seats for bots (`game.bots_after_secs`); the AI service seats
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BotsWanted {
    pub match_id: Uuid,
    /// `duel` or `four_players`.
    pub mode: String,
    /// Free seats to fill with bots.
    pub bots: u8,
    /// The waiting players' mean rating, for the bots' level.
    pub rating: f64,
    pub wanted_at: DateTime<Utc>,
}

/// A player invited another to a match (`POST /v1/game/invitations`; the
/// card is in their direct conversation in chat). Notify tells the person
/// invited; when it is one of the AI service's bots, the AI service accepts
/// in its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvitationSent {
    pub invitation_id: Uuid,
    /// Who invited.
    pub from: Uuid,
    /// Who is invited.
    pub to: Uuid,
    /// Whether `to` is a bot.
    pub bot: bool,
    pub invited_at: DateTime<Utc>,
    /// Accepted after this, the invitation is refused (409).
    pub expires_at: DateTime<Utc>,
}

impl Event for InvitationSent {
    const TYPE: &'static str = "panal.game.invitation_sent.v1";
    const SOURCE: &'static str = "game";
    const SUMMARY: &'static str = "a player invited another (a person or a bot) to a match";
    fn subject(&self) -> String {
        self.invitation_id.to_string()
    }
}

impl Event for BotsWanted {
    const TYPE: &'static str = "panal.game.bots_wanted.v1";
    const SOURCE: &'static str = "game";
    const SUMMARY: &'static str = "players waited in the queue with nobody to play: their match has seats for bots";
    fn subject(&self) -> String {
        self.match_id.to_string()
    }
}
