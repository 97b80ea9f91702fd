//! Crash drills for the event bus, with real processes: consumers killed with
//! SIGKILL again and again, producers killed between commit and publish,
//! brokers restarted mid-stream. Afterwards every event must have been
//! applied exactly once.
//!
//! The embedded bus always runs (both processes share its file); NATS and
//! RabbitMQ run when `PANAL_TEST_NATS_URL` / `PANAL_TEST_AMQP_URL` are set.
//! Restarting a broker also needs `PANAL_TEST_BROKER_RESTART=1` (CI sets it):
//! it stops the machine's server, which a developer may not want.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PANAL, PANAL_DEV, Running, temp_dir};

/// Drills take the brokers down and time their kills; one at a time.
static DRILL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Drill {
    dir: PathBuf,
    env: Vec<(String, String)>,
    kind: String,
    consumer: String,
}

#[derive(Debug, PartialEq)]
struct Report {
    applied: i64,
    max_times: i64,
    dead_letters: i64,
}

impl Drill {
    fn new(backend: &str) -> Option<Self> {
        let dir = temp_dir();
        let url = match backend {
            "embedded" => format!("sqlite://{}", dir.join("bus.db").display()),
            "nats" => std::env::var("PANAL_TEST_NATS_URL").ok().or_else(|| skip("NATS", "PANAL_TEST_NATS_URL"))?,
            "rabbitmq" => {
                std::env::var("PANAL_TEST_AMQP_URL").ok().or_else(|| skip("RabbitMQ", "PANAL_TEST_AMQP_URL"))?
            }
            other => panic!("unknown backend {other}"),
        };
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let env = vec![
            ("PANAL_BUS_URL".to_owned(), url),
            ("PANAL_LOG".to_owned(), "warn".to_owned()),
            ("PANAL_LOG_FORMAT".to_owned(), "json".to_owned()),
            // JetStream redelivers what a killed consumer held after this.
            ("PANAL_BUS__ACK_WAIT_MS".to_owned(), "1500".to_owned()),
            // Kills redeliver whatever was in flight; do not mistake that for poison.
            ("PANAL_BUS__MAX_DELIVERIES".to_owned(), "1000".to_owned()),
        ];
        Some(Self { dir, env, kind: format!("panal.drill{tag}.tick.v1"), consumer: format!("drill-{tag}") })
    }

    fn db(&self, name: &str) -> String {
        format!("sqlite://{}", self.dir.join(name).display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(PANAL_DEV);
        cmd.env_remove("PANAL_DATABASE_URL").env_remove("PANAL_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    fn consume(&self) -> Running {
        let db = self.db("consumer.db");
        Running(
            self.command(&["bus-consume", "--db", &db, "--name", &self.consumer, "--kind", &self.kind])
                .spawn()
                .unwrap(),
        )
    }

    fn produce(&self, count: u64, pace_us: u64) -> Running {
        let db = self.db("producer.db");
        let (count, pace) = (count.to_string(), pace_us.to_string());
        Running(
            self.command(&["bus-produce", "--db", &db, "--kind", &self.kind, "--count", &count, "--pace-us", &pace])
                .spawn()
                .unwrap(),
        )
    }

    fn relay(&self) {
        let db = self.db("producer.db");
        let status = self.command(&["bus-relay", "--db", &db]).status().unwrap();
        assert!(status.success());
    }

    fn report(&self) -> Report {
        let db = self.db("consumer.db");
        let out = self.command(&["bus-report", "--db", &db]).stdout(Stdio::piped()).output().unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Report {
            applied: v["applied"].as_i64().unwrap(),
            max_times: v["max_times"].as_i64().unwrap(),
            dead_letters: v["dead_letters"].as_i64().unwrap(),
        }
    }

    /// Events committed to the producer's outbox.
    async fn committed(&self) -> i64 {
        let config = kit::config::Config::from_toml("").unwrap();
        let db = kit::db::Db::connect(&self.db("producer.db"), &config.settings.db).await.unwrap();
        let n: i64 =
            kit::with_db!(&db, p => sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(p).await).unwrap();
        db.close().await;
        n
    }

    fn wait_applied(&self, n: i64, within: Duration) -> Report {
        let deadline = Instant::now() + within;
        loop {
            let r = self.report();
            if r.applied >= n || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skip(backend: &str, var: &str) -> Option<String> {
    let _ = writeln!(std::io::stderr(), "SKIPPED ({backend}): set {var} to run the {backend} drill");
    None
}

fn wait_exit(running: &mut Running, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not finish in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(running: &mut Running) {
    let _ = running.0.kill();
    let _ = running.0.wait();
}

/// A cheap pseudo-random delay between 150 and 550 ms.
fn jitter(seed: &mut u64) -> Duration {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    Duration::from_millis(150 + (*seed >> 33) % 400)
}

fn consumer_killed_again_and_again(backend: &str) {
    let Some(drill) = Drill::new(backend) else { return };
    let mut consumer = drill.consume();
    std::thread::sleep(Duration::from_millis(800));
    let mut producer = drill.produce(1000, 4000);
    let mut seed = u64::from(std::process::id());
    let mut kills = 0;
    while producer.0.try_wait().unwrap().is_none() {
        std::thread::sleep(jitter(&mut seed));
        kill9(&mut consumer);
        kills += 1;
        consumer = drill.consume();
    }
    assert!(wait_exit(&mut producer, Duration::from_secs(60)).success());
    assert!(kills >= 5, "the consumer was killed {kills} times");
    let report = drill.wait_applied(1000, Duration::from_secs(60));
    assert_eq!(report, Report { applied: 1000, max_times: 1, dead_letters: 0 }, "after {kills} kills");
    kill9(&mut consumer);
}

async fn producer_killed_between_commit_and_publish(backend: &str) {
    let Some(drill) = Drill::new(backend) else { return };
    let mut consumer = drill.consume();
    std::thread::sleep(Duration::from_millis(800));
    let mut producer = drill.produce(1000, 3000);
    std::thread::sleep(Duration::from_millis(1500));
    kill9(&mut producer);
    let committed = drill.committed().await;
    assert!(committed > 0 && committed < 1000, "killed mid-way ({committed} committed)");
    // A new relay publishes what was committed but not (known to be) published.
    drill.relay();
    let report = drill.wait_applied(committed, Duration::from_secs(60));
    assert_eq!(report, Report { applied: committed, max_times: 1, dead_letters: 0 });
    kill9(&mut consumer);
}

fn restart_broker(backend: &str) {
    match backend {
        "nats" => {
            let status = Command::new("sh")
                .arg("-c")
                .arg(
                    "pkill -TERM -x nats-server; while pgrep -x nats-server >/dev/null; do sleep 0.1; done; \
                     start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
                     -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
                )
                .status()
                .unwrap();
            assert!(status.success());
        }
        "rabbitmq" => {
            for action in ["stop_app", "start_app"] {
                let status = Command::new("rabbitmqctl").arg(action).stdout(Stdio::null()).status().unwrap();
                assert!(status.success(), "rabbitmqctl {action}");
            }
        }
        other => panic!("cannot restart {other}"),
    }
}

fn broker_restarted_mid_stream(backend: &str) {
    if std::env::var("PANAL_TEST_BROKER_RESTART").is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ({backend} restart): set PANAL_TEST_BROKER_RESTART=1 to let the drill restart the broker"
        );
        return;
    }
    let Some(drill) = Drill::new(backend) else { return };
    let mut consumer = drill.consume();
    std::thread::sleep(Duration::from_millis(800));
    let mut producer = drill.produce(1000, 5000);
    std::thread::sleep(Duration::from_millis(1500));
    restart_broker(backend);
    assert!(
        wait_exit(&mut producer, Duration::from_secs(120)).success(),
        "the producer publishes everything once the broker is back"
    );
    let report = drill.wait_applied(1000, Duration::from_secs(120));
    assert_eq!(report, Report { applied: 1000, max_times: 1, dead_letters: 0 });
    kill9(&mut consumer);
}

macro_rules! drills {
    ($($backend:ident),*) => {$(
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn a_consumer_killed_again_and_again_applies_each_of_1000_events_once() {
                let _one_at_a_time = DRILL.lock().await;
                tokio::task::spawn_blocking(|| consumer_killed_again_and_again(stringify!($backend))).await.unwrap();
            }

            #[tokio::test]
            async fn a_producer_killed_between_commit_and_publish_loses_nothing() {
                let _one_at_a_time = DRILL.lock().await;
                producer_killed_between_commit_and_publish(stringify!($backend)).await;
            }
        }
    )*};
}

drills!(embedded, nats, rabbitmq);

#[tokio::test]
async fn nats_restarted_mid_stream_loses_nothing() {
    let _one_at_a_time = DRILL.lock().await;
    tokio::task::spawn_blocking(|| broker_restarted_mid_stream("nats")).await.unwrap();
}

#[tokio::test]
async fn rabbitmq_restarted_mid_stream_loses_nothing() {
    let _one_at_a_time = DRILL.lock().await;
    tokio::task::spawn_blocking(|| broker_restarted_mid_stream("rabbitmq")).await.unwrap();
}

#[test]
fn events_tail_prints_each_published_event_as_a_json_line() {
    let Some(drill) = Drill::new("embedded") else { return };
    let mut tail = Command::new(PANAL);
    for (k, v) in &drill.env {
        tail.env(k, v);
    }
    let mut tail = Running(
        tail.args(["events", "tail", "--type", "panal.drill"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = tail.0.stdout.take().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let db = drill.db("producer.db");
    let status = drill.command(&["bus-produce", "--db", &db, "--kind", &drill.kind, "--count", "3"]).status().unwrap();
    assert!(status.success());
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    for n in 0..3 {
        let line = lines.next().unwrap().unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["type"], drill.kind.as_str());
        assert_eq!(event["data"]["n"], n);
    }
}

#[test]
fn dead_letters_of_a_fresh_install_are_none() {
    let dir = temp_dir();
    let out = super::panal().env("PANAL_DATA_DIR", &dir).args(["events", "dead-letters"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stderr).unwrap().contains("0 dead letter(s)"));
    let out = super::panal().env("PANAL_DATA_DIR", &dir).args(["events", "replay", "--all"]).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}
