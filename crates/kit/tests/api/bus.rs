//! The event bus conformance suite: every backend passes the same tests.
//!
//! The embedded backend always runs. NATS and RabbitMQ run when
//! `PANAL_TEST_NATS_URL` / `PANAL_TEST_AMQP_URL` are set (CI sets both, so there
//! a missing broker fails the tests); otherwise they are skipped with a message.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use contracts::Envelope;
use futures_util::StreamExt;
use kit::bus::{Bus, Consumer, ConsumerSettings, Handlers, Outcome, Replay, probe};
use kit::config::DbSettings;
use kit::db::Db;
use kit::testing::TestDb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const NATS_ENV: &str = "PANAL_TEST_NATS_URL";
pub const AMQP_ENV: &str = "PANAL_TEST_AMQP_URL";

/// A broker for one test, with its clean-up.
pub struct TestBus {
    pub bus: Bus,
    /// A prefix unique to the test, for event types and consumer names, so
    /// tests sharing a broker never see each other's events.
    pub ns: String,
    _file: Option<TempFile>,
    consumers: std::sync::Mutex<Vec<String>>,
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn skip(backend: &str, var: &str, example: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED ({backend}): set {var}={example} to run the {backend} variant");
}

pub fn settings() -> ConsumerSettings {
    ConsumerSettings { ack_wait_ms: 5_000, backoff_base_ms: 20, backoff_max_ms: 100, ..ConsumerSettings::default() }
}

impl TestBus {
    pub async fn embedded() -> Self {
        let path = std::env::temp_dir().join(format!("panal-bus-test-{}.db", Uuid::new_v4().simple()));
        let bus = kit::bus::connect(Some(&Db::sqlite_url(&path)), &std::env::temp_dir(), &settings()).await.unwrap();
        Self::wrap(bus, Some(TempFile(path)))
    }

    pub async fn nats() -> Option<Self> {
        let Ok(url) = std::env::var(NATS_ENV) else {
            skip("NATS", NATS_ENV, "nats://127.0.0.1:4222");
            return None;
        };
        let bus = kit::bus::connect(Some(&url), &std::env::temp_dir(), &settings())
            .await
            .unwrap_or_else(|e| panic!("{NATS_ENV} is set but NATS is unreachable: {e}"));
        Some(Self::wrap(bus, None))
    }

    pub async fn rabbitmq() -> Option<Self> {
        let Ok(url) = std::env::var(AMQP_ENV) else {
            skip("RabbitMQ", AMQP_ENV, "amqp://guest:guest@127.0.0.1:5672/%2f");
            return None;
        };
        let bus = kit::bus::connect(Some(&url), &std::env::temp_dir(), &settings())
            .await
            .unwrap_or_else(|e| panic!("{AMQP_ENV} is set but RabbitMQ is unreachable: {e}"));
        Some(Self::wrap(bus, None))
    }

    fn wrap(bus: Bus, file: Option<TempFile>) -> Self {
        Self { bus, ns: format!("t{}", Uuid::new_v4().simple()), _file: file, consumers: Default::default() }
    }

    /// An event type of this test.
    pub fn kind(&self, name: &str) -> String {
        format!("panal.{}.{name}.v1", self.ns)
    }

    /// A consumer name of this test (removed from the broker afterwards).
    pub fn consumer_name(&self, name: &str) -> String {
        let full = format!("{}-{name}", self.ns);
        self.consumers.lock().unwrap().push(full.clone());
        full
    }

    pub async fn cleanup(&self) {
        let names = self.consumers.lock().unwrap().clone();
        for name in names {
            let _ = self.bus.remove_consumer(&name).await;
        }
    }
}

/// An event of `kind` about `subject`, carrying `n`.
pub fn event(kind: &str, subject: &str, n: u64) -> Envelope {
    Envelope {
        specversion: "1.0".into(),
        id: Uuid::now_v7(),
        source: "test".into(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        time: Utc::now(),
        datacontenttype: "application/json".into(),
        data: serde_json::json!({ "n": n }),
        traceparent: None,
    }
}

/// A consumer's database with the probe's table.
pub struct Sink {
    pub db: Db,
    _test_db: TestDb,
}

impl Sink {
    pub async fn new() -> Self {
        Self::on(TestDb::sqlite().await).await
    }

    pub async fn on(test_db: TestDb) -> Self {
        let db = Db::connect(&test_db.url, &DbSettings::default()).await.unwrap();
        probe::prepare(&db).await.unwrap();
        Self { db, _test_db: test_db }
    }

    /// Rows applied so far, and the largest number of times any was applied.
    pub async fn applied(&self) -> (i64, i64) {
        probe::applied(&self.db).await.unwrap()
    }

    pub async fn wait_for(&self, count: i64, within: Duration) -> (i64, i64) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.applied().await;
            if got.0 >= count || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn order_of(&self, subject: &str) -> Vec<i64> {
        probe::order_of(&self.db, subject).await.unwrap()
    }

    pub async fn dead_letters(&self) -> Vec<kit::bus::store::DeadLetter> {
        kit::bus::store::dead_letters(&self.db).await.unwrap()
    }
}

pub fn consumer(name: &str, kinds: &[String], sink: &Sink, poisoned: Arc<AtomicBool>) -> Consumer {
    probe::consumer(name, kinds, &sink.db, poisoned, settings())
}

/// Runs `consumer` on `bus` until the returned token is cancelled.
pub fn start(consumer: Consumer, bus: &Bus) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let handle = tokio::spawn(consumer.run(bus.clone(), token.clone()));
    (token, handle)
}

pub async fn stop((token, handle): (CancellationToken, tokio::task::JoinHandle<()>)) {
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
}

async fn publish_all(bus: &Bus, events: &[Envelope]) {
    let confirmed = bus.publish(events).await.unwrap();
    assert_eq!(confirmed, events.len(), "every event confirmed");
}

/// Defines `<name>::{embedded, nats, rabbitmq}` running `$body` with `$tb` a
/// [`TestBus`] of that backend.
macro_rules! conformance {
    ($( async fn $name:ident($tb:ident) $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let $tb = TestBus::embedded().await;
                $body
                $tb.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                let Some($tb) = TestBus::nats().await else { return };
                $body
                $tb.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rabbitmq() {
                let Some($tb) = TestBus::rabbitmq().await else { return };
                $body
                $tb.cleanup().await;
            }
        }
    )*};
}

conformance! {
    async fn every_consumer_applies_every_event_once_even_when_republished(tb) {
        let kind = tb.kind("ping");
        let (a, b) = (Sink::new().await, Sink::new().await);
        let ok = Arc::new(AtomicBool::new(false));
        // Subscribe first: RabbitMQ queues only hold what arrives after they exist.
        let ca = start(consumer(&tb.consumer_name("a"), std::slice::from_ref(&kind), &a, ok.clone()), &tb.bus);
        let cb = start(consumer(&tb.consumer_name("b"), std::slice::from_ref(&kind), &b, ok.clone()), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let events: Vec<Envelope> = (0..50).map(|i| event(&kind, &format!("s{}", i % 5), i)).collect();
        publish_all(&tb.bus, &events).await;
        // The relay republishes after a crash between confirm and mark.
        publish_all(&tb.bus, &events[..20]).await;

        assert_eq!(a.wait_for(50, Duration::from_secs(20)).await, (50, 1));
        assert_eq!(b.wait_for(50, Duration::from_secs(20)).await, (50, 1));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.applied().await, (50, 1), "nothing applied twice");
        stop(ca).await;
        stop(cb).await;
    }

    async fn a_consumer_receives_only_the_types_it_handles(tb) {
        let (wanted, other) = (tb.kind("wanted"), tb.kind("other"));
        let sink = Sink::new().await;
        let c = start(consumer(&tb.consumer_name("picky"), std::slice::from_ref(&wanted), &sink, Default::default()), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut events = Vec::new();
        for i in 0..10 {
            events.push(event(&wanted, "x", i));
            events.push(event(&other, "x", i));
        }
        publish_all(&tb.bus, &events).await;
        assert_eq!(sink.wait_for(10, Duration::from_secs(20)).await, (10, 1));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.applied().await.0, 10);
        stop(c).await;
    }

    async fn events_published_while_a_consumer_is_away_arrive_when_it_returns(tb) {
        let kind = tb.kind("later");
        let sink = Sink::new().await;
        let name = tb.consumer_name("away");
        // First run creates the durable subscription.
        let c = start(consumer(&name, std::slice::from_ref(&kind), &sink, Default::default()), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(c).await;

        let events: Vec<Envelope> = (0..20).map(|i| event(&kind, "y", i)).collect();
        publish_all(&tb.bus, &events).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.applied().await.0, 0);

        let c = start(consumer(&name, std::slice::from_ref(&kind), &sink, Default::default()), &tb.bus);
        assert_eq!(sink.wait_for(20, Duration::from_secs(20)).await, (20, 1));
        stop(c).await;
    }

    async fn events_of_one_subject_are_applied_in_order(tb) {
        let kind = tb.kind("ordered");
        let sink = Sink::new().await;
        let c = start(consumer(&tb.consumer_name("ord"), std::slice::from_ref(&kind), &sink, Default::default()), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut events = Vec::new();
        for i in 0..40 {
            events.push(event(&kind, "alpha", i));
            events.push(event(&kind, "beta", i));
        }
        publish_all(&tb.bus, &events).await;
        assert_eq!(sink.wait_for(80, Duration::from_secs(20)).await.0, 80);
        let expected: Vec<i64> = (0..40).collect();
        assert_eq!(sink.order_of("alpha").await, expected);
        assert_eq!(sink.order_of("beta").await, expected);
        stop(c).await;
    }

    async fn a_poison_event_is_retried_dead_lettered_and_replayed_while_the_rest_flows(tb) {
        let kind = tb.kind("poison");
        let sink = Sink::new().await;
        let poisoned = Arc::new(AtomicBool::new(true));
        let name = tb.consumer_name("p");
        let cons = consumer(&name, std::slice::from_ref(&kind), &sink, poisoned.clone());
        let c = start(cons.clone(), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The poison event (n = 13) and others on the same subject and on others.
        let events: Vec<Envelope> = (10..30).map(|i| event(&kind, if i % 2 == 0 { "even" } else { "odd" }, i)).collect();
        publish_all(&tb.bus, &events).await;

        assert_eq!(sink.wait_for(19, Duration::from_secs(20)).await, (19, 1), "everything but the poison is applied");
        let deadline = Instant::now() + Duration::from_secs(10);
        let letters = loop {
            let letters = sink.dead_letters().await;
            if !letters.is_empty() || Instant::now() > deadline {
                break letters;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(letter.attempts, 5, "tried max_attempts times");
        assert!(letter.error.contains("13 is unlucky"), "{}", letter.error);
        let mut registry = prometheus_client::registry::Registry::default();
        cons.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(&format!("bus_handler_retries_total{{consumer=\"{name}\"}} 4")), "four retries after the first try:\n{text}");
        assert_eq!(letter.event_type, kind);

        // Still broken: the replay fails and the letter stays, with the new error.
        assert!(matches!(cons.replay(letter.id).await.unwrap(), Replay::Failed(_)));
        assert_eq!(sink.dead_letters().await[0].attempts, 6);

        // Fixed: the replay applies it once, and the letter is gone.
        poisoned.store(false, Ordering::SeqCst);
        assert_eq!(cons.replay(letter.id).await.unwrap(), Replay::Applied);
        assert!(sink.dead_letters().await.is_empty());
        assert_eq!(sink.applied().await, (20, 1));
        stop(c).await;
    }

    async fn a_negatively_acknowledged_delivery_comes_again(tb) {
        let kind = tb.kind("again");
        let name = tb.consumer_name("raw");
        let mut deliveries = tb.bus.subscribe(&name, std::slice::from_ref(&kind)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let e = event(&kind, "z", 1);
        publish_all(&tb.bus, std::slice::from_ref(&e)).await;

        let first = tokio::time::timeout(Duration::from_secs(10), deliveries.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(first.delivery_count, 1);
        assert_eq!(serde_json::from_slice::<Envelope>(&first.payload).unwrap().id, e.id);
        first.nack().await.unwrap();

        let second = tokio::time::timeout(Duration::from_secs(10), deliveries.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Envelope>(&second.payload).unwrap().id, e.id);
        assert_eq!(second.delivery_count, 2);
        second.ack().await.unwrap();
        drop(deliveries);
    }

    async fn competing_instances_of_a_consumer_share_the_events(tb) {
        let kind = tb.kind("shared");
        let sink = Sink::new().await;
        let name = tb.consumer_name("replicas");
        let seen = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let make = |which: usize| {
            let seen = seen.clone();
            let handlers = Handlers::new().on_envelope(kind.clone(), move |tx, envelope, _meta| {
                let seen = seen.clone();
                Box::pin(async move {
                    if which == 0 { seen.0.fetch_add(1, Ordering::SeqCst); } else { seen.1.fetch_add(1, Ordering::SeqCst); }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    probe::record(tx, envelope, &AtomicBool::new(false)).await
                })
            });
            Consumer::new(name.clone(), sink.db.clone(), handlers).with_settings(settings())
        };
        let c1 = start(make(0), &tb.bus);
        let c2 = start(make(1), &tb.bus);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events: Vec<Envelope> = (0..200).map(|i| event(&kind, &format!("s{i}"), i)).collect();
        publish_all(&tb.bus, &events).await;
        assert_eq!(sink.wait_for(200, Duration::from_secs(30)).await, (200, 1));
        let (n0, n1) = (seen.0.load(Ordering::SeqCst), seen.1.load(Ordering::SeqCst));
        assert!(n0 > 0 && n1 > 0, "both instances took a share ({n0} / {n1})");
        stop(c1).await;
        stop(c2).await;
    }

    async fn tail_sees_events_as_they_are_published(tb) {
        let kind = tb.kind("tailed");
        let mut tail = tb.bus.tail().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let e = event(&kind, "t", 7);
        publish_all(&tb.bus, std::slice::from_ref(&e)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), tail.next()).await.unwrap().unwrap().unwrap();
            let seen: Envelope = serde_json::from_slice(&next).unwrap();
            if seen.id == e.id {
                break;
            }
            assert!(Instant::now() < deadline, "the event never showed in the tail");
        }
        assert!(tb.bus.check().await.is_ok());
    }
}

/// Two deployments share one broker, each with its own `bus.namespace`, and
/// a third uses the plain names: the same consumer name subscribed to the
/// same event type in each receives its own deployment's events only. (Seen
/// before namespaces: a durable consumer left by one drill delivered its
/// unacknowledged events into the next run's fresh database.)
async fn namespaces_keep_deployments_apart(url: &str) {
    let tag = Uuid::new_v4().simple().to_string();
    let names = [format!("a{}", &tag[..12]), format!("b{}", &tag[..12]), String::new()];
    let mut buses = Vec::new();
    for namespace in &names {
        let settings = ConsumerSettings { namespace: namespace.clone(), ..settings() };
        buses.push(kit::bus::connect(Some(url), &std::env::temp_dir(), &settings).await.unwrap());
    }
    let kind = format!("panal.t{tag}.shared.v1");
    let consumer_name = format!("t{tag}-shared");
    let sinks = [Sink::new().await, Sink::new().await, Sink::new().await];
    let mut running = Vec::new();
    for (bus, sink) in buses.iter().zip(&sinks) {
        running.push(start(consumer(&consumer_name, std::slice::from_ref(&kind), sink, Default::default()), bus));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let counts = [10, 4, 7];
    for ((bus, n), subject) in buses.iter().zip(counts).zip(["from-a", "from-b", "from-plain"]) {
        let events: Vec<Envelope> = (0..n).map(|i| event(&kind, subject, i)).collect();
        publish_all(bus, &events).await;
    }
    for (sink, n) in sinks.iter().zip(counts) {
        assert_eq!(sink.wait_for(n as i64, Duration::from_secs(20)).await, (n as i64, 1));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ((sink, n), subject) in sinks.iter().zip(counts).zip(["from-a", "from-b", "from-plain"]) {
        assert_eq!(sink.applied().await.0, n as i64, "only its own namespace's events");
        assert_eq!(sink.order_of(subject).await.len(), n as usize);
    }

    for r in running {
        stop(r).await;
    }
    for bus in &buses {
        let _ = bus.remove_consumer(&consumer_name).await;
    }
    remove_namespaces(url, &names[..2]).await;
}

/// Deletes what a namespace left on the broker (its stream, or its
/// exchanges and dead-letter queue), so test runs do not pile them up.
async fn remove_namespaces(url: &str, names: &[String]) {
    for name in names {
        let namespace = kit::bus::Namespace::new(name).unwrap();
        if url.starts_with("nats://") {
            let client = async_nats::connect(url).await.unwrap();
            let _ = async_nats::jetstream::new(client).delete_stream(namespace.nats_stream()).await;
        } else {
            let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
            let channel = connection.create_channel().await.unwrap();
            let p = namespace.prefix();
            let _ = channel.queue_delete(format!("{p}panal.dead-letters").into(), Default::default()).await;
            for exchange in ["panal.events", "panal.dead-letters"] {
                let _ = channel.exchange_delete(format!("{p}{exchange}").into(), Default::default()).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_namespaces_keep_deployments_apart() {
    match std::env::var(NATS_ENV) {
        Ok(url) => namespaces_keep_deployments_apart(&url).await,
        Err(_) => skip("NATS", NATS_ENV, "nats://127.0.0.1:4222"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_namespaces_keep_deployments_apart() {
    match std::env::var(AMQP_ENV) {
        Ok(url) => namespaces_keep_deployments_apart(&url).await,
        Err(_) => skip("RabbitMQ", AMQP_ENV, "amqp://guest:guest@127.0.0.1:5672/%2f"),
    }
}

#[tokio::test]
async fn a_namespace_that_is_not_a_label_is_refused() {
    let settings = ConsumerSettings { namespace: "Prod.EU".into(), ..settings() };
    let err = kit::bus::connect(Some("nats://127.0.0.1:1"), &std::env::temp_dir(), &settings).await.err().unwrap();
    assert!(err.to_string().contains("bus.namespace"), "{err}");
}

/// A message that is not a CloudEvents envelope is dead-lettered as it came,
/// whatever the backend (tested on the consumer directly).
#[tokio::test]
async fn malformed_messages_are_dead_lettered_whole() {
    struct NoopAcker(Arc<AtomicUsize>);
    impl kit::bus::Acker for NoopAcker {
        fn ack(self: Box<Self>) -> futures_util::future::BoxFuture<'static, Result<(), kit::bus::BusError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
        fn nack(self: Box<Self>) -> futures_util::future::BoxFuture<'static, Result<(), kit::bus::BusError>> {
            Box::pin(async { Ok(()) })
        }
    }
    let sink = Sink::new().await;
    let c = consumer("malformed", &["panal.x.y.v1".to_owned()], &sink, Default::default());
    let acks = Arc::new(AtomicUsize::new(0));
    let garbage = kit::bus::Delivery::new(
        "panal.x.y.v1".into(),
        bytes::Bytes::from_static(b"{not json"),
        1,
        Box::new(NoopAcker(acks.clone())),
    );
    assert_eq!(c.process(garbage).await, Outcome::DeadLettered);
    assert_eq!(acks.load(Ordering::SeqCst), 1, "settled, so it does not come back");
    let letters = sink.dead_letters().await;
    assert_eq!(letters[0].payload, "{not json");
    assert!(letters[0].error.starts_with("not a CloudEvents envelope"));

    // A message its consumer keeps crashing on is dead-lettered without another try.
    let e = event("panal.x.y.v1", "s", 1);
    let crashing = kit::bus::Delivery::new(
        "panal.x.y.v1".into(),
        serde_json::to_vec(&e).unwrap().into(),
        6,
        Box::new(NoopAcker(acks.clone())),
    );
    assert_eq!(c.process(crashing).await, Outcome::DeadLettered);
    assert_eq!(sink.applied().await.0, 0);
    assert!(sink.dead_letters().await[1].error.contains("delivered 6 times"));
}

/// The handler runs in the producer's trace: same trace id, the producer's
/// span as parent.
#[tokio::test]
async fn handlers_continue_the_trace_of_the_change_that_caused_the_event() {
    let tb = TestBus::embedded().await;
    let kind = tb.kind("traced");
    let sink = Sink::new().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handlers = Handlers::new().on_envelope(kind.clone(), move |_tx, _envelope, meta| {
        let _ = tx.send(meta.trace);
        Box::pin(async { Ok(()) })
    });
    let c =
        start(Consumer::new(tb.consumer_name("tracer"), sink.db.clone(), handlers).with_settings(settings()), &tb.bus);
    let producer = kit::trace::TraceContext::new_root();
    let mut e = event(&kind, "t", 1);
    e.traceparent = Some(producer.header_value());
    publish_all(&tb.bus, std::slice::from_ref(&e)).await;
    let seen = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert_eq!(seen.trace_id, producer.trace_id);
    assert_eq!(seen.parent_id, Some(producer.span_id));
    assert_ne!(seen.span_id, producer.span_id);
    stop(c).await;
}

/// Events arriving together are applied in one transaction, each under a
/// savepoint: a handler that wrote and then failed leaves nothing behind, and
/// the events around it are applied once.
#[tokio::test]
async fn a_failed_handler_in_a_batch_leaves_no_trace_of_its_writes() {
    let tb = TestBus::embedded().await;
    let kind = tb.kind("half");
    let sink = Sink::new().await;
    let handlers = Handlers::new().on_envelope(kind.clone(), |tx, envelope, _meta| {
        Box::pin(async move {
            probe::record(tx, envelope, &AtomicBool::new(false)).await?;
            if envelope.data["n"] == 13 {
                anyhow::bail!("failed after writing");
            }
            Ok(())
        })
    });
    let settings = ConsumerSettings { max_attempts: 2, lanes: 1, ..settings() };
    let cons = Consumer::new(tb.consumer_name("half"), sink.db.clone(), handlers).with_settings(settings);
    // Published before the consumer starts, so they arrive together.
    let events: Vec<Envelope> = (10..30).map(|i| event(&kind, "same", i)).collect();
    publish_all(&tb.bus, &events).await;
    let c = start(cons, &tb.bus);
    assert_eq!(sink.wait_for(19, Duration::from_secs(20)).await, (19, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.applied().await, (19, 1), "the failed event's own write was rolled back");
    assert!(!sink.order_of("same").await.contains(&13));
    let expected: Vec<i64> = (10..30).filter(|n| *n != 13).collect();
    assert_eq!(sink.order_of("same").await, expected, "order kept around the failure");
    assert_eq!(sink.dead_letters().await.len(), 1);
    stop(c).await;
}

/// The consumer side on PostgreSQL: concurrent lanes, savepoints, inbox,
/// dead letters and replay (the broker is the embedded one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_keep_their_guarantees_on_postgresql() {
    let Some(pg) = TestDb::postgres().await else { return };
    let tb = TestBus::embedded().await;
    let kind = tb.kind("pg");
    let sink = Sink::on(pg).await;
    let poisoned = Arc::new(AtomicBool::new(true));
    let cons = consumer(&tb.consumer_name("pg"), std::slice::from_ref(&kind), &sink, poisoned.clone());
    let events: Vec<Envelope> = (0..300).map(|i| event(&kind, &format!("s{}", i % 7), i)).collect();
    publish_all(&tb.bus, &events).await;
    publish_all(&tb.bus, &events[..50]).await;
    let c = start(cons.clone(), &tb.bus);
    assert_eq!(sink.wait_for(299, Duration::from_secs(30)).await, (299, 1));
    for s in 0..7 {
        let subject = format!("s{s}");
        let expected: Vec<i64> = (0..300).filter(|i| i % 7 == s && *i != 13).collect();
        assert_eq!(sink.order_of(&subject).await, expected, "{subject} in order");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.dead_letters().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = sink.dead_letters().await;
    assert_eq!(letters.len(), 1);
    poisoned.store(false, Ordering::SeqCst);
    assert_eq!(cons.replay(letters[0].id).await.unwrap(), Replay::Applied);
    assert_eq!(sink.applied().await, (300, 1));
    stop(c).await;
}
