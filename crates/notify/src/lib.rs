//! Notify (port 8010): notifications from the events other services
//! publish — a friend request, a game invitation, a tournament's next
//! match, a changed password — to the in-app inbox (pushed live on
//! `user:<id>`) and by e-mail, in the person's language, as their
//! preferences allow. See `docs/notify.md`.
//!
//! - the kinds and the rules, pure: [`domain`]; the templates: [`templates`]
//! - deciding a notification, in the consumer's transaction: [`events`],
//!   [`store::Store::notify`]; sending e-mail: [`sender`]
//! - where a request lands: [`api`]

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod push;
pub mod sender;
pub mod sms;
pub mod store;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use kit::db::Migrations;
use kit::http::Worker;
use kit::service::Setup;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::sender::Sender;
use crate::store::Store;

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
        (2, "quiet_hours", include_str!("../migrations/sqlite/0002_quiet_hours.sql")),
        (3, "unsubscribe_key", include_str!("../migrations/sqlite/0003_unsubscribe_key.sql")),
        (4, "push", include_str!("../migrations/sqlite/0004_push.sql")),
        (5, "suppressions", include_str!("../migrations/sqlite/0005_suppressions.sql")),
        (6, "sms", include_str!("../migrations/sqlite/0006_sms.sql")),
    ],
    postgres: &[
        (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
        (2, "quiet_hours", include_str!("../migrations/postgres/0002_quiet_hours.sql")),
        (3, "unsubscribe_key", include_str!("../migrations/postgres/0003_unsubscribe_key.sql")),
        (4, "push", include_str!("../migrations/postgres/0004_push.sql")),
        (5, "suppressions", include_str!("../migrations/postgres/0005_suppressions.sql")),
        (6, "sms", include_str!("../migrations/postgres/0006_sms.sql")),
    ],
    table: kit::db::SERVICE_MIGRATIONS_TABLE,
};

/// `[notify]` in `panal.toml`, `PANAL_NOTIFY__*`. The SMTP relay is the
/// process's `smtp_url` (`PANAL_SMTP_URL`), as auth's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The `From` of every e-mail.
    pub mail_from: String,
    /// How often the sender looks for e-mails due, in milliseconds.
    pub interval_ms: u64,
    /// E-mails handed to the SMTP relay at once.
    pub concurrency: usize,
    /// How long a low-priority kind's e-mail (a friend request, a new
    /// friend) waits for more of its kind, to go as one digest, in seconds
    /// (0: each goes at once).
    pub digest_secs: u64,
    /// E-mails sent per second at most (the relay's or provider's limit),
    /// and how many may go at once after a quiet spell.
    pub email_per_second: u32,
    pub email_burst: u32,
    /// Web Push: the contact push services see with notify's VAPID key
    /// (`mailto:` or `https:`).
    pub push_subject: String,
    /// How long a push service keeps a message for a browser that is
    /// offline, in seconds.
    pub push_ttl_secs: u64,
    /// Push messages sent per second at most, and the burst.
    pub push_per_second: u32,
    pub push_burst: u32,
    /// Accept push endpoints over plain `http` and on loopback or private
    /// addresses. For tests and a push service on the same network only:
    /// otherwise a subscription could make notify call into its own
    /// network.
    pub push_allow_local: bool,
    /// The e-mail provider's webhook verification key (base64 DER of a
    /// P-256 public key, as SendGrid shows it): with it, bounces and
    /// complaints posted to `/v1/notify/webhooks/email` are recorded.
    pub email_webhook_key: Option<String>,
    /// How long a delivery a sender took is its own, in seconds: longer than
    /// the slowest send (a relay's timeout), or a slow send could go twice;
    /// after a crash, what it held goes again after this.
    pub claim_lease_secs: u64,
    /// The SMS provider (`[notify.sms]`); without it there is no SMS
    /// channel (a phone number cannot be added).
    pub sms: Option<sms::SmsSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mail_from: "Panal <no-reply@localhost>".into(),
            interval_ms: 200,
            concurrency: 8,
            digest_secs: 300,
            email_per_second: 100,
            email_burst: 100,
            push_subject: "mailto:admin@localhost".into(),
            push_ttl_secs: 86_400,
            push_per_second: 100,
            push_burst: 100,
            push_allow_local: false,
            email_webhook_key: None,
            claim_lease_secs: 120,
            sms: None,
        }
    }
}

pub struct State {
    pub(crate) store: Arc<Store>,
    /// Signs one-click unsubscribe links.
    pub(crate) unsubscribe_key: [u8; 32],
    pub(crate) sender: Arc<Sender>,
    /// The e-mail provider's webhook key (its P-256 point), if configured.
    pub(crate) webhook_key: Option<Vec<u8>>,
}

pub(crate) type AppState = Arc<State>;

pub struct NotifyService;

impl kit::Service for NotifyService {
    const NAME: &'static str = "notify";
    const MIGRATIONS: Option<&'static Migrations> = Some(&MIGRATIONS);
    /// Addresses, names, inboxes and deliveries: export and erasure.
    const PERSONAL_DATA: bool = true;
    type Settings = Settings;
    type State = State;
    /// A provider's report carries up to 1,000 events (about 300 bytes
    /// each): more than the default body limit. The gateway lets it through
    /// too.
    const BODY_LIMITS: &'static [(&'static str, usize)] = &[("/v1/notify/webhooks/email", 1024 * 1024)];

    fn validate(s: &Settings) -> anyhow::Result<()> {
        s.mail_from.parse::<lettre::message::Mailbox>().map_err(|e| anyhow::anyhow!("notify.mail_from: {e}"))?;
        anyhow::ensure!(s.interval_ms > 0, "notify.interval_ms must be above 0");
        anyhow::ensure!((1..=86_400).contains(&s.claim_lease_secs), "notify.claim_lease_secs must be 1 to 86400");
        anyhow::ensure!((1..=256).contains(&s.concurrency), "notify.concurrency must be 1 to 256");
        anyhow::ensure!(
            s.email_per_second > 0 && s.email_burst > 0,
            "notify.email_per_second and notify.email_burst must be above 0"
        );
        anyhow::ensure!(
            s.push_per_second > 0 && s.push_burst > 0,
            "notify.push_per_second and notify.push_burst must be above 0"
        );
        anyhow::ensure!(
            s.push_subject.starts_with("mailto:") || s.push_subject.starts_with("https://"),
            "notify.push_subject must be a mailto: or https: URL (RFC 8292)"
        );
        if let Some(key) = &s.email_webhook_key {
            anyhow::ensure!(
                domain::p256_spki_point(key).is_some(),
                "notify.email_webhook_key must be a P-256 public key, base64 DER (SubjectPublicKeyInfo)"
            );
        }
        anyhow::ensure!(s.push_ttl_secs <= 2_419_200, "notify.push_ttl_secs must be at most 28 days");
        // Every template renders, or the service does not start.
        templates::check().map_err(|e| anyhow::anyhow!("a notification template does not render: {e}"))?;
        Ok(())
    }

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let store = Arc::new(Store::new(setup.db()?));
        let unsubscribe_key = store.unsubscribe_key(rand::random(), chrono::Utc::now()).await?;
        let config = &setup.ctx.config.settings;
        let smtp = match &config.smtp_url {
            Some(url) => Some(sender::Relay::new(setup.ctx.config.live_secret("smtp_url", url.clone()))?),
            None => None,
        };
        let vapid = store
            .vapid_key(push::Vapid::generate().map_err(|_| anyhow::anyhow!("no randomness"))?, chrono::Utc::now())
            .await?;
        let pusher = push::Pusher::new(
            push::Vapid::new(&vapid, setup.settings.push_subject.clone())?,
            Duration::from_secs(setup.settings.push_ttl_secs),
            setup.settings.push_allow_local,
        )?;
        let sms = match &setup.settings.sms {
            Some(s) => Some(
                sms::Twilio::new(
                    s,
                    setup.ctx.config.live_secret("notify.sms.auth_token", s.auth_token.clone()),
                    &config.public_url,
                )
                .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            ),
            None => None,
        };
        let sms_per_second = setup.settings.sms.as_ref().map_or(1, |s| s.per_second.max(1));
        let sender = Arc::new(Sender {
            store: store.clone(),
            smtp,
            from: setup.settings.mail_from.parse()?,
            drop_dir: config.data_dir.join("mail"),
            public_url: config.public_url.clone(),
            interval: Duration::from_millis(setup.settings.interval_ms),
            unsubscribe_key,
            concurrency: setup.settings.concurrency,
            digest_window: chrono::Duration::seconds(
                i64::try_from(setup.settings.digest_secs).unwrap_or(i64::MAX / 1000),
            ),
            limit: kit::limit::Limiter::new(kit::limit::Quota::per_second(
                setup.settings.email_per_second,
                setup.settings.email_burst,
            )),
            pusher,
            push_limit: kit::limit::Limiter::new(kit::limit::Quota::per_second(
                setup.settings.push_per_second,
                setup.settings.push_burst,
            )),
            sms,
            sms_limit: kit::limit::Limiter::new(kit::limit::Quota::per_second(sms_per_second, sms_per_second)),
            claim_lease: chrono::Duration::seconds(i64::try_from(setup.settings.claim_lease_secs).unwrap_or(120)),
        });
        let webhook_key = setup.settings.email_webhook_key.as_deref().and_then(domain::p256_spki_point);
        Ok(State { store, unsubscribe_key, sender, webhook_key })
    }

    fn routes(state: &Arc<State>) -> OpenApiRouter {
        api::router(state.clone())
    }

    fn handlers() -> kit::bus::Handlers {
        events::handlers()
    }

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        let sender = state.sender.clone();
        vec![Box::new(move |stop: CancellationToken| Box::pin(sender.run(stop)))]
    }
}
