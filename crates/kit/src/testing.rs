//! Test helpers: a fresh database per test and services on port 0.
//!
//! PostgreSQL tests run when `PANAL_TEST_POSTGRES_URL` points at a server whose
//! user may create databases; each test gets a brand-new database, dropped
//! afterwards. Without the variable they are skipped with a message on stderr.
//! With it set and the server unreachable they fail: CI sets it.

// Test helpers fail the test by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSettings;
use crate::http::Server;

/// The variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES_ENV: &str = "PANAL_TEST_POSTGRES_URL";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDb {
    /// A new SQLite file in the temporary directory.
    pub async fn sqlite() -> Self {
        crate::install_crypto();
        let path = std::env::temp_dir().join(format!("panal-test-{}.db", uuid::Uuid::new_v4().simple()));
        Self { url: crate::db::Db::sqlite_url(&path), cleanup: Cleanup::File(path) }
    }

    /// A new PostgreSQL database, or `None` (with a message) when
    /// `PANAL_TEST_POSTGRES_URL` is not set.
    pub async fn postgres() -> Option<Self> {
        crate::install_crypto();
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            // Written straight to the stream: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (PostgreSQL): set {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/postgres to run the PostgreSQL variant"
            );
            return None;
        };
        let name = format!("panal_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self { url, cleanup: Cleanup::Database { admin_url, name } })
    }
}

impl TestDb {
    /// Another fresh database on the same backend (for a second service).
    pub async fn another(&self) -> Self {
        match &self.cleanup {
            Cleanup::File(_) => Self::sqlite().await,
            Cleanup::Database { .. } => Self::postgres().await.expect("PostgreSQL was available a moment ago"),
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let authority = host_and_path.split('/').next().unwrap_or(host_and_path);
    let mut out = format!("{}{}/{}", &base[..scheme_end], authority, name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                            let _ = conn.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A [`Context`](crate::Context) for one test: the given configuration and an
/// embedded bus in a temporary file, removed when this is dropped.
pub struct TestContext {
    pub ctx: crate::Context,
    path: PathBuf,
}

impl TestContext {
    pub async fn new(config: crate::config::Config) -> Self {
        crate::install_crypto();
        let path = std::env::temp_dir().join(format!("panal-test-bus-{}.db", uuid::Uuid::new_v4().simple()));
        let bus = crate::bus::embedded::Embedded::open(&path).await.expect("open the embedded bus");
        Self { ctx: crate::Context { config, bus: std::sync::Arc::new(bus), peers: Default::default() }, path }
    }

    /// Tells services where `service` answers.
    pub fn with_service(self, service: &dyn crate::service::Mount, url: String) -> Self {
        self.with_peer(crate::service::Peer::of(service, url))
    }

    /// Tells services where `peer` answers, and what it declared.
    pub fn with_peer(mut self, peer: crate::service::Peer) -> Self {
        let mut peers = (*self.ctx.peers).clone();
        peers.retain(|p| p.name != peer.name);
        peers.push(peer);
        self.ctx.peers = std::sync::Arc::new(peers);
        self
    }

    /// The context with the default configuration.
    pub async fn default_config() -> Self {
        Self::new(crate::config::Config::from_toml("").expect("default configuration")).await
    }
}

impl std::ops::Deref for TestContext {
    type Target = crate::Context;
    fn deref(&self) -> &crate::Context {
        &self.ctx
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Builds `S` as kit does for `panal` (migrations, verifier, relay,
/// consumer), on `db` when it has a database.
pub async fn server<S: crate::Service>(ctx: &crate::Context, db: Option<crate::db::Db>) -> Server {
    match crate::service::build::<S>(ctx, db).await {
        Ok((server, _)) => server,
        Err(e) => panic!("building {}: {e:#}", S::NAME),
    }
}

/// A service running on a port of its own for one test.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves `service` on 127.0.0.1 port 0.
    pub async fn spawn(service: Server, settings: HttpSettings) -> Self {
        crate::install_crypto();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { crate::http::serve(listener, service, &settings, token).await });
        Self { addr, shutdown, handle: Some(handle) }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down gracefully and waits until the server has stopped.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }
}

/// Defines each test twice, `<name>::sqlite` and `<name>::postgres`, with `$db`
/// bound to a fresh [`TestDb`] of that backend.
///
/// ```ignore
/// kit::backend_tests! {
///     async fn register_then_login(db) { let app = spawn_app(&db).await; ... }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::testing::TestDb::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($db) = $crate::testing::TestDb::postgres().await else { return };
                $body
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
