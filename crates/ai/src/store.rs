//! The AI service's SQL: its bots, and the matches they play.

use chrono::{DateTime, Utc};
use kit::db::{Db, Tx};
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::Level;

/// A bot as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Bot {
    pub id: Uuid,
    pub level: Level,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A bot with its record.
#[derive(Debug, Clone, PartialEq)]
pub struct BotRecord {
    pub bot: Bot,
    pub played: i64,
    pub won: i64,
    pub playing: i64,
}

/// A match a bot plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Game {
    pub match_id: Uuid,
    pub bot_id: Uuid,
    pub level: Level,
}

type BotRow = (Uuid, String, String, DateTime<Utc>);
/// A bot's row with its matches finished, won and being played.
type RecordRow = (Uuid, String, String, DateTime<Utc>, i64, i64, i64);

fn bot((id, level, name, created_at): BotRow) -> Bot {
    Bot { id, level: Level::parse(&level).unwrap_or(Level::Medium), name, created_at }
}

pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The oldest bot of `level` that is not one of `taken` (the match's
    /// players already).
    pub async fn bot_for(&self, level: Level, taken: &[Uuid]) -> Result<Option<Bot>, sqlx::Error> {
        let rows: Vec<BotRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, level, name, created_at FROM bots WHERE level = $1 ORDER BY created_at")
            .bind(level.as_str()).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(bot).find(|b| !taken.contains(&b.id)))
    }

    pub async fn bots_of(&self, level: Level) -> Result<i64, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM bots WHERE level = $1")
            .bind(level.as_str()).fetch_one(pool).await)
    }

    /// Keeps a new bot and announces it (`bot_created`), in one transaction.
    pub async fn add_bot(&self, b: &Bot) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO bots (id, level, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(b.id).bind(b.level.as_str()).bind(&b.name).bind(b.created_at)
            .execute(conn).await.map(|_| ()))?;
        tx.record(&contracts::ai::BotCreated {
            bot_id: b.id,
            name: b.name.clone(),
            level: b.level.as_str().to_owned(),
            created_at: b.created_at,
        })
        .await?;
        tx.commit().await
    }

    /// A match game started with one of this service's bots seated that the
    /// service did not seat itself (a tournament's): the bot plays it (in
    /// the consumer's transaction; the player starts from the row).
    pub async fn adopt(tx: &mut Tx, match_id: Uuid, bot: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO games (match_id, bot_id, level, status, joined_at)
             SELECT $1, id, level, 'playing', $3 FROM bots WHERE id = $2
             ON CONFLICT (match_id, bot_id) DO NOTHING")
            .bind(match_id).bind(bot).bind(now).execute(conn).await.map(|_| ()))
    }

    /// Every bot, with how many matches it played, won and plays now.
    pub async fn bots(&self) -> Result<Vec<BotRecord>, sqlx::Error> {
        let rows: Vec<RecordRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT b.id, b.level, b.name, b.created_at,
                    COUNT(g.match_id) FILTER (WHERE g.status = 'finished'),
                    COUNT(g.match_id) FILTER (WHERE g.status = 'finished' AND g.won),
                    COUNT(g.match_id) FILTER (WHERE g.status = 'playing')
             FROM bots b LEFT JOIN games g ON g.bot_id = b.id
             GROUP BY b.id, b.level, b.name, b.created_at
             ORDER BY b.created_at")
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, level, name, created_at, played, won, playing)| BotRecord {
                bot: bot((id, level, name, created_at)),
                played,
                won,
                playing,
            })
            .collect())
    }

    /// A bot starts playing a match (before it joins: a crash in between
    /// leaves a row the next start resumes, never a seat nobody plays).
    pub async fn start(&self, g: &Game, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO games (match_id, bot_id, level, status, joined_at) VALUES ($1, $2, $3, 'playing', $4)
             ON CONFLICT (match_id, bot_id) DO NOTHING")
            .bind(g.match_id).bind(g.bot_id).bind(g.level.as_str()).bind(now)
            .execute(pool).await.map(|_| ()))
    }

    /// The bot could not join after all.
    pub async fn forget(&self, g: &Game) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "DELETE FROM games WHERE match_id = $1 AND bot_id = $2 AND status = 'playing'")
            .bind(g.match_id).bind(g.bot_id).execute(pool).await.map(|_| ()))
    }

    /// The match is over for the bot: `won` when known (the result came),
    /// `None` when it gave up.
    pub async fn end(&self, g: &Game, won: Option<bool>, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let status = if won.is_some() { "finished" } else { "abandoned" };
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE games SET status = $3, won = $4, finished_at = $5
             WHERE match_id = $1 AND bot_id = $2 AND status = 'playing'")
            .bind(g.match_id).bind(g.bot_id).bind(status).bind(won).bind(now)
            .execute(pool).await.map(|_| ()))
    }

    /// A match's result, from game's `match_finished`, for its bots (in the
    /// consumer's transaction).
    pub async fn finished(tx: &mut Tx, match_id: Uuid, winner: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "UPDATE games SET status = 'finished', won = (bot_id = $2), finished_at = $3
             WHERE match_id = $1 AND status = 'playing'")
            .bind(match_id).bind(winner).bind(now).execute(conn).await.map(|_| ()))
    }

    /// Whether a bot still plays a match (its player stops when not).
    pub async fn playing(&self, g: &Game) -> Result<bool, sqlx::Error> {
        let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM games WHERE match_id = $1 AND bot_id = $2 AND status = 'playing'")
            .bind(g.match_id).bind(g.bot_id).fetch_one(pool).await)?;
        Ok(n > 0)
    }

    /// The matches bots were playing when the service last stopped.
    pub async fn unfinished(&self) -> Result<Vec<Game>, sqlx::Error> {
        let rows: Vec<(Uuid, Uuid, String)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT match_id, bot_id, level FROM games WHERE status = 'playing' ORDER BY joined_at")
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(match_id, bot_id, level)| Game {
                match_id,
                bot_id,
                level: Level::parse(&level).unwrap_or(Level::Medium),
            })
            .collect())
    }

    /// Records the queue's request for bots (in the consumer's
    /// transaction; a redelivery changes nothing).
    pub async fn want(tx: &mut Tx, match_id: Uuid, level: Level, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO wants (match_id, level, status, attempts, next_at, created_at)
             VALUES ($1, $2, 'pending', 0, $3, $3) ON CONFLICT (match_id) DO NOTHING")
            .bind(match_id).bind(level.as_str()).bind(now).execute(conn).await.map(|_| ()))
    }

    /// Records an invitation to one of the bots, to accept (in the
    /// consumer's transaction; a redelivery changes nothing). The level is
    /// the bot's own.
    pub async fn invited(tx: &mut Tx, invitation: Uuid, bot: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO wants (match_id, level, status, attempts, next_at, created_at, kind, bot_id)
             SELECT $1, b.level, 'pending', 0, $3, $3, 'invitation', b.id FROM bots b WHERE b.id = $2
             ON CONFLICT (match_id) DO NOTHING")
            .bind(invitation).bind(bot).bind(now).execute(conn).await.map(|_| ()))
    }

    /// Requests due now, oldest first.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<Want>, sqlx::Error> {
        let rows: Vec<(Uuid, String, i32, Option<Uuid>)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT match_id, level, attempts, bot_id FROM wants WHERE status = 'pending' AND next_at <= $1
             ORDER BY created_at LIMIT 20")
            .bind(now).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(match_id, level, attempts, invited)| Want {
                match_id,
                level: Level::parse(&level).unwrap_or(Level::Medium),
                attempts: u32::try_from(attempts).unwrap_or(0),
                invited,
            })
            .collect())
    }

    /// A request served (`done`), given up (`failed`), or to retry at `next_at`.
    pub async fn settle(&self, match_id: Uuid, status: &str, next_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE wants SET status = $2, attempts = attempts + 1, next_at = $3 WHERE match_id = $1")
            .bind(match_id).bind(status).bind(next_at).execute(pool).await.map(|_| ()))
    }
}

/// The queue's request for bots in a match, or an invitation to a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    /// The match; for an invitation, the invitation's id.
    pub match_id: Uuid,
    pub level: Level,
    pub attempts: u32,
    /// The bot invited (an invitation).
    pub invited: Option<Uuid>,
}
