//! Auth's mail — verification and reset links, and the notice that an
//! address already has an account — handed to notify by a service call
//! (`PUT /v1/notify/security-mail/{id}`), which renders it in the person's
//! language and sends it. The link signs its reader in, so it never goes
//! on the bus: no event, no outbox row, no broker holds it (a test scans
//! them). Never to the log either.
//!
//! Handing over never holds up the request: the answer must not take
//! longer for an address that exists (a mail goes out) than for one that
//! does not. A call notify does not answer is tried again a few times in
//! the background, with the same id (notify sends one mail per id).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kit::auth::AccessClaims;
use kit::peer::{Credentials, PeerClient};
use uuid::Uuid;

use crate::State;
use crate::tokens;

/// The scope notify asks of whoever hands it a security mail.
pub const SECURITY_MAIL_SCOPE: &str = "notify:security_mail";

/// What auth's own tokens toward notify name as their client.
const CLIENT_ID: &str = "auth";

/// Attempts at handing one mail over, a second apart and then longer.
const ATTEMPTS: u32 = 5;

/// One mail for notify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    /// `verify_email`, `password_reset` or `account_exists`.
    pub kind: &'static str,
    pub user_id: Uuid,
    pub to: String,
    /// Absolute: auth's web app address and the path (with the token).
    pub link: String,
    pub valid_for_minutes: Option<u64>,
}

#[derive(Clone)]
pub struct Mailer {
    notify: Arc<PeerClient>,
    /// The last mails handed over (tests read them; kept in memory only).
    recent: Arc<Mutex<VecDeque<Mail>>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("notify", &self.notify.name()).finish()
    }
}

const KEPT: usize = 50;

impl Mailer {
    /// A mailer handing mail to notify at `notify_url`.
    pub fn new(notify_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            notify: Arc::new(PeerClient::new("notify", notify_url, Duration::from_secs(5))?),
            recent: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    /// The mails handed over (or being handed over), oldest first.
    pub fn logged(&self) -> Vec<Mail> {
        self.recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Hands `mail` to notify in the background.
pub fn send(state: &Arc<State>, mail: Mail) {
    if let Ok(mut recent) = state.mailer.recent.lock() {
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(mail.clone());
    }
    let state = state.clone();
    // Its own span, linked to the request's: the request's span ends with
    // the answer, not with the hand-over (which may be retried for seconds).
    let span = tracing::info_span!(parent: None, "mail hand-over", kind = mail.kind);
    span.follows_from(tracing::Span::current());
    let work = async move {
        let id = Uuid::now_v7();
        for attempt in 1..=ATTEMPTS {
            match hand_over(&state, id, &mail).await {
                Ok(()) => return tracing::info!(kind = mail.kind, mail = %id, "mail handed to notify"),
                Err(e) if attempt == ATTEMPTS => {
                    return tracing::error!(kind = mail.kind, mail = %id, error = %e, "mail not sent: notify did not take it");
                }
                Err(e) => {
                    tracing::warn!(kind = mail.kind, mail = %id, error = %e, attempt, "notify did not take a mail; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt * attempt))).await;
                }
            }
        }
    };
    tokio::spawn(tracing::Instrument::instrument(work, span));
}

async fn hand_over(state: &State, id: Uuid, mail: &Mail) -> anyhow::Result<()> {
    // Auth is the issuer: it signs its own short client token rather than
    // asking itself for one.
    let now = Utc::now();
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        aud: state.audience.clone(),
        sub: Uuid::nil(),
        sid: None,
        iat: now.timestamp(),
        exp: now.timestamp() + 60,
        jti: Uuid::now_v7(),
        roles: Vec::new(),
        client_id: Some(CLIENT_ID.to_owned()),
        scope: Some(SECURITY_MAIL_SCOPE.to_owned()),
    };
    let token = tokens::sign_access_token(&state.keys.signing_key().await?, &claims)?;
    let path = format!("/v1/notify/security-mail/{id}");
    let answer = state.mailer.notify.send(reqwest::Method::PUT, &path, Credentials::Bearer(&token), Some(mail)).await?;
    anyhow::ensure!(answer.status().is_success(), "notify answered {}", answer.status());
    Ok(())
}
