//! Auth's settings: `[auth]` in `panal.toml`, `PANAL_AUTH__*`.

use serde::Deserialize;

use crate::oauth::ProviderSettings;
use crate::password::HashSettings;
use crate::throttle::ThrottleSettings;
use crate::tokens::SigningAlgorithm;

/// Auth's settings: `[auth]` in `panal.toml`, `PANAL_AUTH__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Lifetime of access tokens, in seconds (60 to 3600).
    pub access_token_ttl_secs: u64,
    /// Lifetime of each refresh token, in seconds; every use gives a new one.
    pub refresh_token_ttl_secs: u64,
    /// The longest a session lasts, however often it is refreshed, in seconds.
    pub session_max_age_secs: u64,
    /// Argon2id parameters and the hashing concurrency bound.
    pub password: HashSettings,
    /// Brute-force throttling of login, second factor and reset.
    pub throttle: ThrottleSettings,
    /// How long the second step of a sign-in may wait for its code, in seconds.
    pub mfa_challenge_ttl_secs: u64,
    /// Lifetime of an email-verification link, in seconds.
    pub verify_email_ttl_secs: u64,
    /// Lifetime of a password-reset link, in seconds.
    pub reset_password_ttl_secs: u64,
    /// How long `panal auth rotate-keys` publishes a new key before it signs,
    /// in seconds: longer than verifiers cache the JWKS (5 minutes).
    pub key_publish_delay_secs: u64,
    /// The algorithm new signing keys use: `EdDSA` (default) or `RS256`.
    /// Changing it takes effect at the next start: a key of the new algorithm
    /// signs from then on, and the old keys stay published until the tokens
    /// they signed have expired.
    pub signing_algorithm: SigningAlgorithm,
    /// How often auth re-reads its keys (to see rotations made by the CLI).
    pub key_reload_secs: u64,
    /// Lifetime of service clients' access tokens, in seconds.
    pub client_token_ttl_secs: u64,
    /// The web application's address, for links in mail
    /// (`<app_url>/verify-email#token=…`); default: `public_url`.
    pub app_url: Option<String>,
    /// The issuer name shown in authenticator apps.
    pub totp_issuer: String,
    /// External identity providers by name: `[auth.providers.42]`, ….
    pub providers: std::collections::BTreeMap<String, ProviderSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
            password: HashSettings::default(),
            throttle: ThrottleSettings::default(),
            mfa_challenge_ttl_secs: 300,
            verify_email_ttl_secs: 24 * 3600,
            reset_password_ttl_secs: 30 * 60,
            key_publish_delay_secs: 600,
            signing_algorithm: SigningAlgorithm::default(),
            key_reload_secs: 30,
            client_token_ttl_secs: 15 * 60,
            app_url: None,
            totp_issuer: "Panal".to_owned(),
            providers: Default::default(),
        }
    }
}

impl Settings {
    /// How long a key stays published after it stops signing: past the
    /// expiry of the last token it signed.
    pub(crate) fn key_grace(&self, leeway_secs: u64) -> chrono::Duration {
        let secs = self.access_token_ttl_secs.max(self.client_token_ttl_secs) + leeway_secs;
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(3600))
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !(60..=3600).contains(&self.access_token_ttl_secs) {
            anyhow::bail!("access_token_ttl_secs must be between 60 and 3600");
        }
        if self.refresh_token_ttl_secs < 60 || self.session_max_age_secs < self.refresh_token_ttl_secs.min(3600) {
            anyhow::bail!("refresh_token_ttl_secs and session_max_age_secs are too short");
        }
        if !(300..=3600).contains(&self.reset_password_ttl_secs) {
            anyhow::bail!("reset_password_ttl_secs must be between 300 and 3600");
        }
        if !(60..=3600).contains(&self.client_token_ttl_secs) {
            anyhow::bail!("client_token_ttl_secs must be between 60 and 3600");
        }
        Ok(())
    }
}
