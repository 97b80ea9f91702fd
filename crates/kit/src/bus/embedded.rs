//! The embedded broker: a durable event log in a SQLite file, for `panal up`.
//!
//! Publishing appends to `events` (ignoring an id already there, so a
//! republished event is stored once). Each durable consumer has a cursor:
//! everything at or below it is acknowledged. A dispatcher per consumer reads
//! past the cursor in order, hands events out (up to a window), and moves the
//! cursor when the oldest outstanding event is acknowledged. After a crash the
//! consumer resumes at its cursor, so unacknowledged events come again and the
//! consumer's inbox drops the ones it had already applied.
//!
//! One process owns a `bus.db`; other processes may read it (`panal events
//! tail`) but competing consumers across processes need NATS or RabbitMQ.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use contracts::Envelope;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use tokio::sync::{Notify, mpsc};

use super::{Acker, Broker, BusError, Deliveries, Delivery};
use crate::config::DbSettings;
use crate::db::{Db, Migrations};
use crate::with_db;

const BACKEND: &str = "embedded";

/// Most events handed out to one consumer and not yet acknowledged.
const WINDOW: usize = 256;
/// How often dispatchers look for events published by another process.
const POLL: Duration = Duration::from_millis(250);
/// How long a negatively acknowledged event waits before it is handed out again.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

const MIGRATIONS: Migrations = Migrations {
    sqlite: &[(1, "log", include_str!("../../migrations/embedded-bus/0001_log.sql"))],
    postgres: &[],
    table: "_panal_bus_migrations",
};

fn err(e: impl std::fmt::Display) -> BusError {
    BusError::new(BACKEND, e)
}

/// The embedded broker.
pub struct Embedded {
    db: Db,
    published: Arc<Notify>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// When old events were last pruned.
    pruned: Mutex<Option<std::time::Instant>>,
}

/// How long the log keeps events (like the NATS stream): a consumer away
/// longer misses them, and personal data in payloads does not stay for ever.
const RETENTION: chrono::Duration = chrono::Duration::days(7);

/// The subscribers of one durable consumer in this process: they compete for
/// its deliveries.
struct Group {
    deliveries: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
}

impl Embedded {
    /// Opens (creating if needed) the log at `path`.
    pub async fn open(path: &Path) -> Result<Self, BusError> {
        Self::open_url(&Db::sqlite_url(path)).await
    }

    pub async fn open_url(url: &str) -> Result<Self, BusError> {
        let db = Db::connect(url, &DbSettings::default()).await.map_err(err)?;
        db.migrate(&MIGRATIONS).await.map_err(err)?;
        Ok(Self {
            db,
            published: Arc::new(Notify::new()),
            groups: Mutex::new(HashMap::new()),
            pruned: Mutex::new(None),
        })
    }

    /// The number of events in the log (for tests and `panal events`).
    pub async fn event_count(&self) -> Result<i64, BusError> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await).map_err(err)
    }

    /// Deletes events older than the retention, at most every ten minutes.
    async fn prune_now_and_then(&self) {
        let due = match self.pruned.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(600));
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due {
            let before = Utc::now() - RETENTION;
            let result = with_db!(write &self.db, pool => sqlx::query("DELETE FROM events WHERE published_at < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()));
            match result {
                Ok(n) if n > 0 => tracing::info!(events = n, "embedded bus: pruned events past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "embedded bus: pruning failed"),
            }
        }
    }

    async fn group(&self, consumer: &str, types: &[String]) -> Result<Arc<Group>, BusError> {
        if let Some(g) = self.groups.lock().map_err(err)?.get(consumer) {
            return Ok(g.clone());
        }
        let types_json = serde_json::to_string(types).map_err(err)?;
        let cursor: i64 = with_db!(write &self.db, pool => sqlx::query_scalar(
            "INSERT INTO consumers (name, types, cursor, created_at) VALUES ($1, $2, 0, $3)
             ON CONFLICT (name) DO UPDATE SET types = excluded.types
             RETURNING cursor",
        )
        .bind(consumer)
        .bind(&types_json)
        .bind(Utc::now())
        .fetch_one(pool)
        .await)
        .map_err(err)?;

        let (tx, rx) = mpsc::channel(WINDOW);
        let group = Arc::new(Group { deliveries: tokio::sync::Mutex::new(rx) });
        let mut groups = self.groups.lock().map_err(err)?;
        if let Some(g) = groups.get(consumer) {
            return Ok(g.clone());
        }
        groups.insert(consumer.to_owned(), group.clone());
        let dispatcher = Dispatcher {
            db: self.db.clone(),
            consumer: consumer.to_owned(),
            types: types.to_vec(),
            cursor,
            fetched: cursor,
            outstanding: BTreeSet::new(),
            redeliver: VecDeque::new(),
            published: self.published.clone(),
            out: tx,
        };
        tokio::spawn(dispatcher.run());
        Ok(group)
    }
}

/// What a subscriber reports back about one event.
enum Settle {
    Ack(i64),
    Nack(i64),
}

struct EmbeddedAcker {
    seq: i64,
    settle: mpsc::UnboundedSender<Settle>,
}

impl Acker for EmbeddedAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        let sent = self.settle.send(Settle::Ack(self.seq)).map_err(|_| err("the consumer has stopped"));
        Box::pin(async move { sent })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        let sent = self.settle.send(Settle::Nack(self.seq)).map_err(|_| err("the consumer has stopped"));
        Box::pin(async move { sent })
    }
}

struct Dispatcher {
    db: Db,
    consumer: String,
    types: Vec<String>,
    /// Everything at or below is acknowledged (and persisted).
    cursor: i64,
    /// The highest sequence read from the log.
    fetched: i64,
    /// Handed out, not yet acknowledged.
    outstanding: BTreeSet<i64>,
    /// Negatively acknowledged: hand out again after a delay.
    redeliver: VecDeque<(tokio::time::Instant, i64)>,
    published: Arc<Notify>,
    out: mpsc::Sender<Delivery>,
}

type EventRow = (i64, String, Vec<u8>);

impl Dispatcher {
    async fn run(mut self) {
        let (settle_tx, mut settle_rx) = mpsc::unbounded_channel();
        loop {
            // Fill the window with new events, then settle and wait.
            let mut sent_any = false;
            if self.outstanding.len() < WINDOW {
                match self.fetch(WINDOW - self.outstanding.len()).await {
                    Ok(rows) => {
                        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
                        let counts = self.count_deliveries(&seqs).await.unwrap_or_default();
                        for (seq, kind, payload) in rows {
                            sent_any = true;
                            self.fetched = seq;
                            let count = counts.get(&seq).copied().unwrap_or(1);
                            if !self.send(seq, kind, payload, count, &settle_tx).await {
                                return self.stop().await;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(consumer = %self.consumer, error = %e, "embedded bus: reading the log failed")
                    }
                }
            }
            let now = tokio::time::Instant::now();
            while self.redeliver.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, seq)) = self.redeliver.pop_front() {
                    match self.load(seq).await {
                        Ok(Some((seq, kind, payload))) => {
                            let count = self.count_deliveries(&[seq]).await.unwrap_or_default();
                            let count = count.get(&seq).copied().unwrap_or(1);
                            if !self.send(seq, kind, payload, count, &settle_tx).await {
                                return self.stop().await;
                            }
                        }
                        Ok(None) => {
                            self.outstanding.remove(&seq);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "embedded bus: reading an event to redeliver failed");
                            self.redeliver.push_back((now + REDELIVERY_DELAY, seq));
                        }
                    }
                }
            }
            if sent_any {
                continue;
            }
            let next_redelivery = self.redeliver.front().map(|(at, _)| *at);
            tokio::select! {
                Some(s) = settle_rx.recv() => {
                    self.settle(s);
                    // Settle everything already waiting before touching the database.
                    while let Ok(s) = settle_rx.try_recv() {
                        self.settle(s);
                    }
                    self.persist_cursor().await;
                }
                () = self.published.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = async {
                    match next_redelivery {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                () = self.out.closed() => return self.stop().await,
            }
        }
    }

    fn settle(&mut self, s: Settle) {
        match s {
            Settle::Ack(seq) => {
                self.outstanding.remove(&seq);
            }
            Settle::Nack(seq) => {
                self.redeliver.push_back((tokio::time::Instant::now() + REDELIVERY_DELAY, seq));
            }
        }
    }

    /// Hands one event to the subscribers. Returns `false` when every
    /// subscriber has gone.
    async fn send(
        &mut self,
        seq: i64,
        kind: String,
        payload: Vec<u8>,
        count: u32,
        settle: &mpsc::UnboundedSender<Settle>,
    ) -> bool {
        self.outstanding.insert(seq);
        let acker = Box::new(EmbeddedAcker { seq, settle: settle.clone() });
        let delivery = Delivery::new(kind, Bytes::from(payload), count, acker);
        self.out.send(delivery).await.is_ok()
    }

    async fn fetch(&self, limit: usize) -> Result<Vec<EventRow>, sqlx::Error> {
        if self.types.is_empty() {
            return Ok(Vec::new());
        }
        // `types` are a handful of event names; bind them as a JSON array so the
        // statement is the same for any number of them.
        let types = serde_json::to_string(&self.types).unwrap_or_else(|_| "[]".to_owned());
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT seq, type, payload FROM events
             WHERE seq > $1 AND type IN (SELECT value FROM json_each($2))
             ORDER BY seq LIMIT $3",
        )
        .bind(self.fetched)
        .bind(types)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await)
    }

    async fn load(&self, seq: i64) -> Result<Option<EventRow>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as("SELECT seq, type, payload FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await)
    }

    /// Counts one more delivery of each of `seqs`, in one transaction.
    async fn count_deliveries(&self, seqs: &[i64]) -> Result<HashMap<i64, u32>, sqlx::Error> {
        let mut counts = HashMap::new();
        if seqs.is_empty() {
            return Ok(counts);
        }
        with_db!(write &self.db, pool => async {
            let mut tx = pool.begin().await?;
            for seq in seqs {
                let count: i64 = sqlx::query_scalar(
                    "INSERT INTO deliveries (consumer, seq, count) VALUES ($1, $2, 1)
                     ON CONFLICT (consumer, seq) DO UPDATE SET count = count + 1
                     RETURNING count",
                )
                .bind(&self.consumer)
                .bind(seq)
                .fetch_one(&mut *tx)
                .await?;
                counts.insert(*seq, u32::try_from(count).unwrap_or(u32::MAX));
            }
            tx.commit().await
        }.await)?;
        Ok(counts)
    }

    /// Moves the cursor to just below the oldest outstanding event.
    async fn persist_cursor(&mut self) {
        let cursor = self.outstanding.first().map_or(self.fetched, |oldest| oldest - 1);
        if cursor <= self.cursor {
            return;
        }
        let result: Result<(), sqlx::Error> = with_db!(write &self.db, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE consumers SET cursor = $1 WHERE name = $2")
                .bind(cursor)
                .bind(&self.consumer)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM deliveries WHERE consumer = $1 AND seq <= $2")
                .bind(&self.consumer)
                .bind(cursor)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }.await);
        match result {
            Ok(()) => self.cursor = cursor,
            Err(e) => tracing::warn!(consumer = %self.consumer, error = %e, "embedded bus: saving the cursor failed"),
        }
    }

    async fn stop(mut self) {
        self.persist_cursor().await;
    }
}

impl Broker for Embedded {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn publish<'a>(&'a self, events: &'a [Envelope]) -> BoxFuture<'a, Result<usize, BusError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(0);
            }
            let now = Utc::now();
            let result: Result<(), sqlx::Error> = with_db!(write &self.db, pool => async {
                let mut tx = pool.begin().await?;
                for event in events {
                    let payload = serde_json::to_vec(event).unwrap_or_default();
                    sqlx::query(
                        "INSERT INTO events (id, type, payload, published_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(event.id.to_string())
                    .bind(&event.kind)
                    .bind(payload)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }.await);
            result.map_err(err)?;
            self.published.notify_waiters();
            self.prune_now_and_then().await;
            Ok(events.len())
        })
    }

    fn subscribe<'a>(&'a self, consumer: &'a str, types: &'a [String]) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(async move {
            let group = self.group(consumer, types).await?;
            let deliveries: Deliveries = Box::pin(stream::unfold(group, |group| async move {
                let next = group.deliveries.lock().await.recv().await;
                next.map(|d| (Ok(d), group))
            }));
            Ok(deliveries)
        })
    }

    fn tail(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BusError>>, BusError>> {
        Box::pin(async move {
            let start: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(pool)
                .await)
            .map_err(err)?;
            let db = self.db.clone();
            let published = self.published.clone();
            let rows = stream::unfold((db, start, published), |(db, after, published)| async move {
                loop {
                    let rows: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> = with_db!(&db, pool => sqlx::query_as(
                        "SELECT seq, payload FROM events WHERE seq > $1 ORDER BY seq LIMIT 500",
                    )
                    .bind(after)
                    .fetch_all(pool)
                    .await);
                    match rows {
                        Ok(rows) if rows.is_empty() => {
                            tokio::select! {
                                () = published.notified() => {}
                                () = tokio::time::sleep(POLL) => {}
                            }
                        }
                        Ok(rows) => {
                            let next = rows.last().map_or(after, |r| r.0);
                            let items: Vec<Result<Bytes, BusError>> =
                                rows.into_iter().map(|(_, p)| Ok(Bytes::from(p))).collect();
                            return Some((stream::iter(items), (db, next, published)));
                        }
                        Err(e) => return Some((stream::iter(vec![Err(err(e))]), (db, after, published))),
                    }
                }
            });
            let flat: BoxStream<'static, Result<Bytes, BusError>> = Box::pin(futures_util::StreamExt::flatten(rows));
            Ok(flat)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.db.ping().await.map_err(err) })
    }

    fn remove_consumer<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            if let Ok(mut groups) = self.groups.lock() {
                groups.remove(consumer);
            }
            let result: Result<(), sqlx::Error> = with_db!(write &self.db, pool => async {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM consumers WHERE name = $1").bind(consumer).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM deliveries WHERE consumer = $1").bind(consumer).execute(&mut *tx).await?;
                tx.commit().await
            }.await);
            result.map_err(err)
        })
    }
}
