//! The tournament service's HTTP API: where a request lands.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use contracts::tournament::Standing;
use kit::auth::Caller;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::text::DisplayName;
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Format, Kind, Seeding, Status};
use crate::error::TournamentError;
use crate::store::{Entrant, NewTournament, Tournament};

/// The most entrants a tournament may take.
pub const MAX_CAPACITY: u32 = 64;
/// A name's length, in characters.
pub const MAX_NAME_CHARS: usize = 64;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_tournament))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(add_bot))
        .routes(routes!(start))
        .routes(routes!(report))
        .routes(routes!(grant))
        .routes(routes!(export))
        .with_state(state)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTournament {
    /// 1 to 64 characters.
    #[schema(example = "Friday cup")]
    pub name: String,
    pub format: Format,
    pub kind: Kind,
    /// `rating` (the default) or `random`.
    #[schema(value_type = Option<String>, example = "rating")]
    pub seeding: Option<Seeding>,
    /// 2 to 64 (default 16).
    #[schema(example = 8)]
    pub capacity: Option<u32>,
    /// Goals to win each match, 1 to 21 (default 11).
    #[schema(example = 5)]
    pub points_to_win: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntrantView {
    pub entrant_id: Uuid,
    #[schema(example = "Ada")]
    pub alias: String,
    /// The player (online tournaments).
    pub user_id: Option<Uuid>,
    /// Once started: 1 the top seed.
    pub seed: Option<u32>,
}

impl From<Entrant> for EntrantView {
    fn from(e: Entrant) -> Self {
        Self { entrant_id: e.entrant_id, alias: e.alias, user_id: e.user_id, seed: e.seed }
    }
}

/// A match of the bracket (or of a Swiss round).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TournamentMatch)]
pub struct MatchView {
    /// 0 for the first.
    pub round: u32,
    pub index: u32,
    pub a: Uuid,
    /// Absent: a bye (`a` goes through).
    pub b: Option<Uuid>,
    pub winner: Option<Uuid>,
    /// Online: the match in game, once made (`/v1/game/matches/{id}`; its
    /// players are also told on their `user:` channel).
    pub game_match_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TournamentStanding)]
pub struct StandingView {
    pub place: u32,
    #[schema(example = "Ada")]
    pub alias: String,
    pub entrant_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TournamentView {
    pub id: Uuid,
    #[schema(example = "Friday cup")]
    pub name: String,
    pub format: Format,
    pub kind: Kind,
    #[schema(value_type = String, example = "rating")]
    pub seeding: Seeding,
    #[schema(example = 8)]
    pub capacity: u32,
    /// Absent once the organiser erased their account.
    pub organiser: Option<Uuid>,
    pub status: Status,
    /// Rounds in all (known once started).
    pub rounds: u32,
    /// Goals to win each match.
    #[schema(example = 11)]
    pub points_to_win: u8,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The realtime channel told of every change.
    #[schema(example = "tournament:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub channel: String,
    /// With one tournament: its entrants (seed order once started), its
    /// matches so far, and its standings once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrants: Option<Vec<EntrantView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<MatchView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standings: Option<Vec<StandingView>>,
}

impl TournamentView {
    fn of(t: Tournament) -> Self {
        Self {
            id: t.id,
            name: t.name,
            format: t.format,
            kind: t.kind,
            seeding: t.seeding,
            capacity: t.capacity,
            organiser: t.organiser,
            status: t.status,
            rounds: t.rounds,
            points_to_win: t.points_to_win,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            channel: format!("tournament:{}", t.id),
            entrants: None,
            matches: None,
            standings: t.standings.map(|s| s.into_iter().map(standing).collect()),
        }
    }
}

fn standing(s: Standing) -> StandingView {
    StandingView { place: s.place, alias: s.alias, entrant_id: s.entrant_id }
}

async fn full(state: &AppState, id: Uuid) -> Result<TournamentView, TournamentError> {
    let t = state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    let entrants = state.store.entrants(id).await?;
    let matches = state.store.matches(id).await?;
    let mut view = TournamentView::of(t);
    view.entrants = Some(entrants.into_iter().map(EntrantView::from).collect());
    view.matches = Some(
        matches
            .into_iter()
            .map(|(p, game_match_id)| MatchView {
                round: p.round,
                index: p.index,
                a: p.a,
                b: p.b,
                winner: p.winner,
                game_match_id,
            })
            .collect(),
    );
    Ok(view)
}

/// Creates a tournament; the caller organises it.
#[utoipa::path(post, path = "/v1/tournament/tournaments", operation_id = "tournament_create", tag = "tournaments", security(("bearer" = [])),
    request_body(content = CreateTournament,
        example = json!({"name": "Friday cup", "format": "single_elimination", "kind": "online", "seeding": "rating", "capacity": 8})),
    responses((status = 201, body = TournamentView),
        (status = 422, description = "A name empty or too long, a capacity out of 2–64, points to win out of 1–21, an unknown format, kind or seeding", body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateTournament>,
) -> Result<(StatusCode, Json<TournamentView>), TournamentError> {
    let mut errors = FieldErrors::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(kit::text::is_invisible) {
        errors.add("name", format!("must be 1 to {MAX_NAME_CHARS} characters, none of them invisible"));
    }
    let capacity = body.capacity.unwrap_or(16);
    if !(2..=MAX_CAPACITY).contains(&capacity) {
        errors.add("capacity", format!("must be between 2 and {MAX_CAPACITY}"));
    }
    let points_to_win = body.points_to_win.unwrap_or(11);
    if !(1..=21).contains(&points_to_win) {
        errors.add("points_to_win", "must be between 1 and 21");
    }
    errors.finish()?;
    let t = state
        .store
        .create(
            &NewTournament {
                name,
                format: body.format,
                seeding: body.seeding.unwrap_or(Seeding::Rating),
                kind: body.kind,
                capacity,
                organiser: caller.user_id,
                points_to_win,
            },
            Utc::now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(TournamentView::of(t))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `registering` (the default), `running` or `finished`.
    pub status: Option<Status>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Tournaments by status, newest first.
#[utoipa::path(get, path = "/v1/tournament/tournaments", operation_id = "tournament_list", tag = "tournaments", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<TournamentView>),
        (status = 422, description = "A bad limit, cursor or status", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    query: Option<Query<ListQuery>>,
) -> Result<Json<Page<TournamentView>>, TournamentError> {
    let q = query.map(|q| q.0).unwrap_or(ListQuery { status: None, limit: None, cursor: None });
    let page = PageRequest::<Uuid>::parse(q.limit, q.cursor.as_deref())?;
    let rows = state.store.list(q.status.unwrap_or(Status::Registering), page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, |t| t.id, TournamentView::of)))
}

/// One tournament with its entrants, matches and standings.
#[utoipa::path(get, path = "/v1/tournament/tournaments/{id}", operation_id = "tournament_get", tag = "tournaments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TournamentView),
        (status = 404, description = "No such tournament", body = Problem, content_type = "application/problem+json")))]
async fn get_tournament(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<TournamentView>, TournamentError> {
    Ok(Json(full(&state, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The name shown in this tournament: 1 to 32 characters, one writing
    /// system; unique in the tournament (`Ada` and `ADA` are the same).
    #[schema(example = "Ada")]
    pub alias: String,
}

/// Enters the tournament: online, the caller under an alias; local, the
/// organiser adds a player by alias (people taking turns on one keyboard).
#[utoipa::path(post, path = "/v1/tournament/tournaments/{id}/entrants", operation_id = "tournament_join", tag = "tournaments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Join,
    responses((status = 201, body = EntrantView),
        (status = 403, description = "A local tournament's entrants are added by its organiser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tournament", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Started, full, the alias taken, or the caller in it already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An alias that is empty, too long or mixes writing systems", body = Problem, content_type = "application/problem+json")))]
async fn join(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Join>,
) -> Result<(StatusCode, Json<EntrantView>), TournamentError> {
    let alias = DisplayName::parse(&body.alias).map_err(|e| FieldErrors::single("alias", e))?;
    let t = state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    let entrant = match t.kind {
        Kind::Online => Entrant {
            entrant_id: caller.user_id,
            user_id: Some(caller.user_id),
            alias: alias.as_str().to_owned(),
            rating: state.store.rating(caller.user_id).await?.unwrap_or(DEFAULT_RATING),
            seed: None,
        },
        Kind::Local => {
            if t.organiser != Some(caller.user_id) {
                return Err(Problem::forbidden("a local tournament's entrants are added by its organiser").into());
            }
            Entrant {
                entrant_id: Uuid::now_v7(),
                user_id: None,
                alias: alias.as_str().to_owned(),
                rating: DEFAULT_RATING,
                seed: None,
            }
        }
    };
    state.store.join(id, &entrant, alias.key(), Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(entrant.into())))
}

/// The rating of a player stats has not rated.
const DEFAULT_RATING: f64 = 1500.0;

/// Takes an entrant out before the start: online, the entrant themself;
/// local, the organiser.
#[utoipa::path(delete, path = "/v1/tournament/tournaments/{id}/entrants/{entrant_id}", operation_id = "tournament_leave", tag = "tournaments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("entrant_id" = Uuid, Path)),
    responses((status = 204, description = "Out"),
        (status = 403, description = "Not the caller's entry to withdraw", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tournament or entrant, or the tournament has started", body = Problem, content_type = "application/problem+json")))]
async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entrant_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, TournamentError> {
    let t = state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    let allowed = match t.kind {
        Kind::Online => entrant_id == caller.user_id || t.organiser == Some(caller.user_id),
        Kind::Local => t.organiser == Some(caller.user_id),
    };
    if !allowed {
        return Err(Problem::forbidden("not yours to withdraw").into());
    }
    if !state.store.leave(id, entrant_id).await? {
        return Err(Problem::not_found("no such entrant in a tournament that registers").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Starts the tournament (its organiser): registration closes, seeds are
/// drawn, the first matches are made.
#[utoipa::path(post, path = "/v1/tournament/tournaments/{id}/start", operation_id = "tournament_start", tag = "tournaments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TournamentView),
        (status = 403, description = "Not the organiser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tournament", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Started already, or fewer than two entrants", body = Problem, content_type = "application/problem+json")))]
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<TournamentView>, TournamentError> {
    state.store.start(id, caller.user_id, Utc::now()).await?;
    Ok(Json(full(&state, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub round: u32,
    pub index: u32,
    /// The winner's entrant id.
    pub winner: Uuid,
}

/// Reports a local match's winner (the organiser); the bracket moves on.
/// Online matches' results come from game.
#[utoipa::path(post, path = "/v1/tournament/tournaments/{id}/results", operation_id = "tournament_report", tag = "tournaments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Report,
    responses((status = 200, body = TournamentView),
        (status = 403, description = "Not the organiser of this local tournament", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tournament, or no such match in the bracket", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An online tournament, one not running, a match not ready or decided already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The winner did not play this match", body = Problem, content_type = "application/problem+json")))]
async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Report>,
) -> Result<Json<TournamentView>, TournamentError> {
    let t = state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    if t.organiser != Some(caller.user_id) {
        return Err(Problem::forbidden("only the organiser reports results").into());
    }
    if t.kind == Kind::Online {
        return Err(Problem::conflict("an online tournament's results come from its matches in game").into());
    }
    state.store.result(id, body.round, body.index, body.winner, Utc::now()).await?;
    Ok(Json(full(&state, id).await?))
}

/// Realtime asks whether a user may watch `tournament:<id>`: anyone signed
/// in may, while the tournament exists (brackets are public).
#[utoipa::path(get, path = "/v1/tournament/realtime/channels/{channel}", operation_id = "tournament_grant", tag = "service",
    security(("bearer" = [])),
    params(("channel" = String, Path, example = "tournament:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")),
    responses((status = 204, description = "May subscribe"),
        (status = 404, description = "No such tournament", body = Problem, content_type = "application/problem+json")))]
async fn grant(
    State(state): State<AppState>,
    _caller: Caller,
    Path(channel): Path<String>,
) -> Result<StatusCode, TournamentError> {
    let id = channel
        .strip_prefix("tournament:")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(TournamentError::no_such_tournament)?;
    state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TournamentExport)]
pub struct Export {
    pub entered: Vec<ExportedEntry>,
    pub organised: Vec<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedEntry {
    pub tournament_id: Uuid,
    #[schema(example = "Friday cup")]
    pub name: String,
    #[schema(example = "Ada")]
    pub alias: String,
}

/// What the tournament service holds about the caller (GDPR export).
#[utoipa::path(get, path = "/v1/tournament/me/export", operation_id = "tournament_export", tag = "gdpr", security(("bearer" = [])),
    responses((status = 200, body = Export)))]
async fn export(State(state): State<AppState>, caller: Caller) -> Result<Json<Export>, TournamentError> {
    let (entered, organised) = state.store.export(caller.user_id).await?;
    Ok(Json(Export {
        entered: entered
            .into_iter()
            .map(|(tournament_id, name, alias)| ExportedEntry { tournament_id, name, alias })
            .collect(),
        organised,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TournamentBot)]
pub struct AddBot {
    /// One of the AI service's levels (`GET /v1/ai/levels`: `easy`,
    /// `medium`, `hard`); the AI service judges it.
    #[schema(example = "hard")]
    pub level: String,
}

/// Enters a bot of the AI service (the organiser of an online tournament):
/// it plays its matches like any entrant, under its own name, and is never
/// rated as a person.
#[utoipa::path(post, path = "/v1/tournament/tournaments/{id}/bots", operation_id = "tournament_add_bot", tag = "tournaments",
    security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = AddBot,
    responses((status = 201, body = EntrantView),
        (status = 403, description = "Not the organiser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tournament", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A local tournament, started, or full", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown level", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The AI service cannot be reached; retry", body = Problem, content_type = "application/problem+json")))]
async fn add_bot(
    State(state): State<AppState>,
    caller: Caller,
    authorization: kit::peer::CallerAuthorization,
    Path(id): Path<Uuid>,
    Json(body): Json<AddBot>,
) -> Result<(StatusCode, Json<EntrantView>), TournamentError> {
    let t = state.store.get(id).await?.ok_or_else(TournamentError::no_such_tournament)?;
    if t.organiser != Some(caller.user_id) {
        return Err(Problem::forbidden("only the organiser enters bots").into());
    }
    if t.kind == Kind::Local {
        return Err(Problem::conflict("bots play online tournaments; a local one is played on one keyboard").into());
    }
    if t.status != Status::Registering {
        return Err(Problem::conflict("the tournament has started").into());
    }
    let exclude: Vec<Uuid> = state.store.entrants(id).await?.into_iter().map(|e| e.entrant_id).collect();
    let unavailable = || Problem::unavailable("the AI service cannot be reached; retry shortly", 2);
    let r = state
        .ai
        .send(
            reqwest::Method::POST,
            "/v1/ai/bots",
            authorization.credentials(),
            Some(&serde_json::json!({"level": body.level, "exclude": exclude})),
        )
        .await
        .map_err(Problem::from)?;
    if r.status() == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        // The levels are the AI service's: its words for a wrong one.
        let problem: serde_json::Value = r.json().await.unwrap_or_default();
        let why = problem["errors"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["field"] == "level"))
            .and_then(|e| e["message"].as_str())
            .unwrap_or("not one of the AI service's levels")
            .to_owned();
        return Err(FieldErrors::single("level", why).into());
    }
    if !r.status().is_success() {
        tracing::warn!(status = %r.status(), "the AI service gave no bot");
        return Err(unavailable().into());
    }
    let bot: serde_json::Value = r.json().await.map_err(|_| unavailable())?;
    let (Some(bot_id), Some(name)) =
        (bot["id"].as_str().and_then(|i| i.parse::<Uuid>().ok()), bot["name"].as_str().map(str::to_owned))
    else {
        return Err(unavailable().into());
    };
    let alias = DisplayName::parse(&name).map_err(|_| unavailable())?;
    let entrant =
        Entrant { entrant_id: bot_id, user_id: Some(bot_id), alias: name, rating: DEFAULT_RATING, seed: None };
    state.store.join(id, &entrant, alias.key(), Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(entrant.into())))
}
