//! Events emitted by the stats service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A player's Glicko-2 rating in a mode changed: after a rated match, or
/// when `panal stats rebuild` arrived at a different number. Game keeps
/// the latest for matchmaking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RatingChanged {
    pub user_id: Uuid,
    /// `duel` or `four_players`.
    pub mode: String,
    /// Glicko-2 rating on the Glicko scale (1500 to start).
    pub rating: f64,
    /// Rating deviation: how unsure the rating still is (350 to start).
    pub deviation: f64,
    /// Rated matches the rating is built from.
    pub rated_matches: u32,
    /// The match that changed it; absent after a rebuild.
    pub match_id: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

impl Event for RatingChanged {
    const TYPE: &'static str = "panal.stats.rating_changed.v1";
    const SOURCE: &'static str = "stats";
    const SUMMARY: &'static str = "a player's rating in a mode changed, after a rated match or a rebuild";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}
