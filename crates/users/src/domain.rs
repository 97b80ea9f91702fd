//! Users' types and rules, without I/O.

use chrono::{DateTime, Utc};
use contracts::users::FriendshipState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Display names follow one rule on every service that takes them (auth
/// checks a new account's by it): [`kit::text::DisplayName`].
pub use kit::text::{DisplayName, MAX_DISPLAY_NAME_CHARS, key_of};

pub const MAX_BIO_CHARS: usize = 500;

/// A bio: up to 500 characters, no control characters except line breaks.
pub fn parse_bio(raw: &str) -> Result<String, String> {
    let bio = raw.trim();
    if bio.chars().count() > MAX_BIO_CHARS {
        return Err(format!("must be at most {MAX_BIO_CHARS} characters"));
    }
    if bio
        .chars()
        .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(bio.to_owned())
}

/// A BCP 47 language tag such as `en`, `es-ES` or `zh-Hant-TW` (syntax only).
pub fn parse_locale(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 35
        && raw.split('-').enumerate().all(|(i, part)| {
            let len_ok = if i == 0 { (2..=8).contains(&part.len()) } else { (1..=8).contains(&part.len()) };
            len_ok
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
                && (i > 0 || part.bytes().all(|b| b.is_ascii_alphabetic()))
        });
    if ok { Ok(raw.to_owned()) } else { Err("must be a language tag such as `en` or `es-ES`".to_owned()) }
}

/// An IANA time-zone name such as `Europe/Madrid` or `UTC` (syntax only).
pub fn parse_timezone(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && !raw.starts_with('/')
        && !raw.ends_with('/')
        && !raw.contains("..")
        && !raw.contains("//")
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
    if ok { Ok(raw.to_owned()) } else { Err("must be a time-zone name such as `Europe/Madrid` or `UTC`".to_owned()) }
}

/// Who may see or do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Audience {
    Everyone,
    Friends,
    Nobody,
}

impl Audience {
    /// Whether a viewer with this relationship is in the audience.
    pub fn admits(self, is_self: bool, is_friend: bool) -> bool {
        is_self
            || match self {
                Audience::Everyone => true,
                Audience::Friends => is_friend,
                Audience::Nobody => false,
            }
    }
}

/// A profile's privacy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Privacy {
    /// Who sees the bio, locale and timezone. The display name and avatar are
    /// always visible.
    #[sqlx(rename = "profile_audience")]
    pub profile: Audience,
    /// Who sees when the user was last online.
    #[sqlx(rename = "status_audience")]
    pub online_status: Audience,
    /// Who may send friend requests (`friends` means nobody new).
    #[sqlx(rename = "requests_audience")]
    pub friend_requests: Audience,
}

impl Default for Privacy {
    fn default() -> Self {
        Self { profile: Audience::Everyone, online_status: Audience::Friends, friend_requests: Audience::Everyone }
    }
}

/// Where a profile stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    Active,
    Banned,
    Erased,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Banned => "banned",
            Status::Erased => "erased",
        }
    }
}

/// A profile as users keeps it (a row of `profiles`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Profile {
    pub user_id: Uuid,
    pub display_name: String,
    pub bio: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    #[sqlx(flatten)]
    pub privacy: Privacy,
    pub avatar_etag: Option<String>,
    pub status: Status,
    pub banned_reason: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The pair key of a friendship: smaller id first (the same key orders its
/// events on the bus: [`contracts::users::FriendshipChanged`]).
pub use contracts::users::pair;

/// A row of `friendships`: a request waiting for an answer, or a friendship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Friendship {
    Pending,
    Accepted,
}

/// Who sent a pending request, seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// They asked the viewer.
    Incoming,
    /// The viewer asked them.
    Outgoing,
}

/// Everything between a viewer and another user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Between {
    /// The friendship row and who sent its request, when there is one.
    pub friendship: Option<(Friendship, Uuid)>,
    /// The viewer blocked the other.
    pub viewer_blocked: bool,
    /// The other blocked the viewer.
    pub blocked_viewer: bool,
}

impl Between {
    pub fn friends(&self) -> bool {
        matches!(self.friendship, Some((Friendship::Accepted, _)))
    }

    /// The pending request between them, from `viewer`'s side.
    pub fn request(&self, viewer: Uuid) -> Option<Direction> {
        match self.friendship {
            Some((Friendship::Pending, by)) => Some(direction(viewer, by)),
            _ => None,
        }
    }
}

/// Which way a request sent by `requested_by` goes, seen by `viewer`.
pub fn direction(viewer: Uuid, requested_by: Uuid) -> Direction {
    if requested_by == viewer { Direction::Outgoing } else { Direction::Incoming }
}

/// What asking someone to be friends does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A new pending request.
    Requested,
    /// They had asked first: now friends.
    Accepted,
}

/// Why a friend request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Yourself,
    NoSuchUser,
    /// The target blocked the asker (told as "does not accept requests from you").
    BlockedByThem,
    /// The asker blocked the target.
    YouBlockedThem,
    /// The target's privacy admits no new requests.
    NotAccepting,
    AlreadyAsked,
    AlreadyFriends,
}

/// The friend-request rule: whether `me` may ask `other`, given the target's
/// profile (`None` when it does not exist) and what is between them, and what
/// the request does. The store gathers these facts and applies the answer in
/// one transaction, so two requests crossing cannot both insert.
pub fn friend_request(me: Uuid, other: Uuid, target: Option<&Profile>, between: &Between) -> Result<Asked, Refusal> {
    if me == other {
        return Err(Refusal::Yourself);
    }
    let target = target.filter(|p| p.status == Status::Active).ok_or(Refusal::NoSuchUser)?;
    if between.blocked_viewer {
        return Err(Refusal::BlockedByThem);
    }
    if between.viewer_blocked {
        return Err(Refusal::YouBlockedThem);
    }
    let they_asked = between.request(me) == Some(Direction::Incoming);
    if target.privacy.friend_requests != Audience::Everyone && !they_asked {
        return Err(Refusal::NotAccepting);
    }
    match between.friendship {
        None => Ok(Asked::Requested),
        Some((Friendship::Pending, _)) if they_asked => Ok(Asked::Accepted),
        Some((Friendship::Pending, _)) => Err(Refusal::AlreadyAsked),
        Some((Friendship::Accepted, _)) => Err(Refusal::AlreadyFriends),
    }
}

/// What one user does to an existing request or friendship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accept the request they sent.
    Accept,
    /// Decline the request they sent.
    Decline,
    /// Withdraw the request `me` sent.
    Cancel,
    /// End the friendship.
    Remove,
}

impl Answer {
    /// The row this acts on: its state and, for requests, who must have sent it.
    pub fn acts_on(self, me: Uuid, other: Uuid) -> (Friendship, Option<Uuid>) {
        match self {
            Answer::Accept | Answer::Decline => (Friendship::Pending, Some(other)),
            Answer::Cancel => (Friendship::Pending, Some(me)),
            Answer::Remove => (Friendship::Accepted, None),
        }
    }

    /// What the event says happened.
    pub fn outcome(self) -> FriendshipState {
        match self {
            Answer::Accept => FriendshipState::Accepted,
            Answer::Decline => FriendshipState::Declined,
            Answer::Cancel => FriendshipState::Cancelled,
            Answer::Remove => FriendshipState::Removed,
        }
    }

    /// Why nothing happened, when there is no such row.
    pub fn missing(self) -> &'static str {
        match self {
            Answer::Accept | Answer::Decline => "no pending request from this user",
            Answer::Cancel => "no pending request to this user",
            Answer::Remove => "you are not friends with this user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone(audience: Audience) -> Profile {
        let now = Utc::now();
        Profile {
            user_id: Uuid::now_v7(),
            display_name: "Ada".to_owned(),
            bio: String::new(),
            locale: None,
            timezone: None,
            privacy: Privacy { friend_requests: audience, ..Privacy::default() },
            avatar_etag: None,
            status: Status::Active,
            banned_reason: None,
            last_seen_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn friend_requests_follow_blocks_privacy_and_what_exists() {
        let me = Uuid::now_v7();
        let them = someone(Audience::Everyone);
        let other = them.user_id;
        let ask = |target: Option<&Profile>, between: Between| friend_request(me, other, target, &between);
        let nothing = Between::default();
        assert_eq!(ask(Some(&them), nothing), Ok(Asked::Requested));
        assert_eq!(friend_request(me, me, Some(&them), &nothing), Err(Refusal::Yourself));
        assert_eq!(ask(None, nothing), Err(Refusal::NoSuchUser));
        let banned = Profile { status: Status::Banned, ..them.clone() };
        assert_eq!(ask(Some(&banned), nothing), Err(Refusal::NoSuchUser));
        assert_eq!(ask(Some(&them), Between { blocked_viewer: true, ..nothing }), Err(Refusal::BlockedByThem));
        assert_eq!(ask(Some(&them), Between { viewer_blocked: true, ..nothing }), Err(Refusal::YouBlockedThem));
        let theirs = Between { friendship: Some((Friendship::Pending, other)), ..nothing };
        let mine = Between { friendship: Some((Friendship::Pending, me)), ..nothing };
        let friends = Between { friendship: Some((Friendship::Accepted, me)), ..nothing };
        assert_eq!(ask(Some(&them), theirs), Ok(Asked::Accepted));
        assert_eq!(ask(Some(&them), mine), Err(Refusal::AlreadyAsked));
        assert_eq!(ask(Some(&them), friends), Err(Refusal::AlreadyFriends));
        // Closed to new requests, yet a request they sent can still be answered.
        let closed = someone(Audience::Friends);
        let ask_closed = |between: Between| friend_request(me, closed.user_id, Some(&closed), &between);
        assert_eq!(ask_closed(nothing), Err(Refusal::NotAccepting));
        let theirs = Between { friendship: Some((Friendship::Pending, closed.user_id)), ..nothing };
        assert_eq!(ask_closed(theirs), Ok(Asked::Accepted));
    }

    #[test]
    fn answers_act_on_the_right_row() {
        let (me, them) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(Answer::Accept.acts_on(me, them), (Friendship::Pending, Some(them)));
        assert_eq!(Answer::Decline.acts_on(me, them), (Friendship::Pending, Some(them)));
        assert_eq!(Answer::Cancel.acts_on(me, them), (Friendship::Pending, Some(me)));
        assert_eq!(Answer::Remove.acts_on(me, them), (Friendship::Accepted, None));
    }

    #[test]
    fn locales_and_timezones_are_checked_for_shape() {
        for ok in ["en", "es-ES", "zh-Hant-TW"] {
            assert!(parse_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "e", "en_US", "1a", "en-", &"a".repeat(40)] {
            assert!(parse_locale(bad).is_err(), "{bad:?}");
        }
        for ok in ["UTC", "Europe/Madrid", "America/Argentina/Buenos_Aires", "Etc/GMT+3"] {
            assert!(parse_timezone(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "Europe//Madrid", "Europe/Madrid;drop"] {
            assert!(parse_timezone(bad).is_err(), "{bad:?}");
        }
    }
}
