//! The bus tables in a service's own database: outbox, inbox, dead letters.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::db::{Db, Migrations, Tx};
use crate::{with_db, with_tx};

/// Creates the outbox, inbox and dead-letter tables; run by every service that
/// publishes or consumes events, beside its own migrations.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "bus", include_str!("../../migrations/bus/sqlite/0001_bus.sql"))],
    postgres: &[(1, "bus", include_str!("../../migrations/bus/postgres/0001_bus.sql"))],
    table: "_panal_bus_migrations",
};

/// An unpublished outbox row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub payload: String,
}

/// The oldest unpublished events, in the order they were committed.
pub async fn unpublished(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows: Vec<(i64, String)> = with_db!(db, pool => sqlx::query_as(
        "SELECT seq, payload FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows.into_iter().map(|(seq, payload)| OutboxRow { seq, payload }).collect())
}

/// Marks every unpublished row up to `seq` as handed to the broker.
pub async fn mark_published(db: &Db, up_to_seq: i64, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    with_db!(write db, pool => sqlx::query(
        "UPDATE outbox SET published_at = $1 WHERE seq <= $2 AND published_at IS NULL",
    )
    .bind(now)
    .bind(up_to_seq)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))
}

/// Deletes published rows older than `before`.
pub async fn prune_published(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    with_db!(write db, pool => sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
        .bind(before)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// What the bus tables say about a service's bus, for its metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusHealth {
    /// Events waiting in the outbox.
    pub backlog: i64,
    /// When the oldest of them was committed.
    pub oldest: Option<DateTime<Utc>>,
    /// Deliveries its consumer gave up on.
    pub dead_letters: i64,
}

/// The outbox backlog and dead letters, in two small queries.
pub async fn health(db: &Db) -> Result<BusHealth, sqlx::Error> {
    let (backlog, oldest): (i64, Option<DateTime<Utc>>) = with_db!(db, pool => sqlx::query_as(
        "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await)?;
    let dead_letters: i64 =
        with_db!(db, pool => sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(pool).await)?;
    Ok(BusHealth { backlog, oldest, dead_letters })
}

/// How many events wait in the outbox.
pub async fn outbox_backlog(db: &Db) -> Result<i64, sqlx::Error> {
    with_db!(db, pool => sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(pool).await)
}

/// Records `event_id` as applied by `consumer`, in the handler's transaction.
/// Returns `false` when it already was: the event is a duplicate.
pub async fn inbox_claim(
    tx: &mut Tx,
    consumer: &str,
    event_id: &str,
    event_type: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = with_tx!(tx, conn => sqlx::query(
        "INSERT INTO inbox (consumer, event_id, event_type, applied_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(event_type)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(inserted == 1)
}

/// Deletes inbox records older than `before`. Redeliveries come within minutes,
/// so records need not be kept for ever.
pub async fn prune_inbox(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    with_db!(write db, pool => sqlx::query("DELETE FROM inbox WHERE applied_at < $1")
        .bind(before)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// An event a consumer gave up on.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub consumer: String,
    pub event_id: Option<String>,
    pub event_type: String,
    /// The message as it arrived (CloudEvents JSON, or whatever could not be parsed).
    pub payload: String,
    /// The last error.
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

type DeadLetterRow = (Uuid, String, Option<String>, String, String, String, i32, DateTime<Utc>, DateTime<Utc>);

fn dead_letter_from(r: DeadLetterRow) -> DeadLetter {
    let (id, consumer, event_id, event_type, payload, error, attempts, first_failed_at, last_failed_at) = r;
    DeadLetter { id, consumer, event_id, event_type, payload, error, attempts, first_failed_at, last_failed_at }
}

const DEAD_LETTER_COLUMNS: &str =
    "id, consumer, event_id, event_type, payload, error, attempts, first_failed_at, last_failed_at";

pub async fn insert_dead_letter(db: &Db, d: &DeadLetter) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    insert_dead_letter_in(&mut tx, d).await?;
    tx.commit().await
}

/// Records a dead letter in the transaction of the change that gave up
/// (notify's sender fails a delivery and leaves its letter at once).
pub async fn insert_dead_letter_in(tx: &mut Tx, d: &DeadLetter) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO dead_letters (id, consumer, event_id, event_type, payload, error, attempts, first_failed_at, last_failed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(d.id)
    .bind(&d.consumer)
    .bind(d.event_id.as_deref())
    .bind(&d.event_type)
    .bind(&d.payload)
    .bind(&d.error)
    .bind(d.attempts)
    .bind(d.first_failed_at)
    .bind(d.last_failed_at)
    .execute(conn)
    .await
    .map(|_| ()))
}

/// Dead letters, oldest first.
pub async fn dead_letters(db: &Db) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows: Vec<DeadLetterRow> = with_db!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY first_failed_at, id"
    )))
    .fetch_all(pool)
    .await)?;
    Ok(rows.into_iter().map(dead_letter_from).collect())
}

pub async fn dead_letter(db: &Db, id: Uuid) -> Result<Option<DeadLetter>, sqlx::Error> {
    let row: Option<DeadLetterRow> = with_db!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await)?;
    Ok(row.map(dead_letter_from))
}

/// Removes a dead letter in the transaction that replayed it.
pub async fn delete_dead_letter(tx: &mut Tx, id: Uuid) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(conn).await.map(|_| ()))
}

/// Records a failed replay.
pub async fn dead_letter_failed_again(db: &Db, id: Uuid, error: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_db!(write db, pool => sqlx::query(
        "UPDATE dead_letters SET error = $1, attempts = attempts + 1, last_failed_at = $2 WHERE id = $3",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// Forgets what the bus tables hold about `id` (an erased user): sent outbox
/// rows and dead letters whose subject names it, alone or in a pair
/// (`<id>:<id>`, as friendships are keyed). Unsent rows stay: they still have
/// to reach their consumers.
pub async fn forget_subject(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    let id = id.replace(['%', '_', '\\'], "");
    if id.is_empty() {
        // `%%` would match every row.
        return Ok(());
    }
    with_tx!(tx, conn => sqlx::query("DELETE FROM outbox WHERE aggregate_id LIKE $1 AND published_at IS NOT NULL")
        .bind(format!("%{id}%"))
        .execute(conn)
        .await
        .map(|_| ()))?;
    // Dead letters keep the whole message, whose JSON names the subject.
    with_tx!(tx, conn => sqlx::query("DELETE FROM dead_letters WHERE payload LIKE $1")
        .bind(format!("%\"subject\":\"%{id}%"))
        .execute(conn)
        .await
        .map(|_| ()))
}
