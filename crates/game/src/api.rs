//! Game's HTTP API: matches created, joined, listed and read; a live
//! match's state; presses and releases, heartbeats and leaving. Everything
//! a player does works from curl; the socket path (realtime's rpc) lands on
//! the same functions.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use contracts::game::{MatchFinished, MatchPlayer};
use kit::auth::Caller;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::arena::InputError;
use crate::arena::{Frame, Press};
use crate::domain::{Key, Mode, Options};
use crate::error::GameError;
use crate::invitations::{Answer, Invitation};
use crate::store::{Joined, Match, Runner, Status};

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_match, list_matches))
        .routes(routes!(get_match))
        .routes(routes!(join_match))
        .routes(routes!(match_state))
        .routes(routes!(send_input))
        .routes(routes!(heartbeat))
        .routes(routes!(leave_match))
        .routes(routes!(rematch))
        .routes(routes!(queue, queue_status, leave_queue))
        .routes(routes!(invite, invitations))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(grant))
        .routes(routes!(rpc))
        .routes(routes!(export_game_data))
        .routes(routes!(service_match))
        .with_state(state)
}

/// A new match; the creator takes the first seat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMatch {
    pub mode: Mode,
    #[serde(default)]
    pub options: Options,
}

/// A match as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    pub id: Uuid,
    pub mode: Mode,
    pub options: Options,
    pub status: Status,
    /// `open` (created over this API); later `queue`, `invitation`, `tournament`.
    #[schema(example = "open")]
    pub origin: String,
    #[schema(value_type = Vec<Object>)]
    pub players: Vec<MatchPlayer>,
    /// Seats in all (2 or 4).
    pub seats: u8,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The realtime channel its frames are published on.
    #[schema(example = "game:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub channel: String,
    /// Once finished: the full result (as `match_finished` carries it).
    #[schema(value_type = Option<Object>)]
    pub result: Option<MatchFinished>,
}

impl MatchView {
    fn of(m: Match) -> Self {
        Self {
            id: m.id,
            mode: m.mode,
            options: m.options,
            status: m.status,
            origin: m.origin,
            players: m.players,
            seats: u8::try_from(m.mode.seats()).unwrap_or(2),
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
            channel: format!("game:{}", m.id),
            result: m.result,
        }
    }
}

/// Creates a match and seats the caller in it.
#[utoipa::path(post, path = "/v1/game/matches", tag = "matches", security(("bearer" = [])), request_body(content = CreateMatch,
        example = json!({"mode": "duel", "options": {"points_to_win": 5, "ball_speed": "fast", "paddle_size": "normal", "power_ups": true}})),
    responses((status = 201, body = MatchView),
        (status = 422, description = "Options out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This process runs as many live matches as it may", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_match(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateMatch>,
) -> Result<(StatusCode, Json<MatchView>), GameError> {
    noted(&state, &caller).await?;
    body.options.validate().map_err(|why| FieldErrors::single("options", why))?;
    if state.arena.len() >= state.settings.max_live_matches {
        return Err(
            Problem::unavailable("this game process runs as many live matches as it may; retry shortly", 5).into()
        );
    }
    let m = state.store.create(caller.user_id, body.mode, &body.options, "open", Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(MatchView::of(m))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `waiting` (seats free, the default), `live` or `finished`.
    pub status: Option<Status>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Matches by status, newest first: open ones to join, live ones to watch.
#[utoipa::path(get, path = "/v1/game/matches", tag = "matches", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<MatchView>),
        (status = 422, description = "A bad limit, cursor or status", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_matches(
    State(state): State<AppState>,
    _caller: Caller,
    query: Option<Query<ListQuery>>,
) -> Result<Json<Page<MatchView>>, GameError> {
    let q = query.map(|q| q.0).unwrap_or(ListQuery { status: None, limit: None, cursor: None });
    let page = PageRequest::<Uuid>::parse(q.limit, q.cursor.as_deref())?;
    let rows = state.store.list(q.status.unwrap_or(Status::Waiting), page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, |m| m.id, MatchView::of)))
}

async fn stored(state: &AppState, id: Uuid) -> Result<Match, GameError> {
    state.store.get(id).await?.ok_or_else(GameError::no_such_match)
}

/// One match.
#[utoipa::path(get, path = "/v1/game/matches/{id}", tag = "matches", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MatchView),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_match(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<MatchView>, GameError> {
    Ok(Json(MatchView::of(stored(&state, id).await?)))
}

/// Takes a free seat; the last seat starts the match.
#[utoipa::path(post, path = "/v1/game/matches/{id}/join", tag = "matches", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MatchView),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Full, over, or the caller is in it already", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn join_match(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<MatchView>, GameError> {
    noted(&state, &caller).await?;
    let m = match state.store.join(id, caller.user_id, Utc::now()).await? {
        Joined::Seated(m) => m,
        Joined::Started(m) => {
            crate::leases::run_here(&state.store, &state.arena, &m).await?;
            m
        }
    };
    Ok(Json(MatchView::of(m)))
}

/// A live match's state: the same frame its channel carries at 30 Hz.
#[utoipa::path(get, path = "/v1/game/matches/{id}/state", tag = "play", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Frame),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not live (waiting for players, or over: see its result)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The match is moving between game processes (its owner stopped); retry in a moment", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn match_state(
    State(state): State<AppState>,
    _caller: Caller,
    via: Via,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, GameError> {
    use axum::response::IntoResponse;
    if let Some(frame) = state.arena.frame(id) {
        return Ok(Json(Frame::clone(&frame)).into_response());
    }
    // Run by another game process: its frame, as it answered.
    if let Some(frame) = on_owner(&state, &via, reqwest::Method::GET, id, "state", None).await? {
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], frame).into_response());
    }
    stored(&state, id).await?;
    Err(GameError::conflict("the match is not live"))
}

/// A press or release.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRequest {
    /// Increasing per player, from 1: a duplicate or an older input is ignored.
    #[schema(minimum = 1, example = 17)]
    pub seq: u32,
    pub key: Key,
    pub pressed: bool,
    /// The tick the client believes it pressed at (from the frames it
    /// received); credited up to its measured round trip, 200 ms at most.
    #[schema(example = 1204)]
    pub tick: Option<u64>,
    /// The last tick the client had seen.
    #[schema(example = 1200)]
    pub ack: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InputApplied {
    /// False for a duplicate, an older input, or a player out.
    pub applied: bool,
    /// The server's tick when it was taken.
    pub tick: u64,
}

/// Presses or releases a key.
#[utoipa::path(post, path = "/v1/game/matches/{id}/inputs", tag = "play", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = InputRequest, example = json!({"seq": 1, "key": "up", "pressed": true})),
    responses((status = 200, body = InputApplied),
        (status = 403, description = "The caller is not a player in this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not live", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A sequence number of 0", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The match is moving between game processes (its owner stopped); retry in a moment", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn send_input(
    State(state): State<AppState>,
    caller: Caller,
    via: Via,
    Path(id): Path<Uuid>,
    Json(body): Json<InputRequest>,
) -> Result<Json<InputApplied>, GameError> {
    let press = Press { seq: body.seq, key: body.key, pressed: body.pressed, tick: body.tick, ack: body.ack };
    Ok(Json(apply_input(&state, &via, caller.user_id, id, &press).await?))
}

/// A press or release for match `id`, from HTTP or the socket's rpc.
async fn apply_input(
    state: &AppState,
    via: &Via,
    user: Uuid,
    id: Uuid,
    press: &Press,
) -> Result<InputApplied, GameError> {
    if press.seq == 0 {
        return Err(FieldErrors::single("seq", "starts at 1").into());
    }
    match state.arena.input(id, user, press) {
        Ok((applied, tick)) => Ok(InputApplied { applied, tick }),
        Err(InputError::NotLive) => {
            let body = serde_json::json!({"seq": press.seq, "key": press.key, "pressed": press.pressed,
                "tick": press.tick, "ack": press.ack});
            match on_owner(state, via, reqwest::Method::POST, id, "inputs", Some(body)).await? {
                Some(answer) => serde_json::from_slice(&answer).map_err(GameError::internal),
                None => Err(not_live(state, id, InputError::NotLive).await),
            }
        }
        Err(e) => Err(not_live(state, id, e).await),
    }
}

/// A player of match `id` is still there, from HTTP or the socket's rpc.
async fn beat(state: &AppState, via: &Via, user: Uuid, id: Uuid) -> Result<Heartbeat, GameError> {
    match state.arena.heartbeat(id, user) {
        Ok(tick) => Ok(Heartbeat { tick }),
        Err(InputError::NotLive) => match on_owner(state, via, reqwest::Method::POST, id, "heartbeat", None).await? {
            Some(answer) => serde_json::from_slice(&answer).map_err(GameError::internal),
            None => Err(not_live(state, id, InputError::NotLive).await),
        },
        Err(e) => Err(not_live(state, id, e).await),
    }
}

/// A bot's token (auth signs the `bot` role only into its bots' tokens):
/// game remembers the player is a bot, so that their seats say so.
async fn noted(state: &AppState, caller: &Caller) -> Result<(), GameError> {
    if caller.has_role(kit::auth::ROLE_BOT) {
        state.store.note_bot(caller.user_id, Utc::now()).await?;
    }
    Ok(())
}

/// The header a game process marks a forwarded request with, so that the
/// receiver never forwards it again.
const FORWARDED: &str = "x-panal-game-forwarded";

/// How a request reached this process: the caller's credentials (to
/// forward it to the process that runs the match) and whether another game
/// process forwarded it here.
pub(crate) struct Via {
    authorization: Option<axum::http::HeaderValue>,
    forwarded: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Via {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Via {
            authorization: parts.headers.get(axum::http::header::AUTHORIZATION).cloned(),
            forwarded: parts.headers.contains_key(FORWARDED),
        })
    }
}

/// A live match this process does not run: its request goes to the process
/// that does (`/v1/game/matches/{id}/{action}` there, with the
/// caller's own token), whose successful answer's body is returned. `None`
/// when the match is not live, or just ended here (the caller answers as for
/// any such match); 503 while the match is between owners (its owner died
/// and its lease has not run out, this process has claimed it and is loading
/// it, or this request was forwarded already).
async fn on_owner(
    state: &AppState,
    via: &Via,
    method: reqwest::Method,
    id: Uuid,
    action: &str,
    body: Option<serde_json::Value>,
) -> Result<Option<bytes::Bytes>, GameError> {
    let between =
        || GameError::from(Problem::unavailable("the match is moving between game processes; retry in a moment", 1));
    let url = match state.store.runner(id, Utc::now()).await? {
        None => return Ok(None),
        // This process holds it but does not run it: it has just ended here
        // and its result is being recorded (answered as not live), or it has
        // just been claimed here and is being loaded (retry).
        Some(Runner::Me) if state.arena.ending(id) => return Ok(None),
        Some(Runner::At(url)) if !via.forwarded => url,
        Some(_) => return Err(between()),
    };
    let mut request =
        state.forward.request(method, format!("{url}/v1/game/matches/{id}/{action}")).header(FORWARDED, "1");
    if let Some(auth) = &via.authorization {
        request = request.header(axum::http::header::AUTHORIZATION, auth.clone());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        tracing::warn!(error = %e, match_id = %id, owner = %url, "the owner of a match did not answer");
        between()
    })?;
    let status = response.status();
    let answer = response.bytes().await.map_err(|_| between())?;
    if status.is_success() {
        return Ok(Some(answer));
    }
    // The owner's refusal, passed on as it said it.
    let detail = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Err(Problem::new(status).with_detail(detail).into())
}

/// The error for a match this process does not run: 404 when it does not
/// exist, else what the arena said.
async fn not_live(state: &AppState, id: Uuid, e: crate::arena::InputError) -> GameError {
    match stored(state, id).await {
        Err(missing) => missing,
        Ok(_) => e.into(),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub tick: u64,
}

/// Says the player is still there (any input does too): a player not heard
/// from for `absent_after_ms` pauses the match.
#[utoipa::path(post, path = "/v1/game/matches/{id}/heartbeat", tag = "play", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Heartbeat),
        (status = 403, description = "The caller is not a player in this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not live", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The match is moving between game processes (its owner stopped); retry in a moment", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    via: Via,
    Path(id): Path<Uuid>,
) -> Result<Json<Heartbeat>, GameError> {
    Ok(Json(beat(&state, &via, caller.user_id, id).await?))
}

/// Leaves a live match: a forfeit.
#[utoipa::path(post, path = "/v1/game/matches/{id}/leave", tag = "play", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Out of the match"),
        (status = 403, description = "The caller is not a player in this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not live", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The match is moving between game processes (its owner stopped); retry in a moment", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn leave_match(
    State(state): State<AppState>,
    caller: Caller,
    via: Via,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, GameError> {
    match state.arena.leave(id, caller.user_id) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(InputError::NotLive) => match on_owner(&state, &via, reqwest::Method::POST, id, "leave", None).await? {
            Some(_) => Ok(StatusCode::NO_CONTENT),
            None => Err(not_live(&state, id, InputError::NotLive).await),
        },
        Err(e) => Err(not_live(&state, id, e).await),
    }
}

/// Realtime asks whether the caller may subscribe to `channel`
/// (`game:<match>`): 204 for any signed-in user — players, and spectators,
/// who only read (clients cannot publish on `game:` channels) — while the
/// match exists; 404 otherwise.
#[utoipa::path(get, path = "/v1/game/realtime/channels/{channel}", operation_id = "game_grant", tag = "service", security(("bearer" = [])),
    params(("channel" = String, Path, example = "game:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")),
    responses((status = 204, description = "May subscribe"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn grant(
    State(state): State<AppState>,
    _caller: Caller,
    Path(channel): Path<String>,
) -> Result<StatusCode, GameError> {
    let id =
        channel.strip_prefix("game:").and_then(|id| Uuid::parse_str(id).ok()).ok_or_else(GameError::no_such_match)?;
    stored(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `input`'s data: an input for a match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputRpc {
    match_id: Uuid,
    seq: u32,
    key: Key,
    pressed: bool,
    tick: Option<u64>,
    ack: Option<u64>,
}

/// `heartbeat`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRpc {
    match_id: Uuid,
}

fn data<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, GameError> {
    serde_json::from_value(value).map_err(|e| GameError::from(FieldErrors::single("data", e.to_string())))
}

/// The socket's rpc methods (realtime forwards `game.<method>` here with
/// the player's token): `input` `{match_id, seq, key, pressed, tick?, ack?}`
/// → `{applied, tick}`; `heartbeat` `{match_id}` → `{tick}`. The same checks
/// and answers as the HTTP operations.
#[utoipa::path(post, path = "/v1/game/rpc/{method}", operation_id = "game_rpc", tag = "service", security(("bearer" = [])),
    params(("method" = String, Path, example = "input")),
    request_body(content = Object, example = json!({"match_id": "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327", "seq": 3, "key": "up", "pressed": true})),
    responses((status = 200, description = "The method's result", body = Object),
        (status = 403, description = "Not a player in this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such method or match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The match is not live", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed data", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The match is moving between game processes (its owner stopped); retry in a moment", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn rpc(
    State(state): State<AppState>,
    caller: Caller,
    via: Via,
    Path(method): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, GameError> {
    let result = match method.as_str() {
        "input" => {
            let r: InputRpc = data(body)?;
            let press = Press { seq: r.seq, key: r.key, pressed: r.pressed, tick: r.tick, ack: r.ack };
            serde_json::to_value(apply_input(&state, &via, caller.user_id, r.match_id, &press).await?)
        }
        "heartbeat" => {
            let r: HeartbeatRpc = data(body)?;
            serde_json::to_value(beat(&state, &via, caller.user_id, r.match_id).await?)
        }
        _ => return Err(GameError::from(Problem::not_found("no such method (input, heartbeat)"))),
    };
    Ok(Json(result.map_err(GameError::internal)?))
}

/// An invitation to a duel, sent to another user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GameInvite)]
pub struct Invite {
    /// Who is invited.
    pub to: Uuid,
    #[serde(default)]
    pub options: Options,
}

/// An invitation as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GameInvitation)]
pub struct InvitationView {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub mode: Mode,
    pub options: Options,
    /// `pending`, `accepted`, `declined` or `withdrawn`.
    #[schema(example = "pending")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Once accepted: the match.
    pub match_id: Option<Uuid>,
}

impl InvitationView {
    fn of(i: Invitation) -> Self {
        Self {
            id: i.id,
            from: i.from_user,
            to: i.to_user,
            mode: Mode::Duel,
            options: serde_json::from_str(&i.options).unwrap_or_default(),
            status: i.status,
            created_at: i.created_at,
            expires_at: i.expires_at,
            match_id: i.match_id,
        }
    }
}

/// Invites a user to a duel: a `game_invitation` card in the two users'
/// direct conversation in chat, whose buttons accept or decline it here.
#[utoipa::path(post, path = "/v1/game/invitations", operation_id = "game_invite", tag = "invitations", security(("bearer" = [])),
    request_body(content = Invite, example = json!({"to": "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327", "options": {"points_to_win": 5}})),
    responses((status = 201, body = InvitationView),
        (status = 403, description = "They do not take messages from the caller (a block)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Inviting oneself, an unknown user, or options out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Chat cannot be reached", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Invite>,
) -> Result<(StatusCode, Json<InvitationView>), GameError> {
    noted(&state, &caller).await?;
    body.options.validate().map_err(|why| FieldErrors::single("options", why))?;
    if body.to == caller.user_id {
        return Err(FieldErrors::single("to", "you cannot invite yourself").into());
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    // The card first: an invitation nobody was told of is worth nothing.
    crate::cards::post_invitation(&state, id, caller.user_id, body.to, &body.options, now).await?;
    let invitation = state.invitations.create(id, caller.user_id, body.to, &body.options, now).await?;
    Ok((StatusCode::CREATED, Json(InvitationView::of(invitation))))
}

/// The caller's pending invitations, sent and received.
#[utoipa::path(get, path = "/v1/game/invitations", operation_id = "game_invitations", tag = "invitations", security(("bearer" = [])),
    responses((status = 200, body = Vec<InvitationView>)))]
pub(super) async fn invitations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationView>>, GameError> {
    let pending = state.invitations.pending(caller.user_id, Utc::now()).await?;
    Ok(Json(pending.into_iter().map(InvitationView::of).collect()))
}

/// Accepts an invitation (the invitee): the match is created with both
/// players, live at once; both are told on their `user:` channels
/// (`{"type": "match_ready", "match_id", "origin": "invitation"}`).
#[utoipa::path(post, path = "/v1/game/invitations/{id}/accept", operation_id = "game_accept_invitation", tag = "invitations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = MatchView),
        (status = 403, description = "Not the invited player", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such invitation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Answered already, or expired", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<MatchView>, GameError> {
    noted(&state, &caller).await?;
    let answered = state.invitations.answer(id, caller.user_id, Answer::Accept, Utc::now()).await;
    let match_id =
        answered.map_err(invitation_error)?.ok_or_else(|| GameError::internal(anyhow::anyhow!("no match")))?;
    let m = stored(&state, match_id).await?;
    crate::leases::run_here(&state.store, &state.arena, &m).await?;
    Ok(Json(MatchView::of(m)))
}

/// Declines an invitation (the invitee), or withdraws it (the inviter).
#[utoipa::path(post, path = "/v1/game/invitations/{id}/decline", operation_id = "game_decline_invitation", tag = "invitations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Declined or withdrawn"),
        (status = 403, description = "Not one of its two players", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such invitation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Answered already, or expired", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, GameError> {
    state.invitations.answer(id, caller.user_id, Answer::Decline, Utc::now()).await.map_err(invitation_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn invitation_error(e: crate::store::StoreError) -> GameError {
    match e {
        crate::store::StoreError::NotFound => GameError::not_found("no such invitation"),
        other => other.into(),
    }
}

/// Queueing for a match.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    pub mode: Mode,
}

/// The caller's place in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub mode: Mode,
    /// The rating matched on (1500 until stats has rated the player).
    #[schema(example = 1500.0)]
    pub rating: f64,
    #[schema(example = 4)]
    pub waited_secs: u64,
    /// The rating gap accepted now: 100, widening by 50 a second up to 800.
    #[schema(example = 300.0)]
    pub window: f64,
}

fn queue_view(entry: &crate::store::Queued) -> QueueView {
    let waited = crate::lobby::waited(entry);
    QueueView {
        mode: entry.mode,
        rating: entry.rating,
        waited_secs: waited.as_secs(),
        window: crate::matchmaking::window(waited),
    }
}

/// Queues the caller for a match of `mode` with players of close rating.
/// When a match is made its players get `{"type": "match_ready",
/// "match_id", "origin": "queue"}` on their `user:` channel.
#[utoipa::path(post, path = "/v1/game/queue", tag = "matchmaking", security(("bearer" = [])),
    request_body(content = QueueRequest, example = json!({"mode": "duel"})),
    responses((status = 202, body = QueueView),
        (status = 409, description = "Queued already, or playing a live match", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn queue(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<QueueRequest>,
) -> Result<(StatusCode, Json<QueueView>), GameError> {
    noted(&state, &caller).await?;
    if state.store.playing(caller.user_id).await? {
        return Err(GameError::conflict("you are playing a live match"));
    }
    let rating = state.store.rating(caller.user_id, body.mode).await?.unwrap_or(crate::matchmaking::DEFAULT_RATING);
    if !state.store.enqueue(caller.user_id, body.mode, rating, Utc::now()).await? {
        return Err(GameError::conflict("you are queued already"));
    }
    let entry = state.store.queued(caller.user_id).await?.ok_or_else(|| GameError::conflict("matched already"))?;
    Ok((StatusCode::ACCEPTED, Json(queue_view(&entry))))
}

/// The caller's place in the queue.
#[utoipa::path(get, path = "/v1/game/queue", tag = "matchmaking", security(("bearer" = [])),
    responses((status = 200, body = QueueView),
        (status = 404, description = "Not queued (never, or matched: see match_ready)", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn queue_status(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueView>, GameError> {
    let entry = state.store.queued(caller.user_id).await?.ok_or_else(|| GameError::not_found("you are not queued"))?;
    Ok(Json(queue_view(&entry)))
}

/// Leaves the queue.
#[utoipa::path(delete, path = "/v1/game/queue", tag = "matchmaking", security(("bearer" = [])),
    responses((status = 204, description = "Out of the queue"),
        (status = 404, description = "Not queued", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn leave_queue(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, GameError> {
    if state.store.dequeue(caller.user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(GameError::not_found("you are not queued"))
    }
}

/// Who still has to ask for the rematch.
#[derive(Debug, Serialize, ToSchema)]
pub struct RematchPending {
    pub waiting_for: Vec<Uuid>,
}

/// Asks for a rematch of a finished match (a player of it). The others are
/// told (`{"type": "rematch_asked", "match_id", "by"}` on their `user:`
/// channel); when every player has asked, the new match is made — same
/// seats, same options, live at once, `match_ready` to everyone — and the
/// last asker gets it (201).
#[utoipa::path(post, path = "/v1/game/matches/{id}/rematch", tag = "matches", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 201, description = "Everyone asked: the new match", body = MatchView),
        (status = 202, description = "Asked; waiting for the others", body = RematchPending),
        (status = 403, description = "The caller did not play this match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such match", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not over yet, or the rematch was made already", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn rematch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, GameError> {
    use axum::response::IntoResponse;
    Ok(match state.store.rematch(id, caller.user_id, Utc::now()).await? {
        crate::store::Rematch::Waiting(waiting_for) => {
            (StatusCode::ACCEPTED, Json(RematchPending { waiting_for })).into_response()
        }
        crate::store::Rematch::Made(m) => {
            crate::leases::run_here(&state.store, &state.arena, &m).await?;
            (StatusCode::CREATED, Json(MatchView::of(*m))).into_response()
        }
    })
}

/// What game holds about the caller: the matches they have a seat in (with
/// results), the invitations they sent or received, their place in the
/// queue and their ratings as stats announced them (GDPR articles 15 and
/// 20). Erasure comes from users' `user_erased`.
#[utoipa::path(get, path = "/v1/game/me/export", tag = "matches", security(("bearer" = [])),
    responses((status = 200, description = "Game's part of the archive", body = Object)))]
pub(super) async fn export_game_data(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, GameError> {
    let id = caller.user_id;
    let matches: Vec<MatchView> = state.store.played_by(id).await?.into_iter().map(MatchView::of).collect();
    let invitations = state.invitations.all_of(id).await?;
    let queued = state.store.queued(id).await?;
    let ratings = state.store.ratings_of(id).await?;
    Ok(Json(serde_json::json!({
        "matches": matches,
        "invitations": invitations.iter().map(|i| serde_json::json!({
            "id": i.id, "from_user": i.from_user, "to_user": i.to_user, "mode": i.mode, "status": i.status,
            "created_at": i.created_at, "answered_at": i.answered_at, "match_id": i.match_id })).collect::<Vec<_>>(),
        "queue": queued.map(|q| serde_json::json!({"mode": q.mode, "rating": q.rating, "since": q.since})),
        "ratings": ratings.iter().map(|(mode, rating, at)| serde_json::json!({
            "mode": mode, "rating": rating, "updated_at": at })).collect::<Vec<_>>(),
    })))
}

/// The scope a service client needs to have matches made for given players.
pub const MATCHES_SCOPE: &str = "game:matches";

/// A match another service asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    /// Every seat's player, in seat order (2 for a duel, 4 for four players),
    /// all different.
    pub players: Vec<Uuid>,
    pub mode: Mode,
    #[serde(default)]
    pub options: Options,
    /// What asks: `tournament`.
    #[schema(example = "tournament")]
    pub origin: String,
    /// The asker's name for this match, unique: asking again with it gives
    /// the same match. 1 to 128 characters.
    #[schema(example = "tournament:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327:0:1")]
    pub reference: String,
}

/// Makes a match for given players (a service client with `game:matches`:
/// the tournament service): live at once, each player told
/// `{"type": "match_ready"}` on their `user:` channel; a player who never
/// comes forfeits after the grace, as in any match. Idempotent by
/// `reference`.
#[utoipa::path(post, path = "/v1/game/service/matches", operation_id = "game_service_match", tag = "service",
    security(("bearer" = [])), request_body = ServiceMatch,
    responses((status = 201, body = MatchView),
        (status = 200, description = "Made already for this reference", body = MatchView),
        (status = 403, description = "Not a service client with game:matches", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Players not matching the mode's seats or listed twice, options out of range, an unknown origin, a reference empty or too long", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This process runs as many live matches as it may", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn service_match(
    State(state): State<AppState>,
    client: kit::auth::ServiceClient,
    Json(body): Json<ServiceMatch>,
) -> Result<(StatusCode, Json<MatchView>), GameError> {
    client.require_scope(MATCHES_SCOPE)?;
    let mut errors = FieldErrors::new();
    let mut distinct = body.players.clone();
    distinct.sort();
    distinct.dedup();
    if body.players.len() != body.mode.seats() || distinct.len() != body.players.len() {
        errors.add("players", format!("must be {} different players", body.mode.seats()));
    }
    if let Err(why) = body.options.validate() {
        errors.add("options", why);
    }
    if body.origin != "tournament" {
        errors.add("origin", "must be `tournament`");
    }
    if body.reference.is_empty() || body.reference.chars().count() > 128 {
        errors.add("reference", "must be 1 to 128 characters");
    }
    errors.finish()?;
    if state.arena.len() >= state.settings.max_live_matches {
        return Err(
            Problem::unavailable("this game process runs as many live matches as it may; retry shortly", 5).into()
        );
    }
    let (m, made) = state
        .store
        .for_service(&body.players, body.mode, &body.options, &body.origin, &body.reference, Utc::now())
        .await?;
    if made && let Err(e) = crate::leases::run_here(&state.store, &state.arena, &m).await {
        // Live without an owner: a lease sweep takes it over.
        tracing::warn!(error = %e, match_id = %m.id, "a service's match was not claimed");
    }
    Ok((if made { StatusCode::CREATED } else { StatusCode::OK }, Json(MatchView::of(m))))
}
