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
