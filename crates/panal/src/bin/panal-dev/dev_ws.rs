//! `panal-dev ws-fanout`: many WebSocket subscribers to one channel, for
//! `bench/realtime.sh`. Speaks the Centrifugo client protocol (Panal's
//! realtime) or the Pusher protocol (soketi), so both servers are measured
//! by the same client in the same run.
//!
//! It opens `--subscribers` connections (spread over 127.0.0.1 … 127.0.0.N
//! source addresses to pass one address's ephemeral ports), subscribes each
//! to `--channel`, reads the server's resident memory before and after
//! (`--pid`), prints `ready` on a line of its own, then waits for
//! `--messages` publications on every connection. A publication's data is
//! `{"t": <unix nanoseconds when published>, "k": <its number>}`: each
//! delivery's latency is the time it arrived minus `t`, and a message's
//! fan-out time is its last delivery's latency. The summary is one JSON line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Centrifugo,
    Pusher,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Fanout {
    /// `ws://127.0.0.1:8003/v1/ws` or `ws://127.0.0.1:6001/app/app-key?protocol=7`.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Source addresses 127.0.0.1 … 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Centrifugo: the access token to connect with.
    #[arg(long, default_value = "")]
    token: String,
    #[arg(long)]
    channel: String,
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// The server's process id, for its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Give up waiting for publications after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Where `{t, k}` sits in a publication's data (a JSON pointer; a string
    /// there is read as JSON): `/message/body` for chat messages.
    #[arg(long, default_value = "")]
    pointer: String,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn open(f: &Fanout, n: usize) -> anyhow::Result<Socket> {
    let url: tokio_tungstenite::tungstenite::http::Uri = f.url.parse()?;
    let host: IpAddr = url.host().unwrap_or("127.0.0.1").parse()?;
    let port = url.port_u16().unwrap_or(80);
    let source = Ipv4Addr::new(127, 0, 0, 1 + u8::try_from(n % usize::from(f.sources.max(1))).unwrap_or(0));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(SocketAddr::new(host, port)).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(f.url.as_str(), stream).await?;
    match f.protocol {
        Protocol::Centrifugo => {
            ws.send(Message::text(json!({"id": 1, "connect": {"token": f.token}}).to_string())).await?;
            expect(&mut ws, |v| v.get("connect").is_some()).await?;
            ws.send(Message::text(json!({"id": 2, "subscribe": {"channel": f.channel}}).to_string())).await?;
            expect(&mut ws, |v| v["id"] == 2 && v.get("error").is_none()).await?;
        }
        Protocol::Pusher => {
            expect(&mut ws, |v| v["event"] == "pusher:connection_established").await?;
            let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": f.channel}});
            ws.send(Message::text(subscribe.to_string())).await?;
            expect(&mut ws, |v| v["event"] == "pusher_internal:subscription_succeeded").await?;
        }
    }
    Ok(ws)
}

/// Reads until a frame satisfies `ok` (pings and other frames skipped).
async fn expect(ws: &mut Socket, ok: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 10 s"))?
            .ok_or_else(|| anyhow::anyhow!("closed"))??;
        let Message::Text(text) = frame else { continue };
        for line in text.as_str().lines() {
            let value: Value = serde_json::from_str(line)?;
            if value.get("error").is_some() {
                anyhow::bail!("refused: {value}");
            }
            if ok(&value) {
                return Ok(());
            }
        }
    }
}

/// The publication's `{t, k}` in a frame, if it holds one.
fn publication(protocol: Protocol, pointer: &str, line: &str) -> Option<(u64, usize)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let data = match protocol {
        Protocol::Centrifugo => value.pointer("/push/pub/data")?.clone(),
        // Pusher's data is a string holding JSON.
        Protocol::Pusher => serde_json::from_str(value.get("data")?.as_str()?).ok()?,
    };
    let found = data.pointer(pointer)?;
    let data = match found.as_str() {
        Some(text) => serde_json::from_str(text).ok()?,
        None => found.clone(),
    };
    Some((data["t"].as_u64()?, usize::try_from(data["k"].as_u64()?).ok()?))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1e6
}

#[allow(clippy::print_stdout)]
pub async fn run(f: Fanout) -> anyhow::Result<()> {
    let before = rss_kib(f.pid);
    let mut sockets = Vec::with_capacity(f.subscribers);
    let started = std::time::Instant::now();
    for first in (0..f.subscribers).step_by(200) {
        let batch = (first..(first + 200).min(f.subscribers)).map(|n| open(&f, n));
        for ws in futures_util::future::join_all(batch).await {
            sockets.push(ws?);
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(f.pid);
    // latencies[k]: every delivery's latency of message k, in nanoseconds.
    let latencies: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); f.messages]));
    let mut readers = Vec::with_capacity(sockets.len());
    for ws in sockets {
        let (latencies, protocol, messages, pointer) = (latencies.clone(), f.protocol, f.messages, f.pointer.clone());
        readers.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut got = 0;
            while got < messages {
                let Some(Ok(frame)) = stream.next().await else { return };
                let Message::Text(text) = frame else { continue };
                let arrived = now_ns();
                for line in text.as_str().lines() {
                    if line == "{}" {
                        let _ = sink.send(Message::text("{}")).await;
                    } else if line.contains("pusher:ping") {
                        let _ = sink.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#)).await;
                    } else if let Some((t, k)) = publication(protocol, &pointer, line)
                        && k < messages
                    {
                        latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[k]
                            .push(arrived.saturating_sub(t));
                        got += 1;
                    }
                }
            }
            // Keep the connection until every reader is done.
            let _ = stream.next().await;
        }));
    }
    println!("ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(f.timeout);
    loop {
        let delivered: usize =
            latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(Vec::len).sum();
        if delivered >= f.subscribers * f.messages || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latencies = latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut all: Vec<u64> = latencies.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut last: Vec<u64> = latencies.iter().filter_map(|l| l.iter().max().copied()).collect();
    last.sort_unstable();
    let summary = json!({
        "protocol": format!("{:?}", f.protocol).to_lowercase(),
        "subscribers": f.subscribers,
        "open_seconds": (open_secs * 100.0).round() / 100.0,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": before.zip(after).map(|(b, a)| ((a as f64 - b as f64) / f.subscribers as f64 * 100.0).round() / 100.0),
        "messages": f.messages,
        "deliveries": all.len(),
        "expected": f.subscribers * f.messages,
        "delivery_ms": {"p50": percentile(&all, 50.0), "p99": percentile(&all, 99.0), "max": percentile(&all, 100.0)},
        "last_delivery_ms": {"p50": percentile(&last, 50.0), "p99": percentile(&last, 99.0), "max": percentile(&last, 100.0)},
    });
    println!("{summary}");
    for reader in readers {
        reader.abort();
    }
    Ok(())
}
