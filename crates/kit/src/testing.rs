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
    /// The data directory made for the test, removed with it.
    data_dir: Option<PathBuf>,
}

impl TestContext {
    pub async fn new(mut config: crate::config::Config) -> Self {
        crate::install_crypto();
        let id = uuid::Uuid::new_v4().simple();
        let path = std::env::temp_dir().join(format!("panal-test-bus-{id}.db"));
        // What services keep on disk (mail written without SMTP, local
        // avatars) goes to a directory of the test's, not the crate's.
        let data_dir = (config.settings.data_dir == std::path::Path::new("./data"))
            .then(|| std::env::temp_dir().join(format!("panal-test-data-{id}")));
        if let Some(dir) = &data_dir {
            config.settings.data_dir = dir.clone();
        }
        let bus = crate::bus::embedded::Embedded::open(&path).await.expect("open the embedded bus");
        Self {
            ctx: crate::Context { config, bus: std::sync::Arc::new(bus), peers: Default::default() },
            path,
            data_dir,
        }
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
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
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

/// Sends a request as raw bytes — `head` (with its blank line), then `body`,
/// whose write the server may cut short — and returns the status and the
/// text of what the server answered (its first read). For answers a server
/// gives before it has read the whole body (413): HTTP clients differ on
/// those, some failing with a broken pipe while still writing.
pub async fn raw_answer(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write the head");
    let _ = stream.write_all(body).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, text)
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        Self::spawn_on(listener, service, settings).await
    }

    /// Serves `service` on a listener bound beforehand: for a service that
    /// must be told its own address (game's `advertise_url`).
    pub async fn spawn_on(listener: tokio::net::TcpListener, service: Server, settings: HttpSettings) -> Self {
        crate::install_crypto();
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

/// Signs access tokens for a test and serves their public key as a JWKS on
/// port 0, in auth's place: a service under test verifies its tokens exactly
/// as it verifies auth's (fetching the key over HTTP), and a test gets a user
/// or an administrator without an auth process or an Argon2 hash.
/// [`TestContext::with_issuer`] points the services at it.
pub struct TestIssuer {
    url: String,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    issuer: String,
    audience: String,
    server: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    /// A fresh Ed25519 key, published at `<url>/.well-known/jwks.json`;
    /// tokens carry `config`'s issuer and audience.
    pub async fn start(config: &crate::config::Config) -> Self {
        use base64::Engine;
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let der = signing.to_pkcs8_der().expect("encode the test signing key");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let kid = format!("test-{}", uuid::Uuid::new_v4().simple());
        let jwks = crate::auth::Jwks {
            keys: vec![crate::auth::Jwk {
                kty: "OKP".to_owned(),
                crv: Some("Ed25519".to_owned()),
                x: Some(x),
                n: None,
                e: None,
                kid: kid.clone(),
                alg: Some("EdDSA".to_owned()),
                use_: Some("sig".to_owned()),
            }],
        };
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(move || async move { axum::Json(jwks) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test issuer");
        let addr = listener.local_addr().expect("the test issuer's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            kid,
            key: jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
            issuer: config.issuer(),
            audience: config.settings.tokens.audience.clone(),
            server,
        }
    }

    /// Where its JWKS is served (as auth's would be).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The claims of a fresh five-minute token for `user` with `roles`
    /// (`user` is always among them), to adjust before [`sign`](Self::sign).
    pub fn claims(&self, user: uuid::Uuid, roles: &[&str]) -> crate::auth::AccessClaims {
        let now = chrono::Utc::now().timestamp();
        let mut roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        if !roles.iter().any(|r| r == "user") {
            roles.push("user".to_owned());
        }
        crate::auth::AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            sid: Some(uuid::Uuid::now_v7()),
            exp: now + 300,
            iat: now,
            jti: uuid::Uuid::now_v7(),
            roles,
            client_id: Some("panal".to_owned()),
            scope: None,
        }
    }

    pub fn sign(&self, claims: &crate::auth::AccessClaims) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(crate::auth::ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign a test token")
    }

    /// A token for `user` with `roles`.
    pub fn token(&self, user: uuid::Uuid, roles: &[&str]) -> String {
        self.sign(&self.claims(user, roles))
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestContext {
    /// Services verify tokens with `issuer`'s key, as if it were auth.
    pub fn with_issuer(self, issuer: &TestIssuer) -> Self {
        self.with_peer(crate::service::Peer::at("auth", issuer.url()))
    }

    /// Publishes `event` on the test's bus, as the service that owns it would:
    /// the way to feed a service under test the events of services that are
    /// not running.
    pub async fn publish<E: contracts::Event>(&self, event: &E) {
        self.publish_envelope(&contracts::Envelope::new(event, None)).await;
    }

    /// Publishes an envelope as it is: the same one twice is a redelivery
    /// (same event id), as a broker makes after a lost acknowledgement.
    pub async fn publish_envelope(&self, envelope: &contracts::Envelope) {
        let sent = self.bus.publish(std::slice::from_ref(envelope)).await.expect("publish on the test bus");
        assert_eq!(sent, 1, "the test bus did not take {}", envelope.kind);
    }

    /// Starts watching the bus for events of type `E`: every one published
    /// from now on (by a service's relay, say) can be read with
    /// [`Published::next`].
    pub async fn watch<E: contracts::Event>(&self) -> Published<E> {
        let consumer = format!("test-watch-{}", uuid::Uuid::new_v4().simple());
        let deliveries = self.bus.subscribe(&consumer, &[E::TYPE.to_owned()]).await.expect("subscribe on the test bus");
        Published { deliveries, kind: std::marker::PhantomData }
    }
}

/// Events of one type published on a test's bus ([`TestContext::watch`]).
pub struct Published<E> {
    deliveries: crate::bus::Deliveries,
    kind: std::marker::PhantomData<E>,
}

impl<E: contracts::Event> Published<E> {
    /// The next event and its envelope; fails the test after 10 seconds.
    pub async fn next(&mut self) -> (contracts::Envelope, E) {
        use futures_util::StreamExt;
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), self.deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("no {} was published within 10 s", E::TYPE))
            .expect("the test bus ended")
            .expect("a delivery from the test bus");
        let envelope: contracts::Envelope = serde_json::from_slice(&delivery.payload).expect("a CloudEvents envelope");
        let event = serde_json::from_value(envelope.data.clone()).expect("the event's data");
        delivery.ack().await.expect("acknowledge the delivery");
        (envelope, event)
    }
}

/// Asserts that `response` is a problem document (RFC 9457, served as
/// `application/problem+json`) and returns it.
pub async fn problem(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.text().await.expect("the problem's body");
    assert_eq!(content_type, "application/problem+json", "status {status}, body {body}");
    serde_json::from_str(&body).expect("a JSON problem document")
}

/// Asserts that `response` is a problem document with `status` and, when
/// given, the problem type `urn:panal:problem:<kind>`; returns the document.
pub async fn assert_problem(response: reqwest::Response, status: u16, kind: Option<&str>) -> serde_json::Value {
    let got = response.status().as_u16();
    let problem = problem(response).await;
    assert_eq!(got, status, "status (document: {problem})");
    assert_eq!(problem["status"], status, "the document's status: {problem}");
    if let Some(kind) = kind {
        assert_eq!(problem["type"], format!("urn:panal:problem:{kind}"), "problem type: {problem}");
    }
    problem
}

/// A real SMTP server for a test: aiosmtpd (from PyPI) on 127.0.0.1, each
/// message a file of a Maildir. `PANAL_TEST_SMTP=1` (CI) makes a missing
/// aiosmtpd a failure; without it, [`Smtpd::start`] says SKIPPED and gives
/// `None`. Stopped (and its Maildir removed) when dropped.
pub struct Smtpd {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Smtpd {
    pub fn start() -> Option<Smtpd> {
        use std::process::{Command, Stdio};
        let required = std::env::var("PANAL_TEST_SMTP").is_ok_and(|v| v == "1");
        let has = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            assert!(!required, "PANAL_TEST_SMTP=1 but `python3 -c 'import aiosmtpd'` fails (pip install aiosmtpd)");
            // Written straight to the stream: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (SMTP): pip install aiosmtpd to run it; PANAL_TEST_SMTP=1 requires it"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = std::env::temp_dir().join(format!("panal-smtp-{}", uuid::Uuid::new_v4().simple()));
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Smtpd { child, port, dir })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message it accepted so far, as raw text.
    pub fn delivered(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("new"))
            .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
            .unwrap_or_default()
    }
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
