//! Stats' SQL: the journal of finished matches and the read models built
//! from it. Applying a match, rebuilding and erasing all take the
//! projection lock first, so they never interleave.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use contracts::game::MatchFinished;
use contracts::stats::RatingChanged;
use kit::db::{Db, Tx};
use kit::{with_db, with_tx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{self, Applied, Line, Rating};

/// A player's row in one mode.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlayerRow {
    pub user_id: Uuid,
    pub mode: String,
    pub bot: bool,
    pub rating: f64,
    pub deviation: f64,
    pub volatility: f64,
    pub rated_matches: i32,
    pub matches: i32,
    pub wins: i32,
    pub losses: i32,
    pub forfeits: i32,
    pub streak: i32,
    pub best_streak: i32,
    pub scored: i32,
    pub conceded: i32,
    pub last_match_at: DateTime<Utc>,
}

const PLAYER_COLUMNS: &str = "user_id, mode, bot, rating, deviation, volatility, rated_matches, matches, wins, losses, \
     forfeits, streak, best_streak, scored, conceded, last_match_at";

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn column(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl PlayerRow {
    fn line(&self) -> Line {
        Line {
            bot: self.bot,
            rating: Rating { rating: self.rating, deviation: self.deviation, volatility: self.volatility },
            rated_matches: count(self.rated_matches),
            matches: count(self.matches),
            wins: count(self.wins),
            losses: count(self.losses),
            forfeits: count(self.forfeits),
            streak: self.streak,
            best_streak: self.best_streak,
            scored: count(self.scored),
            conceded: count(self.conceded),
        }
    }
}

/// One of the other players of a match, as a history line keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = StatsOpponent)]
pub struct Opponent {
    pub user_id: Uuid,
    pub bot: bool,
    pub place: u8,
}

/// One line of a player's history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub match_id: Uuid,
    pub mode: String,
    pub origin: String,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub place: i32,
    pub won: bool,
    pub forfeited: bool,
    pub scored: i32,
    pub conceded: i32,
    pub opponents: String,
    pub rated: bool,
    pub rating_before: f64,
    pub rating_after: f64,
}

const HISTORY_COLUMNS: &str = "match_id, mode, origin, finished_at, duration_ms, place, won, forfeited, scored, \
     conceded, opponents, rated, rating_before, rating_after";

/// A day of a player's chart.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DayRow {
    pub day: NaiveDate,
    pub matches: i32,
    pub wins: i32,
    pub losses: i32,
    pub rating: f64,
}

/// A leaderboard line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BoardRow {
    pub user_id: Uuid,
    pub display_name: Option<String>,
    pub rating: f64,
    pub deviation: f64,
    pub rated_matches: i32,
    pub wins: i32,
    pub losses: i32,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// Finished matches replayed.
    pub matches: u64,
    /// Player lines (a player in a mode) built.
    pub lines: u64,
    /// Lines whose rating came out different from before (each announced
    /// with `rating_changed`).
    pub changed: u64,
}

/// Why a match could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the result is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub struct Store {
    db: Db,
    /// Rated matches a player needs to be ranked.
    ranked_after: i32,
}

impl Store {
    pub fn new(db: Db, ranked_after: u32) -> Self {
        Self { db, ranked_after: column(ranked_after) }
    }

    /// A player's lines, one per mode they played.
    pub async fn player(&self, user: Uuid) -> Result<Vec<PlayerRow>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAYER_COLUMNS} FROM players WHERE user_id = $1 ORDER BY mode")))
            .bind(user).fetch_all(pool).await)
    }

    /// Their place on the mode's leaderboard (1 is first), when they are on it.
    pub async fn rank(&self, row: &PlayerRow) -> Result<Option<u64>, sqlx::Error> {
        if row.bot || row.rated_matches < self.ranked_after {
            return Ok(None);
        }
        // Counting the lines up to and including theirs gives their place.
        Ok(Some(self.ranked_through(&row.mode, row.rating, row.user_id).await?))
    }

    pub async fn display_name(&self, user: Uuid) -> Result<Option<String>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT display_name FROM people WHERE user_id = $1")
            .bind(user).fetch_optional(pool).await)
    }

    /// Whether `id` is the pseudonym of an erased player.
    pub async fn is_erased(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM erased WHERE pseudonym = $1)")
            .bind(id).fetch_one(pool).await)
    }

    /// A player's matches, newest first, after the key `(finished_at,
    /// match_id)` of the previous page; in one mode or all.
    pub async fn history(
        &self,
        user: Uuid,
        mode: Option<&str>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, sqlx::Error> {
        let (at, id) = after.map_or((None, None), |(at, id)| (Some(at), Some(id)));
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {HISTORY_COLUMNS} FROM history
             WHERE user_id = $1 AND ($2 IS NULL OR mode = $2)
               AND ($3 IS NULL OR finished_at < $3 OR (finished_at = $3 AND match_id < $4))
             ORDER BY finished_at DESC, match_id DESC LIMIT $5")))
            .bind(user).bind(mode).bind(at).bind(id).bind(limit).fetch_all(pool).await)
    }

    /// A player's days in a mode from `since` on, oldest first.
    pub async fn series(&self, user: Uuid, mode: &str, since: NaiveDate) -> Result<Vec<DayRow>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT day, matches, wins, losses, rating FROM daily
             WHERE user_id = $1 AND mode = $2 AND day >= $3 ORDER BY day")
            .bind(user).bind(mode).bind(since).fetch_all(pool).await)
    }

    /// Every day of a player's, in every mode (for their export).
    pub async fn all_days(&self, user: Uuid) -> Result<Vec<(String, DayRow)>, sqlx::Error> {
        let rows: Vec<(String, NaiveDate, i32, i32, i32, f64)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT mode, day, matches, wins, losses, rating FROM daily WHERE user_id = $1 ORDER BY mode, day")
            .bind(user).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(mode, day, matches, wins, losses, rating)| (mode, DayRow { day, matches, wins, losses, rating }))
            .collect())
    }

    /// The people ranked in a mode, best first, after the key `(rating,
    /// user_id)` of the previous page. Bots, erased players and players
    /// with fewer rated matches than the setting are not ranked.
    pub async fn leaderboard(
        &self,
        mode: &str,
        after: Option<(f64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<BoardRow>, sqlx::Error> {
        let (rating, id) = after.map_or((None, None), |(r, id)| (Some(r), Some(id)));
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT p.user_id, n.display_name, p.rating, p.deviation, p.rated_matches, p.wins, p.losses
             FROM players p LEFT JOIN people n ON n.user_id = p.user_id
             WHERE p.mode = $1 AND p.bot = $5 AND p.rated_matches >= $6
               AND NOT EXISTS (SELECT 1 FROM erased e WHERE e.pseudonym = p.user_id)
               AND ($2 IS NULL OR p.rating < $2 OR (p.rating = $2 AND p.user_id > $3))
             ORDER BY p.rating DESC, p.user_id LIMIT $4")
            .bind(mode).bind(rating).bind(id).bind(limit).bind(false).bind(self.ranked_after).fetch_all(pool).await)
    }

    /// How many are ranked at or ahead of the key `(rating, user_id)`: the
    /// place of that line, and the place before the line after it.
    pub async fn ranked_through(&self, mode: &str, rating: f64, user: Uuid) -> Result<u64, sqlx::Error> {
        let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT count(*) FROM players p
             WHERE p.mode = $1 AND p.bot = $4 AND p.rated_matches >= $5
               AND NOT EXISTS (SELECT 1 FROM erased e WHERE e.pseudonym = p.user_id)
               AND (p.rating > $2 OR (p.rating = $2 AND p.user_id <= $3))")
            .bind(mode).bind(rating).bind(user).bind(false).bind(self.ranked_after).fetch_one(pool).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Replays the journal into fresh read models, in one transaction: the
    /// same function over the same matches in the same order as they were
    /// first applied. Lines whose rating differs from before are announced
    /// with `rating_changed`.
    pub async fn rebuild(&self, now: DateTime<Utc>) -> Result<Rebuilt, ApplyError> {
        let mut tx = self.db.begin().await?;
        lock(&mut tx).await?;
        let old: Vec<PlayerRow> = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAYER_COLUMNS} FROM players"))).fetch_all(conn).await)?;
        let old: HashMap<(Uuid, String), (f64, f64)> =
            old.into_iter().map(|r| ((r.user_id, r.mode), (r.rating, r.deviation))).collect();
        for table in ["history", "daily", "players"] {
            with_tx!(&mut tx, conn => sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(conn).await.map(|_| ()))?;
        }
        let bodies: Vec<String> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT body FROM journal ORDER BY seq").fetch_all(conn).await)?;
        let matches = bodies.len() as u64;
        for body in bodies {
            let result: MatchFinished = serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(e.into()))?;
            project(&mut tx, &result).await?;
        }
        let new: Vec<PlayerRow> = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAYER_COLUMNS} FROM players"))).fetch_all(conn).await)?;
        let mut changed = 0;
        for row in &new {
            if old.get(&(row.user_id, row.mode.clone())) != Some(&(row.rating, row.deviation)) {
                changed += 1;
                if !row.bot {
                    let line = row.line();
                    tx.record(&rating_changed(row.user_id, &row.mode, line.rating, line.rated_matches, None, now))
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Rebuilt { matches, lines: new.len() as u64, changed })
    }
}

/// Takes the projection lock: one row every writer updates first.
async fn lock(tx: &mut Tx) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query("UPDATE projection_lock SET rebuilds = rebuilds WHERE id = 1")
        .execute(conn).await.map(|_| ()))
}

fn rating_changed(
    user_id: Uuid,
    mode: &str,
    rating: Rating,
    rated_matches: u32,
    match_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> RatingChanged {
    RatingChanged {
        user_id,
        mode: mode.to_owned(),
        rating: rating.rating,
        deviation: rating.deviation,
        rated_matches,
        match_id,
        changed_at: at,
    }
}

/// Applies a finished match: journals it and updates every read model, in
/// the consumer's transaction; a match applied before is left alone. A
/// rated match announces each player's new rating.
pub async fn apply(tx: &mut Tx, result: &MatchFinished, now: DateTime<Utc>) -> Result<Vec<Applied>, ApplyError> {
    domain::check(result).map_err(ApplyError::Inconsistent)?;
    lock(tx).await?;
    let body = serde_json::to_string(result).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let inserted = with_tx!(tx, conn => sqlx::query(
        "INSERT INTO journal (match_id, body, recorded_at) VALUES ($1, $2, $3) ON CONFLICT (match_id) DO NOTHING")
        .bind(result.match_id).bind(&body).bind(now).execute(conn).await.map(|r| r.rows_affected()))?;
    if inserted == 0 {
        return Ok(Vec::new());
    }
    let applied = project(tx, result).await?;
    if domain::rated(result) {
        for a in &applied {
            let (rating, rated) = (a.after.rating, a.after.rated_matches);
            tx.record(&rating_changed(a.user_id, &result.mode, rating, rated, Some(result.match_id), now)).await?;
        }
    }
    Ok(applied)
}

/// The read models' part of applying a match.
async fn project(tx: &mut Tx, result: &MatchFinished) -> Result<Vec<Applied>, sqlx::Error> {
    let mut before = Vec::with_capacity(result.players.len());
    for p in &result.players {
        let row: Option<PlayerRow> = with_tx!(tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAYER_COLUMNS} FROM players WHERE user_id = $1 AND mode = $2")))
            .bind(p.user_id).bind(&result.mode).fetch_optional(conn).await)?;
        before.push(row.map_or_else(|| Line::new(p.bot), |r| r.line()));
    }
    let applied = domain::apply(result, &before);
    let rated = domain::rated(result);
    let day = result.finished_at.date_naive();
    for a in &applied {
        let l = &a.after;
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO players (user_id, mode, bot, rating, deviation, volatility, rated_matches, matches, wins,
                 losses, forfeits, streak, best_streak, scored, conceded, last_match_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (user_id, mode) DO UPDATE SET bot = $3, rating = $4, deviation = $5, volatility = $6,
                 rated_matches = $7, matches = $8, wins = $9, losses = $10, forfeits = $11, streak = $12,
                 best_streak = $13, scored = $14, conceded = $15, last_match_at = $16")
            .bind(a.user_id).bind(&result.mode).bind(l.bot).bind(l.rating.rating).bind(l.rating.deviation)
            .bind(l.rating.volatility).bind(column(l.rated_matches)).bind(column(l.matches)).bind(column(l.wins))
            .bind(column(l.losses)).bind(column(l.forfeits)).bind(l.streak).bind(l.best_streak)
            .bind(column(l.scored)).bind(column(l.conceded)).bind(result.finished_at)
            .execute(conn).await.map(|_| ()))?;
        let opponents: Vec<Opponent> = result
            .players
            .iter()
            .filter(|o| o.user_id != a.user_id)
            .map(|o| Opponent { user_id: o.user_id, bot: o.bot, place: o.place })
            .collect();
        let opponents = serde_json::to_string(&opponents).map_err(|e| sqlx::Error::Encode(e.into()))?;
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO history (user_id, match_id, mode, origin, finished_at, duration_ms, place, won, forfeited,
                 scored, conceded, opponents, rated, rating_before, rating_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
            .bind(a.user_id).bind(result.match_id).bind(&result.mode).bind(&result.origin)
            .bind(result.finished_at).bind(i64::try_from(result.duration_ms).unwrap_or(i64::MAX))
            .bind(i32::from(a.place)).bind(a.won).bind(a.forfeited).bind(i32::from(a.scored))
            .bind(i32::from(a.conceded)).bind(&opponents).bind(rated).bind(a.before.rating.rating)
            .bind(l.rating.rating)
            .execute(conn).await.map(|_| ()))?;
        let (won, lost) = if a.won { (1, 0) } else { (0, 1) };
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO daily (user_id, mode, day, matches, wins, losses, rating) VALUES ($1, $2, $3, 1, $4, $5, $6)
             ON CONFLICT (user_id, mode, day) DO UPDATE SET matches = daily.matches + 1,
                 wins = daily.wins + $4, losses = daily.losses + $5, rating = $6")
            .bind(a.user_id).bind(&result.mode).bind(day).bind(won).bind(lost).bind(l.rating.rating)
            .execute(conn).await.map(|_| ()))?;
    }
    Ok(applied)
}

/// Keeps a display name, the newest one winning.
pub async fn upsert_person(tx: &mut Tx, user: Uuid, name: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO people (user_id, display_name, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET display_name = $2, updated_at = $3 WHERE people.updated_at <= $3")
        .bind(user).bind(name).bind(at).execute(conn).await.map(|_| ()))
}

/// Erases a player: their name is deleted, and their id is replaced
/// everywhere (journal, history lines on both sides, their numbers and
/// days) by a fresh random pseudonym nothing links back to them. Their
/// matches stay, so their opponents' ratings — which were computed from
/// them — still rebuild to the same numbers.
pub async fn erase(tx: &mut Tx, user: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    lock(tx).await?;
    with_tx!(tx, conn => sqlx::query("DELETE FROM people WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))?;
    let matches: Vec<Uuid> = with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT match_id FROM history WHERE user_id = $1").bind(user).fetch_all(conn).await)?;
    if matches.is_empty() {
        return Ok(());
    }
    let pseudonym = Uuid::new_v4();
    for m in &matches {
        let body: Option<String> = with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT body FROM journal WHERE match_id = $1").bind(m).fetch_optional(conn).await)?;
        if let Some(body) = body {
            let mut result: MatchFinished = serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(e.into()))?;
            for p in &mut result.players {
                if p.user_id == user {
                    p.user_id = pseudonym;
                }
            }
            if result.winner == user {
                result.winner = pseudonym;
            }
            let body = serde_json::to_string(&result).map_err(|e| sqlx::Error::Encode(e.into()))?;
            with_tx!(tx, conn => sqlx::query("UPDATE journal SET body = $2 WHERE match_id = $1")
                .bind(m).bind(body).execute(conn).await.map(|_| ()))?;
        }
        let others: Vec<(Uuid, String)> = with_tx!(tx, conn => sqlx::query_as(
            "SELECT user_id, opponents FROM history WHERE match_id = $1 AND user_id <> $2")
            .bind(m).bind(user).fetch_all(conn).await)?;
        for (other, opponents) in others {
            let mut list: Vec<Opponent> =
                serde_json::from_str(&opponents).map_err(|e| sqlx::Error::Decode(e.into()))?;
            for o in &mut list {
                if o.user_id == user {
                    o.user_id = pseudonym;
                }
            }
            let list = serde_json::to_string(&list).map_err(|e| sqlx::Error::Encode(e.into()))?;
            with_tx!(tx, conn => sqlx::query("UPDATE history SET opponents = $3 WHERE match_id = $1 AND user_id = $2")
                .bind(m).bind(other).bind(list).execute(conn).await.map(|_| ()))?;
        }
    }
    for table in ["history", "players", "daily"] {
        with_tx!(tx, conn => sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET user_id = $2 WHERE user_id = $1")))
            .bind(user).bind(pseudonym).execute(conn).await.map(|_| ()))?;
    }
    with_tx!(tx, conn => sqlx::query("INSERT INTO erased (pseudonym, erased_at) VALUES ($1, $2)")
        .bind(pseudonym).bind(at).execute(conn).await.map(|_| ()))?;
    Ok(())
}
