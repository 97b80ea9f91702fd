//! Notify's throughput, for `bench/notify.sh`: N friend requests published
//! on the embedded bus, each becoming an inbox item (and its push for
//! realtime) and an e-mail handed to a real SMTP server (aiosmtpd). Reports
//! the latency from each event's publication to its inbox item and to the
//! SMTP server's acceptance (p50/p99, ms) and the rates; then, in the same
//! run, the SMTP server's own acceptance rate: N messages sent straight to
//! it as many at a time as notify's sender (8). Prints JSON lines.
//!
//!     cargo run --release -p notify --example throughput -- [N]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contracts::auth::UserRegistered;
use contracts::users::{FriendshipChanged, FriendshipState};
use futures_util::StreamExt;
use kit::db::Db;
use kit::testing::{Smtpd, TestContext, TestDb};
use kit::with_db;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use uuid::Uuid;

/// p50 and p99 of `ms`, in milliseconds.
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let at =
        |p: f64| ms.get(((p / 100.0) * (ms.len().max(1) - 1) as f64).round() as usize).copied().unwrap_or(f64::NAN);
    json!({"n": ms.len(), "p50_ms": (at(50.0) * 10.0).round() / 10.0, "p99_ms": (at(99.0) * 10.0).round() / 10.0})
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    with_db!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    kit::install_crypto();
    let smtpd = Smtpd::start().expect("aiosmtpd (pip install aiosmtpd)");
    let db = TestDb::sqlite().await;
    let data = std::env::temp_dir().join(format!("panal-notify-bench-{}", Uuid::now_v7().simple()));
    // The e-mail rate limit is set far above what the relay takes: the
    // relay is the limit measured (a run with the default, 100/s, is in
    // docs/benchmarks.md too: `EMAIL_PER_SECOND=100`).
    let rate: u32 = std::env::var("EMAIL_PER_SECOND").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let toml = format!(
        "smtp_url = \"{}\"\ndata_dir = {data:?}\n[notify]\ninterval_ms = 10\ndigest_secs = 0\nemail_per_second = {rate}\nemail_burst = {rate}\n",
        smtpd.url()
    );
    let ctx = TestContext::new(kit::config::Config::from_toml(&toml).unwrap()).await;
    let pool = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
    let server = kit::testing::server::<notify::NotifyService>(&ctx, Some(pool.clone())).await;
    let _server = kit::testing::TestServer::spawn(server, kit::config::HttpSettings::default()).await;

    // N + 1 people; each is asked by the next.
    let people: Vec<Uuid> = (0..=n).map(|_| Uuid::now_v7()).collect();
    for (i, id) in people.iter().enumerate() {
        let e = UserRegistered {
            user_id: *id,
            email: format!("p{i}@example.com"),
            display_name: format!("Player {i}"),
            registered_at: Utc::now(),
        };
        ctx.publish(&e).await;
    }
    while count(&pool, "SELECT count(*) FROM recipients").await < people.len() as i64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let mut published: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for pair in people.windows(2) {
        let at = Utc::now();
        published.insert(pair[0], at);
        ctx.publish(&FriendshipChanged {
            actor: pair[1],
            other: pair[0],
            state: FriendshipState::Requested,
            changed_at: at,
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while count(&pool, "SELECT count(*) FROM deliveries WHERE channel = 'email' AND status = 'sent'").await < n as i64 {
        assert!(Instant::now() < deadline, "the e-mails were not all sent in fifteen minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows: Vec<(Uuid, String, DateTime<Utc>, DateTime<Utc>)> = with_db!(&pool, pool => sqlx::query_as(
        "SELECT user_id, channel, created_at, updated_at FROM deliveries").fetch_all(pool).await)
    .unwrap();
    let since = |user: &Uuid, t: DateTime<Utc>| (t - published[user]).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let inbox: Vec<f64> = rows.iter().filter(|r| r.1 == "inbox").map(|r| since(&r.0, r.2)).collect();
    let email: Vec<f64> = rows.iter().filter(|r| r.1 == "email").map(|r| since(&r.0, r.3)).collect();
    let last_inbox = rows.iter().filter(|r| r.1 == "inbox").map(|r| r.2).max().unwrap();
    let first = published.values().min().copied().unwrap();
    let inbox_seconds = (last_inbox - first).num_milliseconds() as f64 / 1000.0;
    println!(
        "{}",
        json!({"events": n, "event_to_inbox": summary(inbox), "inbox_per_second": (n as f64 / inbox_seconds).round()})
    );
    println!(
        "{}",
        json!({"event_to_smtp_accepted": summary(email), "emails_per_second": (n as f64 / elapsed).round()})
    );

    // The SMTP server alone: the same client, as many at a time as
    // notify's sender (`notify.concurrency`, 8).
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtpd.url()).unwrap().build();
    let t = Instant::now();
    let sends = (0..n).map(|i| {
        let smtp = smtp.clone();
        async move {
            let m = Message::builder()
                .from("bench@localhost".parse().unwrap())
                .to(format!("p{i}@example.com").parse().unwrap())
                .subject("bench")
                .body(String::from("bench"))
                .unwrap();
            smtp.send(m).await.unwrap();
        }
    });
    futures_util::stream::iter(sends).buffer_unordered(8).collect::<Vec<()>>().await;
    println!("{}", json!({"smtp_alone_per_second": (n as f64 / t.elapsed().as_secs_f64()).round()}));
    let _ = std::fs::remove_dir_all(data);
}
