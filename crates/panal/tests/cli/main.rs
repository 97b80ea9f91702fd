//! The `panal` binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ai;
mod bus;
mod contracts;
mod deploy;
mod docs;
mod game;
mod logs;
mod notify;
mod observability;
mod realtime;
mod schemathesis;
mod standards;
mod tournament;
mod traces;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const PANAL: &str = env!("CARGO_BIN_EXE_panal");
/// The drill and benchmark tools, a binary of their own.
pub(crate) const PANAL_DEV: &str = env!("CARGO_BIN_EXE_panal-dev");
const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("panal-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port offset under which every service's port (8000 to 8016 in the
/// catalog, offset) is free: `panal up` binds each service it mounts.
pub(crate) fn free_offset() -> u16 {
    for _ in 0..50 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if !(9000..=60000).contains(&port) {
            continue;
        }
        let offset = port - 8000;
        let ok = kit::catalog::SERVICES.iter().all(|s| TcpListener::bind(("127.0.0.1", s.port + offset)).is_ok());
        if ok {
            return offset;
        }
    }
    panic!("no free ports");
}

/// Whether a test that needs `what` (set up by `.ci/run`) is switched on by
/// `var`; says SKIPPED when it is not.
pub(crate) fn enabled(var: &str, what: &str) -> bool {
    if std::env::var(var).is_ok() {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED ({what}): set {var}=1 to run it");
    false
}

pub(crate) fn panal() -> Command {
    // Tests build HTTPS-capable clients; they need the crypto provider.
    kit::install_crypto();
    let mut cmd = Command::new(PANAL);
    // Tests must not pick up the developer's own configuration.
    cmd.env_remove("PANAL_DATABASE_URL")
        .env_remove("PANAL_CONFIG")
        .env("PANAL_LOG", "warn")
        .env("PANAL_LOG_FORMAT", "json");
    cmd
}

/// A running `panal`, killed if the test ends without stopping it.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn terminate(running: &mut Running) -> std::process::ExitStatus {
    let child = &mut running.0;
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "panal did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `method url` with `token` and a JSON body: the status and the answer's
/// JSON (`null` when there is none).
pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http.request(method, url).bearer_auth(token).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Starts `panal up` and waits for its table.
fn up(data_dir: &PathBuf, offset: u16) -> (Running, Vec<String>) {
    up_with(data_dir, offset, &[], Stdio::null())
}

/// `panal up` with more environment (settings), until it says it is serving.
pub(crate) fn up_with(data_dir: &PathBuf, offset: u16, env: &[(&str, &str)], logs: Stdio) -> (Running, Vec<String>) {
    let mut child = panal()
        .envs(env.iter().copied())
        .args(["up", "--data-dir"])
        .arg(data_dir)
        .args(["--port-offset", &offset.to_string()])
        .stdout(Stdio::piped())
        .stderr(logs)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Running(child);
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "panal up exited early: {lines:?}");
        let done = line.starts_with("API:");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[tokio::test]
async fn up_serves_the_slice_and_stops_cleanly_keeping_what_it_acknowledged() {
    let dir = temp_dir();
    let offset = free_offset();
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let (mut child, table) = up(&dir, offset);
    let table = table.join("");
    assert!(table.contains(&format!("gateway    {gateway}")), "{table}");
    assert!(table.contains(&format!("auth       http://127.0.0.1:{}", 8001 + offset)), "{table}");

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{gateway}/v1/auth/register"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(terminate(&mut child).success(), "SIGTERM is a clean stop");
    assert!(dir.join("auth.db").exists());

    // Started again on the same data: the account is there.
    let (mut child, _) = up(&dir, offset);
    let http = reqwest::Client::new(); // the old connections went with the old process
    let r = http
        .post(format!("{gateway}/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let r = http.get(format!("{gateway}/v1/auth/me")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(terminate(&mut child).success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn services_lists_every_service_with_its_port() {
    let out = panal().arg("services").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (name, port) in [("gateway", 8000), ("auth", 8001), ("users", 8002), ("jobs", 8016)] {
        assert!(text.lines().any(|l| l.starts_with(name) && l.contains(&port.to_string())), "{name} {port}\n{text}");
    }
    assert_eq!(text.lines().count(), 18);
}

#[test]
fn a_bad_configuration_value_stops_start_up_naming_the_key() {
    let dir = temp_dir();
    let out = panal().env("PANAL_HTTP__BODY_LIMIT", "lots").args(["migrate", "--data-dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("key \"http.body_limit\" (environment variable PANAL_HTTP__BODY_LIMIT)"), "{err}");

    let toml = dir.join("panal.toml");
    std::fs::write(&toml, "[db]\nmax_connections = -3\n").unwrap();
    let out = panal().arg("--config").arg(&toml).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("max_connections"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn migrate_creates_the_databases_without_serving() {
    let dir = temp_dir();
    let out = panal().args(["migrate", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "auth: migrations applied\nusers: migrations applied\nchat: migrations applied\ngame: migrations applied\nstats: migrations applied\ntournament: migrations applied\nai: migrations applied\nledger: migrations applied\nnotify: migrations applied\n"
    );
    for db in ["auth.db", "users.db", "chat.db"] {
        assert!(dir.join(db).exists(), "{db}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serving_an_unknown_or_unbuilt_service_is_a_clear_error() {
    let out = panal().args(["serve", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("unknown service \"nope\""));
    let out = panal().args(["serve", "jobs"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("not implemented"));
}

#[test]
fn database_passwords_never_reach_the_output() {
    let out = panal()
        .env("PANAL_DATABASE_URL", "postgres://panal:hunter2@127.0.0.1:1/panal")
        .env("PANAL_DB__ACQUIRE_TIMEOUT_MS", "300")
        .env("PANAL_LOG", "debug")
        .args(["serve", "auth", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("opening the auth database"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

/// A free port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every row of every table of `db` as text, that contain `needle`:
/// `table (count)` for each table with any.
async fn rows_containing(db: &kit::testing::TestDb, needle: &str) -> Vec<String> {
    let config = kit::config::Config::from_toml("").unwrap();
    let pool = kit::db::Db::connect(&db.url, &config.settings.db).await.unwrap();
    let tables: Vec<String> = kit::with_db!(&pool, p => sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()")
        .fetch_all(p).await)
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM \"{table}\" AS r WHERE r::text LIKE $1");
        let n: i64 = kit::with_db!(&pool, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(format!("%{needle}%")).fetch_one(p).await)
        .unwrap();
        if n > 0 {
            found.push(format!("{table} ({n})"));
        }
    }
    pool.close().await;
    found
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

/// Auth and notify as two processes, each on its own PostgreSQL database:
/// a registration's verification mail is handed from auth to notify by a
/// service call and written by notify (no SMTP: a file), and its token is
/// nowhere at rest afterwards — not in an event, an outbox or inbox row,
/// nor any other row of either database.
#[tokio::test]
async fn serve_runs_auth_and_notify_apart_and_the_mailed_token_is_never_stored() {
    let Some(auth_db) = kit::testing::TestDb::postgres().await else { return };
    let Some(notify_db) = kit::testing::TestDb::postgres().await else { return };
    let (auth_port, notify_port) = (free_port(), free_port());
    let (auth_url, notify_url) = (format!("http://127.0.0.1:{auth_port}"), format!("http://127.0.0.1:{notify_port}"));
    let data_dir = temp_dir();
    let serve = |service: &str, port: u16, db: &str| {
        Running(
            panal()
                .env("PANAL_DATABASE_URL", db)
                .env("PANAL_DATA_DIR", data_dir.join(service))
                .env("PANAL_AUTH_URL", &auth_url)
                .env("PANAL_NOTIFY_URL", &notify_url)
                .args(["serve", service, "--port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut auth = serve("auth", auth_port, &auth_db.url);
    let http = reqwest::Client::new();
    assert!(kit::http::wait_ready(&http, &format!("{auth_url}/readyz"), Duration::from_secs(10)).await);
    let mut notify = serve("notify", notify_port, &notify_db.url);
    assert!(kit::http::wait_ready(&http, &format!("{notify_url}/readyz"), Duration::from_secs(10)).await);
    let r = http
        .post(format!("{auth_url}/v1/auth/register"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Notify writes the mail (no SMTP relay configured).
    let mail_dir = data_dir.join("notify").join("mail");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mail = loop {
        let files: Vec<_> = std::fs::read_dir(&mail_dir).map(|d| d.flatten().collect()).unwrap_or_default();
        if let Some(f) = files.first() {
            break std::fs::read_to_string(f.path()).unwrap();
        }
        assert!(Instant::now() < deadline, "no mail from notify");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    assert!(body.contains("Subject: Verify your email address for Panal"), "{body}");
    let token: String = body
        .split("verify-email#token=")
        .nth(1)
        .unwrap_or_else(|| panic!("{body}"))
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 32, "{token}");
    // The link works.
    let r = http.post(format!("{auth_url}/v1/auth/email/verify")).json(&json!({"token": token})).send().await.unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert!(terminate(&mut notify).success());
    assert!(terminate(&mut auth).success());
    // Nowhere at rest: not in auth's events or outbox, not in notify's
    // deliveries (wiped once sent), not anywhere else.
    assert_eq!(rows_containing(&auth_db, &token).await, Vec::<String>::new(), "auth's database");
    assert_eq!(rows_containing(&notify_db, &token).await, Vec::<String>::new(), "notify's database");
    // (The scan finds what is there: the address is in both.)
    assert!(!rows_containing(&auth_db, "ada@example.com").await.is_empty());
    // Nor in any file either process kept — the embedded bus each ran
    // (`bus.db` and its journal) included — but the mail itself.
    let mail = data_dir.join("notify").join("mail");
    let files = files_containing(&data_dir, token.as_bytes());
    assert_eq!(files.iter().filter(|f| !f.starts_with(&mail)).collect::<Vec<_>>(), Vec::<&PathBuf>::new());
    assert!(!files_containing(&data_dir, b"ada@example.com").is_empty(), "the file scan finds what is there");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// One rate limit, two gateway processes: the burst is shared through Redis.
#[tokio::test]
async fn two_gateway_processes_share_one_rate_limit_through_redis() {
    let Ok(redis) = std::env::var("PANAL_TEST_REDIS_URL") else {
        use std::io::Write;
        let _ =
            writeln!(std::io::stderr(), "SKIPPED (Redis): set PANAL_TEST_REDIS_URL=redis://127.0.0.1:6379 to run it");
        return;
    };
    kit::install_crypto();
    // The upstream: answers anything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = temp_dir();
    let config = dir.join("panal.toml");
    let prefix = format!("panal-cli-test:{}:", uuid::Uuid::new_v4().simple());
    std::fs::write(
        &config,
        format!(
            "redis_url = \"{redis}\"\n[gateway.upstreams]\nsvc = [\"http://{upstream}\"]\n[[gateway.routes]]\nprefix = \"/svc\"\nupstream = \"svc\"\npublic = true\n[gateway.rate_limits]\nkey_prefix = \"{prefix}\"\nper_ip = {{ rate = 1, per_secs = 60, burst = 6 }}\n"
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut gateways = Vec::new();
    let mut bases = Vec::new();
    for n in 0..2 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = panal()
            .env("PANAL_CONFIG", &config)
            .env("PANAL_DATA_DIR", dir.join(format!("g{n}")))
            .env("PANAL_AUTH_URL", format!("http://{upstream}"))
            .env("PANAL_USERS_URL", format!("http://{upstream}"))
            .env("PANAL_REALTIME_URL", format!("http://{upstream}"))
            .env("PANAL_CHAT_URL", format!("http://{upstream}"))
            .env("PANAL_GAME_URL", format!("http://{upstream}"))
            .env("PANAL_STATS_URL", format!("http://{upstream}"))
            .env("PANAL_AI_URL", format!("http://{upstream}"))
            .env("PANAL_TOURNAMENT_URL", format!("http://{upstream}"))
            .env("PANAL_LEDGER_URL", format!("http://{upstream}"))
            .env("PANAL_NOTIFY_URL", format!("http://{upstream}"))
            .args(["serve", "gateway", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        gateways.push(Running(child));
        let base = format!("http://127.0.0.1:{port}");
        assert!(
            kit::http::wait_ready(&http, &format!("{base}/readyz"), Duration::from_secs(15)).await,
            "gateway {n} did not start"
        );
        bases.push(base);
    }
    let mut passed = 0;
    for i in 0..10 {
        let r = http.get(format!("{}/svc/x", bases[i % 2])).send().await.unwrap();
        if r.status() == 200 {
            passed += 1;
        } else {
            assert_eq!(r.status(), 429);
        }
    }
    assert_eq!(passed, 6, "six in all, not six per process");
    for g in &mut gateways {
        assert!(terminate(g).success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `panal healthcheck` (the container image's health check): 0 for a 2xx
/// answer, 1 for anything else or no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_only_for_a_ready_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .route("/down", axum::routing::get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            panal().args(&args).stderr(Stdio::null()).env_remove("PANAL_PORT").status().unwrap().code()
        })
    };
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    assert_eq!(run(s(&["healthcheck", "--port", &port.to_string()])).await.unwrap(), Some(0));
    let down = format!("http://127.0.0.1:{port}/down");
    assert_eq!(run(s(&["healthcheck", "--url", &down])).await.unwrap(), Some(1));
    let nobody = format!("http://127.0.0.1:{}/readyz", free_port());
    assert_eq!(run(s(&["healthcheck", "--url", &nobody])).await.unwrap(), Some(1));
}
