//! A service's own identity toward the others: a service client of auth
//! (OAuth 2 client credentials), and the access token it gets with it.
//!
//! A service that calls others in its own name — game publishing frames to
//! realtime, posting invitation cards to chat — declares the scopes it needs
//! ([`crate::Service::CLIENT_SCOPES`]); kit then gives it a [`ServiceToken`]
//! built from `[clients.<service>]` (`PANAL_CLIENTS__<SERVICE>__ID` and
//! `__SECRET`). `panal up` registers those clients in auth's database itself
//! at start; for `panal serve` the operator registers them once
//! (`panal auth clients create --name game --scope realtime:publish …`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::secret::{LiveSecret, Secret};

/// A service client's id and secret, as configured.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Secret<String>,
}

/// The same, to be written into a configuration (`panal up`).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCredentials<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenFetchError {
    #[error("auth could not be reached for a service token: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("auth refused the service client's credentials ({0})")]
    Refused(reqwest::StatusCode),
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// An access token for a service client, fetched from auth on first use and
/// again when four fifths of its lifetime have passed; callers share it.
#[derive(Debug)]
pub struct ServiceToken {
    http: reqwest::Client,
    url: String,
    id: String,
    /// Read from its file again when rotated (`PANAL_CLIENTS__<S>__SECRET_FILE`).
    secret: LiveSecret,
    scope: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl ServiceToken {
    /// `auth` is auth's base URL; `id` and `secret` the client's.
    pub fn new(auth: &str, id: String, secret: LiveSecret, scopes: &[&str]) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(Self {
            http,
            url: format!("{}/v1/auth/token", auth.trim_end_matches('/')),
            id,
            secret,
            scope: scopes.join(" "),
            cached: Mutex::new(None),
        })
    }

    /// A valid access token (cached while fresh).
    pub async fn bearer(&self) -> Result<String, TokenFetchError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.id, Some(self.secret.current().expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", self.scope.as_str())])
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(TokenFetchError::Refused(response.status()));
        }
        let answer: TokenAnswer = response.json().await?;
        let renew_at = Instant::now() + Duration::from_secs(answer.expires_in.saturating_mul(4) / 5);
        *cached = Some((answer.access_token.clone(), renew_at));
        Ok(answer.access_token)
    }

    /// Forgets the cached token (after a 401: revoked or rotated keys).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}
