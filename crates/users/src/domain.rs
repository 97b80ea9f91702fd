//! Users' types and rules, without I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;
use utoipa::ToSchema;
use uuid::Uuid;

pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
pub const MAX_BIO_CHARS: usize = 500;

/// A display name: NFKC-normalised, trimmed, 1 to 32 characters, no control or
/// invisible characters, one script (so `Аda` with a Cyrillic А is refused).
/// Its [`key`](Self::key) decides uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName {
    name: String,
    key: String,
}

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name: String = raw.nfkc().collect::<String>().trim().to_owned();
        let chars = name.chars().count();
        if chars == 0 {
            return Err("is required".to_owned());
        }
        if chars > MAX_DISPLAY_NAME_CHARS {
            return Err(format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"));
        }
        if let Some(c) = name.chars().find(|c| kit::text::is_invisible(*c)) {
            return Err(format!("must not contain control or invisible characters (found U+{:04X})", u32::from(c)));
        }
        if !name.as_str().is_single_script() {
            return Err("must not mix writing systems (for example Latin and Cyrillic letters)".to_owned());
        }
        Ok(Self { key: key_of(&name), name })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as compared: lower-cased, then reduced to the UTS #39 skeleton,
    /// so names that look alike (`ada`, `ADA`, `аda`, `ａｄａ`) share a key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A name derived from a taken one: `Ada 2`, `Ada 3`, … (trimmed to fit).
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!(" {n}");
        let room = MAX_DISPLAY_NAME_CHARS - suffix.chars().count();
        let base: String = self.name.chars().take(room).collect();
        let name = format!("{}{suffix}", base.trim_end());
        Self { key: key_of(&name), name }
    }
}

/// The comparison key of a name or of a search prefix.
pub fn key_of(s: &str) -> String {
    let folded: String = s.nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&folded).collect::<String>().to_lowercase()
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Everyone,
    Friends,
    Nobody,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Everyone => "everyone",
            Audience::Friends => "friends",
            Audience::Nobody => "nobody",
        }
    }

    pub fn parse(s: &str) -> Audience {
        match s {
            "everyone" => Audience::Everyone,
            "friends" => Audience::Friends,
            _ => Audience::Nobody,
        }
    }

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Privacy {
    /// Who sees the bio, locale and timezone. The display name and avatar are
    /// always visible.
    pub profile: Audience,
    /// Who sees when the user was last online.
    pub online_status: Audience,
    /// Who may send friend requests (`friends` means nobody new).
    pub friend_requests: Audience,
}

impl Default for Privacy {
    fn default() -> Self {
        Self { profile: Audience::Everyone, online_status: Audience::Friends, friend_requests: Audience::Everyone }
    }
}

/// Where a profile stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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

    pub fn parse(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            "banned" => Status::Banned,
            _ => Status::Erased,
        }
    }
}

/// A profile as users keeps it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub user_id: Uuid,
    pub display_name: String,
    pub bio: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub privacy: Privacy,
    pub avatar_etag: Option<String>,
    pub status: Status,
    pub banned_reason: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The pair key of a friendship: smaller id first.
pub fn pair(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a < b { (a, b) } else { (b, a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_alike_share_a_key() {
        let plain = DisplayName::parse("Ada").unwrap();
        for alike in ["ada", "ADA", "ａｄａ", " Ada "] {
            assert_eq!(DisplayName::parse(alike).unwrap().key(), plain.key(), "{alike}");
        }
        assert_ne!(DisplayName::parse("Adam").unwrap().key(), plain.key());
        // Cyrillic а (U+0430) alone is one script, and still collides with Latin.
        assert_eq!(DisplayName::parse("\u{0430}").unwrap().key(), DisplayName::parse("a").unwrap().key());
    }

    #[test]
    fn invisible_and_mixed_script_names_are_refused() {
        assert!(DisplayName::parse("Ad\u{200B}a").unwrap_err().contains("invisible"));
        assert!(DisplayName::parse("\u{0410}da").unwrap_err().contains("writing systems"));
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(33)).is_err());
        assert!(DisplayName::parse("山田 花子").is_ok());
        assert!(DisplayName::parse("やまだ ヤマダ 山田").is_ok(), "Japanese mixes Han and kana as one script set");
    }

    #[test]
    fn suffixes_fit_the_length_limit() {
        let long = DisplayName::parse(&"x".repeat(32)).unwrap();
        let s = long.with_suffix(12);
        assert_eq!(s.as_str().chars().count(), 32);
        assert!(s.as_str().ends_with(" 12"));
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
