//! Chat's rules, without I/O: who may do what in a conversation, what a
//! message may hold, and how text is made searchable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 40;
/// Longest room topic, in characters.
pub const MAX_TOPIC: usize = 200;
/// Longest slow mode, in seconds (a day).
pub const MAX_SLOW_MODE_SECS: u32 = 86_400;
/// Longest timed mute, in seconds (thirty days).
pub const MAX_MUTE_SECS: u32 = 30 * 86_400;
/// Room passwords: at least this long, at most [`MAX_PASSWORD`] bytes.
pub const MIN_PASSWORD: usize = 4;
pub const MAX_PASSWORD: usize = 128;
/// Longest reason given for a ban or a report, in characters.
pub const MAX_REASON: usize = 500;

/// The platform roles (in the access token) that moderate every room.
pub const MODERATOR_ROLES: [&str; 2] = ["admin", "moderator"];

/// A direct conversation between two users, or a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Kind {
    Direct,
    Room,
}

/// Who may join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Visibility {
    /// Listed; anyone not banned joins.
    Public,
    /// Listed; joining takes the room's password.
    Password,
    /// Not listed; joining takes an invitation.
    Private,
}

/// A member's role in a room (in a direct conversation both are members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum MessageKind {
    /// Written by a member.
    Text,
    /// A line from a service ("Ada's match starts in 5 minutes").
    Notice,
    /// A structured card from a service, with actions.
    Card,
}

/// Who acts: a member with a role, or a platform moderator, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub role: Option<Role>,
    pub moderator: bool,
}

/// What one member does to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    Kick,
    Ban,
    Mute,
    Promote,
    Demote,
    TransferOwnership,
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403 with the reason.
    Forbidden(&'static str),
    /// 409 with the reason.
    Conflict(&'static str),
}

/// Whether `actor` may do `action` to a member whose role is `target`
/// (`None`: not a member — banning works on non-members too). The owner
/// cannot be kicked, banned or muted; admins act on members only; only the
/// owner names admins or hands the room over; platform moderators act on
/// anyone but the owner.
pub fn may_act(actor: Actor, action: MemberAction, target: Option<Role>) -> Result<(), Refusal> {
    use MemberAction::*;
    if target == Some(Role::Owner) {
        return Err(Refusal::Forbidden("the room's owner cannot be kicked, banned, muted or demoted"));
    }
    match action {
        Promote | Demote | TransferOwnership => {
            if actor.role != Some(Role::Owner) {
                return Err(Refusal::Forbidden("only the room's owner changes roles"));
            }
            if target.is_none() {
                return Err(Refusal::Conflict("that user is not a member of this room"));
            }
            Ok(())
        }
        Kick | Ban | Mute => {
            if action != Ban && target.is_none() {
                return Err(Refusal::Conflict("that user is not a member of this room"));
            }
            if actor.moderator {
                return Ok(());
            }
            match actor.role {
                Some(Role::Owner) => Ok(()),
                Some(Role::Admin) if target.is_none_or(|t| t < Role::Admin) => Ok(()),
                Some(Role::Admin) => Err(Refusal::Forbidden("admins act on members, not on other admins")),
                _ => Err(Refusal::Forbidden("this needs a room admin")),
            }
        }
    }
}

/// Room settings (topic, slow mode) need an admin; who may join
/// (visibility, password) needs the owner.
pub fn may_configure(actor: Actor, access: bool) -> Result<(), Refusal> {
    match (actor.role, access) {
        (Some(Role::Owner), _) => Ok(()),
        (Some(Role::Admin), false) => Ok(()),
        _ if actor.moderator && !access => Ok(()),
        (_, true) => Err(Refusal::Forbidden("only the room's owner changes who may join")),
        _ => Err(Refusal::Forbidden("this needs a room admin")),
    }
}

/// What stands between a member and posting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRefusal {
    /// Muted until then.
    Muted(DateTime<Utc>),
    /// Slow mode: wait this many seconds more.
    SlowMode(u64),
}

/// Whether a member may post at `now`: not muted, and (unless an admin)
/// not within the room's slow mode of their last message.
pub fn may_post(
    role: Role,
    muted_until: Option<DateTime<Utc>>,
    slow_mode_secs: u32,
    last_posted_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), PostRefusal> {
    if let Some(until) = muted_until.filter(|u| *u > now) {
        return Err(PostRefusal::Muted(until));
    }
    if slow_mode_secs > 0
        && role == Role::Member
        && let Some(last) = last_posted_at
    {
        let next = last + chrono::Duration::seconds(i64::from(slow_mode_secs));
        if next > now {
            let wait = (next - now).num_milliseconds().max(1);
            return Err(PostRefusal::SlowMode(u64::try_from(wait).unwrap_or(1).div_ceil(1000)));
        }
    }
    Ok(())
}

/// A room name: trimmed, 1 to [`MAX_ROOM_NAME`] characters, no control
/// characters. Names are unique without regard to case.
pub fn parse_room_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_ROOM_NAME {
        return Err(format!("must be 1 to {MAX_ROOM_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// The key room names are unique by.
pub fn room_name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A topic: up to [`MAX_TOPIC`] characters, no control characters but line breaks.
pub fn parse_topic(raw: &str) -> Result<String, String> {
    let topic = raw.trim();
    if topic.chars().count() > MAX_TOPIC {
        return Err(format!("must be at most {MAX_TOPIC} characters"));
    }
    if topic.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must not contain control characters".to_owned());
    }
    Ok(topic.to_owned())
}

/// A message body: not blank, at most `max_chars` characters, no control
/// characters but line breaks and tabs. Markup is text: the server stores
/// and returns it as written and never interprets it (clients render it
/// as text).
pub fn parse_body(raw: &str, max_chars: usize) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    if raw.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters".to_owned());
    }
    Ok(raw.to_owned())
}

/// A free-text reason: at most [`MAX_REASON`] characters.
pub fn parse_reason(raw: &str) -> Result<String, String> {
    let reason = raw.trim();
    if reason.chars().count() > MAX_REASON {
        return Err(format!("must be at most {MAX_REASON} characters"));
    }
    Ok(reason.to_owned())
}

/// The words of `text` as search indexes them: lower-cased runs of letters
/// and digits, joined by spaces. Chat does this itself, for both
/// databases, so that SQLite's FTS5 and PostgreSQL's full-text search
/// see the same words and answer the same (neither stems, drops stop words
/// or folds accents).
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        // Longer "words" are noise (base64, hashes) and bloat the index.
        .filter(|w| w.chars().count() <= 64)
        .collect()
}

/// The text a message is indexed under.
pub fn search_text(body: &str) -> String {
    search_words(body).join(" ")
}

/// The two ids of a direct conversation, smaller first: its key.
pub fn direct_key(a: Uuid, b: Uuid) -> String {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    format!("{low}:{high}")
}

/// The realtime channel of a conversation.
pub fn channel(conversation: Uuid) -> String {
    format!("chat:{conversation}")
}

/// A user's own realtime channel.
pub fn user_channel(user: Uuid) -> String {
    format!("user:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: Actor = Actor { role: Some(Role::Member), moderator: false };
    const ADMIN: Actor = Actor { role: Some(Role::Admin), moderator: false };
    const OWNER: Actor = Actor { role: Some(Role::Owner), moderator: false };
    const MODERATOR: Actor = Actor { role: None, moderator: true };

    #[test]
    fn the_owner_is_untouchable_and_admins_act_only_below_themselves() {
        for actor in [MEMBER, ADMIN, OWNER, MODERATOR] {
            for action in [MemberAction::Kick, MemberAction::Ban, MemberAction::Mute] {
                assert!(may_act(actor, action, Some(Role::Owner)).is_err());
            }
        }
        assert!(may_act(ADMIN, MemberAction::Kick, Some(Role::Member)).is_ok());
        assert!(may_act(ADMIN, MemberAction::Kick, Some(Role::Admin)).is_err());
        assert!(may_act(OWNER, MemberAction::Ban, Some(Role::Admin)).is_ok());
        assert!(may_act(MEMBER, MemberAction::Mute, Some(Role::Member)).is_err());
        assert!(may_act(MODERATOR, MemberAction::Ban, Some(Role::Admin)).is_ok());
        assert!(may_act(ADMIN, MemberAction::Ban, None).is_ok(), "a non-member can be banned ahead");
        assert!(may_act(ADMIN, MemberAction::Promote, Some(Role::Member)).is_err());
        assert!(may_act(OWNER, MemberAction::Promote, Some(Role::Member)).is_ok());
        assert!(may_act(MODERATOR, MemberAction::TransferOwnership, Some(Role::Member)).is_err());
    }

    #[test]
    fn slow_mode_and_mutes_say_how_long_to_wait() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(90);
        assert_eq!(may_post(Role::Member, Some(later), 0, None, now), Err(PostRefusal::Muted(later)));
        assert_eq!(may_post(Role::Member, Some(now - chrono::Duration::seconds(1)), 0, None, now), Ok(()));
        let just = now - chrono::Duration::milliseconds(2_500);
        assert_eq!(may_post(Role::Member, None, 10, Some(just), now), Err(PostRefusal::SlowMode(8)));
        assert_eq!(may_post(Role::Admin, None, 10, Some(just), now), Ok(()), "admins are exempt");
        assert_eq!(may_post(Role::Member, None, 2, Some(just), now), Ok(()));
    }

    #[test]
    fn search_words_are_the_same_whatever_the_markup() {
        assert_eq!(search_words("<b>Hello</b>, WORLD! año 2026"), ["b", "hello", "b", "world", "año", "2026"]);
        assert_eq!(search_text("  "), "");
        assert!(parse_body("<script>alert(1)</script>", 10).is_err(), "too long");
        assert_eq!(parse_body("<script>alert(1)</script>", 100).as_deref(), Ok("<script>alert(1)</script>"));
        assert!(parse_body(" \n ", 100).is_err());
        assert!(parse_body("a\u{0}b", 100).is_err());
        assert!(parse_room_name(&"x".repeat(41)).is_err());
    }
}
