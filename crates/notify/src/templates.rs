//! The templates: for each kind and language, `templates/<locale>/<kind>.txt`
//! (blocks `subject`, `title` and `body` for the inbox, `text` for the
//! e-mail's plain part) and `<kind>.html` (the e-mail's HTML part, every
//! value auto-escaped). Jinja syntax (minijinja), strict: a variable the
//! kind does not give is an error, found when the service starts (every
//! template is rendered with the kind's sample values) — never a
//! half-rendered mail.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::domain::{Channel, Kind, LOCALES};

macro_rules! sources {
    ($($locale:literal: [$($kind:literal),*]),*) => {
        &[$($(
            (concat!($locale, "/", $kind, ".txt"), include_str!(concat!("../templates/", $locale, "/", $kind, ".txt"))),
            (concat!($locale, "/", $kind, ".html"), include_str!(concat!("../templates/", $locale, "/", $kind, ".html"))),
        )*)*]
    };
}

const SOURCES: &[(&str, &str)] = sources!(
    "en": ["friend_request", "friend_accepted", "game_invitation", "tournament_match", "password_changed", "verify_email",
        "password_reset", "account_exists", "new_device", "digest"],
    "es": ["friend_request", "friend_accepted", "game_invitation", "tournament_match", "password_changed", "verify_email",
        "password_reset", "account_exists", "new_device", "digest"]
);

macro_rules! sms_sources {
    ($($locale:literal: [$($kind:literal),*]),*) => {
        &[$($(
            (concat!($locale, "/", $kind, ".sms"), include_str!(concat!("../templates/", $locale, "/", $kind, ".sms"))),
        )*)*]
    };
}

/// SMS variants (`<kind>.sms`): one short line, plain text; for the kinds
/// that go out by SMS.
const SMS_SOURCES: &[(&str, &str)] = sms_sources!(
    "en": ["game_invitation", "tournament_match", "password_changed", "phone_code"],
    "es": ["game_invitation", "tournament_match", "password_changed", "phone_code"]
);

static TEMPLATES: LazyLock<Result<Environment<'static>, String>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in SOURCES.iter().chain(SMS_SOURCES) {
        env.add_template(name, source).map_err(|e| format!("template {name}: {e}"))?;
    }
    Ok(env)
});

/// A notification rendered for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    /// The inbox item's title and text.
    pub title: String,
    pub body: String,
    /// The e-mail's plain-text and HTML parts.
    pub text: String,
    pub html: String,
}

/// Renders the template pair `<locale>/<stem>.txt` and `.html` (English
/// when the language has none) with `vars`: the named blocks of the `.txt`
/// (trimmed), and the whole `.html`.
fn render_pair<const N: usize>(
    stem: &str,
    locale: &str,
    vars: &Value,
    blocks: [&str; N],
) -> Result<([String; N], String), String> {
    let env = TEMPLATES.as_ref().map_err(Clone::clone)?;
    let locale = if LOCALES.contains(&locale) { locale } else { LOCALES[0] };
    let name = |ext: &str| format!("{locale}/{stem}.{ext}");
    let fail = |e: minijinja::Error| format!("{}: {e}", name("txt"));
    let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
    let txt = env.get_template(&name("txt")).map_err(fail)?;
    let mut captured = txt.render_captured(ctx.clone()).map_err(fail)?;
    let mut rendered = Vec::with_capacity(N);
    for b in blocks {
        rendered
            .push(captured.with_state_mut(|state| state.render_block(b)).map(|s| s.trim().to_owned()).map_err(fail)?);
    }
    let html = env.get_template(&name("html")).and_then(|t| t.render(ctx)).map_err(fail)?;
    let rendered: [String; N] = rendered.try_into().map_err(|_| format!("{}: a block is missing", name("txt")))?;
    Ok((rendered, html))
}

/// Renders `kind` in `locale` (English when the language has no template
/// for it) with `vars`.
pub fn render(kind: Kind, locale: &str, vars: &Value) -> Result<Rendered, String> {
    let ([subject, title, body, text], html) =
        render_pair(kind.as_str(), locale, vars, ["subject", "title", "body", "text"])?;
    Ok(Rendered { subject, title, body, text: format!("{text}\n"), html })
}

/// The SMS text of `kind` in `locale` (English when the language has none).
pub fn render_sms(kind: Kind, locale: &str, vars: &Value) -> Result<String, String> {
    let env = TEMPLATES.as_ref().map_err(Clone::clone)?;
    let locale = if LOCALES.contains(&locale) { locale } else { LOCALES[0] };
    let name = format!("{locale}/{}.sms", kind.as_str());
    let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
    env.get_template(&name).and_then(|t| t.render(ctx)).map(|s| s.trim().to_owned()).map_err(|e| format!("{name}: {e}"))
}

/// A digest e-mail: its subject, text and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders the digest of `people`'s notifications of `kind` (its `name` and
/// `link` in `vars`).
pub fn render_digest(kind: Kind, locale: &str, vars: &Value, people: &[String]) -> Result<Digest, String> {
    let mut vars = vars.clone();
    vars["kind"] = serde_json::json!(kind.as_str());
    vars["count"] = serde_json::json!(people.len());
    vars["people"] = serde_json::json!(people);
    let ([subject, text], html) = render_pair("digest", locale, &vars, ["subject", "text"])?;
    Ok(Digest { subject, text: format!("{text}\n"), html })
}

/// Renders every kind in every language with its sample values, and the
/// digests of the kinds that have them: the first error, if any (the
/// service refuses to start with it).
pub fn check() -> Result<(), String> {
    for kind in Kind::ALL {
        for locale in LOCALES {
            if kind.channels().iter().any(|c| *c != Channel::Sms) {
                render(kind, locale, &kind.sample())?;
            }
            if kind.channels().contains(&Channel::Sms) {
                render_sms(kind, locale, &kind.sample())?;
            }
            if kind.digest() {
                render_digest(kind, locale, &kind.sample(), &["Bob".to_owned(), "Cy".to_owned()])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_template_renders_in_every_language() {
        check().unwrap();
        let r = render(Kind::FriendRequest, "es", &Kind::FriendRequest.sample()).unwrap();
        assert_eq!(r.subject, "Bob quiere ser tu amigo en Panal");
        assert!(r.text.contains("Hola, Ada:") && r.text.contains("http://localhost:8000/"));
        // An unknown language is English.
        let r = render(Kind::FriendRequest, "fr", &Kind::FriendRequest.sample()).unwrap();
        assert_eq!(r.title, "Friend request");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let vars = json!({"name": "Ada", "from": "<script>alert(1)</script> & co", "link": "http://x/"});
        let r = render(Kind::FriendRequest, "en", &vars).unwrap();
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; co"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.text.contains("<script>alert(1)</script> & co"));
    }

    #[test]
    fn a_digest_lists_everyone_and_escapes_them_in_html() {
        let people = vec!["Bob".to_owned(), "<b>Cy</b>".to_owned(), "Di".to_owned()];
        let d = render_digest(Kind::FriendRequest, "en", &Kind::FriendRequest.sample(), &people).unwrap();
        assert_eq!(d.subject, "3 new friend requests on Panal");
        assert!(d.text.contains("- Bob\n- <b>Cy</b>\n- Di\n"), "{}", d.text);
        assert!(d.html.contains("<li>&lt;b&gt;Cy&lt;&#x2f;b&gt;</li>"), "{}", d.html);
        let d = render_digest(Kind::FriendAccepted, "es", &Kind::FriendAccepted.sample(), &people[..2]).unwrap();
        assert_eq!(d.subject, "2 amigos nuevos en Panal");
    }

    #[test]
    fn sms_variants_are_short_and_in_the_persons_language() {
        let sms = render_sms(Kind::TournamentMatch, "es", &Kind::TournamentMatch.sample()).unwrap();
        assert_eq!(sms, "Panal: ronda 2 - juegas contra Bob ahora. http://localhost:8000/");
        for kind in Kind::ALL.into_iter().filter(|k| k.channels().contains(&Channel::Sms)) {
            for locale in LOCALES {
                // One GSM segment's worth with a short link (160 characters).
                assert!(render_sms(kind, locale, &kind.sample()).unwrap().chars().count() <= 160, "{kind:?} {locale}");
            }
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_not_a_blank() {
        let err = render(Kind::FriendRequest, "en", &json!({"name": "Ada", "link": "x"})).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }
}
