//! The bots' identities: made by auth (`POST /v1/auth/bots`, in the AI
//! service's own name, scope `bots:act`), and their access tokens, asked
//! for when needed and kept until a minute before they expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kit::Problem;
use kit::credentials::ServiceToken;
use kit::peer::{Credentials, PeerClient};
use serde::Deserialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::Level;
use crate::error::AiError;
use crate::store::{Bot, Store};

/// The names bots are given, by level: `<name> (<level>)`.
const NAMES: [&str; 8] = ["Marvin", "Hal", "Ada", "Deep Blue", "Bender", "Wall-E", "Johnny", "Robby"];

pub struct Roster {
    store: Arc<Store>,
    auth: PeerClient,
    token: Arc<ServiceToken>,
    /// Each bot's token and when to ask for a new one.
    tokens: Mutex<HashMap<Uuid, (String, Instant)>>,
    /// One bot is made at a time (two requests for the same level would
    /// otherwise both make one).
    making: Mutex<()>,
}

#[derive(Deserialize)]
struct Made {
    id: Uuid,
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
    expires_in: u64,
}

fn unavailable(what: &str) -> AiError {
    Problem::unavailable(format!("auth could not {what}; retry shortly"), 2).into()
}

impl Roster {
    pub fn new(store: Arc<Store>, auth: PeerClient, token: Arc<ServiceToken>) -> Self {
        Self { store, auth, token, tokens: Mutex::default(), making: Mutex::new(()) }
    }

    /// A bot of `level` that is not one of `taken`, made when there is none.
    pub async fn bot_for(&self, level: Level, taken: &[Uuid]) -> Result<Bot, AiError> {
        if let Some(bot) = self.store.bot_for(level, taken).await? {
            return Ok(bot);
        }
        let _one = self.making.lock().await;
        if let Some(bot) = self.store.bot_for(level, taken).await? {
            return Ok(bot);
        }
        let n = self.store.bots_of(level).await?;
        let base = NAMES[usize::try_from(n).unwrap_or(0) % NAMES.len()];
        let round = n / i64::try_from(NAMES.len()).unwrap_or(8);
        let name = if round == 0 {
            format!("{base} ({})", level.as_str())
        } else {
            format!("{base} {} ({})", round + 1, level.as_str())
        };
        let answer =
            self.call(reqwest::Method::POST, "/v1/auth/bots", Some(&serde_json::json!({"name": name}))).await?;
        if answer.status() != reqwest::StatusCode::CREATED {
            tracing::warn!(status = %answer.status(), "auth refused to make a bot");
            return Err(unavailable("make a bot"));
        }
        let made: Made = answer.json().await.map_err(|_| unavailable("make a bot"))?;
        let bot = Bot { id: made.id, level, name, created_at: Utc::now() };
        self.store.add_bot(&bot).await?;
        tracing::info!(bot = %bot.id, level = level.as_str(), "bot made");
        Ok(bot)
    }

    /// An access token for `bot`.
    pub async fn token(&self, bot: Uuid) -> Result<String, AiError> {
        if let Some((token, renew)) = self.tokens.lock().await.get(&bot)
            && Instant::now() < *renew
        {
            return Ok(token.clone());
        }
        let answer = self.call(reqwest::Method::POST, &format!("/v1/auth/bots/{bot}/token"), None).await?;
        if !answer.status().is_success() {
            tracing::warn!(status = %answer.status(), %bot, "auth refused a bot's token");
            return Err(unavailable("give a bot its token"));
        }
        let issued: Issued = answer.json().await.map_err(|_| unavailable("give a bot its token"))?;
        let renew = Instant::now() + Duration::from_secs(issued.expires_in.saturating_sub(60).max(1));
        self.tokens.lock().await.insert(bot, (issued.access_token.clone(), renew));
        Ok(issued.access_token)
    }

    /// Forgets a token a service refused (auth's keys rotated, say).
    pub async fn forget(&self, bot: Uuid) {
        self.tokens.lock().await.remove(&bot);
    }

    /// A call to auth in the AI service's own name.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, AiError> {
        let bearer = self.token.bearer().await.map_err(|e| {
            tracing::warn!(error = %e, "no service token to reach auth");
            unavailable("be reached")
        })?;
        let answer = self.auth.send(method, path, Credentials::Bearer(&bearer), body).await.map_err(Problem::from)?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.token.forget().await;
            return Err(Problem::unavailable("auth refused the AI service's token; retry shortly", 1).into());
        }
        Ok(answer)
    }
}
