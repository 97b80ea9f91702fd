//! The sender: a worker that sends the deliveries due, rendered in the
//! person's language — e-mail through SMTP (`PANAL_SMTP_URL`, or without it
//! files under `<data_dir>/mail/`, for development), Web Push to each of
//! the person's browsers. A delivery the relay or a push service took is
//! `sent`; one it could not take is tried again with backoff, and `failed`
//! after the last attempt (or at once when no browser will ever take it),
//! and then it is also a dead letter of the bus (`panal events
//! dead-letters`), to be retried by an administrator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::{self, Channel, MAX_ATTEMPTS};
use crate::push::{BrowserKeys, Outcome, Pusher};
use crate::store::{Due, Store};
use crate::templates;

/// Why a delivery did not go.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt.
    Retry(String),
    /// Never going to (every browser refused or is gone).
    Final(String),
    /// Not to be sent: the provider reported the address (a hard bounce,
    /// or a complaint and not a security message). Failed, but no dead
    /// letter: nothing to retry.
    Suppressed(String),
}

/// The SMTP relay, built again when its URL — which carries the relay's
/// password — is rotated in its file (`PANAL_SMTP_URL_FILE`).
pub struct Relay {
    url: kit::secret::LiveSecret,
    current: std::sync::Mutex<(kit::secret::Secret<String>, AsyncSmtpTransport<Tokio1Executor>)>,
}

impl Relay {
    pub fn new(url: kit::secret::LiveSecret) -> anyhow::Result<Self> {
        let first = url.current();
        let transport = Self::build(first.expose())?;
        Ok(Self { url, current: std::sync::Mutex::new((first, transport)) })
    }

    fn build(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("invalid configuration: smtp_url (PANAL_SMTP_URL): {e}"))?
            .build())
    }

    /// Hands `message` to the relay the URL names now.
    pub async fn send(&self, message: lettre::Message) -> Result<(), String> {
        self.transport().send(message).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The transport for the URL as it is now (a new one, with its own
    /// connections, when the URL changed; the old URL stays in use if the
    /// new one is not a valid SMTP URL).
    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        let url = self.url.current();
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != url {
            match Self::build(url.expose()) {
                Ok(transport) => {
                    tracing::info!("notify: the SMTP relay's URL changed; new connections use it");
                    *current = (url, transport);
                }
                Err(e) => tracing::warn!(error = %e, "notify: the new smtp_url is refused; keeping the one before"),
            }
        }
        current.1.clone()
    }
}

pub struct Sender {
    pub store: Arc<Store>,
    pub smtp: Option<Relay>,
    pub from: Mailbox,
    /// Where mail goes without SMTP.
    pub drop_dir: PathBuf,
    /// The web app's address: links in e-mails are absolute.
    pub public_url: String,
    pub interval: Duration,
    /// Signs the one-click unsubscribe links.
    pub unsubscribe_key: [u8; 32],
    /// E-mails handed to the relay at once.
    pub concurrency: usize,
    /// How long a low-priority kind's e-mail waits for others of its kind
    /// to the same person, to go as one digest (zero: never).
    pub digest_window: chrono::Duration,
    /// The e-mail channel's rate (`notify.email_per_second`): what a relay
    /// or a provider's plan takes. Over it, an e-mail waits its turn (not
    /// an attempt).
    pub limit: kit::limit::Limiter<()>,
    pub pusher: Pusher,
    /// The push channel's rate (`notify.push_per_second`).
    pub push_limit: kit::limit::Limiter<()>,
    /// The SMS provider, if configured, and its rate.
    pub sms: Option<crate::sms::Twilio>,
    pub sms_limit: kit::limit::Limiter<()>,
    /// How long a claimed delivery is this process's to send before
    /// another may take it (its process died mid-send).
    pub claim_lease: chrono::Duration,
}

impl Sender {
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let busy = match self.round().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "the e-mails due could not be read");
                    false
                }
            };
            let wait = if busy { Duration::ZERO } else { self.interval };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends what is due; how many deliveries it settled.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let now = Utc::now();
        let mut due = self.store.claim(now, now + self.claim_lease, 50).await?;
        // One digest per person and kind: its other deliveries go with it.
        let mut seen = std::collections::HashSet::new();
        due.retain(|d| !self.digested(d) || seen.insert((d.user_id, d.kind)));
        // Over a channel's rate, a delivery waits its turn (not an attempt);
        // those of this round wait together, in one write.
        let mut waiting = Vec::new();
        due.retain(|d| match self.limit_of(d.channel).check(&()) {
            kit::limit::Decision::Allow { .. } => true,
            kit::limit::Decision::Deny { retry_after } => {
                let wait = chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::seconds(1));
                waiting.push((d.id, now + wait));
                false
            }
        });
        self.store.hold_all(&waiting, now).await?;
        // Several at a time: one e-mail's exchange with the relay is a few
        // round trips, mostly waiting.
        for chunk in due.chunks(self.concurrency.max(1)) {
            let sends: Vec<_> = chunk.iter().map(|d| self.deliver(d)).collect();
            futures_util::future::join_all(sends).await.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        Ok(due.len())
    }

    /// Where a notification leads, absolute: its `link` under the public
    /// URL (auth's mail brings an absolute one, kept as it is).
    fn link(&self, vars: &serde_json::Value) -> String {
        let link = vars["link"].as_str().unwrap_or("/");
        if link.starts_with("https://") || link.starts_with("http://") {
            return link.to_owned();
        }
        format!("{}{link}", self.public_url.trim_end_matches('/'))
    }

    /// A channel's rate.
    fn limit_of(&self, channel: Channel) -> &kit::limit::Limiter<()> {
        match channel {
            Channel::Push => &self.push_limit,
            Channel::Sms => &self.sms_limit,
            Channel::Email | Channel::Inbox => &self.limit,
        }
    }

    /// Sends one delivery (or holds it for quiet hours) and records how it went.
    async fn deliver(&self, d: &Due) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        if let Some(until) = self.quiet_until(d, now).await? {
            return self.store.hold(d.id, until, now).await;
        }
        let mut batch = vec![d.clone()];
        if self.digested(d) {
            let until = d.created_at + self.digest_window;
            if until > now {
                return self.store.hold(d.id, until, now).await;
            }
            batch = self.store.batch(d.user_id, d.kind).await?;
            if batch.is_empty() {
                return Ok(());
            }
        }
        let outcome = match d.channel {
            Channel::Push => self.send_push(d).await,
            Channel::Sms => self.send_sms(d).await,
            Channel::Email | Channel::Inbox => self.send(&batch).await,
        };
        let now = Utc::now();
        let channel = d.channel.as_str();
        match outcome {
            Ok(()) => {
                for b in &batch {
                    self.store.settle(b.id, "sent", None, now, now).await?;
                }
                Ok(())
            }
            Err(Failure::Retry(e)) if d.attempts + 1 < MAX_ATTEMPTS => {
                tracing::warn!(delivery = %d.id, channel, error = %e, "a notification was not sent; retrying");
                self.store.settle(d.id, "pending", Some(&e), now + domain::backoff(d.attempts), now).await
            }
            Err(Failure::Suppressed(e)) => {
                tracing::info!(delivery = %d.id, "an e-mail to a reported address was not sent");
                self.store.settle(d.id, "failed", Some(&e), now, now).await
            }
            Err(Failure::Retry(e) | Failure::Final(e)) => {
                tracing::error!(delivery = %d.id, channel, error = %e, "a notification was given up");
                self.store.fail(d, &e, now).await
            }
        }
    }

    /// Sends a push delivery to each of the person's browsers it has not
    /// reached yet: sent when one took it; tried again while one may
    /// still; failed when none ever will.
    async fn send_push(&self, d: &Due) -> Result<(), Failure> {
        let db = |e: sqlx::Error| Failure::Retry(e.to_string());
        let recipient = self.store.recipient(d.user_id).await.map_err(db)?;
        let Some(recipient) = recipient else { return Err(Failure::Final("the recipient is gone".into())) };
        let locale = domain::locale_of(recipient.locale.as_deref());
        let rendered = templates::render(d.kind, locale, &d.vars).map_err(Failure::Final)?;
        let body: String = rendered.body.chars().take(1000).collect();
        let payload = json!({
            "id": d.id, "kind": d.kind.as_str(), "title": rendered.title, "body": body, "link": self.link(&d.vars),
        })
        .to_string();
        let done = self.store.receipts(d.id).await.map_err(db)?;
        let (mut reached, mut retry, mut refused) = (!done.is_empty(), None, None);
        for s in self.store.subscriptions(d.user_id).await.map_err(db)? {
            if done.contains(&s.id) {
                continue;
            }
            let keys = BrowserKeys { p256dh: s.p256dh, auth: s.auth };
            let topic = d.id.simple().to_string();
            match self.pusher.push(&s.endpoint, &keys, payload.as_bytes(), d.kind.security(), &topic).await {
                Outcome::Accepted => {
                    reached = true;
                    self.store.receipt(d.id, s.id).await.map_err(db)?;
                }
                Outcome::Gone => {
                    tracing::info!(subscription = %s.id, "a push subscription is gone; removed");
                    self.store.subscription_gone(s.id).await.map_err(db)?;
                }
                Outcome::Refused(e) => {
                    self.store.receipt(d.id, s.id).await.map_err(db)?;
                    refused = Some(e);
                }
                Outcome::Retry(e) => retry = Some(e),
            }
        }
        match (retry, reached) {
            (Some(e), _) => Err(Failure::Retry(e)),
            (None, true) => Ok(()),
            (None, false) => Err(Failure::Final(refused.unwrap_or_else(|| "no browser is subscribed".into()))),
        }
    }

    /// Sends an SMS delivery to the person's verified number (a phone
    /// code: to the number being verified).
    async fn send_sms(&self, d: &Due) -> Result<(), Failure> {
        let Some(provider) = &self.sms else { return Err(Failure::Final("SMS is not configured".into())) };
        let db = |e: sqlx::Error| Failure::Retry(e.to_string());
        let number = match d.vars["to"].as_str() {
            Some(n) => n.to_owned(),
            None => {
                let verified = self.store.verified_phone(d.user_id).await.map_err(db)?;
                verified.ok_or_else(|| Failure::Final("no verified phone number".into()))?
            }
        };
        let recipient = self.store.recipient(d.user_id).await.map_err(db)?;
        let locale = domain::locale_of(recipient.as_ref().and_then(|r| r.locale.as_deref()));
        let mut vars = d.vars.clone();
        vars["link"] = json!(self.link(&d.vars));
        let text = templates::render_sms(d.kind, locale, &vars).map_err(Failure::Final)?;
        match provider.send(&number, &text).await {
            crate::sms::Outcome::Accepted(sid) => self.store.provider_id(d.id, &sid).await.map_err(db),
            crate::sms::Outcome::Retry(e) => Err(Failure::Retry(e)),
            crate::sms::Outcome::Refused(e) => Err(Failure::Final(e)),
        }
    }

    /// When `d` may go, if the person's quiet hours hold it now (never a
    /// security message). Their time zone: the one set with the quiet
    /// hours, else the profile's, else UTC.
    async fn quiet_until(
        &self,
        d: &Due,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<chrono::DateTime<Utc>>, sqlx::Error> {
        if d.kind.security() {
            return Ok(None);
        }
        let Some((from, to, tz)) = self.store.quiet_hours(d.user_id).await? else { return Ok(None) };
        let profile_tz = match tz {
            Some(tz) => Some(tz),
            None => self.store.recipient(d.user_id).await?.and_then(|r| r.timezone),
        };
        let tz = profile_tz.as_deref().and_then(domain::parse_tz).unwrap_or(chrono_tz::UTC);
        let (Some(from), Some(to)) = (domain::parse_time(&from), domain::parse_time(&to)) else { return Ok(None) };
        Ok(domain::quiet_until(now, domain::Quiet { from, to, tz }))
    }

    fn digested(&self, d: &Due) -> bool {
        d.channel == Channel::Email && d.kind.digest() && self.digest_window > chrono::Duration::zero()
    }

    /// Sends `batch` (one delivery, or a digest of several of one kind to
    /// one person) as one e-mail.
    async fn send(&self, batch: &[Due]) -> Result<(), Failure> {
        let d = &batch[0];
        let recipient = self.store.recipient(d.user_id).await.map_err(|e| Failure::Retry(e.to_string()))?;
        // Auth's mail names its address (the account may be newer than
        // what notify has heard of it); the rest go to the one notify knows.
        let address = d.vars["to"].as_str().map(str::to_owned).or_else(|| recipient.as_ref()?.email.clone());
        let Some(address) = address else { return Err(Failure::Retry("the recipient has no address any more".into())) };
        let reported = self.store.suppression(&address).await.map_err(|e| Failure::Retry(e.to_string()))?;
        if domain::suppressed(d.kind, reported.as_deref()) {
            return Err(Failure::Suppressed(format!(
                "the provider reported the address ({})",
                reported.unwrap_or_default()
            )));
        }
        self.compose_and_send(batch, recipient, address).await.map_err(Failure::Retry)
    }

    /// Renders and sends `batch` to `address`.
    async fn compose_and_send(
        &self,
        batch: &[Due],
        recipient: Option<crate::store::Recipient>,
        address: String,
    ) -> Result<(), String> {
        let d = &batch[0];
        let mut vars = d.vars.clone();
        if vars.get("name").is_none() {
            vars["name"] = json!(recipient.as_ref().map_or(address.as_str(), |r| r.display_name.as_str()));
        }
        vars["link"] = json!(self.link(&d.vars));
        let locale = domain::locale_of(recipient.as_ref().and_then(|r| r.locale.as_deref()));
        let (subject, text, html) = if batch.len() > 1 {
            let people: Vec<String> = batch.iter().map(|b| domain::digest_line(b.kind, &b.vars)).collect();
            let digest = templates::render_digest(d.kind, locale, &vars, &people)?;
            (digest.subject, digest.text, digest.html)
        } else {
            let rendered = templates::render(d.kind, locale, &vars)?;
            (rendered.subject, rendered.text, rendered.html)
        };
        let to: Mailbox = address.parse().map_err(|e| format!("a bad address: {e}"))?;
        // The delivery's id is the Message-ID: the provider's reports of
        // the message (bounces, complaints) name it.
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&subject)
            .message_id(Some(format!("<{}@panal>", d.id)));
        // One-click unsubscribe (RFC 8058) from this kind's e-mail; never
        // on a security message.
        if let Some(token) = domain::unsubscribe_token(&self.unsubscribe_key, d.user_id, d.kind) {
            let url = format!("{}/v1/notify/unsubscribe?token={token}", self.public_url.trim_end_matches('/'));
            builder = builder
                .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), format!("<{url}>")))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let message = builder.multipart(MultiPart::alternative_plain_html(text, html)).map_err(|e| e.to_string())?;
        match &self.smtp {
            Some(relay) => relay.send(message).await,
            None => {
                let path = self.drop_dir.join(format!("{}.eml", d.id));
                let bytes = message.formatted();
                let dir = self.drop_dir.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing the mail: {e}"))
            }
        }
    }
}
