//! What notify sends, as rules with no I/O: the kinds of notification, the
//! channels each goes out on by default, which are security messages,
//! whether a person's preferences let one through, and the retry schedule.
//!
//! Adding a kind (for a later service): a variant here with its channels,
//! variables and sample values, its templates under `templates/<locale>/`,
//! and the handler of the event that triggers it (`events.rs`). The
//! templates are checked against the variables at start and in a test.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A channel a notification goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationChannel)]
pub enum Channel {
    /// The in-app inbox, pushed live on `user:<id>`.
    Inbox,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Inbox, Channel::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A kind of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationKind)]
pub enum Kind {
    /// Someone asked to be the recipient's friend (users' `friendship_changed`).
    FriendRequest,
    /// Someone accepted the recipient's friend request.
    FriendAccepted,
    /// Someone invited the recipient to a match (game's `invitation_sent`).
    GameInvitation,
    /// The recipient's next tournament match is ready (tournament's
    /// `round_started`).
    TournamentMatch,
    /// The recipient's password changed (auth's `password_changed`): a
    /// security message.
    PasswordChanged,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::FriendRequest, Kind::FriendAccepted, Kind::GameInvitation, Kind::TournamentMatch, Kind::PasswordChanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FriendRequest => "friend_request",
            Kind::FriendAccepted => "friend_accepted",
            Kind::GameInvitation => "game_invitation",
            Kind::TournamentMatch => "tournament_match",
            Kind::PasswordChanged => "password_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The channels it goes out on unless the person turned one off.
    pub fn channels(self) -> &'static [Channel] {
        &[Channel::Inbox, Channel::Email]
    }

    /// Security messages: their e-mail cannot be turned off.
    pub fn security(self) -> bool {
        matches!(self, Kind::PasswordChanged)
    }

    /// The variables its templates get (besides `name`, the recipient's,
    /// and `link`, where the notification leads).
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Kind::FriendRequest => &["from"],
            Kind::FriendAccepted => &["friend"],
            Kind::GameInvitation => &["from"],
            Kind::TournamentMatch => &["round", "opponent"],
            Kind::PasswordChanged => &["how"],
        }
    }

    /// Values for every variable: templates are rendered with them at
    /// start (a template using anything else fails the start) and in the
    /// administrators' preview.
    pub fn sample(self) -> Value {
        let mut v = match self {
            Kind::FriendRequest => json!({"from": "Bob"}),
            Kind::FriendAccepted => json!({"friend": "Bob"}),
            Kind::GameInvitation => json!({"from": "Bob"}),
            Kind::TournamentMatch => json!({"round": 2, "opponent": "Bob"}),
            Kind::PasswordChanged => json!({"how": "change"}),
        };
        v["name"] = json!("Ada");
        v["link"] = json!("http://localhost:8000/");
        v
    }
}

/// Whether `kind` goes out on `channel` given the person's choice
/// (`None`: they made none). A security message's e-mail always does.
pub fn enabled(kind: Kind, channel: Channel, choice: Option<bool>) -> bool {
    if kind.security() && channel == Channel::Email {
        return true;
    }
    kind.channels().contains(&channel) && choice.unwrap_or(true)
}

/// The languages templates exist in; the first is the fallback.
pub const LOCALES: [&str; 2] = ["en", "es"];

/// The template language for a person's locale (`es-AR` → `es`); English
/// when there is none for it.
pub fn locale_of(tag: Option<&str>) -> &'static str {
    let primary = tag.and_then(|t| t.split(['-', '_']).next()).map(str::to_ascii_lowercase);
    LOCALES.into_iter().find(|l| primary.as_deref() == Some(*l)).unwrap_or(LOCALES[0])
}

/// Attempts at sending before a delivery is failed.
pub const MAX_ATTEMPTS: u32 = 8;

/// The wait before attempt `attempts + 1`: 2, 4, 8 … 256 seconds.
pub fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(2i64 << attempts.min(7))
}

/// Where a notification leads, below the public URL.
pub fn path(kind: Kind, subject: &str) -> String {
    match kind {
        Kind::FriendRequest | Kind::FriendAccepted => "/friends".to_owned(),
        Kind::GameInvitation => format!("/play/invitations/{subject}"),
        Kind::TournamentMatch => format!("/tournaments/{subject}"),
        Kind::PasswordChanged => "/settings/security".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Kind::parse("nonsense"), None);
    }

    #[test]
    fn a_security_email_cannot_be_turned_off_and_other_choices_hold() {
        assert!(enabled(Kind::PasswordChanged, Channel::Email, Some(false)));
        assert!(!enabled(Kind::PasswordChanged, Channel::Inbox, Some(false)));
        assert!(!enabled(Kind::FriendRequest, Channel::Email, Some(false)));
        assert!(enabled(Kind::FriendRequest, Channel::Email, None));
    }

    #[test]
    fn locales_fall_back_to_english() {
        assert_eq!(locale_of(Some("es-AR")), "es");
        assert_eq!(locale_of(Some("ES")), "es");
        assert_eq!(locale_of(Some("fr")), "en");
        assert_eq!(locale_of(None), "en");
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(0).num_seconds(), 2);
        assert_eq!(backoff(3).num_seconds(), 16);
        assert_eq!(backoff(30).num_seconds(), 256);
    }
}
