//! One client connection: the socket read and written, the protocol's
//! state (connected as whom, subscribed to what), the timers (connect
//! deadline, ping/pong, token expiry) and the limits.
//!
//! A reader loop handles commands in order; everything the client receives
//! — replies and pushes — goes through one bounded queue to a writer task,
//! so a reply never overtakes a publication it follows. The queue filling up
//! is the sign of a slow reader: the connection is closed (3008), never
//! buffered without bound.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use kit::auth::{AccessClaims, TokenError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::State;
use crate::domain::{self, Access, Channel, ChannelError};
use crate::hub::{Frame, Link};
use crate::protocol::{
    self, ClientInfo, ConnectResult, Disconnect, EmptyResult, HistoryResult, Outcome, PresenceResult,
    PresenceStatsResult, ProtocolError, RefreshResult, Request, RpcResult, StreamPosition, SubscribeResult,
};

/// What a connection may do, and how long it may take: `[realtime]` settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The time a new socket has to send its connect command.
    pub connect_timeout: Duration,
    /// Between the server's pings; a pong must follow within `pong_timeout`.
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// Frames waiting to be written; more and the client is too slow.
    pub send_queue: usize,
    pub max_subscriptions: usize,
    /// Commands per second, with a burst of twice that.
    pub commands_per_second: u32,
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Who is connected, once the connect command succeeded.
struct Connected {
    user: Uuid,
    /// The access token it connected (or last refreshed) with: passed to a
    /// channel's owner, who decides for this user.
    token: String,
    session: Option<Uuid>,
    client: Uuid,
    /// When the connection token expires, unless refreshed.
    expires_at: Instant,
}

/// Serves one socket until it closes.
///
/// Not an `async fn`: an async function keeps its arguments in its future for
/// as long as it runs, and the socket, split here before the future starts,
/// is the larger part of a connection. The future is what an idle
/// connection costs (docs/benchmarks.md), so it holds the two halves only.
pub fn run(socket: WebSocket, state: Arc<State>, shutdown: CancellationToken) -> impl Future<Output = ()> {
    let limits = state.limits;
    let (mut sink, stream) = socket.split();
    let (queue, mut outgoing) = mpsc::channel::<Frame>(limits.send_queue);
    let (close_tx, mut close_rx) = tokio::sync::oneshot::channel::<Disconnect>();

    // The writer: frames in queue order, then the close frame. Frames
    // already queued go out before the close (biased: the queue first).
    let writer = tokio::spawn(async move {
        let reason = loop {
            tokio::select! {
                biased;
                frame = outgoing.recv() => match frame {
                    Some(frame) => {
                        if sink.send(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    None => break close_rx.await.ok(),
                },
                reason = &mut close_rx => break reason.ok(),
            }
        };
        if let Some(reason) = reason {
            let frame = CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.reason()) };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    });

    let session = Session {
        revoked: CancellationToken::new(),
        resync: state.resync_token(),
        state: state.clone(),
        link_id: NEXT_LINK.fetch_add(1, Ordering::Relaxed),
        queue,
        slow: CancellationToken::new(),
        connected: None,
        subscriptions: HashSet::new(),
        bucket: Bucket::new(limits.commands_per_second),
    };
    connection(session, stream, writer, close_tx, shutdown)
}

async fn connection(
    mut session: Session,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut writer: tokio::task::JoinHandle<()>,
    close_tx: tokio::sync::oneshot::Sender<Disconnect>,
    shutdown: CancellationToken,
) {
    let state = session.state.clone();
    state.metrics.connections.inc();
    let reason = session.serve(&mut stream, &shutdown).await;
    state.metrics.connections.dec();
    if let Some(reason) = reason {
        state.metrics.disconnects(reason);
    }
    session.leave_all();
    if let Some(reason) = reason {
        let _ = close_tx.send(reason);
    }
    drop(session);
    // A client that stopped reading would hold the writer forever: it gets a
    // few seconds to take what is queued and the close frame, no more.
    let grace = if reason == Some(Disconnect::Slow) { Duration::ZERO } else { Duration::from_secs(5) };
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
}

struct Session {
    /// Cancelled when the session behind the connection is revoked.
    revoked: CancellationToken,
    /// Cancelled when this replica may have missed publications.
    resync: CancellationToken,
    state: Arc<State>,
    link_id: u64,
    queue: mpsc::Sender<Frame>,
    slow: CancellationToken,
    connected: Option<Connected>,
    subscriptions: HashSet<String>,
    bucket: Bucket,
}

impl Session {
    /// Reads commands until the client goes or is sent away; returns why it
    /// was sent away.
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        shutdown: &CancellationToken,
    ) -> Option<Disconnect> {
        let limits = self.state.limits;
        let connect_deadline = Instant::now() + limits.connect_timeout;
        let mut next_ping = Instant::now() + limits.ping_interval;
        let mut pong_due: Option<Instant> = None;
        loop {
            let expiry = self.connected.as_ref().map(|c| c.expires_at);
            let deadline = match (&self.connected, pong_due) {
                (None, _) => connect_deadline,
                (Some(_), Some(due)) => due.min(next_ping).min(expiry.unwrap_or(due)),
                (Some(_), None) => next_ping.min(expiry.unwrap_or(next_ping)),
            };
            tokio::select! {
                () = shutdown.cancelled() => return Some(Disconnect::Shutdown),
                () = self.slow.cancelled() => return Some(Disconnect::Slow),
                () = self.revoked.cancelled() => return Some(Disconnect::Revoked),
                () = self.resync.cancelled() => return Some(Disconnect::InsufficientState),
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    let Some(connected) = &self.connected else { return Some(Disconnect::Stale) };
                    if connected.expires_at <= now {
                        return Some(Disconnect::Expired);
                    }
                    if pong_due.is_some_and(|due| due <= now) {
                        return Some(Disconnect::NoPong);
                    }
                    if next_ping <= now {
                        if !self.send(Frame::from_static(protocol::PING)) {
                            return Some(Disconnect::Slow);
                        }
                        next_ping = now + limits.ping_interval;
                        pong_due.get_or_insert(now + limits.pong_timeout);
                    }
                }
                message = stream.next() => {
                    let text = match message {
                        None | Some(Ok(Message::Close(_))) => return None,
                        // A frame over the size limit, or not WebSocket at all.
                        Some(Err(_)) => return Some(Disconnect::BadRequest),
                        // Over the limit: refused with a close code of its own
                        // (frames past the socket's hard limit never get here).
                        Some(Ok(Message::Text(text))) if text.len() > crate::MAX_MESSAGE_BYTES => {
                            return Some(Disconnect::MessageTooBig);
                        }
                        Some(Ok(Message::Text(text))) => text,
                        // Panal speaks the JSON format only.
                        Some(Ok(Message::Binary(_))) => return Some(Disconnect::BadRequest),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    };
                    for command in protocol::commands(text.as_str()) {
                        let Ok(command) = command else { return Some(Disconnect::BadRequest) };
                        let asked = command.id;
                        let (id, request) = match command.request() {
                            Ok(request) => request,
                            Err(e) => {
                                if !self.reply(asked, &Outcome::Error(e.body())) {
                                    return Some(Disconnect::Slow);
                                }
                                continue;
                            }
                        };
                        if let Request::Pong = request {
                            pong_due = None;
                            continue;
                        }
                        if !self.bucket.take() {
                            self.state.metrics.rate_limited.inc();
                            if !self.reply(id, &Outcome::Error(ProtocolError::TooManyRequests.body())) {
                                return Some(Disconnect::Slow);
                            }
                            continue;
                        }
                        let started = std::time::Instant::now();
                        let method = request.method();
                        // Boxed: the largest command's future would otherwise
                        // be part of every connection's, idle or not.
                        let outcome = match Box::pin(self.handle(id, request)).await {
                            Ok(outcome) => outcome,
                            Err(Handled::Close(reason)) => return Some(reason),
                            Err(Handled::Error(e)) => Outcome::Error(e.body()),
                        };
                        self.state.metrics.command(method, !matches!(outcome, Outcome::Error(_)), started.elapsed());
                        if id != 0 && !matches!(outcome, Outcome::Sent) && !self.reply(id, &outcome) {
                            return Some(Disconnect::Slow);
                        }
                    }
                }
            }
        }
    }

    async fn handle(&mut self, id: u32, request: Request) -> Result<Outcome, Handled> {
        let Some(connected) = &self.connected else {
            return match request {
                Request::Connect(connect) => self.connect(&connect.token).await,
                // Anything before connect: the client is broken.
                _ => Err(Handled::Close(Disconnect::BadRequest)),
            };
        };
        let user = connected.user;
        match request {
            Request::Connect(_) => Err(Handled::Error(ProtocolError::BadRequest("already connected"))),
            Request::Pong | Request::Ping => Ok(Outcome::Ping(EmptyResult {})),
            Request::Refresh(refresh) => self.refresh(&refresh.token).await,
            Request::Subscribe(subscribe) => {
                let channel = self.channel(&subscribe.channel)?;
                if self.subscriptions.contains(channel.as_str()) {
                    return Err(Handled::Error(ProtocolError::AlreadySubscribed));
                }
                if self.subscriptions.len() >= self.state.limits.max_subscriptions {
                    return Err(Handled::Error(ProtocolError::LimitExceeded));
                }
                self.allowed(user, &connected.token.clone(), &channel).await?;
                let link = Link {
                    id: self.link_id,
                    info: self.info(),
                    join_leave: subscribe.join_leave,
                    queue: self.queue.clone(),
                    slow: self.slow.clone(),
                };
                let recover = subscribe
                    .recover
                    .then(|| StreamPosition { offset: subscribe.offset, epoch: subscribe.epoch.clone() });
                let reject_unrecovered = subscribe.flag & protocol::REJECT_UNRECOVERED != 0;
                let was_recovering = subscribe.recover;
                // The reply is queued by the hub, ahead of the first
                // publication the link can receive.
                let reply = |s: &crate::hub::Subscribed| {
                    Frame::from(protocol::reply(
                        id,
                        &Outcome::Subscribe(SubscribeResult {
                            recoverable: true,
                            positioned: true,
                            epoch: s.position.epoch.clone(),
                            offset: s.position.offset,
                            recovered: s.recovered,
                            was_recovering,
                            publications: s.publications.clone(),
                            ..Default::default()
                        }),
                    ))
                };
                let subscribed = self
                    .state
                    .channels
                    .subscribe(channel.as_str(), link, recover.as_ref(), reject_unrecovered, reply)
                    .await
                    .map_err(Handled::Error)?;
                self.subscriptions.insert(channel.as_str().to_owned());
                if was_recovering {
                    self.state.metrics.recovery(subscribed.recovered);
                }
                Ok(Outcome::Sent)
            }
            Request::Unsubscribe(unsubscribe) => {
                if self.subscriptions.remove(&unsubscribe.channel) {
                    self.state.channels.unsubscribe(&unsubscribe.channel, self.link_id, &self.info());
                }
                Ok(Outcome::Unsubscribe(EmptyResult {}))
            }
            Request::Publish(publish) => {
                let channel = self.channel(&publish.channel)?;
                if !domain::client_may_publish(&channel) {
                    return Err(Handled::Error(ProtocolError::PermissionDenied));
                }
                self.state
                    .channels
                    .publish(channel.as_str(), publish.data, Some(self.info()), Vec::new())
                    .await
                    .map_err(Handled::Error)?;
                Ok(Outcome::Publish(EmptyResult {}))
            }
            Request::Presence(request) => {
                let channel = self.subscribed(&request.channel)?;
                let presence = self
                    .state
                    .channels
                    .presence(channel.as_str())
                    .await
                    .map_err(Handled::Error)?
                    .into_iter()
                    .map(|i| (i.client.clone(), i))
                    .collect();
                Ok(Outcome::Presence(PresenceResult { presence }))
            }
            Request::PresenceStats(request) => {
                let channel = self.subscribed(&request.channel)?;
                let presence = self.state.channels.presence(channel.as_str()).await.map_err(Handled::Error)?;
                let users: HashSet<&str> = presence.iter().map(|i| i.user.as_str()).collect();
                Ok(Outcome::PresenceStats(PresenceStatsResult {
                    num_clients: u32::try_from(presence.len()).unwrap_or(u32::MAX),
                    num_users: u32::try_from(users.len()).unwrap_or(u32::MAX),
                }))
            }
            Request::History(request) => {
                let channel = self.subscribed(&request.channel)?;
                let limit = usize::try_from(request.limit.max(0)).unwrap_or(0);
                let (publications, position) = self
                    .state
                    .channels
                    .history(channel.as_str(), &user.to_string(), request.since.as_ref(), limit, request.reverse)
                    .await
                    .map_err(Handled::Error)?;
                Ok(Outcome::History(HistoryResult { publications, epoch: position.epoch, offset: position.offset }))
            }
            Request::Rpc(rpc) => {
                let token = connected.token.clone();
                match self.state.owners.rpc(&token, &rpc.method, rpc.data.as_deref()).await {
                    Ok(data) => Ok(Outcome::Rpc(RpcResult { data })),
                    Err(body) => Ok(Outcome::Error(body)),
                }
            }
            Request::Send(_) => Err(Handled::Error(ProtocolError::MethodNotFound)),
            Request::SubRefresh(_) => Err(Handled::Error(ProtocolError::NotAvailable)),
        }
    }

    async fn connect(&mut self, token: &str) -> Result<Outcome, Handled> {
        let claims = self.verify(token).await?;
        let client = Uuid::new_v4();
        let (expires, ttl) = self.expiry(&claims);
        if let Some(session) = claims.sid {
            self.state.sessions.open(session, self.link_id, self.revoked.clone());
        }
        self.state.presence.connected(claims.sub);
        self.connected = Some(Connected {
            user: claims.sub,
            token: token.to_owned(),
            session: claims.sid,
            client,
            expires_at: expires,
        });
        Ok(Outcome::Connect(ConnectResult {
            client: client.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: true,
            ttl,
            ping: u32::try_from(self.state.limits.ping_interval.as_secs()).unwrap_or(25),
            pong: true,
        }))
    }

    async fn refresh(&mut self, token: &str) -> Result<Outcome, Handled> {
        let claims = self.verify(token).await?;
        let (expires_at, ttl) = self.expiry(&claims);
        let Some(connected) = self.connected.as_mut() else { return Err(Handled::Close(Disconnect::BadRequest)) };
        // The same user only: a refresh cannot turn a connection into someone else's.
        if claims.sub != connected.user {
            return Err(Handled::Close(Disconnect::InvalidToken));
        }
        connected.expires_at = expires_at;
        if connected.session != claims.sid {
            if let Some(old) = connected.session {
                self.state.sessions.close(old, self.link_id);
            }
            if let Some(new) = claims.sid {
                self.state.sessions.open(new, self.link_id, self.revoked.clone());
            }
            connected.session = claims.sid;
        }
        token.clone_into(&mut connected.token);
        Ok(Outcome::Refresh(RefreshResult {
            client: connected.client.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: true,
            ttl,
        }))
    }

    /// A user's access token, verified. An expired one is error 109 (the
    /// SDK fetches a new token and tries again); anything else closes the
    /// connection (3500, no reconnect).
    async fn verify(&self, token: &str) -> Result<AccessClaims, Handled> {
        match self.state.verifier.verify(token).await {
            Ok(claims) if claims.sid.is_some() => Ok(Arc::unwrap_or_clone(claims)),
            Ok(_) => Err(Handled::Close(Disconnect::InvalidToken)),
            Err(TokenError::Expired) => Err(Handled::Error(ProtocolError::TokenExpired)),
            Err(_) => Err(Handled::Close(Disconnect::InvalidToken)),
        }
    }

    fn expiry(&self, claims: &AccessClaims) -> (Instant, u32) {
        let left = (claims.exp - chrono::Utc::now().timestamp()).max(1);
        let left = u64::try_from(left).unwrap_or(1);
        (Instant::now() + Duration::from_secs(left), u32::try_from(left).unwrap_or(u32::MAX))
    }

    fn info(&self) -> ClientInfo {
        let (user, client) =
            self.connected.as_ref().map(|c| (c.user.to_string(), c.client.to_string())).unwrap_or_default();
        ClientInfo { user, client }
    }

    fn channel(&self, name: &str) -> Result<Channel, Handled> {
        Channel::parse(name).map_err(|e| {
            Handled::Error(match e {
                ChannelError::Malformed => ProtocolError::BadRequest("the channel name is malformed"),
                ChannelError::UnknownNamespace => ProtocolError::UnknownChannel,
            })
        })
    }

    /// Presence and history are for subscribers of the channel.
    fn subscribed(&self, name: &str) -> Result<Channel, Handled> {
        let channel = self.channel(name)?;
        if !self.subscriptions.contains(channel.as_str()) {
            return Err(Handled::Error(ProtocolError::PermissionDenied));
        }
        Ok(channel)
    }

    async fn allowed(&self, user: Uuid, token: &str, channel: &Channel) -> Result<(), Handled> {
        match domain::subscribe_access(user, channel) {
            Access::Allowed => Ok(()),
            Access::Denied => Err(Handled::Error(ProtocolError::PermissionDenied)),
            Access::AskOwner(owner) => {
                if self.state.owners.allows(owner, token, channel).await {
                    Ok(())
                } else {
                    Err(Handled::Error(ProtocolError::PermissionDenied))
                }
            }
        }
    }

    fn reply(&self, id: u32, outcome: &Outcome) -> bool {
        self.send(Frame::from(protocol::reply(id, outcome)))
    }

    /// Queues a frame; false when the queue is full (a slow client).
    fn send(&self, frame: Frame) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    fn leave_all(&mut self) {
        let info = self.connected.as_ref().map(|_| self.info());
        if let Some(connected) = self.connected.take() {
            if let Some(session) = connected.session {
                self.state.sessions.close(session, self.link_id);
            }
            self.state.presence.disconnected(connected.user);
        }
        if let Some(info) = info {
            for channel in self.subscriptions.drain() {
                self.state.channels.unsubscribe(&channel, self.link_id, &info);
            }
        }
    }
}

/// Why a command did not succeed.
enum Handled {
    /// Its reply is this error.
    Error(ProtocolError),
    /// The connection ends.
    Close(Disconnect),
}

/// A token bucket: `rate` per second, bursts of twice that.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self { rate, tokens: rate * 2.0, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
