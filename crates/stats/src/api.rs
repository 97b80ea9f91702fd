//! Stats' HTTP API: a player's numbers per mode with their rank, their
//! match history, their chart points, the leaderboards, and the GDPR
//! export. Read-only: every number comes from game's events.

use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use kit::auth::Caller;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::error::StatsError;
use crate::store::{BoardRow, DayRow, HistoryRow, Opponent, PlayerRow};

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(player_stats))
        .routes(routes!(player_matches))
        .routes(routes!(player_series))
        .routes(routes!(leaderboard))
        .routes(routes!(export_stats_data))
        .with_state(state)
}

/// A game mode, as stats counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StatsMode)]
pub enum Mode {
    Duel,
    FourPlayers,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Duel => "duel",
            Mode::FourPlayers => "four_players",
        }
    }
}

/// A player's numbers in one mode.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mode": "duel", "rating": 1662.3, "deviation": 290.3, "rank": 4, "bot": false,
    "rated_matches": 1, "matches": 1, "wins": 1, "losses": 0, "win_rate": 1.0, "forfeits": 0, "streak": 1,
    "best_streak": 1, "points_scored": 11, "points_conceded": 4, "last_match_at": "2026-12-04T10:00:00Z"}))]
pub struct ModeStats {
    pub mode: String,
    /// Glicko-2 rating (1500 to start); moved only by matches between people.
    pub rating: f64,
    /// How unsure the rating is (350 to start; lower is surer).
    pub deviation: f64,
    /// Place on the mode's leaderboard; absent for bots and for players
    /// with too few rated matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
    pub bot: bool,
    pub rated_matches: u32,
    pub matches: u32,
    pub wins: u32,
    pub losses: u32,
    /// Wins over matches, 0 to 1.
    pub win_rate: f64,
    pub forfeits: u32,
    /// Positive: wins in a row now; negative: losses in a row.
    pub streak: i32,
    pub best_streak: i32,
    pub points_scored: u32,
    pub points_conceded: u32,
    pub last_match_at: DateTime<Utc>,
}

fn n(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl ModeStats {
    fn of(row: &PlayerRow, rank: Option<u64>) -> Self {
        Self {
            mode: row.mode.clone(),
            rating: row.rating,
            deviation: row.deviation,
            rank,
            bot: row.bot,
            rated_matches: n(row.rated_matches),
            matches: n(row.matches),
            wins: n(row.wins),
            losses: n(row.losses),
            win_rate: if row.matches > 0 { f64::from(row.wins) / f64::from(row.matches) } else { 0.0 },
            forfeits: n(row.forfeits),
            streak: row.streak,
            best_streak: row.best_streak,
            points_scored: n(row.scored),
            points_conceded: n(row.conceded),
            last_match_at: row.last_match_at,
        }
    }
}

/// What stats knows about a player.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerStats {
    pub user_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// One entry per mode they have played.
    pub modes: Vec<ModeStats>,
}

/// The player is an erased one's pseudonym: as unknown as a stranger.
async fn visible(state: &AppState, id: Uuid) -> Result<(), StatsError> {
    if state.store.is_erased(id).await? { Err(StatsError::no_such_player()) } else { Ok(()) }
}

/// A player's numbers in every mode they played, with their rank.
#[utoipa::path(get, path = "/v1/stats/players/{id}", tag = "stats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The player's user id")),
    responses((status = 200, body = PlayerStats),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No finished match for this player", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn player_stats(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<PlayerStats>, StatsError> {
    visible(&state, id).await?;
    let rows = state.store.player(id).await?;
    if rows.is_empty() {
        return Err(StatsError::no_such_player());
    }
    let mut modes = Vec::with_capacity(rows.len());
    for row in &rows {
        modes.push(ModeStats::of(row, state.store.rank(row).await?));
    }
    Ok(Json(PlayerStats { user_id: id, display_name: state.store.display_name(id).await?, modes }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this mode (default: all).
    #[param(inline)]
    pub mode: Option<Mode>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One match in a player's history.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"match_id": "01938f3e-7c1a-7d2e-9c44-1b2f3a4d5e6f", "mode": "duel", "origin": "queue",
    "finished_at": "2026-12-04T10:00:00Z", "duration_ms": 95000, "place": 1, "won": true, "forfeited": false,
    "scored": 11, "conceded": 4, "opponents": [{"user_id": "01938f3e-0000-7000-8000-000000000002", "bot": false, "place": 2}],
    "rated": true, "rating_before": 1500.0, "rating_after": 1662.3}))]
pub struct HistoryEntry {
    pub match_id: Uuid,
    pub mode: String,
    /// `open`, `queue`, `invitation`, `rematch` or `tournament`.
    pub origin: String,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// 1 for the winner.
    pub place: u8,
    pub won: bool,
    pub forfeited: bool,
    pub scored: u8,
    pub conceded: u8,
    pub opponents: Vec<Opponent>,
    /// Whether it moved ratings (only matches between people do).
    pub rated: bool,
    pub rating_before: f64,
    pub rating_after: f64,
}

impl HistoryEntry {
    fn of(row: HistoryRow) -> Self {
        Self {
            match_id: row.match_id,
            mode: row.mode,
            origin: row.origin,
            finished_at: row.finished_at,
            duration_ms: u64::try_from(row.duration_ms).unwrap_or(0),
            place: u8::try_from(row.place).unwrap_or(0),
            won: row.won,
            forfeited: row.forfeited,
            scored: u8::try_from(row.scored).unwrap_or(0),
            conceded: u8::try_from(row.conceded).unwrap_or(0),
            opponents: serde_json::from_str(&row.opponents).unwrap_or_default(),
            rated: row.rated,
            rating_before: row.rating_before,
            rating_after: row.rating_after,
        }
    }
}

/// A player's finished matches, newest first.
#[utoipa::path(get, path = "/v1/stats/players/{id}/matches", tag = "stats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The player's user id"), HistoryQuery),
    responses((status = 200, body = Page<HistoryEntry>),
        (status = 400, description = "The id or mode is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An erased player", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn player_matches(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    query: Option<Query<HistoryQuery>>,
) -> Result<Json<Page<HistoryEntry>>, StatsError> {
    let q = query.map(|q| q.0).unwrap_or(HistoryQuery { mode: None, limit: None, cursor: None });
    let page = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    visible(&state, id).await?;
    let rows = state.store.history(id, q.mode.map(Mode::as_str), page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, |r| (r.finished_at, r.match_id), HistoryEntry::of)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// The mode (default `duel`).
    #[param(inline)]
    pub mode: Option<Mode>,
    /// How many days back from today, 1 to 366 (default 30).
    pub days: Option<u32>,
}

/// The longest chart a client may ask for, in days.
pub const MAX_SERIES_DAYS: u32 = 366;

/// A day on a player's chart (UTC days; days without a match are left out:
/// the rating carries over).
#[derive(Debug, Serialize, ToSchema)]
pub struct DayPoint {
    pub day: NaiveDate,
    pub matches: u32,
    pub wins: u32,
    pub losses: u32,
    /// The rating at the end of the day.
    pub rating: f64,
}

impl From<DayRow> for DayPoint {
    fn from(d: DayRow) -> Self {
        Self { day: d.day, matches: n(d.matches), wins: n(d.wins), losses: n(d.losses), rating: d.rating }
    }
}

/// A player's chart in one mode.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mode": "duel", "since": "2026-11-05",
    "days": [{"day": "2026-12-03", "matches": 4, "wins": 3, "losses": 1, "rating": 1588.2}]}))]
pub struct Series {
    pub mode: String,
    pub since: NaiveDate,
    pub days: Vec<DayPoint>,
}

/// Per-day matches, wins, losses and closing rating, for charts.
#[utoipa::path(get, path = "/v1/stats/players/{id}/series", tag = "stats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The player's user id"), SeriesQuery),
    responses((status = 200, body = Series),
        (status = 400, description = "The id or mode is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An erased player", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Days out of range", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn player_series(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    query: Option<Query<SeriesQuery>>,
) -> Result<Json<Series>, StatsError> {
    let q = query.map(|q| q.0).unwrap_or(SeriesQuery { mode: None, days: None });
    let days = q.days.unwrap_or(30);
    if !(1..=MAX_SERIES_DAYS).contains(&days) {
        return Err(FieldErrors::single("days", format!("must be between 1 and {MAX_SERIES_DAYS}")).into());
    }
    visible(&state, id).await?;
    let mode = q.mode.unwrap_or(Mode::Duel);
    let since = Utc::now().date_naive() - chrono::Days::new(u64::from(days - 1));
    let points = state.store.series(id, mode.as_str(), since).await?;
    Ok(Json(Series { mode: mode.as_str().to_owned(), since, days: points.into_iter().map(DayPoint::from).collect() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A line of a leaderboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderboardEntry {
    /// 1 is first; ties in rating are broken by user id.
    pub rank: u64,
    pub user_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub rating: f64,
    pub deviation: f64,
    pub rated_matches: u32,
    pub wins: u32,
    pub losses: u32,
}

/// The people ranked in a mode, best rating first. Bots and players with
/// fewer rated matches than `stats.ranked_after` are not ranked.
#[utoipa::path(get, path = "/v1/stats/leaderboards/{mode}", tag = "stats", security(("bearer" = [])),
    params(("mode" = inline(Mode), Path, description = "`duel` or `four_players`"), BoardQuery),
    responses((status = 200, body = Page<LeaderboardEntry>),
        (status = 400, description = "Not a mode", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn leaderboard(
    State(state): State<AppState>,
    _caller: Caller,
    Path(mode): Path<Mode>,
    query: Option<Query<BoardQuery>>,
) -> Result<Json<Page<LeaderboardEntry>>, StatsError> {
    let q = query.map(|q| q.0).unwrap_or(BoardQuery { limit: None, cursor: None });
    let page = PageRequest::<(f64, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let mode = mode.as_str();
    let ahead = match page.after {
        Some((rating, user)) => state.store.ranked_through(mode, rating, user).await?,
        None => 0,
    };
    let rows = state.store.leaderboard(mode, page.after, page.sql_limit()).await?;
    let rank = std::cell::Cell::new(ahead);
    Ok(Json(Page::of(
        rows,
        &page,
        |r: &BoardRow| (r.rating, r.user_id),
        |r| {
            rank.set(rank.get() + 1);
            LeaderboardEntry {
                rank: rank.get(),
                user_id: r.user_id,
                display_name: r.display_name,
                rating: r.rating,
                deviation: r.deviation,
                rated_matches: n(r.rated_matches),
                wins: n(r.wins),
                losses: n(r.losses),
            }
        },
    )))
}

/// What stats holds about the caller: their numbers, every match and
/// every chart day (GDPR articles 15 and 20). Erasure comes from users'
/// `user_erased`.
#[utoipa::path(get, path = "/v1/stats/me/export", tag = "stats", security(("bearer" = [])),
    responses((status = 200, description = "Stats' part of the archive", body = Object)))]
pub(super) async fn export_stats_data(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, StatsError> {
    let id = caller.user_id;
    let rows = state.store.player(id).await?;
    let mut modes = Vec::new();
    for row in &rows {
        modes.push(ModeStats::of(row, state.store.rank(row).await?));
    }
    let days: Vec<serde_json::Value> = state
        .store
        .all_days(id)
        .await?
        .into_iter()
        .map(|(mode, d)| serde_json::json!({"mode": mode, "day": DayPoint::from(d)}))
        .collect();
    let matches: Vec<HistoryEntry> =
        state.store.history(id, None, None, i64::MAX).await?.into_iter().map(HistoryEntry::of).collect();
    Ok(Json(serde_json::json!({
        "display_name": state.store.display_name(id).await?,
        "modes": modes,
        "matches": matches,
        "days": days,
    })))
}
