//! The terminal client's side of the wire: the gateway's HTTP API (sign-in,
//! queue, invitations, joining) and its WebSocket, which speaks the
//! Centrifugo JSON protocol (`docs/realtime.md`): connect with the access
//! token, subscribe to `user:<me>` and `game:<match>`, receive their
//! publications, call `game.input` and `game.heartbeat` over `rpc`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The gateway's HTTP API with one access token.
pub struct Api {
    http: reqwest::Client,
    base: String,
    pub token: String,
    pub user_id: String,
}

/// A problem document's words, or the status.
async fn refused(what: &str, r: reqwest::Response) -> anyhow::Error {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let detail = body["detail"].as_str().unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    anyhow::anyhow!("{what}: {detail} ({})", status.as_u16())
}

impl Api {
    /// Signs in; `code` answers a second-factor challenge (asked for on
    /// standard input when the account has one and no code was given).
    pub async fn sign_in(base: &str, email: &str, password: &str, code: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let base = base.trim_end_matches('/').to_owned();
        let r = http
            .post(format!("{base}/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        if !r.status().is_success() {
            return Err(refused("signing in", r).await);
        }
        let mut answer: Value = r.json().await?;
        if answer["mfa_required"] == true {
            let code = match code {
                Some(code) => code,
                None => super::prompt("code from your authenticator app: ")?,
            };
            let r = http
                .post(format!("{base}/v1/auth/login/mfa"))
                .json(&json!({"mfa_token": answer["mfa_token"], "code": code}))
                .send()
                .await?;
            if !r.status().is_success() {
                return Err(refused("the second factor", r).await);
            }
            answer = r.json().await?;
        }
        let token = answer["access_token"].as_str().context("no access token in the answer")?.to_owned();
        let me: Value = http.get(format!("{base}/v1/auth/me")).bearer_auth(&token).send().await?.json().await?;
        let user_id = me["id"].as_str().context("no id in /v1/auth/me")?.to_owned();
        Ok(Self { http, base, token, user_id })
    }

    /// `POST path` with `body`: the answer's JSON on success.
    pub async fn post(&self, what: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        if !r.status().is_success() {
            return Err(refused(what, r).await);
        }
        let text = r.text().await?;
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// The socket's URL: the gateway's, `ws` instead of `http`.
    pub fn socket_url(&self) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        format!("{ws}/v1/ws")
    }
}

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
    /// Connects with the access token and subscribes to `channels`.
    pub async fn connect(api: &Api, channels: &[String]) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(api.socket_url()).await.context("opening the socket")?;
        let (mut write, mut read) = ws.split();
        write.send(Message::text(json!({"id": 1, "connect": {"token": api.token}}).to_string())).await?;
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

    /// Calls `game.<method>` over the socket; its round trip comes back as
    /// [`Incoming::Answered`].
    pub fn rpc(&mut self, method: &str, data: Value) {
        self.send("rpc", json!({"method": format!("game.{method}"), "data": data}));
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
