//! A client of realtime's socket (`/v1/ws`, the Centrifugo JSON protocol,
//! `docs/realtime.md`): connect with an access token, subscribe to
//! channels, receive their publications, call `rpc` methods. What the
//! terminal client and the AI service's bots play through — the same
//! socket a browser uses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the socket brings.
#[derive(Debug)]
pub enum Incoming {
    /// A publication on a subscribed channel.
    Push {
        channel: String,
        data: Value,
    },
    /// An rpc's answer came back after this long (the round trip).
    Answered {
        rtt: Duration,
        error: Option<String>,
    },
    Closed(String),
}

/// The connected socket: commands go out through it, what arrives comes
/// through [`Socket::incoming`].
pub struct Socket {
    out: mpsc::UnboundedSender<String>,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    next_id: u64,
    sent: std::sync::Arc<std::sync::Mutex<HashMap<u64, Instant>>>,
}

impl Socket {
    /// Connects to `url` (`ws://…/v1/ws`) with the access token and
    /// subscribes to `channels`.
    pub async fn connect(url: &str, token: &str, channels: &[String]) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.context("opening the socket")?;
        let (mut write, mut read) = ws.split();
        write.send(Message::text(json!({"id": 1, "connect": {"token": token}}).to_string())).await?;
        let reply = next_reply(&mut read).await?;
        if reply.get("error").is_some() {
            bail!("the socket refused the connection: {}", reply["error"]);
        }
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (deliver, incoming) = mpsc::unbounded_channel();
        let sent: std::sync::Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Default::default();
        let answered = sent.clone();
        let pong = out.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    command = outgoing.recv() => match command {
                        Some(text) => if write.send(Message::text(text)).await.is_err() { break },
                        None => break,
                    },
                    message = read.next() => {
                        let text = match message {
                            Some(Ok(Message::Text(t))) => t.to_string(),
                            Some(Ok(Message::Close(frame))) => {
                                let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                                let _ = deliver.send(Incoming::Closed(why));
                                break;
                            }
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => { let _ = deliver.send(Incoming::Closed(e.to_string())); break }
                            None => { let _ = deliver.send(Incoming::Closed("the server closed the socket".into())); break }
                        };
                        // Several replies may share a frame, one JSON per line.
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                            if v.as_object().is_some_and(serde_json::Map::is_empty) {
                                // The server's ping: answered with a pong.
                                let _ = pong.send("{}".to_owned());
                            } else if let Some(push) = v.get("push") {
                                let channel = push["channel"].as_str().unwrap_or_default().to_owned();
                                let data = push["pub"]["data"].clone();
                                if !data.is_null() {
                                    let _ = deliver.send(Incoming::Push { channel, data });
                                }
                            } else if let Some(id) = v["id"].as_u64() {
                                let at = answered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
                                if let Some(at) = at {
                                    let error = v.get("error").map(|e| e["message"].as_str().unwrap_or("error").to_owned());
                                    let _ = deliver.send(Incoming::Answered { rtt: at.elapsed(), error });
                                }
                            }
                        }
                    }
                }
            }
        });
        let mut socket = Self { out, incoming, next_id: 1, sent };
        for channel in channels {
            socket.subscribe(channel);
        }
        Ok(socket)
    }

    fn send(&mut self, command: &str, body: Value) {
        self.next_id += 1;
        let id = self.next_id;
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, Instant::now());
        let mut message = json!({"id": id});
        message[command] = body;
        let _ = self.out.send(message.to_string());
    }

    pub fn subscribe(&mut self, channel: &str) {
        self.send("subscribe", json!({"channel": channel}));
    }

    /// Calls `method` (`game.input`) over the socket; its round trip
    /// comes back as [`Incoming::Answered`].
    pub fn rpc(&mut self, method: &str, data: Value) {
        self.send("rpc", json!({"method": method, "data": data}));
    }
}

async fn next_reply<S>(read: &mut S) -> anyhow::Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, read.next()).await.context("no answer from the socket")?;
        match message {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.lines().next().unwrap_or("{}"))?),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket closed"),
        }
    }
}
