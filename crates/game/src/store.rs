//! Game's SQL: matches and their players. Events are recorded in the same
//! transaction as the change they announce.

use chrono::{DateTime, Utc};
use contracts::game::{MatchFinished, MatchPlayer, MatchStarted};
use kit::db::Db;
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::{Mode, Options};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such match")]
    NotFound,
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A match as stored.
#[derive(Debug, Clone)]
pub struct Match {
    pub id: Uuid,
    pub mode: Mode,
    pub origin: String,
    pub options: Options,
    pub seed: u64,
    pub status: Status,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub players: Vec<MatchPlayer>,
    pub snapshot: Option<String>,
    pub result: Option<MatchFinished>,
}

/// A match's status (`MatchStatus` in the API document: every service's
/// schemas share one namespace in the gateway's merged document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MatchStatus)]
pub enum Status {
    /// Created; seats free.
    Waiting,
    Live,
    Finished,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Live => "live",
            Status::Finished => "finished",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "live" => Status::Live,
            "finished" => Status::Finished,
            _ => Status::Waiting,
        }
    }
}

type MatchRow = (
    Uuid,
    String,
    String,
    String,
    i64,
    String,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
);

const MATCH_COLUMNS: &str =
    "id, mode, origin, options, seed, status, created_by, created_at, started_at, finished_at, snapshot, result";

fn parse_mode(s: &str) -> Mode {
    if s == Mode::FourPlayers.as_str() { Mode::FourPlayers } else { Mode::Duel }
}

/// Where a rematch stands after a player asked for it.
#[derive(Debug)]
pub enum Rematch {
    /// Waiting for these players to ask too.
    Waiting(Vec<Uuid>),
    /// Everyone asked: the new match, live.
    Made(Box<Match>),
}

/// What joining did.
#[derive(Debug)]
pub enum Joined {
    /// A seat; the match waits for more players.
    Seated(Match),
    /// The last seat: the match is live.
    Started(Match),
}

/// A match's status, owner, owner's URL and lease end.
type LeaseRow = (String, Option<String>, Option<String>, Option<DateTime<Utc>>);

/// This process, as the owner of the live matches it runs.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Fresh at every start.
    pub id: String,
    /// Where other game processes reach this one (`game.advertise_url`).
    pub url: Option<String>,
    /// How long a lease holds unrenewed.
    pub lease: std::time::Duration,
}

/// A player waiting in the queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub user: Uuid,
    pub mode: Mode,
    pub rating: f64,
    pub since: DateTime<Utc>,
}

impl From<(Uuid, String, f64, DateTime<Utc>)> for Queued {
    fn from((user, mode, rating, since): (Uuid, String, f64, DateTime<Utc>)) -> Self {
        Self { user, mode: parse_mode(&mode), rating, since }
    }
}

/// Who runs a live match, as another process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// This process.
    Me,
    /// Another process, reachable at this URL.
    At(String),
    /// Nobody right now (its owner died and nobody took it over yet, or
    /// the owner gave no URL): try again shortly.
    Nobody,
}

pub struct Store {
    db: Db,
    owner: Owner,
}

impl Store {
    pub fn new(db: Db, owner: Owner) -> Self {
        Self { db, owner }
    }

    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.owner.lease).unwrap_or(chrono::Duration::seconds(5))
    }

    /// Takes a live match's lease when nobody holds it (or it ran out):
    /// true when this process now runs it.
    pub async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE matches SET owner = $2, owner_url = $3, lease_until = $4
             WHERE id = $1 AND status = 'live' AND (owner IS NULL OR owner = $2 OR lease_until < $5)")
            .bind(id).bind(&self.owner.id).bind(&self.owner.url).bind(self.lease_until(now)).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Takes over up to `limit` live matches nobody holds a lease on; their
    /// ids. The outer condition is checked again on each row as it is
    /// updated, so two processes sweeping at once never both get a match.
    pub async fn claim_orphans(&self, limit: usize, now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        with_db!(write &self.db, pool => sqlx::query_scalar(
            "UPDATE matches SET owner = $1, owner_url = $2, lease_until = $3
             WHERE status = 'live' AND (owner IS NULL OR lease_until < $4)
               AND id IN (SELECT id FROM matches WHERE status = 'live' AND (owner IS NULL OR lease_until < $4) LIMIT $5)
             RETURNING id")
            .bind(&self.owner.id).bind(&self.owner.url).bind(self.lease_until(now)).bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool).await)
    }

    /// Renews this process's leases; the live matches it still holds.
    pub async fn renew(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query_scalar(
            "UPDATE matches SET lease_until = $2 WHERE owner = $1 AND status = 'live' RETURNING id")
            .bind(&self.owner.id).bind(self.lease_until(now)).fetch_all(pool).await)
    }

    /// Gives up this process's leases (at shutdown, after the last
    /// snapshots): another process takes the matches over at once.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE matches SET owner = NULL, owner_url = NULL, lease_until = NULL WHERE owner = $1 AND status = 'live'")
            .bind(&self.owner.id).execute(pool).await.map(|_| ()))
    }

    /// Who runs live match `id`; `None` when it is not live.
    pub async fn runner(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Runner>, sqlx::Error> {
        let row: Option<LeaseRow> = with_db!(&self.db, pool => sqlx::query_as(
                "SELECT status, owner, owner_url, lease_until FROM matches WHERE id = $1")
                .bind(id).fetch_optional(pool).await)?;
        let Some((status, owner, url, until)) = row else { return Ok(None) };
        if status != "live" {
            return Ok(None);
        }
        Ok(Some(match (owner, url, until) {
            (Some(o), _, _) if o == self.owner.id => Runner::Me,
            (Some(_), Some(url), Some(until)) if until >= now => Runner::At(url),
            _ => Runner::Nobody,
        }))
    }

    /// Creates a match with its creator in seat 0.
    pub async fn create(
        &self,
        creator: Uuid,
        mode: Mode,
        options: &Options,
        origin: &str,
        now: DateTime<Utc>,
    ) -> Result<Match, StoreError> {
        let mut tx = self.db.begin().await?;
        let id = insert_match(&mut tx, creator, mode, options, origin, now).await?;
        tx.commit().await?;
        self.get(id).await?.ok_or(StoreError::NotFound)
    }

    /// Takes the next free seat; the last one starts the match (recorded
    /// with `match_started` in the same transaction).
    pub async fn join(&self, id: Uuid, user: Uuid, now: DateTime<Utc>) -> Result<Joined, StoreError> {
        let mut tx = self.db.begin().await?;
        // One statement takes the seat, so two players racing for the last
        // one cannot both get it.
        let seat: Option<i32> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "UPDATE matches SET joined = joined + 1
             WHERE id = $1 AND status = 'waiting' AND joined < seats
               AND NOT EXISTS (SELECT 1 FROM match_players p WHERE p.match_id = $1 AND p.user_id = $2)
             RETURNING joined")
            .bind(id)
            .bind(user)
            .fetch_optional(conn)
            .await)?;
        let Some(joined) = seat else {
            tx.rollback().await?;
            let current = self.get(id).await?.ok_or(StoreError::NotFound)?;
            return Err(StoreError::Refused(if current.players.iter().any(|p| p.user_id == user) {
                "you are already in this match"
            } else if current.status == Status::Finished {
                "the match is over"
            } else {
                "the match is full"
            }));
        };
        let seat = u8::try_from(joined - 1).unwrap_or(0);
        add_player(&mut tx, id, seat, user, now).await?;
        let full: bool = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT joined >= seats FROM matches WHERE id = $1").bind(id).fetch_one(conn).await)?;
        if full {
            start(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        let m = self.get(id).await?.ok_or(StoreError::NotFound)?;
        Ok(if full { Joined::Started(m) } else { Joined::Seated(m) })
    }

    /// A group from the queue: out of the queue and into a live match with
    /// default options, in one transaction. `None` when one of them left
    /// the queue meanwhile (nothing changes; the others stay queued).
    pub async fn from_queue(
        &self,
        mode: Mode,
        players: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Option<Match>, StoreError> {
        let mut tx = self.db.begin().await?;
        if !dequeue_all(&mut tx, mode, players).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = seat_all(&mut tx, players, mode, &Options::default(), "queue", now).await?;
        tx.commit().await?;
        self.get(id).await.map_err(StoreError::from)
    }

    /// A match another service asks for with every player seated (a
    /// tournament's), live at once and announced to the players like a
    /// queue's; the one made already when `reference` was seen before
    /// (false: not made now).
    pub async fn for_service(
        &self,
        players: &[Uuid],
        mode: Mode,
        options: &Options,
        origin: &str,
        reference: &str,
        now: DateTime<Utc>,
    ) -> Result<(Match, bool), StoreError> {
        let made: Option<Uuid> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT id FROM matches WHERE reference = $1").bind(reference).fetch_optional(pool).await)?;
        if let Some(id) = made {
            return Ok((self.get(id).await?.ok_or(StoreError::NotFound)?, false));
        }
        let mut tx = self.db.begin().await?;
        let id = seat_all(&mut tx, players, mode, options, origin, now).await?;
        let set = with_tx!(&mut tx, conn => sqlx::query("UPDATE matches SET reference = $2 WHERE id = $1")
            .bind(id).bind(reference).execute(conn).await.map(|_| ()));
        match set {
            Ok(()) => tx.commit().await?,
            // Two requests with one reference at once: the other made it.
            Err(e) if kit::db::is_unique_violation(&e) => {
                tx.rollback().await?;
                let id: Uuid = with_db!(&self.db, pool => sqlx::query_scalar(
                    "SELECT id FROM matches WHERE reference = $1").bind(reference).fetch_one(pool).await)?;
                return Ok((self.get(id).await?.ok_or(StoreError::NotFound)?, false));
            }
            Err(e) => return Err(e.into()),
        }
        Ok((self.get(id).await?.ok_or(StoreError::NotFound)?, true))
    }

    /// Remembers a bot the AI service announced (`bot_created`), so that
    /// its seats are marked even when game seats it itself.
    pub async fn bot_created(tx: &mut kit::db::Tx, bot: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO bots (user_id, seen_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
            .bind(bot).bind(at).execute(conn).await.map(|_| ()))
    }

    /// Remembers that `user` is a bot (their token said so): their seats
    /// from now on are marked as bots'.
    pub async fn note_bot(&self, user: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO bots (user_id, seen_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
            .bind(user).bind(now).execute(pool).await.map(|_| ()))
    }

    /// Players who waited too long alone: out of the queue and into a match
    /// of theirs with the other seats free, asking the AI service for bots
    /// (`bots_wanted`) and telling each player (`match_ready`), in one
    /// transaction. `None` when one of them left the queue meanwhile.
    pub async fn for_bots(
        &self,
        mode: Mode,
        players: &[(Uuid, f64)],
        now: DateTime<Utc>,
    ) -> Result<Option<Match>, StoreError> {
        let Some(&(first, _)) = players.first() else { return Ok(None) };
        let mut tx = self.db.begin().await?;
        let users: Vec<Uuid> = players.iter().map(|(u, _)| *u).collect();
        if !dequeue_all(&mut tx, mode, &users).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = insert_match(&mut tx, first, mode, &Options::default(), "queue", now).await?;
        for (seat, (player, _)) in (1u8..).zip(&players[1..]) {
            add_player(&mut tx, id, seat, *player, now).await?;
        }
        let seated = i32::try_from(players.len()).unwrap_or(1);
        with_tx!(&mut tx, conn => sqlx::query("UPDATE matches SET joined = $2 WHERE id = $1")
            .bind(id).bind(seated).execute(conn).await.map(|_| ()))?;
        let rating = players.iter().map(|(_, r)| r).sum::<f64>() / players.len() as f64;
        tx.record(&contracts::game::BotsWanted {
            match_id: id,
            mode: mode.as_str().to_owned(),
            bots: u8::try_from(mode.seats() - players.len()).unwrap_or(1),
            rating,
            wanted_at: now,
        })
        .await?;
        for (player, _) in players {
            tx.record(&contracts::realtime::Publication {
                channel: format!("user:{player}"),
                data: serde_json::json!({"type": "match_ready", "match_id": id, "origin": "queue"}),
                skip_users: Vec::new(),
                ephemeral: false,
            })
            .await?;
        }
        tx.commit().await?;
        self.get(id).await.map_err(StoreError::from)
    }

    /// Queues a player; false when they are queued already.
    pub async fn enqueue(&self, user: Uuid, mode: Mode, rating: f64, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO queue (user_id, mode, rating, since) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING")
            .bind(user).bind(mode.as_str()).bind(rating).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Takes a player out of the queue; false when they were not in it.
    pub async fn dequeue(&self, user: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query("DELETE FROM queue WHERE user_id = $1")
            .bind(user).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// A player's place in the queue.
    pub async fn queued(&self, user: Uuid) -> Result<Option<Queued>, sqlx::Error> {
        let row: Option<(Uuid, String, f64, DateTime<Utc>)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, mode, rating, since FROM queue WHERE user_id = $1").bind(user).fetch_optional(pool).await)?;
        Ok(row.map(Queued::from))
    }

    /// Everyone queued.
    pub async fn queue(&self) -> Result<Vec<Queued>, sqlx::Error> {
        let rows: Vec<(Uuid, String, f64, DateTime<Utc>)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, mode, rating, since FROM queue").fetch_all(pool).await)?;
        Ok(rows.into_iter().map(Queued::from).collect())
    }

    /// Takes or renews the lease on a job one process does at a time
    /// (`matchmaker`): true when this process holds it now.
    pub async fn hold(&self, job: &str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE singletons SET owner = $2, lease_until = $3
             WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_until < $4)")
            .bind(job).bind(&self.owner.id).bind(self.lease_until(now)).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Lets go of a job's lease (at shutdown).
    pub async fn let_go(&self, job: &str) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE singletons SET owner = NULL, lease_until = NULL WHERE name = $1 AND owner = $2")
            .bind(job).bind(&self.owner.id).execute(pool).await.map(|_| ()))
    }

    /// A player of a finished match asks for a rematch; when every player
    /// has, the new match is made (same seats, same options, live at once)
    /// and everyone is told on their `user:` channel. One transaction, with
    /// the old match's row locked, so that two last askers make one rematch.
    pub async fn rematch(&self, id: Uuid, user: Uuid, now: DateTime<Utc>) -> Result<Rematch, StoreError> {
        let mut tx = self.db.begin().await?;
        let status: Option<String> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "UPDATE matches SET status = status WHERE id = $1 RETURNING status")
            .bind(id).fetch_optional(conn).await)?;
        let Some(status) = status else { return Err(StoreError::NotFound) };
        let players = players_in(&mut tx, id).await?;
        if !players.iter().any(|p| p.user_id == user) {
            return Err(StoreError::Forbidden("you did not play this match"));
        }
        if status != "finished" {
            return Err(StoreError::Refused("the match is not over"));
        }
        let made: Option<Uuid> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT new_match_id FROM rematches WHERE match_id = $1").bind(id).fetch_optional(conn).await)?;
        if made.is_some() {
            return Err(StoreError::Refused("the rematch was made already"));
        }
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO rematch_requests (match_id, user_id, asked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(id).bind(user).bind(now).execute(conn).await.map(|_| ()))?;
        let asked: Vec<Uuid> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT user_id FROM rematch_requests WHERE match_id = $1").bind(id).fetch_all(conn).await)?;
        let waiting: Vec<Uuid> = players.iter().map(|p| p.user_id).filter(|u| !asked.contains(u)).collect();
        if !waiting.is_empty() {
            for other in &waiting {
                tx.record(&contracts::realtime::Publication {
                    channel: format!("user:{other}"),
                    data: serde_json::json!({"type": "rematch_asked", "match_id": id, "by": user}),
                    skip_users: Vec::new(),
                    ephemeral: false,
                })
                .await?;
            }
            tx.commit().await?;
            return Ok(Rematch::Waiting(waiting));
        }
        let (mode, options): (String, String) = with_tx!(&mut tx, conn => sqlx::query_as(
            "SELECT mode, options FROM matches WHERE id = $1").bind(id).fetch_one(conn).await)?;
        let options: Options = serde_json::from_str(&options).unwrap_or_default();
        let seats: Vec<Uuid> = players.iter().map(|p| p.user_id).collect();
        let new_id = seat_all(&mut tx, &seats, parse_mode(&mode), &options, "rematch", now).await?;
        with_tx!(&mut tx, conn => sqlx::query("INSERT INTO rematches (match_id, new_match_id) VALUES ($1, $2)")
            .bind(id).bind(new_id).execute(conn).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(Rematch::Made(Box::new(self.get(new_id).await?.ok_or(StoreError::NotFound)?)))
    }

    /// A player's ratings, by mode (their export).
    pub async fn ratings_of(&self, user: Uuid) -> Result<Vec<(String, f64, DateTime<Utc>)>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT mode, rating, updated_at FROM ratings WHERE user_id = $1 ORDER BY mode")
            .bind(user).fetch_all(pool).await)
    }

    /// A player's rating in a mode, when stats has given them one.
    pub async fn rating(&self, user: Uuid, mode: Mode) -> Result<Option<f64>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT rating FROM ratings WHERE user_id = $1 AND mode = $2")
            .bind(user).bind(mode.as_str()).fetch_optional(pool).await)
    }

    /// Keeps a player's rating from stats' `rating_changed`; an older
    /// announcement arriving late does not overwrite a newer one.
    pub async fn set_rating(
        tx: &mut kit::db::Tx,
        user: Uuid,
        mode: &str,
        rating: f64,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO ratings (user_id, mode, rating, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, mode) DO UPDATE SET rating = $3, updated_at = $4 WHERE ratings.updated_at <= $4")
            .bind(user).bind(mode).bind(rating).bind(at).execute(conn).await.map(|_| ()))
    }

    /// Whether the user plays in a match that is live.
    pub async fn playing(&self, user: Uuid) -> Result<bool, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM match_players p JOIN matches m ON m.id = p.match_id
                            WHERE p.user_id = $1 AND m.status = 'live')")
            .bind(user).fetch_one(pool).await)
    }

    /// Keeps the simulation's state of a live match — only while this
    /// process holds its lease (a process that lost it writes nothing).
    pub async fn snapshot(&self, id: Uuid, snapshot: &str) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE matches SET snapshot = $2 WHERE id = $1 AND status = 'live' AND owner = $3")
            .bind(id).bind(snapshot).bind(&self.owner.id).execute(pool).await.map(|_| ()))
    }

    /// Ends a live match with its result, recorded with `match_finished`.
    /// False when it was not live (finished already) or this process no
    /// longer holds its lease.
    pub async fn finish(&self, result: &MatchFinished) -> Result<bool, sqlx::Error> {
        let json = serde_json::to_string(result).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let mut tx = self.db.begin().await?;
        let n = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE matches SET status = 'finished', finished_at = $2, result = $3, snapshot = NULL,
                 owner = NULL, owner_url = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'live' AND owner = $4")
            .bind(result.match_id).bind(result.finished_at).bind(&json).bind(&self.owner.id)
            .execute(conn).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.record(result).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Match>, sqlx::Error> {
        let row: Option<MatchRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MATCH_COLUMNS} FROM matches WHERE id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        match row {
            Some(row) => Ok(Some(self.hydrate(row).await?)),
            None => Ok(None),
        }
    }

    /// Matches by status, newest first, after the cursor (a match id).
    pub async fn list(&self, status: Status, before: Option<Uuid>, limit: i64) -> Result<Vec<Match>, sqlx::Error> {
        let rows: Vec<MatchRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MATCH_COLUMNS} FROM matches WHERE status = $1 AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3")))
            .bind(status.as_str())
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        self.hydrate_all(rows).await
    }

    /// Every match `user` has a seat in, oldest first (their export).
    pub async fn played_by(&self, user: Uuid) -> Result<Vec<Match>, sqlx::Error> {
        let rows: Vec<MatchRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MATCH_COLUMNS} FROM matches
             WHERE id IN (SELECT match_id FROM match_players WHERE user_id = $1) ORDER BY created_at, id")))
            .bind(user)
            .fetch_all(pool)
            .await)?;
        self.hydrate_all(rows).await
    }

    /// Erases a user (users' `user_erased`): their rating copy and queue
    /// entry are deleted, their pending invitations withdrawn, and their id
    /// is replaced everywhere else (seats, results, invitations, rematch
    /// requests) by a fresh random pseudonym nothing links back to them —
    /// their opponents' matches keep their shape. A match they are playing
    /// right now is not touched (the arena holds its seats in memory): they
    /// are away, so it ends by forfeit, and that result still names them.
    pub async fn erase(tx: &mut kit::db::Tx, user: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let pseudonym = Uuid::new_v4();
        for sql in ["DELETE FROM ratings WHERE user_id = $1", "DELETE FROM queue WHERE user_id = $1"] {
            with_tx!(tx, conn => sqlx::query(sql).bind(user).execute(conn).await.map(|_| ()))?;
        }
        with_tx!(tx, conn => sqlx::query(
            "UPDATE invitations SET status = 'withdrawn', answered_at = $2
             WHERE status = 'pending' AND (from_user = $1 OR to_user = $1)")
            .bind(user).bind(at).execute(conn).await.map(|_| ()))?;
        let finished: Vec<(Uuid, String)> = with_tx!(tx, conn => sqlx::query_as(
            "SELECT id, result FROM matches
             WHERE result IS NOT NULL AND id IN (SELECT match_id FROM match_players WHERE user_id = $1)")
            .bind(user).fetch_all(conn).await)?;
        for (id, result) in finished {
            let Ok(mut result) = serde_json::from_str::<MatchFinished>(&result) else { continue };
            for p in &mut result.players {
                if p.user_id == user {
                    p.user_id = pseudonym;
                }
            }
            if result.winner == user {
                result.winner = pseudonym;
            }
            let json = serde_json::to_string(&result).map_err(|e| sqlx::Error::Encode(e.into()))?;
            with_tx!(tx, conn => sqlx::query("UPDATE matches SET result = $2 WHERE id = $1")
                .bind(id).bind(json).execute(conn).await.map(|_| ()))?;
        }
        for sql in [
            "UPDATE match_players SET user_id = $2 WHERE user_id = $1
               AND match_id NOT IN (SELECT id FROM matches WHERE status = 'live')",
            "UPDATE matches SET created_by = $2 WHERE created_by = $1 AND status <> 'live'",
            "UPDATE invitations SET from_user = $2 WHERE from_user = $1",
            "UPDATE invitations SET to_user = $2 WHERE to_user = $1",
            "UPDATE rematch_requests SET user_id = $2 WHERE user_id = $1",
        ] {
            with_tx!(tx, conn => sqlx::query(sql).bind(user).bind(pseudonym).execute(conn).await.map(|_| ()))?;
        }
        Ok(())
    }

    async fn hydrate_all(&self, rows: Vec<MatchRow>) -> Result<Vec<Match>, sqlx::Error> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.hydrate(row).await?);
        }
        Ok(out)
    }

    async fn hydrate(&self, row: MatchRow) -> Result<Match, sqlx::Error> {
        let (
            id,
            mode,
            origin,
            options,
            seed,
            status,
            created_by,
            created_at,
            started_at,
            finished_at,
            snapshot,
            result,
        ) = row;
        let players: Vec<PlayerRow> =
            with_db!(&self.db, pool => sqlx::query_as(PLAYERS_SQL).bind(id).fetch_all(pool).await)?;
        Ok(Match {
            id,
            mode: parse_mode(&mode),
            origin,
            options: serde_json::from_str(&options).unwrap_or_default(),
            seed: seed.cast_unsigned(),
            status: Status::parse(&status),
            created_by,
            created_at,
            started_at,
            finished_at,
            players: players.into_iter().map(player).collect(),
            snapshot,
            result: result.and_then(|r| serde_json::from_str(&r).ok()),
        })
    }
}

/// Takes every one of `players` out of `mode`'s queue: false when one of
/// them is not in it any more (the caller rolls back).
async fn dequeue_all(tx: &mut kit::db::Tx, mode: Mode, players: &[Uuid]) -> Result<bool, sqlx::Error> {
    for user in players {
        let taken = with_tx!(tx, conn => sqlx::query("DELETE FROM queue WHERE user_id = $1 AND mode = $2")
            .bind(user).bind(mode.as_str()).execute(conn).await.map(|r| r.rows_affected()))?;
        if taken == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A new match waiting for players, its creator in seat 0.
async fn insert_match(
    tx: &mut kit::db::Tx,
    creator: Uuid,
    mode: Mode,
    options: &Options,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    // The seed is stored as a signed 64-bit integer (both databases'
    // BIGINT) and read back bit for bit.
    let seed = Uuid::new_v4().as_u64_pair().0;
    let options_json = serde_json::to_string(options).map_err(|e| sqlx::Error::Encode(e.into()))?;
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO matches (id, mode, origin, options, seed, seats, joined, status, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 1, 'waiting', $7, $8)")
        .bind(id)
        .bind(mode.as_str())
        .bind(origin)
        .bind(&options_json)
        .bind(seed.cast_signed())
        .bind(i32::try_from(mode.seats()).unwrap_or(2))
        .bind(creator)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ()))?;
    add_player(tx, id, 0, creator, now).await?;
    Ok(id)
}

/// A match whose players are all known (an accepted invitation, a group
/// from the queue): created with everyone seated in order, live at once,
/// and every player told on their `user:` channel
/// (`{"type": "match_ready", "match_id", "origin"}`).
pub(crate) async fn seat_all(
    tx: &mut kit::db::Tx,
    players: &[Uuid],
    mode: Mode,
    options: &Options,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let Some((&first, others)) = players.split_first() else { return Err(sqlx::Error::RowNotFound) };
    let id = insert_match(tx, first, mode, options, origin, now).await?;
    for (seat, &player) in (1u8..).zip(others) {
        add_player(tx, id, seat, player, now).await?;
    }
    start(tx, id, now).await?;
    for player in players {
        tx.record(&contracts::realtime::Publication {
            channel: format!("user:{player}"),
            data: serde_json::json!({"type": "match_ready", "match_id": id, "origin": origin}),
            skip_users: Vec::new(),
            ephemeral: false,
        })
        .await?;
    }
    Ok(id)
}

/// Every seat is taken: live, announced with `match_started`.
async fn start(tx: &mut kit::db::Tx, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "UPDATE matches SET status = 'live', started_at = $2, joined = seats WHERE id = $1")
        .bind(id).bind(now).execute(conn).await.map(|_| ()))?;
    let players = players_in(tx, id).await?;
    let (mode, origin, options): (String, String, String) = with_tx!(tx, conn => sqlx::query_as(
        "SELECT mode, origin, options FROM matches WHERE id = $1").bind(id).fetch_one(conn).await)?;
    let options: Options = serde_json::from_str(&options).unwrap_or_default();
    tx.record(&MatchStarted {
        match_id: id,
        mode,
        players,
        points_to_win: options.points_to_win,
        origin,
        started_at: now,
    })
    .await
}

async fn add_player(
    tx: &mut kit::db::Tx,
    id: Uuid,
    seat: u8,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO match_players (match_id, seat, user_id, bot, joined_at)
         SELECT $1, $2, $3, EXISTS (SELECT 1 FROM bots WHERE user_id = $3), $4")
        .bind(id)
        .bind(i32::from(seat))
        .bind(user)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ()))
}

/// A match's players in seat order, read in or out of a transaction.
const PLAYERS_SQL: &str = "SELECT seat, user_id, bot FROM match_players WHERE match_id = $1 ORDER BY seat";

type PlayerRow = (i32, Uuid, bool);

fn player((seat, user_id, bot): PlayerRow) -> MatchPlayer {
    MatchPlayer { user_id, seat: u8::try_from(seat).unwrap_or(0), bot }
}

async fn players_in(tx: &mut kit::db::Tx, id: Uuid) -> Result<Vec<MatchPlayer>, sqlx::Error> {
    let rows: Vec<PlayerRow> = with_tx!(tx, conn => sqlx::query_as(PLAYERS_SQL).bind(id).fetch_all(conn).await)?;
    Ok(rows.into_iter().map(player).collect())
}
