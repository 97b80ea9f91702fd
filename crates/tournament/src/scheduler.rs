//! The scheduler: makes each online match in game as soon as its two
//! players are known (`POST /v1/game/service/matches`, in the service's own
//! name with `game:matches`), and remembers game's match. Idempotent: the
//! match's reference is the tournament's place for it, so a request retried
//! after a crash or a lost answer gets the match made the first time.

use std::sync::Arc;
use std::time::Duration;

use kit::credentials::ServiceToken;
use kit::peer::{Credentials, PeerClient};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::Store;

pub struct Scheduler {
    pub store: Arc<Store>,
    pub game: PeerClient,
    pub chat: PeerClient,
    pub token: Arc<ServiceToken>,
}

impl Scheduler {
    /// Every half second, until `stop`; after a failure, five seconds.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut wait = Duration::from_millis(500);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = match self.round().await {
                Ok(()) => Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, "online tournament matches could not be made in game; retrying");
                    Duration::from_secs(5)
                }
            };
        }
    }

    /// Makes every match waiting to be made; one game refuses does not hold
    /// up the others (it is tried again at the next round, after the pause
    /// a failure brings).
    async fn round(&self) -> anyhow::Result<()> {
        let mut failed = None;
        for (tournament, round, index, a, b, points) in self.store.unscheduled().await? {
            if let Err(e) = self.schedule(tournament, round, index, a, b, points).await {
                tracing::warn!(error = %e, %tournament, round, index, "a tournament match was not made in game");
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn schedule(
        &self,
        tournament: Uuid,
        round: u32,
        index: u32,
        a: Uuid,
        b: Uuid,
        points: u8,
    ) -> anyhow::Result<()> {
        let match_id = self.make(tournament, round, index, a, b, points).await?;
        self.store.scheduled(tournament, round, index, match_id).await?;
        tracing::info!(%tournament, round, index, %match_id, "a tournament match was made in game");
        // The call in chat is a courtesy: the players were told on their
        // `user:` channel already, and game on theirs.
        if let Err(e) = self.card(tournament, round, a, b, match_id).await {
            tracing::warn!(error = %e, %tournament, %match_id, "a tournament call was not posted in chat");
        }
        Ok(())
    }

    /// The call in the two players' direct conversation: a card about the
    /// game match (`tournament_call`, its reference the match id).
    async fn card(&self, tournament: Uuid, round: u32, a: Uuid, b: Uuid, match_id: Uuid) -> anyhow::Result<()> {
        let (name, alias_a, alias_b) = self.store.call_names(tournament, a, b).await?;
        let bearer = self.token.bearer().await?;
        let body = json!({
            "between": [a, b],
            "text": format!("Your {name} match is ready: {alias_a} against {alias_b}"),
            "card": {
                "type": "tournament_call",
                "title": format!("{name}: your match is ready"),
                "reference": match_id,
                "fields": [
                    {"label": "Round", "value": (round + 1).to_string()},
                    {"label": "Players", "value": format!("{alias_a} against {alias_b}")},
                ],
            },
        });
        let r = self
            .chat
            .send(reqwest::Method::POST, "/v1/chat/service/messages", Credentials::Bearer(&bearer), Some(&body))
            .await?;
        if !r.status().is_success() {
            anyhow::bail!("chat answered {}: {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    async fn make(
        &self,
        tournament: Uuid,
        round: u32,
        index: u32,
        a: Uuid,
        b: Uuid,
        points: u8,
    ) -> anyhow::Result<Uuid> {
        let bearer = self.token.bearer().await?;
        let body = json!({
            "players": [a, b], "mode": "duel", "origin": "tournament", "options": {"points_to_win": points},
            "reference": format!("tournament:{tournament}:{round}:{index}"),
        });
        let r = self
            .game
            .send(reqwest::Method::POST, "/v1/game/service/matches", Credentials::Bearer(&bearer), Some(&body))
            .await?;
        let status = r.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.token.forget().await;
        }
        if !status.is_success() {
            anyhow::bail!("game answered {status}: {}", r.text().await.unwrap_or_default());
        }
        let m: Value = r.json().await?;
        m["id"].as_str().and_then(|id| id.parse().ok()).ok_or_else(|| anyhow::anyhow!("no match id from game"))
    }
}
