//! Channels shared by several realtime replicas through Redis.
//!
//! A channel's stream lives in Redis: its offset (`INCR`), its epoch, and
//! its history (a stream whose entry ids are the offsets, capped at
//! `history_size`, expiring `history_ttl_secs` after the last publication,
//! with the offset and epoch). One Lua script numbers a publication, keeps
//! it and `PUBLISH`es it, atomically, so every replica sees one order.
//! Each replica listens (`SUBSCRIBE`) to the channels its clients are
//! subscribed to, and delivers to them through its local [`Hub`].
//!
//! Subscribing listens first, then notes the link as joining (what arrives
//! is kept for it), then reads the position and, when recovering, the
//! missed publications from Redis; the reply goes out, then what arrived
//! meanwhile past the position. Nothing falls between recovery and live.
//!
//! When the link to Redis drops, a replica cannot know what its listeners
//! missed: every connection here is closed with 3010 (the SDKs reconnect
//! and recover from Redis's history). While Redis is away, subscribing and
//! publishing fail with temporary errors.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::hub::{HistoryLimits, Hub, Link, new_epoch};
use crate::protocol::{ClientInfo, ProtocolError, Publication, StreamPosition};

/// Numbers, keeps and publishes one publication. KEYS: offset, epoch,
/// history. ARGV: the pub/sub channel, the message's tail (JSON after the
/// offset and epoch), history size, TTL in seconds, an epoch for a new
/// stream.
const PUBLISH_LUA: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[2], epoch)
end
local offset = redis.call('INCR', KEYS[1])
local message = '{"o":' .. offset .. ',"e":"' .. epoch .. '",' .. ARGV[2]
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], offset .. '-1', 'm', message)
end
local ttl = tonumber(ARGV[4])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('PUBLISH', ARGV[1], message)
return {offset, epoch}
"#;

/// A stream's position and what it keeps after an offset. KEYS: offset,
/// epoch, history. ARGV: an epoch for a new stream, TTL, the offset to read
/// after (empty: read nothing). Returns epoch, offset, the oldest kept
/// offset (0: none), and the messages after the given offset.
const POSITION_LUA: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[2])
end
local offset = tonumber(redis.call('GET', KEYS[1]) or '0')
local oldest = 0
local messages = {}
if ARGV[3] ~= '' then
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if first[1] then
    oldest = tonumber(string.match(first[1][1], '^(%d+)'))
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '(' .. ARGV[3] .. '-1', '+')) do
    table.insert(messages, entry[2][2])
  end
end
return {epoch, offset, oldest, messages}
"#;

/// Adds (or renews) a client in a channel's presence, and tells the
/// channel when asked. KEYS: presence hash, expiry set. ARGV: client id,
/// its info (JSON), expiry (unix seconds), TTL, the pub/sub channel, the
/// join message (empty: none).
const PRESENCE_ADD_LUA: &str = r#"
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
"#;

/// Removes a client from a channel's presence and tells the channel.
/// KEYS: presence hash, expiry set. ARGV: client id, the pub/sub channel,
/// the leave message (empty: none).
const PRESENCE_REMOVE_LUA: &str = r#"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed > 0 and ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
"#;

/// A channel's presence, the expired entries (clients of a replica that
/// died) dropped first. KEYS: presence hash, expiry set. ARGV: now (unix s).
const PRESENCE_GET_LUA: &str = r#"
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
end
return redis.call('HVALS', KEYS[1])
"#;

/// How long a replica's word on a client's presence holds; renewed every
/// third of it.
const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// A message as it travels through Redis (and sits in a history): a
/// publication, or a join (`j`) or leave (`l`).
#[derive(Debug, Deserialize)]
struct Wire<'a> {
    /// Offset; 0 for an ephemeral publication.
    #[serde(default)]
    o: u64,
    /// Unix milliseconds.
    #[serde(default)]
    t: i64,
    #[serde(default)]
    s: Vec<String>,
    #[serde(borrow, default)]
    d: Option<&'a RawValue>,
    #[serde(default)]
    i: Option<ClientInfo>,
    #[serde(default)]
    j: Option<ClientInfo>,
    #[serde(default)]
    l: Option<ClientInfo>,
}

impl Wire<'_> {
    fn publication(&self) -> Option<Publication> {
        Some(Publication { data: self.d?.to_owned(), offset: self.o, info: self.i.clone(), time: self.t })
    }
}

/// The tail of a message: everything but the offset and epoch, which the
/// script writes in front.
fn tail(data: &RawValue, info: Option<&ClientInfo>, skip: &[String]) -> String {
    let time = chrono::Utc::now().timestamp_millis();
    let skip = serde_json::to_string(skip).unwrap_or_else(|_| "[]".to_owned());
    let info = info.and_then(|i| serde_json::to_string(i).ok()).map(|i| format!(",\"i\":{i}")).unwrap_or_default();
    format!("\"t\":{time},\"s\":{skip}{info},\"d\":{}}}", data.get())
}

pub struct Shared {
    client: redis::Client,
    commands: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// The pub/sub connection's sending half; `None` while it is down.
    /// Held while listening starts or stops, so a channel is never
    /// dropped while a link joins it.
    sink: tokio::sync::Mutex<Option<redis::aio::PubSubSink>>,
    /// The channels this replica listens to.
    listening: Mutex<HashSet<String>>,
    publish: redis::Script,
    position: redis::Script,
    presence_add: redis::Script,
    presence_remove: redis::Script,
    presence_get: redis::Script,
    limits: HistoryLimits,
    prefix: String,
    timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> ProtocolError {
    tracing::warn!(error = %e, "realtime cannot reach Redis");
    ProtocolError::Internal
}

impl Shared {
    pub fn new(url: &str, limits: HistoryLimits) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("invalid configuration: redis_url (PANAL_REDIS_URL): {e}"))?;
        Ok(Self {
            client,
            commands: tokio::sync::OnceCell::new(),
            sink: tokio::sync::Mutex::new(None),
            listening: Mutex::new(HashSet::new()),
            publish: redis::Script::new(PUBLISH_LUA),
            position: redis::Script::new(POSITION_LUA),
            presence_add: redis::Script::new(PRESENCE_ADD_LUA),
            presence_remove: redis::Script::new(PRESENCE_REMOVE_LUA),
            presence_get: redis::Script::new(PRESENCE_GET_LUA),
            limits,
            prefix: "panal:realtime:".to_owned(),
            timeout: Duration::from_secs(2),
        })
    }

    fn keys(&self, channel: &str) -> [String; 3] {
        let p = &self.prefix;
        [format!("{p}{{{channel}}}:offset"), format!("{p}{{{channel}}}:epoch"), format!("{p}{{{channel}}}:history")]
    }

    fn presence_keys(&self, channel: &str) -> [String; 2] {
        let p = &self.prefix;
        [format!("{p}{{{channel}}}:presence"), format!("{p}{{{channel}}}:presence_expiry")]
    }

    fn topic(&self, channel: &str) -> String {
        format!("{}pub:{channel}", self.prefix)
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, ProtocolError> {
        let manager = tokio::time::timeout(
            self.timeout,
            self.commands.get_or_try_init(|| redis::aio::ConnectionManager::new(self.client.clone())),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(manager.clone())
    }

    fn ttl(&self) -> u64 {
        self.limits.ttl.as_secs().max(1)
    }

    /// Numbers, keeps and publishes; the publication's position.
    pub async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        info: Option<&ClientInfo>,
        skip: &[String],
    ) -> Result<StreamPosition, ProtocolError> {
        let mut conn = self.conn().await?;
        let [offset, epoch, history] = self.keys(channel);
        let mut invocation = self.publish.key(offset);
        invocation
            .key(epoch)
            .key(history)
            .arg(self.topic(channel))
            .arg(tail(data, info, skip))
            .arg(self.limits.size)
            .arg(self.ttl())
            .arg(new_epoch());
        let call = invocation.invoke_async::<(u64, String)>(&mut conn);
        let (offset, epoch) =
            tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)?;
        Ok(StreamPosition { offset, epoch })
    }

    /// Publishes without numbering or keeping (typing).
    pub async fn publish_ephemeral(
        &self,
        channel: &str,
        data: &RawValue,
        skip: &[String],
    ) -> Result<(), ProtocolError> {
        let mut conn = self.conn().await?;
        let message = format!("{{\"o\":0,{}", tail(data, None, skip));
        let mut command = redis::cmd("PUBLISH");
        command.arg(self.topic(channel)).arg(message);
        let call = command.exec_async(&mut conn);
        tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)
    }

    /// The stream's position and, with `after`, the kept publications
    /// after that offset (and the oldest offset kept, 0 when none).
    async fn read(
        &self,
        channel: &str,
        after: Option<u64>,
    ) -> Result<(StreamPosition, u64, Vec<String>), ProtocolError> {
        let mut conn = self.conn().await?;
        let [offset, epoch, history] = self.keys(channel);
        let mut invocation = self.position.key(offset);
        invocation
            .key(epoch)
            .key(history)
            .arg(new_epoch())
            .arg(self.ttl())
            .arg(after.map(|a| a.to_string()).unwrap_or_default());
        let call = invocation.invoke_async::<(String, u64, u64, Vec<String>)>(&mut conn);
        let (epoch, offset, oldest, messages) =
            tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)?;
        Ok((StreamPosition { offset, epoch }, oldest, messages))
    }

    /// Subscribes `link` (see the module's documentation); `reply` makes the
    /// subscribe reply from what was found.
    pub async fn subscribe(
        &self,
        hub: &Hub,
        channel: &str,
        link: Link,
        recover: Option<&StreamPosition>,
        reject_unrecovered: bool,
        reply: impl FnOnce(&crate::hub::Subscribed) -> crate::hub::Frame,
    ) -> Result<crate::hub::Subscribed, ProtocolError> {
        let (id, user) = (link.id, link.info.user.clone());
        {
            let mut sink = self.sink.lock().await;
            let Some(sink) = sink.as_mut() else { return Err(unavailable("the pub/sub connection is down")) };
            let new = !self.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(channel);
            if new {
                tokio::time::timeout(self.timeout, sink.subscribe(self.topic(channel)))
                    .await
                    .map_err(unavailable)?
                    .map_err(unavailable)?;
                self.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(channel.to_owned());
            }
            hub.begin_join(channel, link);
        }
        let outcome = self.read(channel, recover.map(|r| r.offset)).await.and_then(|(position, oldest, messages)| {
            let first_kept = (oldest > 0).then_some(oldest);
            crate::hub::recovery(position, first_kept, recover, reject_unrecovered, |_| decode(&messages, &user))
        });
        match outcome {
            Ok(subscribed) => {
                hub.finish_join(channel, id, subscribed.position.offset, reply(&subscribed));
                Ok(subscribed)
            }
            Err(e) => {
                hub.abandon_join(channel, id);
                Err(e)
            }
        }
    }

    /// Up to `limit` kept publications after `since` (or the latest), for `user`.
    pub async fn history(
        &self,
        channel: &str,
        user: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), ProtocolError> {
        let (position, _, messages) = self.read(channel, Some(since.map_or(0, |s| s.offset))).await?;
        crate::hub::check_since(&position, since)?;
        let mut found = decode(&messages, user);
        if reverse {
            found.reverse();
        }
        found.truncate(limit);
        Ok((found, position))
    }

    /// Adds a subscriber to the channel's shared presence; every replica's
    /// subscribers that asked hear of the join (not in `user:` channels). A
    /// failure is logged: presence is advisory, the subscription stands.
    pub async fn joined(&self, channel: &str, info: &ClientInfo) {
        let message = announce(channel, "j", info);
        if let Err(e) = self.add_presence(channel, info, &message).await {
            tracing::warn!(channel, error = %e, "could not add a client to the shared presence");
        }
    }

    async fn add_presence(&self, channel: &str, info: &ClientInfo, message: &str) -> Result<(), ProtocolError> {
        let mut conn = self.conn().await?;
        let [hash, expiry] = self.presence_keys(channel);
        let expires = chrono::Utc::now().timestamp() + i64::try_from(PRESENCE_TTL.as_secs()).unwrap_or(60);
        let mut invocation = self.presence_add.key(hash);
        invocation
            .key(expiry)
            .arg(&info.client)
            .arg(serde_json::to_string(info).unwrap_or_default())
            .arg(expires)
            .arg(PRESENCE_TTL.as_secs())
            .arg(self.topic(channel))
            .arg(message);
        let call = invocation.invoke_async::<()>(&mut conn);
        tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)
    }

    /// Removes a subscriber from the channel's shared presence, telling the
    /// channel.
    pub async fn left(&self, channel: &str, info: &ClientInfo) {
        let removed = async {
            let mut conn = self.conn().await?;
            let [hash, expiry] = self.presence_keys(channel);
            let mut invocation = self.presence_remove.key(hash);
            invocation.key(expiry).arg(&info.client).arg(self.topic(channel)).arg(announce(channel, "l", info));
            let call = invocation.invoke_async::<()>(&mut conn);
            tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)
        };
        if let Err(e) = removed.await {
            tracing::warn!(channel, error = %e, "could not remove a client from the shared presence; it expires");
        }
    }

    /// Everyone subscribed to `channel`, on every replica.
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, ProtocolError> {
        let mut conn = self.conn().await?;
        let [hash, expiry] = self.presence_keys(channel);
        let mut invocation = self.presence_get.key(hash);
        invocation.key(expiry).arg(chrono::Utc::now().timestamp());
        let call = invocation.invoke_async::<Vec<String>>(&mut conn);
        let found = tokio::time::timeout(self.timeout, call).await.map_err(unavailable)?.map_err(unavailable)?;
        Ok(found.iter().filter_map(|info| serde_json::from_str(info).ok()).collect())
    }

    /// Renews, every third of [`PRESENCE_TTL`], the presence of every
    /// subscriber here: a replica that dies stops renewing, and its clients
    /// drop out of presence within the TTL.
    pub async fn renew_presence(self: Arc<Self>, hub: Arc<Hub>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PRESENCE_TTL / 3) => {}
            }
            for (channel, info) in hub.subscriptions() {
                if let Err(e) = self.add_presence(&channel, &info, "").await {
                    tracing::warn!(error = %e, "could not renew the shared presence; retrying later");
                    break;
                }
            }
        }
    }

    /// Delivers one message from Redis to this replica's listeners.
    fn dispatch(&self, hub: &Hub, topic: &str, payload: &[u8]) {
        let Some(channel) = topic.strip_prefix(&self.prefix).and_then(|t| t.strip_prefix("pub:")) else { return };
        match serde_json::from_slice::<Wire<'_>>(payload) {
            Ok(Wire { j: Some(info), .. }) => hub.deliver_presence(channel, &info, true),
            Ok(Wire { l: Some(info), .. }) => hub.deliver_presence(channel, &info, false),
            Ok(wire) => {
                if let Some(publication) = wire.publication() {
                    hub.deliver(channel, &publication, &wire.s);
                }
            }
            Err(e) => tracing::warn!(channel, error = %e, "an unreadable message on Redis; ignored"),
        }
    }

    /// Stops listening to channels nobody here listens to any more.
    pub async fn sweep(&self, hub: &Hub) {
        let mut sink = self.sink.lock().await;
        let Some(sink) = sink.as_mut() else { return };
        let idle: Vec<String> = self
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|c| !hub.listened(c))
            .cloned()
            .collect();
        for channel in idle {
            if tokio::time::timeout(self.timeout, sink.unsubscribe(self.topic(&channel))).await.is_ok_and(|r| r.is_ok())
            {
                self.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&channel);
            }
        }
    }

    /// The listener: keeps the pub/sub connection, resubscribes after a
    /// loss, delivers what arrives. `resync` is called whenever listeners
    /// may have missed messages (the connection dropped).
    pub async fn listen(self: Arc<Self>, hub: Arc<Hub>, resync: impl Fn(), stop: CancellationToken) {
        loop {
            let pubsub = tokio::select! {
                () = stop.cancelled() => return,
                p = tokio::time::timeout(self.timeout, self.client.get_async_pubsub()) => p,
            };
            let Ok(Ok(pubsub)) = pubsub else {
                tracing::warn!("realtime cannot open its Redis pub/sub connection; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            {
                let mut slot = self.sink.lock().await;
                // Listening starts afresh: the links here were closed when
                // the last connection dropped, and subscribe again.
                self.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                if let Err(e) = sink.subscribe(format!("{}pub:__ready", self.prefix)).await {
                    tracing::warn!(error = %e, "Redis pub/sub refused a subscription; reconnecting");
                    continue;
                }
                *slot = Some(sink);
            }
            tracing::info!("realtime listens to Redis");
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = stream.next() => match message {
                        Some(message) => self.dispatch(&hub, message.get_channel_name(), message.get_payload_bytes()),
                        None => break,
                    },
                }
            }
            tracing::warn!("realtime lost its Redis pub/sub connection; its clients are sent to reconnect");
            *self.sink.lock().await = None;
            resync();
        }
    }
}

/// The join (`j`) or leave (`l`) message for `info`, or none in channels
/// without join and leave (`user:`).
fn announce(channel: &str, kind: &str, info: &ClientInfo) -> String {
    if channel.starts_with("user:") {
        return String::new();
    }
    serde_json::to_string(info).map(|i| format!("{{\"{kind}\":{i}}}")).unwrap_or_default()
}

/// The publications among `messages` that are for `user`.
fn decode(messages: &[String], user: &str) -> Vec<Publication> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Wire<'_>>(m).ok())
        .filter(|w| !w.s.iter().any(|u| u == user))
        .filter_map(|w| w.publication())
        .collect()
}
