//! GDPR: export (art. 15 and 20) and erasure (art. 17).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kit::peer::CallerAuthorization;
use kit::{Fail, Json, Problem};

use super::{Me, MyProfile};
use crate::AppState;
use crate::domain::{Friendship, direction};
use crate::error::UsersError;

/// How recently a caller must have signed in to erase their account.
pub const FRESH_LOGIN_SECS: i64 = 600;

/// Erases the caller's account (GDPR art. 17): the profile is anonymised, the
/// avatar deleted, friendships and blocks removed, and `user_erased` tells
/// every other service to erase what it holds (auth disables the sign-in).
/// Needs a recent sign-in (access token at most 10 minutes old).
#[utoipa::path(delete, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 202, description = "Erased here; other services follow through the event bus"),
        (status = 401, description = "Sign in again first", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn erase_me(State(state): State<AppState>, me: Me) -> Result<StatusCode, UsersError> {
    if Utc::now().timestamp() - me.caller.issued_at > FRESH_LOGIN_SECS {
        return Err(UsersError::from(
            Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("login-required", "Recent sign-in required")
                .with_detail("erasing an account needs a sign-in from the last 10 minutes; sign in again and retry"),
        ));
    }
    let now = Utc::now();
    let id = me.caller.user_id;
    let avatar = state.store.erase(id, now).await?;
    if let Some(etag) = avatar
        && let Err(e) = state.avatars.delete(id, &etag).await
    {
        tracing::error!(user_id = %id, error = %e, "erased user's avatar could not be deleted; delete avatars/{id}/ by hand");
    }
    tracing::info!(user_id = %id, "account erased");
    Ok(StatusCode::ACCEPTED)
}

/// Everything Panal holds about the caller, as one JSON document (GDPR art.
/// 15 and 20). Users asks every other service for its part.
#[utoipa::path(get, path = "/v1/users/me/export", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The archive", body = Object)))]
pub(super) async fn export_me(
    State(state): State<AppState>,
    me: Me,
    authorization: CallerAuthorization,
) -> Result<Response, UsersError> {
    let id = me.caller.user_id;
    let relations = state.store.relations(id).await?;
    let blocks = state.store.blocks(id).await?;
    let of = |wanted: Friendship| relations.iter().filter(move |r| r.friendship == wanted);
    let users_part = serde_json::json!({
        "profile": MyProfile::from(&me.profile),
        "friends": of(Friendship::Accepted).map(|r| serde_json::json!({
            "user_id": r.other.user_id, "display_name": r.other.display_name, "since": r.since })).collect::<Vec<_>>(),
        "friend_requests": of(Friendship::Pending).map(|r| serde_json::json!({
            "user_id": r.other.user_id, "display_name": r.other.display_name,
            "direction": direction(id, r.requested_by), "since": r.since })).collect::<Vec<_>>(),
        "blocks": blocks.iter().map(|b| serde_json::json!({
            "user_id": b.user.user_id, "display_name": b.user.display_name, "since": b.since })).collect::<Vec<_>>(),
    });
    let mut services = serde_json::Map::new();
    services.insert("users".to_owned(), users_part);
    // The caller's own token goes on: each service exports what it holds
    // about whoever the token names, and nobody else.
    let credentials = authorization.credentials();
    for peer in &state.exporters {
        let service = peer.name();
        let response = peer.get(&format!("/v1/{service}/me/export"), credentials).await.map_err(kit::Error::from)?;
        if !response.status().is_success() {
            return Err(UsersError::internal(anyhow::anyhow!(
                "{service} answered {} to the export",
                response.status()
            )));
        }
        let part = response.json::<serde_json::Value>().await.map_err(UsersError::internal)?;
        services.insert(service.to_owned(), part);
    }
    let archive = serde_json::json!({
        "format": "panal-export/1",
        "user_id": id,
        "generated_at": Utc::now(),
        "services": services,
    });
    Ok((
        [(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"panal-export.json\""))],
        Json(archive),
    )
        .into_response())
}
