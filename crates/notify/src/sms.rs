//! SMS through a provider with Twilio's Messages API (Twilio itself, or
//! any service that speaks its shape): `POST
//! <api_url>/2010-04-01/Accounts/<sid>/Messages.json`, form-encoded, HTTP
//! Basic with the account SID and auth token; 201 with the message's `sid`.
//! The provider reports what became of a message on the status callback
//! (`/v1/notify/webhooks/sms`), signed with the auth token.

use std::time::Duration;

use serde::Deserialize;

/// `[notify.sms]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The provider's API (default Twilio's).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    pub account_sid: String,
    /// Also signs the provider's status callbacks.
    pub auth_token: kit::secret::Secret<String>,
    /// The sending number (E.164) or messaging service.
    pub from: String,
    /// Messages per second at most (a long code takes 1, a short code 100).
    #[serde(default = "default_per_second")]
    pub per_second: u32,
}

fn default_api_url() -> String {
    "https://api.twilio.com".into()
}

fn default_per_second() -> u32 {
    1
}

/// How the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Queued; its id.
    Accepted(String),
    /// Worth another try (429, 5xx, no answer).
    Retry(String),
    /// Refused for good (a bad number, an unreachable country …).
    Refused(String),
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct Refusal {
    code: Option<i64>,
    message: Option<String>,
}

pub struct Twilio {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    /// Read from its file again when rotated (`PANAL_NOTIFY__SMS__AUTH_TOKEN_FILE`).
    auth_token: kit::secret::LiveSecret,
    from: String,
    /// Where the provider reports (and what it signs).
    pub callback_url: String,
}

impl Twilio {
    /// `auth_token` is `s.auth_token`, following its file when it has one.
    pub fn new(s: &SmsSettings, auth_token: kit::secret::LiveSecret, public_url: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            s.api_url.starts_with("https://") || s.api_url.starts_with("http://"),
            "notify.sms.api_url must be an http(s) URL"
        );
        anyhow::ensure!(!s.account_sid.is_empty(), "notify.sms.account_sid is empty");
        anyhow::ensure!(!s.auth_token.expose().is_empty(), "notify.sms.auth_token is empty");
        anyhow::ensure!(s.per_second > 0, "notify.sms.per_second must be above 0");
        Ok(Self {
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                s.api_url.trim_end_matches('/'),
                s.account_sid
            ),
            account_sid: s.account_sid.clone(),
            auth_token,
            from: s.from.clone(),
            callback_url: format!("{}/v1/notify/webhooks/sms", public_url.trim_end_matches('/')),
        })
    }

    pub fn auth_token(&self) -> kit::secret::Secret<String> {
        self.auth_token.current()
    }

    /// Sends `body` to `to` (E.164).
    pub async fn send(&self, to: &str, body: &str) -> Outcome {
        let form = [("To", to), ("From", &self.from), ("Body", body), ("StatusCallback", &self.callback_url)];
        let sent = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.current().expose()))
            .form(&form)
            .send()
            .await;
        let answer = match sent {
            Ok(a) => a,
            Err(e) => return Outcome::Retry(format!("the SMS provider did not answer: {e}")),
        };
        let status = answer.status().as_u16();
        match status {
            200..=299 => match answer.json::<Created>().await {
                Ok(c) => Outcome::Accepted(c.sid),
                Err(e) => Outcome::Retry(format!("the SMS provider's answer is not a message: {e}")),
            },
            429 | 500..=599 => Outcome::Retry(format!("the SMS provider answered {status}")),
            _ => {
                let why = answer.json::<Refusal>().await.ok();
                let code = why.as_ref().and_then(|w| w.code).map(|c| format!(" (code {c})")).unwrap_or_default();
                let message = why.and_then(|w| w.message).unwrap_or_default();
                Outcome::Refused(format!("the SMS provider refused it: {status}{code} {message}"))
            }
        }
    }
}
