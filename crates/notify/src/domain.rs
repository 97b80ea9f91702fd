//! What notify sends, as rules with no I/O: the kinds of notification, the
//! channels each goes out on by default, which are security messages,
//! whether a person's preferences let one through, and the retry schedule.
//!
//! Adding a kind (for a later service): a variant here with its channels,
//! variables and sample values, its templates under `templates/<locale>/`,
//! and the handler of the event that triggers it (`events.rs`). The
//! templates are checked against the variables at start and in a test.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, KeyInit, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

/// A channel a notification goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationChannel)]
pub enum Channel {
    /// The in-app inbox, pushed live on `user:<id>`.
    Inbox,
    Email,
    /// Web Push (RFC 8030/8291/8292) to every browser the person
    /// subscribed.
    Push,
    /// SMS to the person's verified phone number, through the provider
    /// (`[notify.sms]`, Twilio's API).
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Inbox, Channel::Email, Channel::Push, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Sms => "sms",
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
    /// A link to verify an address (from auth, by a service call; the link
    /// signs its reader in, so it is never on the bus).
    VerifyEmail,
    /// A link to reset a forgotten password (from auth, likewise).
    PasswordReset,
    /// Someone tried to register with an address that has an account.
    AccountExists,
    /// The code that proves a phone number is the person's (SMS only).
    PhoneCode,
    /// The account was signed in to from a device it had never used
    /// (auth's `user_logged_in`, `new_device`): a security message.
    NewDevice,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::FriendRequest,
        Kind::FriendAccepted,
        Kind::GameInvitation,
        Kind::TournamentMatch,
        Kind::PasswordChanged,
        Kind::VerifyEmail,
        Kind::PasswordReset,
        Kind::AccountExists,
        Kind::PhoneCode,
        Kind::NewDevice,
    ];

    /// Auth's mail, handed over by a service call: e-mail only, to the
    /// address given, never held, never turned off.
    pub const SECURITY_MAIL: [Kind; 3] = [Kind::VerifyEmail, Kind::PasswordReset, Kind::AccountExists];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FriendRequest => "friend_request",
            Kind::FriendAccepted => "friend_accepted",
            Kind::GameInvitation => "game_invitation",
            Kind::TournamentMatch => "tournament_match",
            Kind::PasswordChanged => "password_changed",
            Kind::VerifyEmail => "verify_email",
            Kind::PasswordReset => "password_reset",
            Kind::AccountExists => "account_exists",
            Kind::PhoneCode => "phone_code",
            Kind::NewDevice => "new_device",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The channels it goes out on unless the person turned one off.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            Kind::VerifyEmail | Kind::PasswordReset | Kind::AccountExists => &[Channel::Email],
            Kind::PhoneCode => &[Channel::Sms],
            Kind::GameInvitation | Kind::TournamentMatch | Kind::PasswordChanged => {
                &[Channel::Inbox, Channel::Email, Channel::Push, Channel::Sms]
            }
            Kind::FriendRequest | Kind::FriendAccepted | Kind::NewDevice => {
                &[Channel::Inbox, Channel::Email, Channel::Push]
            }
        }
    }

    /// Whether it goes out on `channel` when the person made no choice:
    /// SMS costs, so only security messages and tournament calls (a
    /// match waiting for you) use it unasked.
    pub fn default_on(self, channel: Channel) -> bool {
        channel != Channel::Sms || self.security() || self == Kind::TournamentMatch
    }

    /// Its link signs its reader in: the delivery's values are wiped once
    /// it is sent or given up, and it never goes anywhere but e-mail.
    pub fn carries_secret(self) -> bool {
        matches!(self, Kind::VerifyEmail | Kind::PasswordReset | Kind::PhoneCode)
    }

    /// Low-priority kinds: their e-mails wait out `notify.digest_secs` and
    /// go as one digest of everything of the kind that arrived meanwhile.
    pub fn digest(self) -> bool {
        matches!(self, Kind::FriendRequest | Kind::FriendAccepted)
    }

    /// Security messages: their e-mail cannot be turned off.
    pub fn security(self) -> bool {
        matches!(
            self,
            Kind::PasswordChanged
                | Kind::VerifyEmail
                | Kind::PasswordReset
                | Kind::AccountExists
                | Kind::PhoneCode
                | Kind::NewDevice
        )
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
            Kind::VerifyEmail => &["hours"],
            Kind::PasswordReset => &["minutes"],
            Kind::AccountExists => &[],
            Kind::PhoneCode => &["code"],
            Kind::NewDevice => &["device"],
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
            Kind::VerifyEmail => json!({"hours": 24}),
            Kind::PasswordReset => json!({"minutes": 30}),
            Kind::AccountExists => json!({}),
            Kind::PhoneCode => json!({"code": "123456"}),
            Kind::NewDevice => json!({"device": "Firefox on Linux"}),
        };
        v["name"] = json!("Ada");
        v["link"] = json!("http://localhost:8000/");
        v
    }
}

/// Whether the person cannot turn `kind` off on `channel`: a security
/// message's e-mail, and a security message's only channel.
pub fn locked(kind: Kind, channel: Channel) -> bool {
    kind.security() && (channel == Channel::Email || kind.channels() == [channel])
}

/// Whether `kind` goes out on `channel` given the person's choice
/// (`None`: they made none, and the kind's default holds).
pub fn enabled(kind: Kind, channel: Channel, choice: Option<bool>) -> bool {
    if locked(kind, channel) {
        return true;
    }
    kind.channels().contains(&channel) && choice.unwrap_or_else(|| kind.default_on(channel))
}

/// A phone number in E.164 (`+34600123456`: a plus, then 8 to 15 digits,
/// not starting with 0); spaces, dots, dashes and brackets are dropped.
pub fn parse_phone(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let rest = digits.strip_prefix('+')?;
    let ok = (8..=15).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_digit()) && !rest.starts_with('0');
    ok.then_some(digits)
}

/// How long a phone code lasts, and the tries it gets.
pub const PHONE_CODE_MINUTES: i64 = 10;
pub const PHONE_CODE_TRIES: i32 = 5;

/// What notify keeps of a phone code: a MAC of the person and the code
/// (six digits are too few to keep as a plain hash).
pub fn phone_code_tag(key: &[u8], user: Uuid, code: &str) -> Vec<u8> {
    phone_mac(key, user, code).finalize().into_bytes().to_vec()
}

/// Whether `code` is the one whose tag was kept (compared in constant time).
pub fn phone_code_matches(key: &[u8], user: Uuid, code: &str, tag: &[u8]) -> bool {
    phone_mac(key, user, code).verify_slice(tag).is_ok()
}

fn phone_mac(key: &[u8], user: Uuid, code: &str) -> Mac {
    let mut m = <Mac as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    m.update(b"phone-code");
    m.update(user.as_bytes());
    m.update(code.as_bytes());
    m
}

/// Twilio's request signature (`X-Twilio-Signature`): HMAC-SHA1 with the
/// account's auth token of the URL it called followed by every form
/// parameter's name and value, sorted by name; base64.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this call (compared in constant time).
pub fn twilio_signed(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    twilio_mac(auth_token, url, params).verify_slice(&tag).is_ok()
}

fn twilio_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<sha1::Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut m = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    m.update(url.as_bytes());
    for (k, v) in sorted {
        m.update(k.as_bytes());
        m.update(v.as_bytes());
    }
    m
}

/// What a digest of `kind` lists from each notification's values: the
/// person each was about.
pub fn digest_line(kind: Kind, vars: &Value) -> String {
    let key = if kind == Kind::FriendAccepted { "friend" } else { "from" };
    vars[key].as_str().unwrap_or("someone").to_owned()
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
        Kind::PasswordChanged | Kind::NewDevice => "/settings/security".to_owned(),
        // Auth's mail carries the link auth made.
        Kind::VerifyEmail | Kind::PasswordReset => "/".to_owned(),
        Kind::AccountExists => "/forgot-password".to_owned(),
        Kind::PhoneCode => "/settings/notifications".to_owned(),
    }
}

/// Quiet hours: no e-mail (but security messages) from `from` to `to`,
/// the person's local time; a window past midnight when `from` is later
/// than `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub tz: Tz,
}

/// When a message held by quiet hours may go: `None` when `now` is outside
/// them. The end is the next `to` in the person's time zone; a `to` that
/// does not exist that day (clocks going forward) is the first minute that
/// does, and one that happens twice (clocks going back) the first of the
/// two.
pub fn quiet_until(now: DateTime<Utc>, q: Quiet) -> Option<DateTime<Utc>> {
    if q.from == q.to {
        return None;
    }
    let local = now.with_timezone(&q.tz);
    let t = local.time();
    let inside = if q.from < q.to { t >= q.from && t < q.to } else { t >= q.from || t < q.to };
    if !inside {
        return None;
    }
    let day = if t < q.to { local.date_naive() } else { local.date_naive().succ_opt()? };
    let mut end = day.and_time(q.to);
    // A gap is at most a few hours: step over it a minute at a time.
    for _ in 0..24 * 60 {
        match q.tz.from_local_datetime(&end) {
            LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => return Some(d.with_timezone(&Utc)),
            LocalResult::None => end += chrono::Duration::minutes(1),
        }
    }
    None
}

/// Whether an address is on the public internet: a push endpoint may not
/// point notify at its own network (loopback, private, link-local,
/// carrier-grade NAT, unspecified, multicast, documentation ranges).
pub fn public_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Why a push endpoint is refused, if it is: it must be an `https` URL of
/// a host on the public internet, without credentials. `allow_local`
/// (tests, a push service on the same network) lets `http` and local
/// addresses through.
pub fn endpoint_problem(url: &url::Url, allow_local: bool) -> Option<&'static str> {
    if !(url.scheme() == "https" || (allow_local && url.scheme() == "http")) {
        return Some("must be an https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not carry credentials");
    }
    match url.host() {
        None => Some("must name a host"),
        Some(url::Host::Ipv4(ip)) if !allow_local && !public_ip(ip.into()) => Some("must not be a private address"),
        Some(url::Host::Ipv6(ip)) if !allow_local && !public_ip(ip.into()) => Some("must not be a private address"),
        Some(url::Host::Domain(d)) if !allow_local && (d == "localhost" || d.ends_with(".localhost")) => {
            Some("must not be a private address")
        }
        _ => None,
    }
}

/// How far along a delivery is: states only move forward (pending → sent
/// → delivered, and bounced, complained or failed at the end).
fn stage(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "sent" => 1,
        "delivered" => 2,
        _ => 3,
    }
}

/// The states a delivery may be in for it to become `to` (at most three:
/// bound as they are, the rest `None`).
pub fn may_become(to: &str) -> [Option<&'static str>; 3] {
    let mut from = ["pending", "sent", "delivered"].into_iter().filter(|from| stage(from) < stage(to));
    [from.next(), from.next(), from.next()]
}

/// What the e-mail provider reports of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderEvent {
    /// The receiving server took it.
    Delivered,
    /// It came back; `hard`: the address does not exist (nothing more is
    /// sent to it), else refused this time (blocked, dropped).
    Bounced { hard: bool },
    /// The reader marked it as spam: no more mail but security messages.
    Complained,
}

impl ProviderEvent {
    /// The delivery's new state.
    pub fn status(self) -> &'static str {
        match self {
            ProviderEvent::Delivered => "delivered",
            ProviderEvent::Bounced { .. } => "bounced",
            ProviderEvent::Complained => "complained",
        }
    }
}

/// A provider's event (SendGrid's Event Webhook names: `event`, and a
/// bounce's `type`); `None` for those notify does not track (processed,
/// deferred, open, click …).
pub fn provider_event(event: &str, bounce_type: Option<&str>) -> Option<ProviderEvent> {
    match event {
        "delivered" => Some(ProviderEvent::Delivered),
        "bounce" => Some(ProviderEvent::Bounced { hard: bounce_type != Some("blocked") }),
        "dropped" => Some(ProviderEvent::Bounced { hard: false }),
        "spamreport" => Some(ProviderEvent::Complained),
        _ => None,
    }
}

/// Whether a provider's report on an address (`bounce`, `complaint`)
/// stops `kind`'s e-mail to it: a bounce stops everything, a complaint all
/// but security messages.
pub fn suppressed(kind: Kind, reason: Option<&str>) -> bool {
    match reason {
        Some("bounce") => true,
        Some(_) => !kind.security(),
        None => false,
    }
}

/// The DER header of a P-256 public key's SubjectPublicKeyInfo: what comes
/// before the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The point of a P-256 public key given as base64 DER SubjectPublicKeyInfo
/// (how SendGrid shows its webhook's verification key).
pub fn p256_spki_point(base64_der: &str) -> Option<Vec<u8>> {
    let der = base64::engine::general_purpose::STANDARD.decode(base64_der.trim()).ok()?;
    let point = der.strip_prefix(P256_SPKI_PREFIX.as_slice())?;
    (point.len() == 65 && point[0] == 4).then(|| point.to_vec())
}

/// Whether a provider's webhook call is genuine: an ECDSA P-256 SHA-256
/// signature (base64 DER) of the timestamp header followed by the raw body.
pub fn webhook_signed(point: &[u8], timestamp: &str, body: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else { return false };
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed, &signature)
        .is_ok()
}

/// The delivery an e-mail's `Message-ID` (`<id@panal>`) names.
pub fn delivery_of_message_id(message_id: &str) -> Option<Uuid> {
    let inner = message_id.trim().trim_start_matches('<').trim_end_matches('>');
    Uuid::try_parse(inner.split('@').next()?).ok()
}

/// A time of day as the API writes it (`22:00`).
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// An IANA time zone (`Europe/Madrid`).
pub fn parse_tz(s: &str) -> Option<Tz> {
    s.parse().ok()
}

type Mac = Hmac<Sha256>;

fn mac(key: &[u8], user: Uuid, kind: Kind) -> Mac {
    // Any key length is valid for HMAC.
    let mut m = <Mac as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    m.update(user.as_bytes());
    m.update(kind.as_str().as_bytes());
    m
}

/// The token of a one-click unsubscribe link (RFC 8058): who and which
/// kind, signed with notify's key, so the link works without signing in
/// and cannot be made for anyone else. `None` for a security kind.
pub fn unsubscribe_token(key: &[u8], user: Uuid, kind: Kind) -> Option<String> {
    if kind.security() {
        return None;
    }
    let tag = URL_SAFE_NO_PAD.encode(mac(key, user, kind).finalize().into_bytes());
    Some(format!("{}.{}.{tag}", user.simple(), kind.as_str()))
}

/// Who and which kind a token unsubscribes, if notify's key signed it.
pub fn read_unsubscribe_token(key: &[u8], token: &str) -> Option<(Uuid, Kind)> {
    let mut parts = token.split('.');
    let (Some(user), Some(kind), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let (user, kind) = (Uuid::try_parse(user).ok()?, Kind::parse(kind)?);
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    // Compared in constant time.
    mac(key, user, kind).verify_slice(&tag).ok()?;
    (!kind.security()).then_some((user, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsubscribe_token_names_its_person_and_kind_and_nothing_else_passes() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let ada = Uuid::from_u128(1);
        let token = unsubscribe_token(&key, ada, Kind::FriendRequest).unwrap();
        assert_eq!(read_unsubscribe_token(&key, &token), Some((ada, Kind::FriendRequest)));
        assert_eq!(read_unsubscribe_token(&other, &token), None, "another key");
        // Another person or kind with the same tag: refused.
        let tag = token.rsplit('.').next().unwrap();
        let bob = format!("{}.friend_request.{tag}", Uuid::from_u128(2).simple());
        assert_eq!(read_unsubscribe_token(&key, &bob), None);
        assert_eq!(read_unsubscribe_token(&key, &format!("{}.game_invitation.{tag}", ada.simple())), None);
        for bad in ["", "a.b", "x.friend_request.y", &format!("{token}.more")] {
            assert_eq!(read_unsubscribe_token(&key, bad), None, "{bad}");
        }
        assert_eq!(unsubscribe_token(&key, ada, Kind::PasswordChanged), None, "security mail has no way out");
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn quiet(from: &str, to: &str, tz: &str) -> Quiet {
        Quiet { from: parse_time(from).unwrap(), to: parse_time(to).unwrap(), tz: parse_tz(tz).unwrap() }
    }

    #[test]
    fn quiet_hours_hold_until_their_end_in_the_persons_time_zone() {
        let q = quiet("22:00", "07:00", "America/New_York");
        // 23:00 in New York (EST, UTC−5): held until 07:00 there, 12:00 UTC.
        assert_eq!(quiet_until(at("2026-01-15T04:00:00Z"), q), Some(at("2026-01-15T12:00:00Z")));
        // 06:59 there: one minute more. 07:00 and noon: not quiet.
        assert_eq!(quiet_until(at("2026-01-15T11:59:00Z"), q), Some(at("2026-01-15T12:00:00Z")));
        assert_eq!(quiet_until(at("2026-01-15T12:00:00Z"), q), None);
        assert_eq!(quiet_until(at("2026-01-15T17:00:00Z"), q), None);
        // A window within one day.
        let day = quiet("13:00", "15:00", "UTC");
        assert_eq!(quiet_until(at("2026-01-15T14:00:00Z"), day), Some(at("2026-01-15T15:00:00Z")));
        assert_eq!(quiet_until(at("2026-01-15T15:30:00Z"), day), None);
        assert_eq!(quiet_until(at("2026-01-15T14:00:00Z"), quiet("09:00", "09:00", "UTC")), None);
    }

    #[test]
    fn quiet_hours_across_a_change_of_clocks() {
        // Madrid goes from 02:00 to 03:00 on 29 March 2026: an end at 02:30
        // that night does not exist; the message goes at 03:00 CEST (01:00 UTC).
        let q = quiet("22:00", "02:30", "Europe/Madrid");
        assert_eq!(quiet_until(at("2026-03-28T22:00:00Z"), q), Some(at("2026-03-29T01:00:00Z")));
        // The night before, 02:30 CET is 01:30 UTC.
        assert_eq!(quiet_until(at("2026-03-27T22:00:00Z"), q), Some(at("2026-03-28T01:30:00Z")));
        // Back from 03:00 to 02:00 on 25 October 2026: 02:30 happens twice;
        // the first (CEST, 00:30 UTC).
        assert_eq!(quiet_until(at("2026-10-24T22:00:00Z"), q), Some(at("2026-10-25T00:30:00Z")));
        // A window of 23:00–08:00 the night clocks go forward: nine hours
        // on the wall, eight on the clock.
        let night = quiet("23:00", "08:00", "Europe/Madrid");
        assert_eq!(quiet_until(at("2026-03-28T22:00:00Z"), night), Some(at("2026-03-29T06:00:00Z")));
    }

    #[test]
    fn push_endpoints_must_be_public_https() {
        let check = |s: &str, local: bool| endpoint_problem(&url::Url::parse(s).unwrap(), local);
        assert_eq!(check("https://fcm.googleapis.com/fcm/send/abc", false), None);
        assert_eq!(check("https://[2a00:1450::1]/x", false), None);
        for bad in [
            "http://push.example/x",
            "ftp://push.example/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://user:pw@push.example/x",
        ] {
            assert!(check(bad, false).is_some(), "{bad}");
        }
        // Configured for tests: a local http endpoint passes; credentials never.
        assert_eq!(check("http://127.0.0.1:9/x", true), None);
        assert!(check("http://a:b@127.0.0.1:9/x", true).is_some());
    }

    #[test]
    fn delivery_states_only_move_forward() {
        assert_eq!(may_become("sent"), [Some("pending"), None, None]);
        assert_eq!(may_become("delivered"), [Some("pending"), Some("sent"), None]);
        // A bounce or a complaint may follow a delivery; nothing follows them.
        assert_eq!(may_become("bounced"), [Some("pending"), Some("sent"), Some("delivered")]);
        assert_eq!(may_become("complained"), [Some("pending"), Some("sent"), Some("delivered")]);
    }

    #[test]
    fn provider_events_and_message_ids() {
        assert_eq!(provider_event("bounce", Some("bounce")), Some(ProviderEvent::Bounced { hard: true }));
        assert_eq!(provider_event("bounce", Some("blocked")), Some(ProviderEvent::Bounced { hard: false }));
        assert_eq!(provider_event("spamreport", None), Some(ProviderEvent::Complained));
        assert_eq!(provider_event("open", None), None);
        let id = Uuid::now_v7();
        assert_eq!(delivery_of_message_id(&format!("<{id}@panal>")), Some(id));
        assert_eq!(delivery_of_message_id("<14c5d75ce93.dfd.64b469@ismtpd-555>"), None);
    }

    #[test]
    fn a_webhook_is_genuine_only_with_the_providers_signature() {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let spki = [P256_SPKI_PREFIX.as_slice(), pair.public_key().as_ref()].concat();
        let point = p256_spki_point(&base64::engine::general_purpose::STANDARD.encode(spki)).unwrap();
        let body = br#"[{"event":"bounce"}]"#;
        let signature = pair.sign(&rng, &[b"1700000000".as_slice(), body].concat()).unwrap();
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
        assert!(webhook_signed(&point, "1700000000", body, &signature));
        assert!(!webhook_signed(&point, "1700000001", body, &signature), "another timestamp");
        assert!(!webhook_signed(&point, "1700000000", br#"[{"event":"delivered"}]"#, &signature), "another body");
        assert!(!webhook_signed(&point, "1700000000", body, "bm90IGEgc2lnbmF0dXJl"));
        assert_eq!(p256_spki_point("bm90IGEga2V5"), None);
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert_eq!(parse_phone("+34 600 12-34-56").as_deref(), Some("+34600123456"));
        assert_eq!(parse_phone("+1 (415) 555-0100").as_deref(), Some("+14155550100"));
        for bad in ["600123456", "+0123456789", "+12345", "+1234567890123456", "+34 600 abc 456", ""] {
            assert_eq!(parse_phone(bad), None, "{bad}");
        }
    }

    /// Twilio's documented example (its "Webhooks security" page).
    #[test]
    fn the_twilio_signature_matches_twilios_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn sms_is_asked_for_except_for_security_and_tournament_calls() {
        assert!(!enabled(Kind::GameInvitation, Channel::Sms, None));
        assert!(enabled(Kind::GameInvitation, Channel::Sms, Some(true)));
        assert!(enabled(Kind::TournamentMatch, Channel::Sms, None));
        assert!(enabled(Kind::PasswordChanged, Channel::Sms, None));
        assert!(!enabled(Kind::FriendRequest, Channel::Sms, Some(true)), "not a channel of the kind");
        assert!(enabled(Kind::PhoneCode, Channel::Sms, Some(false)), "a code cannot be turned off");
        assert!(!enabled(Kind::PasswordChanged, Channel::Sms, Some(false)));
    }

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
