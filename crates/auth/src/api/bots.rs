//! Bots: players that are not people. The AI service (a service client with
//! the `bots:act` scope) creates them here and gets each an access token to
//! play with, the way a person's app gets one at sign-in. Auth makes the
//! ids, so a client allowed to act for bots can only ever act for its own
//! bots, never for a person; and it signs the `bot` role into their tokens,
//! which no account can hold, so that game can trust a seat is a bot's.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kit::auth::{AccessClaims, ROLE_BOT, ServiceClient};
use kit::extract::Path;
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::DisplayName;
use crate::error::AuthError;
use crate::store::BotRow;
use crate::tokens;

/// The scope a service client needs to create bots and act for them.
pub const BOTS_SCOPE: &str = "bots:act";

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_bot)).routes(routes!(bot_token))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBot {
    /// What players see: 1 to 32 characters, one writing system.
    #[schema(example = "Marvin (hard)", max_length = 32)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bot {
    pub id: Uuid,
    #[schema(example = "Marvin (hard)")]
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A bot's access token: like a person's, with the `bot` role and no
/// refresh token (the client asks again).
#[derive(Debug, Serialize, ToSchema)]
pub struct BotToken {
    #[schema(
        example = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcksiLCJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiIwMWEyM2NlNSJ9.c2lnbmF0dXJl"
    )]
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
}

/// Creates a bot acting for the calling service client.
#[utoipa::path(post, path = "/v1/auth/bots", tag = "bots",
    security(("bearer" = [])),
    request_body = NewBot,
    responses(
        (status = 201, body = Bot),
        (status = 403, description = "The token is not a service client's with the bots:act scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is empty, too long or mixes writing systems", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_bot(
    State(state): State<AppState>,
    client: ServiceClient,
    Json(body): Json<NewBot>,
) -> Result<(StatusCode, Json<Bot>), AuthError> {
    client.require_scope(BOTS_SCOPE)?;
    let name = DisplayName::parse(&body.name).map_err(|e| FieldErrors::single("name", e))?;
    let row = BotRow {
        id: Uuid::now_v7(),
        client_id: client.client_id,
        name: name.as_str().to_owned(),
        created_at: Utc::now(),
    };
    state.store.insert_bot(&row).await?;
    tracing::info!(bot = %row.id, client_id = %row.client_id, "bot created");
    Ok((StatusCode::CREATED, Json(Bot { id: row.id, name: row.name, created_at: row.created_at })))
}

/// Issues an access token to one of the calling client's bots.
#[utoipa::path(post, path = "/v1/auth/bots/{id}/token", tag = "bots",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = BotToken),
        (status = 403, description = "The token is not a service client's with the bots:act scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bot of this client has this id (a person's id included)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn bot_token(
    State(state): State<AppState>,
    client: ServiceClient,
    Path(id): Path<Uuid>,
) -> Result<Response, AuthError> {
    client.require_scope(BOTS_SCOPE)?;
    let Some(bot) = state.store.bot_of(&client.client_id, id).await? else {
        return Err(Problem::not_found("no bot of this client has this id").into());
    };
    let now = Utc::now();
    let ttl = state.settings.access_token_ttl_secs;
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        aud: state.audience.clone(),
        sub: bot.id,
        // Realtime and the services expect a session: each token is one,
        // ended by its expiry.
        sid: Some(Uuid::now_v7()),
        iat: now.timestamp(),
        exp: now.timestamp() + i64::try_from(ttl).unwrap_or(900),
        jti: Uuid::now_v7(),
        roles: vec![ROLE_BOT.to_owned()],
        client_id: Some(client.client_id),
        scope: None,
    };
    let key = state.keys.signing_key().await.map_err(AuthError::Internal)?;
    let access_token = tokens::sign_access_token(&key, &claims)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(BotToken { access_token, token_type: "Bearer", expires_in: ttl }))
        .into_response())
}
