//! The events Panal services exchange.
//!
//! Every event travels in a CloudEvents 1.0 JSON [`Envelope`]. Its `type` is
//! `panal.<service>.<event>.v<version>`; a payload change that would break a
//! consumer is a new version, never an edit of an old one.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod ai;
pub mod auth;
pub mod chat;
pub mod game;
pub mod realtime;
pub mod schema;
pub mod stats;
pub mod tournament;
pub mod users;

/// A typed event payload.
pub trait Event: Serialize + DeserializeOwned + JsonSchema {
    /// The CloudEvents `type`, e.g. `panal.auth.user_registered.v1`.
    const TYPE: &'static str;
    /// The service that emits it (the CloudEvents `source`).
    const SOURCE: &'static str;
    /// When it is emitted, in a few words (for `docs/events.md`).
    const SUMMARY: &'static str;

    /// The aggregate the event is about (the CloudEvents `subject`); events of one
    /// subject are delivered in order.
    fn subject(&self) -> String;
}

/// A CloudEvents 1.0 envelope in the JSON format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// A UUIDv7, unique per event; consumers deduplicate on it.
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    /// W3C trace context of the change that caused the event (CloudEvents
    /// distributed-tracing extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// Wraps `event`, stamping a new id and the current time.
    pub fn new<E: Event>(event: &E, traceparent: Option<String>) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7(),
            source: E::SOURCE.to_owned(),
            kind: E::TYPE.to_owned(),
            subject: event.subject(),
            time: Utc::now(),
            datacontenttype: "application/json".to_owned(),
            // Serialising a plain struct of strings, ids and times cannot fail.
            data: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
            traceparent,
        }
    }

    /// The payload as `E`, when the envelope is of `E`'s type.
    pub fn decode<E: Event>(&self) -> Option<Result<E, serde_json::Error>> {
        (self.kind == E::TYPE).then(|| serde_json::from_value(self.data.clone()))
    }
}

/// What the catalogue knows of one event type.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub kind: &'static str,
    pub source: &'static str,
    pub summary: &'static str,
    /// The payload's JSON Schema, generated from the Rust type.
    pub schema: serde_json::Value,
}

fn info<E: Event>() -> EventInfo {
    EventInfo { kind: E::TYPE, source: E::SOURCE, summary: E::SUMMARY, schema: schemars::schema_for!(E).to_value() }
}

/// Every event type of the platform. Adding an event means adding it here; the
/// tests then ask for its committed schema and its line in `docs/events.md`.
pub fn catalogue() -> Vec<EventInfo> {
    vec![
        info::<auth::UserRegistered>(),
        info::<auth::EmailVerified>(),
        info::<auth::UserLoggedIn>(),
        info::<auth::PasswordChanged>(),
        info::<auth::SessionRevoked>(),
        info::<auth::UserDisabled>(),
        info::<auth::RoleChanged>(),
        info::<users::ProfileUpdated>(),
        info::<users::AvatarChanged>(),
        info::<users::FriendshipChanged>(),
        info::<users::UserBlocked>(),
        info::<users::UserUnblocked>(),
        info::<users::UserBanned>(),
        info::<users::UserErased>(),
        info::<realtime::Publication>(),
        info::<realtime::PresenceChanged>(),
        info::<realtime::PresenceSnapshot>(),
        info::<chat::MessagePosted>(),
        info::<game::MatchStarted>(),
        info::<game::MatchFinished>(),
        info::<game::BotsWanted>(),
        info::<game::InvitationSent>(),
        info::<stats::RatingChanged>(),
        info::<tournament::TournamentStarted>(),
        info::<tournament::RoundStarted>(),
        info::<tournament::TournamentFinished>(),
        info::<ai::BotCreated>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserRegistered;

    #[test]
    fn an_envelope_is_cloudevents_json_and_round_trips() {
        let event = UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            registered_at: Utc::now(),
        };
        let env = Envelope::new(&event, None);
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "panal.auth.user_registered.v1");
        assert_eq!(json["source"], "auth");
        assert_eq!(json["subject"], event.user_id.to_string());
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.decode::<UserRegistered>().unwrap().unwrap(), event);
    }
}
