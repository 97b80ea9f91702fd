//! Databases: SQLite or PostgreSQL, chosen by the URL scheme.
//!
//! A service's store is written once, with `$1` placeholders that both backends
//! accept, and runs on either pool through [`with_db!`]: the macro expands the
//! same body once per backend, so each query is type-checked against both.
//! Where the dialects differ, the store matches on [`Db`] explicitly.
//!
//! SQLite allows one writer at a time. Left to itself it makes concurrent
//! writers poll (its busy handler sleeps and retries), which is unfair: under
//! load some writers starve for seconds. So a SQLite [`Db`] has two pools: many
//! connections for reads, and one for writes, whose queue is first come, first
//! served. Stores run writes with `with_db!(write …)`; on PostgreSQL both forms
//! use the same pool.
//!
//! A change is a [`Tx`] ([`Db::begin`]): the statements, and the events they
//! cause recorded with [`Tx::record`] in the same transaction (the outbox).
//! An event takes the trace of the request or event being handled by itself,
//! and committing wakes the outbox relay, so nothing above the store passes
//! trace context or signals anything by hand.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use contracts::{Envelope, Event};

use crate::bus::OutboxSignal;
use crate::config::DbSettings;

/// A connection pool on one of the supported backends.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

/// SQLite's pools: reads on many connections, writes on one.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pub read: SqlitePool,
    pub write: SqlitePool,
    outbox: OutboxSignal,
}

/// PostgreSQL's pool.
#[derive(Debug, Clone)]
pub struct PgDb {
    pub pool: PgPool,
    outbox: OutboxSignal,
}

/// Which backend a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The name OpenTelemetry's conventions give the database system.
    pub fn system(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// Pool usage, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub open: u32,
    pub idle: usize,
    pub max: u32,
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`: the read pool,
/// or with `write`, the pool for statements that change data.
///
/// ```ignore
/// let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await)?;
/// with_db!(write &self.db, pool => sqlx::query("DELETE FROM sessions").execute(pool).await.map(|_| ()))?;
/// ```
#[macro_export]
macro_rules! with_db {
    (write $db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.write;
                $crate::db::traced($crate::db::Backend::Sqlite, async { $body }).await
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = &pg.pool;
                $crate::db::traced($crate::db::Backend::Postgres, async { $body }).await
            }
        }
    };
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.read;
                $crate::db::traced($crate::db::Backend::Sqlite, async { $body }).await
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = &pg.pool;
                $crate::db::traced($crate::db::Backend::Postgres, async { $body }).await
            }
        }
    };
}

/// Runs a database call in a span of its own (exported as a client span of
/// the database when traces are on), named for the call site. Calls made
/// outside any span — the relay's and consumers' polling — get none, so idle
/// loops do not fill a trace store.
#[doc(hidden)]
#[track_caller]
pub fn traced<F: std::future::Future>(backend: Backend, call: F) -> tracing::instrument::Instrumented<F> {
    use tracing::Instrument;
    let span = if crate::telemetry::exporting() && !tracing::Span::current().is_none() {
        let at = std::panic::Location::caller();
        let span = tracing::debug_span!(
            "db",
            db.system.name = backend.system(),
            code.file.path = at.file(),
            code.line.number = at.line()
        );
        crate::telemetry::describe(&span, || format!("{} {}:{}", backend.system(), at.file(), at.line()), Vec::new);
        span
    } else {
        tracing::Span::none()
    };
    call.instrument(span)
}

/// A set of migrations, one list per backend, embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// `(version, description, sql)`, ascending.
    pub sqlite: &'static [(i64, &'static str, &'static str)],
    pub postgres: &'static [(i64, &'static str, &'static str)],
    /// The table recording which ran. A service's own migrations use
    /// [`SERVICE_MIGRATIONS_TABLE`]; kit's (the bus tables) keep their own, so
    /// the two sets are versioned independently in the same database.
    pub table: &'static str,
}

/// Where a service's own migrations are recorded.
pub const SERVICE_MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Errors opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected sqlite:… or postgres://…)")]
    UnsupportedUrl,
    #[error("could not connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not apply migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl Db {
    /// Opens a pool on `url` (`sqlite:path`, `sqlite://path`, `postgres://…`).
    ///
    /// SQLite gets WAL, a busy timeout, foreign keys and `synchronous=FULL`, so a
    /// write acknowledged to a client survives a crash of the machine, not only
    /// of the process.
    pub async fn connect(url: &str, settings: &DbSettings) -> Result<Self, DbError> {
        let acquire = Duration::from_millis(settings.acquire_timeout_ms);
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(settings.sqlite_busy_timeout_ms));
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| DbError::Connect(sqlx::Error::Io(e)))?;
            }
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire)
                .connect_with(options.clone())
                .await
                .map_err(DbError::Connect)?;
            let read = SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(acquire)
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Sqlite(SqliteDb { read, write, outbox: OutboxSignal::default() }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(DbError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(acquire)
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Postgres(PgDb { pool, outbox: OutboxSignal::default() }))
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    /// The URL of a SQLite file.
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}", path.display())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the migrations for this backend that have not run yet.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        let list = match self {
            Db::Sqlite(_) => migrations.sqlite,
            Db::Postgres(_) => migrations.postgres,
        };
        let mut migrator = Migrator::with_migrations(
            list.iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(*sql),
                        false,
                    )
                })
                .collect(),
        );
        migrator.dangerous_set_table_name(migrations.table);
        with_db!(write self, pool => migrator.run(pool).await).map_err(DbError::Migrate)
    }

    /// Begins a change: a write transaction (on SQLite, on the writer
    /// connection, taking the write lock at once) that may record events.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let conn = match self {
            Db::Sqlite(s) => TxConn::Sqlite(s.write.begin_write().await?),
            Db::Postgres(p) => TxConn::Postgres(p.pool.begin_write().await?),
        };
        Ok(Tx { conn, outbox: self.outbox_signal(), recorded: false })
    }

    /// Wakes this database's outbox relay; [`Tx::commit`] rings it after a
    /// change that recorded events.
    pub fn outbox_signal(&self) -> OutboxSignal {
        match self {
            Db::Sqlite(s) => s.outbox.clone(),
            Db::Postgres(p) => p.outbox.clone(),
        }
    }

    /// The PostgreSQL pool, on that backend.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(&p.pool),
            Db::Sqlite(_) => None,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// Pool usage; for SQLite, the read and write pools together.
    pub fn pool_stats(&self) -> PoolStats {
        fn stats<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStats {
            PoolStats { open: pool.size(), idle: pool.num_idle(), max: pool.options().get_max_connections() }
        }
        match self {
            Db::Sqlite(s) => {
                let (r, w) = (stats(&s.read), stats(&s.write));
                PoolStats { open: r.open + w.open, idle: r.idle + w.idle, max: r.max + w.max }
            }
            Db::Postgres(p) => stats(&p.pool),
        }
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(s) => {
                s.write.close().await;
                s.read.close().await;
            }
            Db::Postgres(p) => p.pool.close().await,
        }
    }
}

/// Whether `err` means the database is saturated (no connection became free in
/// time): answer 503 and let the client retry, rather than 500.
pub fn is_overloaded(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::PoolTimedOut)
}

/// Whether `err` is a unique-constraint violation (on either backend).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Starting a transaction that will write.
///
/// On SQLite a write transaction must take the write lock when it begins
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes can
/// fail with `SQLITE_BUSY` without waiting for the busy timeout when another
/// writer got there first. PostgreSQL needs nothing special.
pub trait BeginWrite {
    type Database: sqlx::Database;

    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// A change in progress: a write transaction on either backend, and the
/// events it records. Run statements in it with [`with_tx!`](crate::with_tx);
/// record events with [`Tx::record`]; [`Tx::commit`] makes both durable at
/// once and wakes the relay. Dropped without a commit, it rolls back.
pub struct Tx {
    #[doc(hidden)]
    pub conn: TxConn,
    outbox: OutboxSignal,
    recorded: bool,
}

/// The transaction of a [`Tx`], per backend (for [`with_tx!`](crate::with_tx)).
#[doc(hidden)]
pub enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("backend", &self.backend()).field("recorded", &self.recorded).finish()
    }
}

impl Tx {
    /// Records `event` in the outbox, in this transaction. Its `traceparent`
    /// is the current request's or event's ([`crate::scope`]).
    pub async fn record<E: Event>(&mut self, event: &E) -> Result<(), sqlx::Error> {
        self.record_envelope(&Envelope::new(event, crate::scope::traceparent())).await
    }

    /// Records an envelope built elsewhere (a replayed or forwarded event).
    pub async fn record_envelope(&mut self, envelope: &Envelope) -> Result<(), sqlx::Error> {
        crate::with_tx!(self, conn => crate::outbox_append!(conn, envelope).map(|_| ()))?;
        self.recorded = true;
        Ok(())
    }

    /// Commits the change and its events; wakes the relay when there are
    /// events, so they leave at once rather than at its next poll.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await?,
            TxConn::Postgres(t) => t.commit().await?,
        }
        if self.recorded {
            self.outbox.notify();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Sqlite(t) => t.rollback().await,
            TxConn::Postgres(t) => t.rollback().await,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            TxConn::Sqlite(_) => Backend::Sqlite,
            TxConn::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Runs `$body` with `$conn` bound to the connection of the transaction `$tx`
/// (a `&mut Tx`), once per backend like [`with_db!`].
///
/// ```ignore
/// with_tx!(tx, conn => sqlx::query("INSERT INTO profiles (id) VALUES ($1)").bind(id).execute(conn).await.map(|_| ()))?;
/// ```
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut ($tx).conn {
            $crate::db::TxConn::Sqlite(t) => {
                let $conn = &mut **t;
                $crate::db::traced($crate::db::Backend::Sqlite, async { $body }).await
            }
            $crate::db::TxConn::Postgres(t) => {
                let $conn = &mut **t;
                $crate::db::traced($crate::db::Backend::Postgres, async { $body }).await
            }
        }
    };
}
