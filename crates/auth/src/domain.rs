//! Auth's types and rules, without I/O: what a valid email, password and display
//! name are, what an account and a session look like.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Password length bounds, in characters (OWASP ASVS 5, V6.2). Long passwords
/// are accepted whole: nothing is truncated.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// The `client_id` of users' access tokens (RFC 9068): Panal's own apps
/// (web, terminal), through which users sign in. Service clients' tokens carry
/// their own id; a token is a user's when it has a session (`sid`).
pub const FIRST_PARTY_CLIENT: &str = "panal";

/// The role every account has.
pub const ROLE_USER: &str = "user";
/// Administers accounts (and, in other services, whatever they keep).
pub const ROLE_ADMIN: &str = "admin";
/// Every role an account may hold: `user` and `admin`, and the roles other
/// services act on (chat moderation, the professional marketplace, support).
pub const ROLES: &[&str] = &[ROLE_USER, ROLE_ADMIN, "moderator", "professional", "support"];

/// A set of roles for an account: known names only, always with `user`.
pub fn parse_roles(raw: &[String]) -> Result<Vec<String>, String> {
    let mut roles = Vec::with_capacity(raw.len() + 1);
    for r in raw {
        let r = r.trim();
        if !ROLES.contains(&r) {
            return Err(format!("unknown role {r:?}; roles are {}", ROLES.join(", ")));
        }
        roles.push(r.to_owned());
    }
    if !roles.iter().any(|r| r == ROLE_USER) {
        return Err("must include `user`, which every account has".to_owned());
    }
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// A syntactically valid email address, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required");
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err("must be at most 254 characters");
        }
        let lowered = trimmed.to_lowercase();
        let parsed = email_address::EmailAddress::from_str(&lowered).map_err(|_| "is not a valid email address")?;
        // Addresses for people have a domain with a dot; `user@localhost` and
        // bracketed IP literals are not ones we can send mail to.
        let domain = parsed.domain();
        if !domain.contains('.') || domain.starts_with('[') || domain.ends_with('.') {
            return Err("is not a valid email address");
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the length policy. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Auth checks a new account's display name by the rule users keeps it by
/// (one rule, so an account never gets a profile under another name).
pub use kit::text::DisplayName;

/// An account as auth keeps it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub roles: Vec<String>,
}

/// A session: one sign-in, one family of refresh tokens.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Who opened a session, as far as the request tells.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Device {
    /// The device in a few words from its user agent (`Firefox on Linux`),
    /// for the person to recognise it; `None` without a user agent.
    pub fn describe(&self) -> Option<String> {
        let ua = self.user_agent.as_deref()?;
        // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
        let browser = [
            ("Edg/", "Edge"),
            ("OPR/", "Opera"),
            ("Firefox/", "Firefox"),
            ("Chrome/", "Chrome"),
            ("Safari/", "Safari"),
            ("curl/", "curl"),
        ]
        .into_iter()
        .find(|(mark, _)| ua.contains(mark))
        .map_or("A browser", |(_, name)| name);
        let system = [
            ("Android", "Android"),
            ("iPhone", "iOS"),
            ("iPad", "iPadOS"),
            ("Windows", "Windows"),
            ("Mac OS X", "macOS"),
            ("CrOS", "ChromeOS"),
            ("Linux", "Linux"),
        ]
        .into_iter()
        .find(|(mark, _)| ua.contains(mark))
        .map(|(_, name)| name);
        Some(match system {
            Some(system) => format!("{browser} on {system}"),
            None => browser.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_described_in_a_few_words() {
        let d = |ua: &str| Device { user_agent: Some(ua.into()), ip: None }.describe().unwrap();
        assert_eq!(d("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"), "Firefox on Linux");
        assert_eq!(
            d(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
            ),
            "Edge on Windows"
        );
        assert_eq!(
            d(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
            ),
            "Safari on iOS"
        );
        assert_eq!(d("curl/8.5.0"), "curl");
        assert_eq!(d("something else"), "A browser");
        assert_eq!(Device { user_agent: None, ip: None }.describe(), None);
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@localhost", "a b@example.com", "ada@example.com."] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords_are_counted_in_characters_not_bytes() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("ññññññññ").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(format!("{:?}", Password::parse("correct horse").unwrap()), "Password([redacted])");
    }

    #[test]
    fn roles_are_known_names_with_user() {
        let r = |v: &[&str]| parse_roles(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(r(&["user", "admin", "user"]).unwrap(), vec!["admin", "user"]);
        assert!(r(&["admin"]).is_err());
        assert!(r(&["user", "root"]).is_err());
    }
}
