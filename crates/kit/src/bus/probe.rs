//! A handler that records every event it applies, with how long after the
//! event's creation it ran: for the conformance suite, the crash drills and
//! the bus benchmark (`panal dev bus-*`).

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use contracts::Envelope;

use super::{Consumer, ConsumerSettings, Handlers, Tx};
use crate::db::Db;
use crate::{with_db, with_tx};

/// The probe's table: one row per event, `times` counting how often its
/// effect was committed (exactly once means every row has 1), `position` the
/// order rows were first written in. SQLite has one writer, so `MAX + 1` is
/// unique there; PostgreSQL's concurrent lanes need a sequence.
const DDL_SQLITE: &str = "CREATE TABLE IF NOT EXISTS probe_applied (
    event_id    TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    n           BIGINT NOT NULL,
    times       BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    latency_us  BIGINT NOT NULL
)";
const DDL_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS probe_applied (
    event_id    TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    n           BIGINT NOT NULL,
    times       BIGINT NOT NULL,
    position    BIGSERIAL NOT NULL,
    latency_us  BIGINT NOT NULL
)";

/// Creates the bus tables and the probe's table in `db`.
pub async fn prepare(db: &Db) -> anyhow::Result<()> {
    db.migrate(&super::store::MIGRATIONS).await?;
    match db {
        Db::Sqlite(s) => sqlx::query(DDL_SQLITE).execute(&s.write).await.map(|_| ())?,
        Db::Postgres(p) => sqlx::query(DDL_POSTGRES).execute(&p.pool).await.map(|_| ())?,
    }
    // `record` reads MAX(position) on every insert.
    with_db!(write db, pool => sqlx::query("CREATE INDEX IF NOT EXISTS probe_applied_position ON probe_applied (position)")
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Records `envelope`. Fails while `poisoned` is set for events whose `n` is 13.
pub async fn record(tx: &mut Tx, envelope: &Envelope, poisoned: &AtomicBool) -> anyhow::Result<()> {
    let n = envelope.data["n"].as_i64().unwrap_or(0);
    if n == 13 && poisoned.load(Ordering::SeqCst) {
        anyhow::bail!("13 is unlucky");
    }
    let latency = (Utc::now() - envelope.time).num_microseconds().unwrap_or(i64::MAX);
    let sql = match tx.backend() {
        crate::db::Backend::Sqlite => {
            "INSERT INTO probe_applied (event_id, subject, n, times, position, latency_us)
             VALUES ($1, $2, $3, 1, (SELECT COALESCE(MAX(position), 0) + 1 FROM probe_applied), $4)
             ON CONFLICT (event_id) DO UPDATE SET times = probe_applied.times + 1"
        }
        crate::db::Backend::Postgres => {
            "INSERT INTO probe_applied (event_id, subject, n, times, latency_us)
             VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (event_id) DO UPDATE SET times = probe_applied.times + 1"
        }
    };
    with_tx!(tx, conn => sqlx::query(sql)
    .bind(envelope.id.to_string())
    .bind(&envelope.subject)
    .bind(n)
    .bind(latency)
    .execute(conn)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// A consumer named `name` applying `kinds` with [`record`].
pub fn consumer(
    name: &str,
    kinds: &[String],
    db: &Db,
    poisoned: std::sync::Arc<AtomicBool>,
    settings: ConsumerSettings,
) -> Consumer {
    let mut handlers = Handlers::new();
    for kind in kinds {
        let poisoned = poisoned.clone();
        handlers = handlers.on_envelope(kind.clone(), move |tx, envelope, _meta| {
            let poisoned = poisoned.clone();
            Box::pin(async move { record(tx, envelope, &poisoned).await })
        });
    }
    Consumer::new(name, db.clone(), handlers).with_settings(settings)
}

/// What the probe has applied: rows, and the most times any one was applied.
pub async fn applied(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    with_db!(db, pool => sqlx::query_as("SELECT count(*), COALESCE(MAX(times), 0) FROM probe_applied").fetch_one(pool).await)
}

/// The `n`s of `subject`, in the order they were applied.
pub async fn order_of(db: &Db, subject: &str) -> Result<Vec<i64>, sqlx::Error> {
    with_db!(db, pool => sqlx::query_scalar("SELECT n FROM probe_applied WHERE subject = $1 ORDER BY position")
        .bind(subject)
        .fetch_all(pool)
        .await)
}

/// How many events were applied, cheaply (for polling while events flow):
/// SQLite counts rows by scanning them, while its positions are dense.
pub async fn applied_count(db: &Db) -> Result<i64, sqlx::Error> {
    match db {
        Db::Sqlite(s) => {
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM probe_applied").fetch_one(&s.read).await
        }
        Db::Postgres(p) => sqlx::query_scalar("SELECT count(*) FROM probe_applied").fetch_one(&p.pool).await,
    }
}

/// Creation-to-handler latencies in microseconds, sorted.
pub async fn latencies(db: &Db) -> Result<Vec<i64>, sqlx::Error> {
    with_db!(db, pool => sqlx::query_scalar("SELECT latency_us FROM probe_applied ORDER BY latency_us").fetch_all(pool).await)
}
