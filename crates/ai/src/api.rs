//! The AI service's HTTP API: where a request lands.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::auth::Caller;
use kit::extract::Path;
use kit::peer::CallerAuthorization;
use kit::{Fail, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::Level;
use crate::error::AiError;
use crate::seater::{match_of, seat};

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(levels))
        .routes(routes!(bots, pick_bot))
        .routes(routes!(add_bot))
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LevelView {
    pub level: Level,
    #[schema(example = "reacts in 0.2 s, misjudges by up to 55,000 units, varies its angles, takes power-ups")]
    pub description: &'static str,
}

/// The levels a bot plays at.
#[utoipa::path(get, path = "/v1/ai/levels", tag = "ai", security(("bearer" = [])),
    responses((status = 200, body = Vec<LevelView>)))]
async fn levels(_caller: Caller) -> Json<Vec<LevelView>> {
    Json(Level::ALL.into_iter().map(|level| LevelView { level, description: level.describe() }).collect())
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AiBot)]
pub struct BotView {
    pub id: Uuid,
    #[schema(example = "Marvin (hard)")]
    pub name: String,
    pub level: Level,
    pub created_at: DateTime<Utc>,
    /// Matches it finished, and won.
    #[schema(example = 12)]
    pub played: i64,
    #[schema(example = 7)]
    pub won: i64,
    /// Matches it plays now.
    #[schema(example = 1)]
    pub playing: i64,
}

/// Every bot, with its record.
#[utoipa::path(get, path = "/v1/ai/bots", tag = "ai", security(("bearer" = [])),
    responses((status = 200, body = Vec<BotView>)))]
async fn bots(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<BotView>>, AiError> {
    let bots = state.store.bots().await?;
    Ok(Json(
        bots.into_iter()
            .map(|r| BotView {
                id: r.bot.id,
                name: r.bot.name,
                level: r.bot.level,
                created_at: r.bot.created_at,
                played: r.played,
                won: r.won,
                playing: r.playing,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBot {
    pub level: Level,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotSeated {
    pub match_id: Uuid,
    pub bot: BotSeat,
    /// Whether the bot took the last seat: the match is live.
    pub started: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotSeat {
    pub id: Uuid,
    #[schema(example = "Marvin (hard)")]
    pub name: String,
    pub level: Level,
}

/// Seats a bot in a match waiting for players, at the level asked; the
/// caller must be one of its players. The bot plays from then on, over the
/// same socket and with the same inputs a person has. With four players,
/// ask once per bot.
#[utoipa::path(post, path = "/v1/ai/matches/{id}/bots", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "A match created in game")),
    request_body = AddBot,
    responses(
        (status = 201, body = BotSeated),
        (status = 403, description = "The caller is not a player of this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not waiting for players (live, over or full)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown level", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Game or auth cannot be reached; retry", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_bot(
    State(state): State<AppState>,
    caller: Caller,
    authorization: CallerAuthorization,
    Path(id): Path<Uuid>,
    Json(body): Json<AddBot>,
) -> Result<(StatusCode, Json<BotSeated>), AiError> {
    // The match as the caller sees it (their own token).
    let m = match_of(&state, id, authorization.credentials()).await?;
    let players: Vec<Uuid> = m["players"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["user_id"].as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if !players.contains(&caller.user_id) {
        return Err(AiError::forbidden("only a player of this match may seat a bot in it"));
    }
    if m["status"] != "waiting" {
        return Err(AiError::conflict("the match is not waiting for players"));
    }
    let (bot, started) = seat(&state, id, body.level, &players).await?;
    Ok((
        StatusCode::CREATED,
        Json(BotSeated { match_id: id, bot: BotSeat { id: bot.id, name: bot.name, level: bot.level }, started }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickBot {
    pub level: Level,
    /// Players it must not be (those already in the tournament). At most 64.
    #[serde(default)]
    pub exclude: Vec<Uuid>,
}

/// A bot of a level, for a place another service seats it in (a
/// tournament's entrant): made when every bot of the level is excluded.
/// The bot plays any match game starts with it seated.
#[utoipa::path(post, path = "/v1/ai/bots", tag = "ai", security(("bearer" = [])), request_body = PickBot,
    responses((status = 200, body = BotSeat),
        (status = 422, description = "An unknown level, or over 64 excluded", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Auth cannot be reached to make a bot; retry", body = Problem, content_type = "application/problem+json")))]
async fn pick_bot(
    State(state): State<AppState>,
    _caller: Caller,
    Json(body): Json<PickBot>,
) -> Result<Json<BotSeat>, AiError> {
    if body.exclude.len() > 64 {
        return Err(kit::FieldErrors::single("exclude", "at most 64").into());
    }
    let bot = state.roster.bot_for(body.level, &body.exclude).await?;
    Ok(Json(BotSeat { id: bot.id, name: bot.name, level: bot.level }))
}
