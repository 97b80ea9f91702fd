//! Events emitted by the users service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A profile's public fields changed (display name, bio, locale, timezone,
/// privacy). Services that show names keep their copy current from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileUpdated {
    pub user_id: Uuid,
    pub display_name: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Event for ProfileUpdated {
    const TYPE: &'static str = "panal.users.profile_updated.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "a profile's name, locale, timezone or privacy changed";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A user uploaded or removed their avatar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AvatarChanged {
    pub user_id: Uuid,
    /// Where the avatar is served (`/v1/users/{id}/avatar?v=…`); the default
    /// avatar's address when the upload was removed.
    pub avatar_url: String,
    pub changed_at: DateTime<Utc>,
}

impl Event for AvatarChanged {
    const TYPE: &'static str = "panal.users.avatar_changed.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "an avatar was uploaded or removed";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// What happened to a friendship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FriendshipState {
    Requested,
    Accepted,
    Declined,
    Cancelled,
    Removed,
}

/// Two users became friends, stopped being friends, or a request between them
/// was made, declined or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FriendshipChanged {
    /// Who acted.
    pub actor: Uuid,
    /// The other user.
    pub other: Uuid,
    pub state: FriendshipState,
    pub changed_at: DateTime<Utc>,
}

impl Event for FriendshipChanged {
    const TYPE: &'static str = "panal.users.friendship_changed.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "a friend request was made, accepted, declined or cancelled, or a friend removed";
    /// The pair, `<smaller id>:<larger id>`, whoever acted: events about one
    /// friendship share a subject, so the bus keeps them in order (a request
    /// and its acceptance by the other side never arrive swapped).
    fn subject(&self) -> String {
        let (low, high) = pair(self.actor, self.other);
        format!("{low}:{high}")
    }
}

/// Two users' ids in a fixed order, smaller first: the key of what they share.
pub fn pair(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a < b { (a, b) } else { (b, a) }
}

/// `blocker` blocked `blocked`: chat and game refuse contact between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserBlocked {
    pub blocker: Uuid,
    pub blocked: Uuid,
    pub blocked_at: DateTime<Utc>,
}

impl Event for UserBlocked {
    const TYPE: &'static str = "panal.users.user_blocked.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "a user blocked another";
    fn subject(&self) -> String {
        self.blocker.to_string()
    }
}

/// `blocker` lifted a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserUnblocked {
    pub blocker: Uuid,
    pub blocked: Uuid,
    pub unblocked_at: DateTime<Utc>,
}

impl Event for UserUnblocked {
    const TYPE: &'static str = "panal.users.user_unblocked.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "a user lifted a block";
    fn subject(&self) -> String {
        self.blocker.to_string()
    }
}

/// An administrator banned a user: auth disables the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserBanned {
    pub user_id: Uuid,
    /// The administrator.
    pub banned_by: Uuid,
    pub reason: String,
    pub banned_at: DateTime<Utc>,
}

impl Event for UserBanned {
    const TYPE: &'static str = "panal.users.user_banned.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "an administrator banned a user";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A user erased their account (GDPR art. 17): every service erases or
/// anonymises what it holds about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserErased {
    pub user_id: Uuid,
    pub erased_at: DateTime<Utc>,
}

impl Event for UserErased {
    const TYPE: &'static str = "panal.users.user_erased.v1";
    const SOURCE: &'static str = "users";
    const SUMMARY: &'static str = "a user erased their account";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}
