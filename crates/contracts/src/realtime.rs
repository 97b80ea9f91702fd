//! What services ask of realtime over the bus.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A publication a service wants delivered on a channel. Recorded in the
/// publishing service's outbox in the same transaction as the change it
/// announces (a chat message and its delivery are committed together, or
/// neither is); realtime follows this type and publishes it. The contract
/// is realtime's; any service may record it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Publication {
    /// `user:<id>`, `chat:<room>`, `game:<match>`, `tournament:<id>`.
    pub channel: String,
    /// Delivered to subscribers as it is.
    pub data: serde_json::Value,
    /// Users not to deliver it to, whatever they are subscribed to (chat:
    /// the members who blocked the author). Also left out of their
    /// recovery and history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_users: Vec<Uuid>,
    /// Not numbered and not kept: delivered to whoever is subscribed now
    /// (typing indicators). A client recovering never sees it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

impl Event for Publication {
    const TYPE: &'static str = "panal.realtime.publication.v1";
    const SOURCE: &'static str = "realtime";
    const SUMMARY: &'static str =
        "a service (chat, game, …) asks realtime to publish on a channel; recorded by the asking service";
    /// The channel: publications of one channel are delivered in order.
    fn subject(&self) -> String {
        self.channel.clone()
    }
}

/// A user's first connection to a realtime replica opened (`online`), or
/// their last one there closed. Users keeps, per user and replica, whether
/// they are connected, and shows friends online from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceChanged {
    pub user_id: Uuid,
    /// The replica (`realtime.instance_id`).
    pub replica: String,
    pub online: bool,
    pub at: chrono::DateTime<chrono::Utc>,
    /// How long an `online` holds without a newer word from this replica
    /// (its snapshots renew it): a replica that dies stops vouching.
    pub valid_secs: u32,
}

impl Event for PresenceChanged {
    const TYPE: &'static str = "panal.realtime.presence_changed.v1";
    const SOURCE: &'static str = "realtime";
    const SUMMARY: &'static str = "a user's first connection to a replica opened, or their last one there closed";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// Who is connected to a replica (a part of them: at most 5,000 per event),
/// sent every minute: renews their `online` for `valid_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceSnapshot {
    pub replica: String,
    pub online: Vec<Uuid>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub valid_secs: u32,
}

impl Event for PresenceSnapshot {
    const TYPE: &'static str = "panal.realtime.presence_snapshot.v1";
    const SOURCE: &'static str = "realtime";
    const SUMMARY: &'static str = "every minute, the users connected to a replica";
    fn subject(&self) -> String {
        self.replica.clone()
    }
}
