//! Blocks: a blocked user cannot see the blocker's profile or ask to be
//! friends; chat and game learn of it from `user_blocked`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::extract::Path;
use kit::{Fail, Json, Problem};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Me, UserSummary};
use crate::AppState;
use crate::domain::Status;
use crate::error::UsersError;

/// Someone the caller blocked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Blocked {
    pub user: UserSummary,
    pub since: DateTime<Utc>,
}

/// The users the caller blocked.
#[utoipa::path(get, path = "/v1/users/me/blocks", tag = "blocks", security(("bearer" = [])), responses((status = 200, body = Vec<Blocked>)))]
pub(super) async fn list_blocks(State(state): State<AppState>, me: Me) -> Result<Json<Vec<Blocked>>, UsersError> {
    let list = state
        .store
        .blocks(me.caller.user_id)
        .await?
        .into_iter()
        .map(|b| Blocked { user: UserSummary::from(&b.user), since: b.since })
        .collect();
    Ok(Json(list))
}

/// Blocks a user: they can no longer see the caller's profile or ask to be
/// friends, and any friendship ends. Chat and game learn it from
/// `user_blocked`.
#[utoipa::path(put, path = "/v1/users/me/blocks/{id}", tag = "blocks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn block(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    let id = me.caller.user_id;
    if other == id {
        return Err(UsersError::invalid("you cannot block yourself".to_owned()));
    }
    state.store.profile(other).await?.filter(|p| p.status != Status::Erased).ok_or_else(UsersError::no_such_user)?;
    state.store.block(id, other, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a block.
#[utoipa::path(delete, path = "/v1/users/me/blocks/{id}", tag = "blocks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204)))]
pub(super) async fn unblock(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    state.store.unblock(me.caller.user_id, other, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
