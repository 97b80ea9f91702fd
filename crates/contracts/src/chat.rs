//! Events emitted by the chat service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A message was posted in a conversation: a member's text, or a service's
/// notice or card. Carries who should hear of it (notify), not the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessagePosted {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    /// `direct` or `room`.
    pub conversation_kind: String,
    /// Its number in the conversation (1, 2, …).
    pub seq: i64,
    /// The member who wrote it; absent for a service's notice or card.
    pub author_id: Option<Uuid>,
    /// `text`, `notice` or `card`.
    pub message_kind: String,
    /// The members it was delivered to (the author, and members who
    /// blocked the author, left out).
    pub recipients: Vec<Uuid>,
    pub posted_at: DateTime<Utc>,
}

impl Event for MessagePosted {
    const TYPE: &'static str = "panal.chat.message_posted.v1";
    const SOURCE: &'static str = "chat";
    const SUMMARY: &'static str = "a message, notice or card was posted in a conversation";
    fn subject(&self) -> String {
        self.conversation_id.to_string()
    }
}
