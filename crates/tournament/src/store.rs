//! The tournament service's SQL. Every change to a running tournament
//! happens in one transaction that first locks the tournament's row, so two
//! results arriving at once never each miss the other (and the match that
//! needs both is always made), and its events are recorded in the same
//! transaction.

use chrono::{DateTime, Utc};
use contracts::tournament::{Pairing as PairingEvent, RoundStarted, Standing, TournamentFinished, TournamentStarted};
use kit::db::{Db, Tx, is_unique_violation};
use kit::{with_db, with_tx};
use serde_json::json;
use uuid::Uuid;

use crate::domain::{self, BracketError, Format, Kind, Next, Pairing, Seeding, Status};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such tournament")]
    NotFound,
    /// A change the tournament's state does not allow (409).
    #[error("{0}")]
    Refused(&'static str),
    /// Not the caller's to do (403).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Bracket(#[from] BracketError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A tournament as stored.
#[derive(Debug, Clone)]
pub struct Tournament {
    pub id: Uuid,
    pub name: String,
    pub format: Format,
    pub seeding: Seeding,
    pub kind: Kind,
    pub capacity: u32,
    pub organiser: Option<Uuid>,
    pub status: Status,
    pub seed: u64,
    pub rounds: u32,
    pub points_to_win: u8,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub standings: Option<Vec<Standing>>,
}

#[derive(Debug, Clone)]
pub struct Entrant {
    pub entrant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub alias: String,
    pub rating: f64,
    pub seed: Option<u32>,
}

/// A tournament to create.
#[derive(Debug, Clone)]
pub struct NewTournament<'a> {
    pub name: &'a str,
    pub format: Format,
    pub seeding: Seeding,
    pub kind: Kind,
    pub capacity: u32,
    pub organiser: Uuid,
    pub points_to_win: u8,
}

type TournamentRow = (
    Uuid,
    String,
    String,
    String,
    String,
    i32,
    Option<Uuid>,
    String,
    i64,
    i32,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    i32,
);

/// A tournament's columns, in [`TournamentRow`]'s order (a macro, so that
/// queries stay literal strings).
macro_rules! columns {
    () => {
        "id, name, format, seeding, kind, capacity, organiser, status, seed, rounds, created_at, started_at, finished_at, standings, points_to_win"
    };
}

fn tournament(r: TournamentRow) -> Tournament {
    let (
        id,
        name,
        format,
        seeding,
        kind,
        capacity,
        organiser,
        status,
        seed,
        rounds,
        created,
        started,
        finished,
        st,
        points,
    ) = r;
    Tournament {
        id,
        name,
        format: if format == "swiss" { Format::Swiss } else { Format::SingleElimination },
        seeding: if seeding == "random" { Seeding::Random } else { Seeding::Rating },
        kind: if kind == "local" { Kind::Local } else { Kind::Online },
        capacity: u32::try_from(capacity).unwrap_or(0),
        organiser,
        status: match status.as_str() {
            "running" => Status::Running,
            "finished" => Status::Finished,
            _ => Status::Registering,
        },
        seed: seed.cast_unsigned(),
        rounds: u32::try_from(rounds).unwrap_or(0),
        points_to_win: u8::try_from(points).unwrap_or(11),
        created_at: created,
        started_at: started,
        finished_at: finished,
        standings: st.and_then(|s| serde_json::from_str(&s).ok()),
    }
}

type EntrantRow = (Uuid, Option<Uuid>, String, f64, Option<i32>);

fn entrant((entrant_id, user_id, alias, rating, seed): EntrantRow) -> Entrant {
    Entrant { entrant_id, user_id, alias, rating, seed: seed.and_then(|s| u32::try_from(s).ok()) }
}

type PairingRow = (i32, i32, Uuid, Option<Uuid>, Option<Uuid>);
/// A pairing's row with the game match made for it.
type MatchRow = (i32, i32, Uuid, Option<Uuid>, Option<Uuid>, Option<Uuid>);

fn pairing((round, idx, a, b, winner): PairingRow) -> Pairing {
    Pairing { round: u32::try_from(round).unwrap_or(0), index: u32::try_from(idx).unwrap_or(0), a, b, winner }
}

pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn create(&self, t: &NewTournament<'_>, now: DateTime<Utc>) -> Result<Tournament, StoreError> {
        let id = Uuid::now_v7();
        let seed = Uuid::new_v4().as_u64_pair().0;
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO tournaments (id, name, format, seeding, kind, capacity, organiser, status, seed, created_at, points_to_win)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'registering', $8, $9, $10)")
            .bind(id).bind(t.name).bind(t.format.as_str())
            .bind(if t.seeding == Seeding::Random { "random" } else { "rating" })
            .bind(t.kind.as_str()).bind(i32::try_from(t.capacity).unwrap_or(i32::MAX)).bind(t.organiser)
            .bind(seed.cast_signed()).bind(now).bind(i32::from(t.points_to_win))
            .execute(pool).await.map(|_| ()))?;
        self.get(id).await?.ok_or(StoreError::NotFound)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Tournament>, sqlx::Error> {
        let row: Option<TournamentRow> = with_db!(&self.db, pool => sqlx::query_as(
            concat!("SELECT ", columns!(), " FROM tournaments WHERE id = $1"))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row.map(tournament))
    }

    /// Tournaments in `status`, newest first, after the id `after`.
    pub async fn list(&self, status: Status, after: Option<Uuid>, limit: i64) -> Result<Vec<Tournament>, sqlx::Error> {
        let after = after.unwrap_or(Uuid::max());
        let rows: Vec<TournamentRow> = with_db!(&self.db, pool => sqlx::query_as(
            concat!("SELECT ", columns!(), " FROM tournaments WHERE status = $1 AND id < $2 ORDER BY id DESC LIMIT $3"))
            .bind(status.as_str()).bind(after).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(tournament).collect())
    }

    /// Entrants in seed order once started (registration order before).
    pub async fn entrants(&self, id: Uuid) -> Result<Vec<Entrant>, sqlx::Error> {
        let rows: Vec<EntrantRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT entrant_id, user_id, alias, rating, seed FROM entrants WHERE tournament_id = $1
             ORDER BY seed, joined_at, entrant_id")
            .bind(id).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(entrant).collect())
    }

    /// The matches with the game match each was made as (online).
    pub async fn matches(&self, id: Uuid) -> Result<Vec<(Pairing, Option<Uuid>)>, sqlx::Error> {
        let rows: Vec<MatchRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT round, idx, a, b, winner, game_match_id FROM pairings WHERE tournament_id = $1 ORDER BY round, idx")
            .bind(id).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(r, i, a, b, w, g)| (pairing((r, i, a, b, w)), g)).collect())
    }

    /// A rating from stats, when it has one for the player.
    pub async fn rating(&self, user: Uuid) -> Result<Option<f64>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT rating FROM ratings WHERE user_id = $1")
            .bind(user).fetch_optional(pool).await)
    }

    /// Keeps a duel rating from stats' `rating_changed` (an older one never
    /// overwrites a newer).
    pub async fn set_rating(tx: &mut Tx, user: Uuid, rating: f64, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO ratings (user_id, rating, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET rating = excluded.rating, updated_at = excluded.updated_at
             WHERE ratings.updated_at <= excluded.updated_at")
            .bind(user).bind(rating).bind(at).execute(conn).await.map(|_| ()))
    }

    /// Adds an entrant while the tournament registers and has room: one
    /// statement, so two entrants racing for the last place cannot both
    /// get it. `Refused` says why not.
    pub async fn join(&self, id: Uuid, e: &Entrant, alias_key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let inserted = with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO entrants (tournament_id, entrant_id, user_id, alias, alias_key, rating, joined_at)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM tournaments t WHERE t.id = $1 AND t.status = 'registering'
                           AND (SELECT COUNT(*) FROM entrants n WHERE n.tournament_id = $1) < t.capacity)")
            .bind(id).bind(e.entrant_id).bind(e.user_id).bind(&e.alias).bind(alias_key).bind(e.rating).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()));
        match inserted {
            Ok(1) => Ok(()),
            Ok(_) => {
                let t = self.get(id).await?.ok_or(StoreError::NotFound)?;
                Err(StoreError::Refused(if t.status == Status::Registering {
                    "the tournament is full"
                } else {
                    "the tournament has started"
                }))
            }
            Err(e) if is_unique_violation(&e) => {
                let taken: i64 = with_db!(&self.db, pool => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM entrants WHERE tournament_id = $1 AND alias_key = $2")
                    .bind(id).bind(alias_key).fetch_one(pool).await)?;
                Err(StoreError::Refused(if taken > 0 {
                    "another entrant has this alias"
                } else {
                    "you are in this tournament already"
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes an entrant out while the tournament registers: false when
    /// there was none such.
    pub async fn leave(&self, id: Uuid, entrant_id: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "DELETE FROM entrants WHERE tournament_id = $1 AND entrant_id = $2
               AND EXISTS (SELECT 1 FROM tournaments t WHERE t.id = $1 AND t.status = 'registering')")
            .bind(id).bind(entrant_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Starts a tournament: seeds drawn, the first matches made, in one
    /// transaction with `tournament_started` and `round_started`.
    pub async fn start(&self, id: Uuid, by: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let t = lock(&mut tx, id).await?;
        if t.organiser != Some(by) {
            return Err(StoreError::Forbidden("only the organiser starts the tournament"));
        }
        if t.status != Status::Registering {
            return Err(StoreError::Refused("the tournament has started"));
        }
        let rows: Vec<EntrantRow> = with_tx!(&mut tx, conn => sqlx::query_as(
            "SELECT entrant_id, user_id, alias, rating, seed FROM entrants WHERE tournament_id = $1
             ORDER BY joined_at, entrant_id")
            .bind(id).fetch_all(conn).await)?;
        if rows.len() < 2 {
            return Err(StoreError::Refused("a tournament needs at least two entrants"));
        }
        let entrants: Vec<(Uuid, f64)> = rows.iter().map(|r| (r.0, r.3)).collect();
        let seeded = domain::seed(&entrants, t.seeding, t.seed);
        for (n, entrant) in (1i32..).zip(&seeded) {
            with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE entrants SET seed = $3 WHERE tournament_id = $1 AND entrant_id = $2")
                .bind(id).bind(entrant).bind(n).execute(conn).await.map(|_| ()))?;
        }
        let rounds = domain::rounds(t.format, seeded.len());
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE tournaments SET status = 'running', started_at = $2, rounds = $3 WHERE id = $1")
            .bind(id).bind(now).bind(i32::try_from(rounds).unwrap_or(0)).execute(conn).await.map(|_| ()))?;
        tx.record(&TournamentStarted {
            tournament_id: id,
            format: t.format.as_str().to_owned(),
            kind: t.kind.as_str().to_owned(),
            entrants: seeded.clone(),
            rounds,
            started_at: now,
        })
        .await?;
        let t = Tournament { status: Status::Running, rounds, ..t };
        advance(&mut tx, &t, &seeded, &[], now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a match's winner (a reported local match, a walkover) and
    /// moves the tournament on, in one transaction.
    pub async fn result(
        &self,
        id: Uuid,
        round: u32,
        index: u32,
        winner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        result_in(&mut tx, id, round, index, winner, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An online match's result from game's `match_finished` (in the
    /// consumer's transaction): nothing when the match is not a
    /// tournament's or was decided already (a redelivery).
    pub async fn from_game(tx: &mut Tx, match_id: Uuid, winner: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        let row: Option<(Uuid, i32, i32, Option<Uuid>)> = with_tx!(tx, conn => sqlx::query_as(
            "SELECT tournament_id, round, idx, winner FROM pairings WHERE game_match_id = $1")
            .bind(match_id).fetch_optional(conn).await)?;
        let Some((id, round, idx, None)) = row else { return Ok(()) };
        let (round, idx) = (u32::try_from(round).unwrap_or(0), u32::try_from(idx).unwrap_or(0));
        result_in(tx, id, round, idx, winner, now).await
    }

    /// Online matches whose players are known and that game has not been
    /// asked for yet: (tournament, round, index, a, b, points to win).
    pub async fn unscheduled(&self) -> Result<Vec<(Uuid, u32, u32, Uuid, Uuid, u8)>, sqlx::Error> {
        let rows: Vec<(Uuid, i32, i32, Uuid, Uuid, i32)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT p.tournament_id, p.round, p.idx, p.a, p.b, t.points_to_win FROM pairings p
             JOIN tournaments t ON t.id = p.tournament_id
             WHERE t.kind = 'online' AND t.status = 'running' AND p.b IS NOT NULL
               AND p.winner IS NULL AND p.game_match_id IS NULL
             ORDER BY p.created_at LIMIT 50")
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(t, r, i, a, b, p)| {
                (t, u32::try_from(r).unwrap_or(0), u32::try_from(i).unwrap_or(0), a, b, u8::try_from(p).unwrap_or(11))
            })
            .collect())
    }

    /// A tournament's name and two entrants' aliases (for a call's card).
    pub async fn call_names(&self, id: Uuid, a: Uuid, b: Uuid) -> Result<(String, String, String), sqlx::Error> {
        let name: String = with_db!(&self.db, pool => sqlx::query_scalar("SELECT name FROM tournaments WHERE id = $1")
            .bind(id).fetch_one(pool).await)?;
        let alias = |e: Uuid| async move {
            with_db!(&self.db, pool => sqlx::query_scalar::<_, String>(
                "SELECT alias FROM entrants WHERE tournament_id = $1 AND entrant_id = $2")
                .bind(id).bind(e).fetch_one(pool).await)
        };
        Ok((name, alias(a).await?, alias(b).await?))
    }

    /// Remembers the match game made for a pairing.
    pub async fn scheduled(&self, id: Uuid, round: u32, index: u32, match_id: Uuid) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE pairings SET game_match_id = $4 WHERE tournament_id = $1 AND round = $2 AND idx = $3
               AND game_match_id IS NULL")
            .bind(id).bind(i32::try_from(round).unwrap_or(0)).bind(i32::try_from(index).unwrap_or(0)).bind(match_id)
            .execute(pool).await.map(|_| ()))
    }

    /// What a player's export holds: the tournaments they entered (with
    /// their alias) and organised.
    pub async fn export(&self, user: Uuid) -> Result<(Vec<(Uuid, String, String)>, Vec<Uuid>), sqlx::Error> {
        let entered: Vec<(Uuid, String, String)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT t.id, t.name, e.alias FROM entrants e JOIN tournaments t ON t.id = e.tournament_id
             WHERE e.user_id = $1 ORDER BY t.id")
            .bind(user).fetch_all(pool).await)?;
        let organised: Vec<Uuid> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT id FROM tournaments WHERE organiser = $1 ORDER BY id")
            .bind(user).fetch_all(pool).await)?;
        Ok((entered, organised))
    }

    /// Erasure: the player's entries keep their place in brackets under
    /// their entrant id, but no longer name them (no user, the alias
    /// replaced); tournaments they organised lose their organiser.
    pub async fn erase(tx: &mut Tx, user: Uuid) -> Result<(), sqlx::Error> {
        let entries: Vec<(Uuid, Uuid)> = with_tx!(tx, conn => sqlx::query_as(
            "SELECT tournament_id, entrant_id FROM entrants WHERE user_id = $1")
            .bind(user).fetch_all(conn).await)?;
        for (tournament, entrant) in entries {
            with_tx!(tx, conn => sqlx::query(
                "UPDATE entrants SET user_id = NULL, alias = 'Erased player', alias_key = $3
                 WHERE tournament_id = $1 AND entrant_id = $2")
                .bind(tournament).bind(entrant).bind(format!("erased:{entrant}"))
                .execute(conn).await.map(|_| ()))?;
        }
        with_tx!(tx, conn => sqlx::query("UPDATE tournaments SET organiser = NULL WHERE organiser = $1")
            .bind(user).execute(conn).await.map(|_| ()))
    }
}

/// Records a match's winner and moves the tournament on, in `tx`.
async fn result_in(
    tx: &mut Tx,
    id: Uuid,
    round: u32,
    index: u32,
    winner: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let t = lock(tx, id).await?;
    if t.status != Status::Running {
        return Err(StoreError::Refused("the tournament is not running"));
    }
    let mut known = pairings_in(tx, id).await?;
    let Some(p) = known.iter_mut().find(|p| p.round == round && p.index == index) else {
        return Err(BracketError::NoSuchMatch.into());
    };
    let Some(b) = p.b else { return Err(BracketError::NotReady.into()) };
    if p.winner.is_some() {
        return Err(BracketError::AlreadyPlayed.into());
    }
    if winner != p.a && winner != b {
        return Err(BracketError::NotInMatch.into());
    }
    with_tx!(tx, conn => sqlx::query(
        "UPDATE pairings SET winner = $4, decided_at = $5 WHERE tournament_id = $1 AND round = $2 AND idx = $3")
        .bind(id).bind(i32::try_from(round).unwrap_or(0)).bind(i32::try_from(index).unwrap_or(0))
        .bind(winner).bind(now).execute(conn).await.map(|_| ()))?;
    p.winner = Some(winner);
    let seeded: Vec<Uuid> = with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT entrant_id FROM entrants WHERE tournament_id = $1 ORDER BY seed")
        .bind(id).fetch_all(conn).await)?;
    advance(tx, &t, &seeded, &known, now).await?;
    Ok(())
}

/// Locks the tournament's row for the transaction (a no-op update: a row
/// lock on PostgreSQL; SQLite's writer lock does the same).
async fn lock(tx: &mut Tx, id: Uuid) -> Result<Tournament, StoreError> {
    let row: Option<TournamentRow> = with_tx!(tx, conn => sqlx::query_as(
        concat!("UPDATE tournaments SET status = status WHERE id = $1 RETURNING ", columns!()))
        .bind(id).fetch_optional(conn).await)?;
    row.map(tournament).ok_or(StoreError::NotFound)
}

async fn pairings_in(tx: &mut Tx, id: Uuid) -> Result<Vec<Pairing>, sqlx::Error> {
    let rows: Vec<PairingRow> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT round, idx, a, b, winner FROM pairings WHERE tournament_id = $1 ORDER BY round, idx")
        .bind(id).fetch_all(conn).await)?;
    Ok(rows.into_iter().map(pairing).collect())
}

/// Writes what comes next ([`domain::next`]): new matches (with
/// `round_started` per round opened and, online, a call to each player),
/// or the end (`tournament_finished`). Clients watching `tournament:<id>`
/// are told something changed.
async fn advance(
    tx: &mut Tx,
    t: &Tournament,
    seeded: &[Uuid],
    known: &[Pairing],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let aliases: Vec<(Uuid, Option<Uuid>, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT entrant_id, user_id, alias FROM entrants WHERE tournament_id = $1")
        .bind(t.id).fetch_all(conn).await)?;
    let alias = |e: Uuid| aliases.iter().find(|a| a.0 == e).map(|a| a.2.clone()).unwrap_or_default();
    let user = |e: Uuid| aliases.iter().find(|a| a.0 == e).and_then(|a| a.1);
    match domain::next(t.format, seeded, t.rounds, known)? {
        Next::Nothing => {}
        Next::Pairings(new) => {
            let mut rounds: Vec<u32> = new.iter().map(|p| p.round).collect();
            rounds.dedup();
            for p in &new {
                with_tx!(tx, conn => sqlx::query(
                    "INSERT INTO pairings (tournament_id, round, idx, a, b, winner, created_at, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(t.id).bind(i32::try_from(p.round).unwrap_or(0)).bind(i32::try_from(p.index).unwrap_or(0))
                    .bind(p.a).bind(p.b).bind(p.winner).bind(now).bind(p.winner.map(|_| now))
                    .execute(conn).await.map(|_| ()))?;
                // The next-match call, to each online player of a match.
                if let Some(b) = p.b {
                    for (me, them) in [(p.a, b), (b, p.a)] {
                        if let Some(user) = user(me) {
                            publish(tx, format!("user:{user}"), json!({
                                "type": "tournament_match", "tournament_id": t.id, "round": p.round, "index": p.index,
                                "opponent": {"entrant_id": them, "alias": alias(them)},
                            })).await?;
                        }
                    }
                }
            }
            for round in rounds {
                // A round is "started" the first time it gets matches.
                if known.iter().any(|p| p.round == round) {
                    continue;
                }
                let pairings = new
                    .iter()
                    .filter(|p| p.round == round)
                    .map(|p| PairingEvent { index: p.index, a: p.a, b: p.b })
                    .collect();
                tx.record(&RoundStarted { tournament_id: t.id, round, pairings, started_at: now }).await?;
            }
        }
        Next::Finished(places) => {
            let standings: Vec<Standing> =
                places.iter().map(|&(e, place)| Standing { place, alias: alias(e), entrant_id: e }).collect();
            let json = serde_json::to_string(&standings).map_err(|e| sqlx::Error::Encode(e.into()))?;
            with_tx!(tx, conn => sqlx::query(
                "UPDATE tournaments SET status = 'finished', finished_at = $2, standings = $3 WHERE id = $1")
                .bind(t.id).bind(now).bind(json).execute(conn).await.map(|_| ()))?;
            tx.record(&TournamentFinished {
                tournament_id: t.id,
                name: t.name.clone(),
                format: t.format.as_str().to_owned(),
                kind: t.kind.as_str().to_owned(),
                standings,
                finished_at: now,
            })
            .await?;
        }
    }
    publish(tx, format!("tournament:{}", t.id), json!({"type": "tournament_updated", "tournament_id": t.id})).await?;
    Ok(())
}

async fn publish(tx: &mut Tx, channel: String, data: serde_json::Value) -> Result<(), sqlx::Error> {
    tx.record(&contracts::realtime::Publication { channel, data, skip_users: Vec::new(), ephemeral: false }).await
}
