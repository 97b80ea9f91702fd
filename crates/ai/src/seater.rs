//! Seating bots: for a person who asks (`POST /v1/ai/matches/{id}/bots`),
//! for the queue (`bots_wanted`), and for a player who invited a bot
//! (`invitation_sent` to a bot): the last two recorded by the consumer and served here,
//! retried with backoff when game or auth cannot be reached.

use std::time::Duration;

use chrono::Utc;
use kit::peer::Credentials;
use kit::{Fail, Problem};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::domain::Level;
use crate::error::AiError;
use crate::store::{Bot, Game, Want};

/// Attempts at a request for bots before it is given up.
const MAX_ATTEMPTS: u32 = 10;

/// Seats a bot of `level` (not one of `taken`) in the waiting match, and
/// starts it playing: the bot, and whether it took the last seat.
pub(crate) async fn seat(
    state: &AppState,
    match_id: Uuid,
    level: Level,
    taken: &[Uuid],
) -> Result<(Bot, bool), AiError> {
    let bot = state.roster.bot_for(level, taken).await?;
    let game = Game { match_id, bot_id: bot.id, level };
    // Recorded before joining: a crash in between leaves a row the next
    // start resumes (and finds the bot seated or not), never a seat nobody
    // plays.
    state.store.start(&game, Utc::now()).await?;
    let started = match join(state, &game).await {
        Ok(started) => started,
        Err(e) => {
            state.store.forget(&game).await?;
            return Err(e);
        }
    };
    state.spawn(game);
    Ok((bot, started))
}

/// Serves the queue's requests for bots until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let due = match state.store.due(Utc::now()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "the requests for bots could not be read");
                continue;
            }
        };
        for want in due {
            let outcome = match want.invited {
                Some(bot) => accept(&state, want.match_id, bot, want.level).await,
                None => fill(&state, &want).await,
            };
            let now = Utc::now();
            let (status, next_at) = match outcome {
                Ok(()) => ("done", now),
                Err(e) => {
                    let problem = match e {
                        AiError::Kit(e) => e.into_problem(),
                    };
                    let status = problem.status;
                    if status == 404 || status == 409 {
                        // Gone, over, or someone took the seats: nothing to do.
                        tracing::info!(match_id = %want.match_id, status, "a request for bots needs none now");
                        ("done", now)
                    } else if want.attempts + 1 >= MAX_ATTEMPTS {
                        tracing::error!(match_id = %want.match_id, ?problem, "a request for bots was given up");
                        ("failed", now)
                    } else {
                        let wait = 1i64 << want.attempts.min(6);
                        ("pending", now + chrono::Duration::seconds(wait))
                    }
                }
            };
            if let Err(e) = state.store.settle(want.match_id, status, next_at).await {
                tracing::warn!(error = %e, match_id = %want.match_id, "a request for bots was not settled");
            }
        }
    }
}

/// Fills a waiting match's free seats with bots.
async fn fill(state: &AppState, want: &Want) -> Result<(), AiError> {
    // The match as one of the level's bots sees it.
    let first = state.roster.bot_for(want.level, &[]).await?;
    let token = state.roster.token(first.id).await?;
    let m = match_of(state, want.match_id, Credentials::Bearer(&token)).await?;
    if m["status"] != "waiting" {
        return Err(AiError::conflict("the match is not waiting for players"));
    }
    let mut taken: Vec<Uuid> = m["players"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["user_id"].as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let seats = usize::try_from(m["seats"].as_u64().unwrap_or(2)).unwrap_or(2);
    while taken.len() < seats {
        let (bot, started) = seat(state, want.match_id, want.level, &taken).await?;
        tracing::info!(match_id = %want.match_id, bot = %bot.id, level = want.level.as_str(), "a bot takes a seat the queue left");
        taken.push(bot.id);
        if started {
            break;
        }
    }
    Ok(())
}

/// Accepts an invitation in the invited bot's name, and starts it playing
/// the match that makes (live at once).
async fn accept(state: &AppState, invitation: Uuid, bot: Uuid, level: Level) -> Result<(), AiError> {
    let path = format!("/v1/game/invitations/{invitation}/accept");
    let m = match post_as(state, bot, &path).await? {
        Ok(m) => m,
        Err(403 | 404) => return Err(AiError::not_found("no such invitation for this bot")),
        Err(409) => return Err(AiError::conflict("the invitation was answered, withdrawn or expired")),
        Err(status) => {
            tracing::warn!(status, %invitation, "game refused a bot's answer to an invitation");
            return Err(game_unavailable());
        }
    };
    let match_id: Uuid = m["id"].as_str().and_then(|id| id.parse().ok()).ok_or_else(game_unavailable)?;
    let game = Game { match_id, bot_id: bot, level };
    // Should this process stop here, game's `match_started` has the
    // consumer adopt the match.
    state.store.start(&game, Utc::now()).await?;
    state.spawn(game);
    tracing::info!(%invitation, %match_id, %bot, "a bot accepted an invitation");
    Ok(())
}

/// `POST path` to game with the bot's own token: the answer's JSON, or its
/// status (a 401 makes the bot's token be asked for again).
async fn post_as(state: &AppState, bot: Uuid, path: &str) -> Result<Result<Value, u16>, AiError> {
    let token = state.roster.token(bot).await?;
    let r = state
        .game
        .send(reqwest::Method::POST, path, Credentials::Bearer(&token), Some(&serde_json::json!({})))
        .await
        .map_err(Problem::from)?;
    match r.status().as_u16() {
        200 => Ok(Ok(r.json().await.map_err(|_| game_unavailable())?)),
        401 => {
            state.roster.forget(bot).await;
            Err(game_unavailable())
        }
        status => Ok(Err(status)),
    }
}

/// `GET /v1/game/matches/{id}`.
pub(crate) async fn match_of(state: &AppState, id: Uuid, credentials: Credentials<'_>) -> Result<Value, AiError> {
    let r = state.game.get(&format!("/v1/game/matches/{id}"), credentials).await.map_err(Problem::from)?;
    match r.status().as_u16() {
        200 => r.json().await.map_err(|_| game_unavailable()),
        404 => Err(AiError::not_found("no such match")),
        status => {
            tracing::warn!(status, match_id = %id, "game did not say what the match is");
            Err(game_unavailable())
        }
    }
}

fn game_unavailable() -> AiError {
    Problem::unavailable("game could not be reached; retry shortly", 2).into()
}

/// The bot takes a seat with its own token: true when it was the last.
async fn join(state: &AppState, g: &Game) -> Result<bool, AiError> {
    match post_as(state, g.bot_id, &format!("/v1/game/matches/{}/join", g.match_id)).await? {
        Ok(m) => Ok(m["status"] == "live"),
        Err(404) => Err(AiError::not_found("no such match")),
        Err(409) => Err(AiError::conflict("the match is not waiting for players")),
        Err(status) => {
            tracing::warn!(status, match_id = %g.match_id, "game refused a bot's seat");
            Err(game_unavailable())
        }
    }
}
