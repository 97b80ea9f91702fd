//! Mail from auth (verification and reset links) until the notify service
//! takes the job: through SMTP when `PANAL_SMTP_URL` is set, otherwise written
//! as a file to `<data_dir>/mail/` (and kept in memory, last 50, for the
//! process that sent them). Never to the log: a mail holds an address and a
//! link that signs its reader in, and logs are shipped and kept.
//!
//! Sending never holds up the request: the answer must not take longer for an
//! address that exists (a mail goes out) than for one that does not.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
pub struct Mailer {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// Where mail goes without SMTP.
    drop_dir: std::path::PathBuf,
    recent: Arc<Mutex<VecDeque<Mail>>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("smtp", &self.smtp.is_some()).field("from", &self.from).finish()
    }
}

const KEPT: usize = 50;

impl Mailer {
    /// `smtp_url`: `smtp://host:port` (plain, for a relay on the same host),
    /// `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`, with
    /// `user:password@` when the relay wants a login.
    /// Without `smtp_url`, mail is written to `<data_dir>/mail/`.
    pub fn new(smtp_url: Option<&str>, from: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let from: Mailbox =
            from.parse().map_err(|e| anyhow::anyhow!("invalid configuration: auth.mail_from {from:?}: {e}"))?;
        let smtp = match smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: smtp_url (PANAL_SMTP_URL): {e}"))?
                    .build(),
            ),
            None => None,
        };
        Ok(Self { smtp, from, drop_dir: data_dir.join("mail"), recent: Arc::new(Mutex::new(VecDeque::new())) })
    }

    pub fn uses_smtp(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends `mail` in the background.
    pub fn send(&self, mail: Mail) {
        let Some(smtp) = self.smtp.clone() else {
            let dir = self.drop_dir.clone();
            let path = dir.join(format!("{}.txt", uuid::Uuid::now_v7()));
            let text = format!("From: {}\nTo: {}\nSubject: {}\n\n{}", self.from, mail.to, mail.subject, mail.body);
            let subject = mail.subject.clone();
            // Off the request, as SMTP is: the answer takes no longer when a
            // mail goes out (a known address) than when none does.
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _in_request = span.enter();
                match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
                    Ok(()) => tracing::info!(
                        subject = %subject, path = %path.display(),
                        "mail written to a file (PANAL_SMTP_URL is not set)"
                    ),
                    Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "mail not sent: cannot write it"),
                }
            });
            if let Ok(mut recent) = self.recent.lock() {
                if recent.len() == KEPT {
                    recent.pop_front();
                }
                recent.push_back(mail);
            }
            return;
        };
        let from = self.from.clone();
        tokio::spawn(async move {
            let to = match mail.to.parse::<Mailbox>() {
                Ok(to) => to,
                Err(e) => return tracing::warn!(error = %e, "mail not sent: bad recipient"),
            };
            let message = match Message::builder().from(from).to(to).subject(&mail.subject).body(mail.body) {
                Ok(m) => m,
                Err(e) => return tracing::warn!(error = %e, "mail not sent: could not build it"),
            };
            match smtp.send(message).await {
                Ok(_) => tracing::info!(subject = %mail.subject, "mail handed to the SMTP relay"),
                Err(e) => {
                    tracing::warn!(error = %e, subject = %mail.subject, "mail not sent: SMTP relay refused or unreachable")
                }
            }
        });
    }

    /// The mails written to files instead of sent, oldest first (without SMTP).
    pub fn logged(&self) -> Vec<Mail> {
        self.recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}
