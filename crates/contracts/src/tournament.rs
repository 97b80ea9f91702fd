//! Events emitted by the tournament service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// The organiser started a tournament: registration closed, seeds drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TournamentStarted {
    pub tournament_id: Uuid,
    /// `single_elimination` or `swiss`.
    pub format: String,
    /// `online` or `local`.
    pub kind: String,
    /// Entrants in seed order (entrant ids: a player's id online, an
    /// alias's id in a local tournament).
    pub entrants: Vec<Uuid>,
    pub rounds: u32,
    pub started_at: DateTime<Utc>,
}

impl Event for TournamentStarted {
    const TYPE: &'static str = "panal.tournament.tournament_started.v1";
    const SOURCE: &'static str = "tournament";
    const SUMMARY: &'static str = "a tournament's registration closed and its first round was drawn";
    fn subject(&self) -> String {
        self.tournament_id.to_string()
    }
}

/// One match of a round: `b` absent for a bye.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pairing {
    pub index: u32,
    pub a: Uuid,
    pub b: Option<Uuid>,
}

/// A round's matches are known (all of them: a Swiss round; those whose
/// players are known: an elimination round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoundStarted {
    pub tournament_id: Uuid,
    /// 0 for the first.
    pub round: u32,
    pub pairings: Vec<Pairing>,
    pub started_at: DateTime<Utc>,
}

impl Event for RoundStarted {
    const TYPE: &'static str = "panal.tournament.round_started.v1";
    const SOURCE: &'static str = "tournament";
    const SUMMARY: &'static str = "a tournament's round opened, with its pairings";
    fn subject(&self) -> String {
        self.tournament_id.to_string()
    }
}

/// One line of the final standings: aliases and opaque ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Standing {
    pub place: u32,
    pub alias: String,
    pub entrant_id: Uuid,
}

/// A tournament ended: the final standings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TournamentFinished {
    pub tournament_id: Uuid,
    pub name: String,
    pub format: String,
    pub kind: String,
    pub standings: Vec<Standing>,
    pub finished_at: DateTime<Utc>,
}

impl Event for TournamentFinished {
    const TYPE: &'static str = "panal.tournament.tournament_finished.v1";
    const SOURCE: &'static str = "tournament";
    const SUMMARY: &'static str = "a tournament ended, with its final standings by alias";
    fn subject(&self) -> String {
        self.tournament_id.to_string()
    }
}
