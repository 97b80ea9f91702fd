//! The terminal client's side of the wire: the gateway's HTTP API (sign-in,
//! queue, invitations, joining) and its WebSocket, which speaks the
//! Centrifugo JSON protocol (`docs/realtime.md`): connect with the access
//! token, subscribe to `user:<me>` and `game:<match>`, receive their
//! publications, call `game.input` and `game.heartbeat` over `rpc`.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// The gateway's HTTP API with one access token.
pub struct Api {
    http: reqwest::Client,
    base: String,
    pub token: String,
    pub user_id: String,
}

/// A problem document's words, or the status.
async fn refused(what: &str, r: reqwest::Response) -> anyhow::Error {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let detail = body["detail"].as_str().unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    anyhow::anyhow!("{what}: {detail} ({})", status.as_u16())
}

impl Api {
    /// Signs in; `code` answers a second-factor challenge (asked for on
    /// standard input when the account has one and no code was given).
    pub async fn sign_in(base: &str, email: &str, password: &str, code: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let base = base.trim_end_matches('/').to_owned();
        let r = http
            .post(format!("{base}/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        if !r.status().is_success() {
            return Err(refused("signing in", r).await);
        }
        let mut answer: Value = r.json().await?;
        if answer["mfa_required"] == true {
            let code = match code {
                Some(code) => code,
                None => super::prompt("code from your authenticator app: ")?,
            };
            let r = http
                .post(format!("{base}/v1/auth/login/mfa"))
                .json(&json!({"mfa_token": answer["mfa_token"], "code": code}))
                .send()
                .await?;
            if !r.status().is_success() {
                return Err(refused("the second factor", r).await);
            }
            answer = r.json().await?;
        }
        let token = answer["access_token"].as_str().context("no access token in the answer")?.to_owned();
        let me: Value = http.get(format!("{base}/v1/auth/me")).bearer_auth(&token).send().await?.json().await?;
        let user_id = me["id"].as_str().context("no id in /v1/auth/me")?.to_owned();
        Ok(Self { http, base, token, user_id })
    }

    /// `POST path` with `body`: the answer's JSON on success.
    pub async fn post(&self, what: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        if !r.status().is_success() {
            return Err(refused(what, r).await);
        }
        let text = r.text().await?;
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// The socket's URL: the gateway's, `ws` instead of `http`.
    pub fn socket_url(&self) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        format!("{ws}/v1/ws")
    }
}

pub use kit::socket::{Incoming, Socket};
