//! Friends: the list, requests, and answers. The rules are
//! [`crate::domain::friend_request`] and [`Answer`]; the store applies them in
//! one transaction with their `friendship_changed`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::extract::Path;
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Me, PublicProfile, UserSummary, public_view};
use crate::AppState;
use crate::domain::{Answer, Asked, Direction, Friendship, Refusal, Status, direction};
use crate::error::UsersError;

/// A friend, with their online status when they share it with friends.
#[derive(Debug, Serialize, ToSchema)]
pub struct Friend {
    #[serde(flatten)]
    pub profile: PublicProfile,
    pub since: DateTime<Utc>,
}

/// The caller's friends.
#[utoipa::path(get, path = "/v1/users/me/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>)))]
pub(super) async fn list_friends(State(state): State<AppState>, me: Me) -> Result<Json<Vec<Friend>>, UsersError> {
    let id = me.caller.user_id;
    let friends: Vec<_> = state
        .store
        .relations(id)
        .await?
        .into_iter()
        .filter(|r| r.friendship == Friendship::Accepted && r.other.status == Status::Active)
        .collect();
    let ids: Vec<Uuid> = friends.iter().map(|r| r.other.user_id).collect();
    let online = state.store.online(&ids, Utc::now()).await?;
    let friends = friends
        .into_iter()
        .map(|r| {
            let live = online.contains(&r.other.user_id);
            Friend { profile: public_view(&r.other, id, true, None, live), since: r.since }
        })
        .collect();
    Ok(Json(friends))
}

/// A pending request.
#[derive(Debug, Serialize, ToSchema)]
pub struct FriendRequest {
    pub user: UserSummary,
    pub since: DateTime<Utc>,
}

/// Pending friend requests, to and from the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct FriendRequests {
    pub incoming: Vec<FriendRequest>,
    pub outgoing: Vec<FriendRequest>,
}

/// Pending friend requests.
#[utoipa::path(get, path = "/v1/users/me/friends/requests", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = FriendRequests)))]
pub(super) async fn list_requests(State(state): State<AppState>, me: Me) -> Result<Json<FriendRequests>, UsersError> {
    let id = me.caller.user_id;
    let mut out = FriendRequests { incoming: Vec::new(), outgoing: Vec::new() };
    for r in state.store.relations(id).await? {
        if r.friendship != Friendship::Pending || r.other.status != Status::Active {
            continue;
        }
        let entry = FriendRequest { user: UserSummary::from(&r.other), since: r.since };
        match direction(id, r.requested_by) {
            Direction::Outgoing => out.outgoing.push(entry),
            Direction::Incoming => out.incoming.push(entry),
        }
    }
    Ok(Json(out))
}

/// Whom to ask.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    #[schema(required = true)]
    pub user_id: Option<Uuid>,
}

/// Where a friendship stands after a request or an acceptance.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Asked; waiting for an answer.
    Requested,
    /// Friends.
    Friends,
}

/// The state of a friendship after a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResult {
    /// `requested`, or `friends` when they had asked you first.
    pub state: RequestState,
}

/// Asks a user to be friends. If they had already asked the caller, the two
/// become friends.
#[utoipa::path(post, path = "/v1/users/me/friends/requests", tag = "friends", security(("bearer" = [])), request_body = NewRequest,
    responses((status = 201, body = RequestResult), (status = 200, description = "Now friends", body = RequestResult),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn send_request(
    State(state): State<AppState>,
    me: Me,
    Json(req): Json<NewRequest>,
) -> Result<(StatusCode, Json<RequestResult>), UsersError> {
    let Some(other) = req.user_id else {
        return Err(UsersError::from(FieldErrors::single("user_id", "is required")));
    };
    match state.store.request_friend(me.caller.user_id, other, Utc::now()).await? {
        Ok(Asked::Requested) => Ok((StatusCode::CREATED, Json(RequestResult { state: RequestState::Requested }))),
        Ok(Asked::Accepted) => Ok((StatusCode::OK, Json(RequestResult { state: RequestState::Friends }))),
        Err(refusal) => Err(refused(refusal)),
    }
}

/// The answer to a refused request.
fn refused(refusal: Refusal) -> UsersError {
    match refusal {
        Refusal::Yourself => UsersError::invalid("you cannot send a friend request to yourself".to_owned()),
        Refusal::NoSuchUser => UsersError::no_such_user(),
        Refusal::BlockedByThem => {
            UsersError::forbidden("this user does not accept friend requests from you".to_owned())
        }
        Refusal::YouBlockedThem => UsersError::conflict("you have blocked this user; unblock them first".to_owned()),
        Refusal::NotAccepting => UsersError::forbidden("this user does not accept friend requests".to_owned()),
        Refusal::AlreadyAsked => UsersError::conflict("you have already asked this user".to_owned()),
        Refusal::AlreadyFriends => UsersError::conflict("you are already friends".to_owned()),
    }
}

/// Applies `answer` to what is between the caller and `other`; 404 when there
/// is nothing to answer.
async fn answer(state: &AppState, me: &Me, other: Uuid, answer: Answer) -> Result<(), UsersError> {
    if state.store.answer(me.caller.user_id, other, answer, Utc::now()).await? {
        Ok(())
    } else {
        Err(UsersError::not_found(answer.missing()))
    }
}

/// Accepts the request a user sent the caller.
#[utoipa::path(post, path = "/v1/users/me/friends/requests/{id}/accept", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RequestResult), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn accept_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<Json<RequestResult>, UsersError> {
    answer(&state, &me, other, Answer::Accept).await?;
    Ok(Json(RequestResult { state: RequestState::Friends }))
}

/// Declines the request a user sent the caller.
#[utoipa::path(post, path = "/v1/users/me/friends/requests/{id}/decline", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn decline_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    answer(&state, &me, other, Answer::Decline).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraws a request the caller sent.
#[utoipa::path(delete, path = "/v1/users/me/friends/requests/{id}", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn cancel_request(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    answer(&state, &me, other, Answer::Cancel).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a friendship.
#[utoipa::path(delete, path = "/v1/users/me/friends/{id}", tag = "friends", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn remove_friend(
    State(state): State<AppState>,
    me: Me,
    Path(other): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    answer(&state, &me, other, Answer::Remove).await?;
    Ok(StatusCode::NO_CONTENT)
}
