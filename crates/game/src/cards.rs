//! What game posts into chat, in its own name (`chat:post`): the
//! invitation card in the two players' direct conversation.

use chrono::{DateTime, Utc};
use kit::peer::Credentials;
use kit::{Fail, FieldErrors, Problem};
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::domain::Options;
use crate::error::GameError;

/// Posts the card inviting `to` on behalf of `from`; chat's refusals become
/// the caller's answer (a block: 403; a user chat does not know: 422).
pub async fn post_invitation(
    state: &AppState,
    id: Uuid,
    from: Uuid,
    to: Uuid,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<(), GameError> {
    let expires_at = now + chrono::Duration::seconds(crate::invitations::VALID_FOR_SECS);
    let speed = serde_json::to_value(options.ball_speed).unwrap_or_default();
    let paddle = serde_json::to_value(options.paddle_size).unwrap_or_default();
    let body = json!({
        "between": [from, to],
        "on_behalf_of": from,
        "text": format!("An invitation to a match of Pong, first to {}", options.points_to_win),
        "card": {
            "type": "game_invitation",
            "title": "A match of Pong",
            "reference": id,
            "fields": [
                {"label": "Points to win", "value": options.points_to_win.to_string()},
                {"label": "Ball speed", "value": speed.as_str().unwrap_or("normal")},
                {"label": "Paddle size", "value": paddle.as_str().unwrap_or("normal")},
                {"label": "Power-ups", "value": if options.power_ups { "on" } else { "off" }},
            ],
            "actions": [
                {"name": "accept", "label": "Play", "method": "POST", "href": format!("/v1/game/invitations/{id}/accept")},
                {"name": "decline", "label": "Decline", "method": "POST", "href": format!("/v1/game/invitations/{id}/decline")},
            ],
            "expires_at": expires_at,
        }
    });
    let bearer = state.token.bearer().await.map_err(|e| {
        tracing::warn!(error = %e, "no service token to post an invitation card");
        Problem::unavailable("chat cannot be reached; retry shortly", 5)
    })?;
    let path = "/v1/chat/service/messages";
    let response = state
        .chat
        .send(reqwest::Method::POST, path, Credentials::Bearer(&bearer), Some(&body))
        .await
        .map_err(Problem::from)?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        403 => Err(GameError::forbidden("they do not take messages from you")),
        404 | 422 => Err(FieldErrors::single("to", "is not a user who can be invited").into()),
        401 => {
            state.token.forget().await;
            Err(Problem::unavailable("chat refused game's token; retry shortly", 1).into())
        }
        status => {
            tracing::warn!(status, "chat refused an invitation card");
            Err(Problem::unavailable("chat could not take the invitation; retry shortly", 5).into())
        }
    }
}
