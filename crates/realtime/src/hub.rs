//! Channels in memory: who is subscribed, each channel's stream position and
//! bounded history, and fan-out.
//!
//! A publication is numbered (the channel's next offset, within its epoch),
//! kept in the history and encoded once; the same encoded line goes into
//! every subscriber's send queue. A queue that is full belongs to a client
//! that reads too slowly: it is told to go ([`Link::slow`]), never buffered
//! without bound, and the others are not held up. Subscribing reads the
//! history under the same lock that publishing takes, so a subscriber
//! misses nothing between its recovered publications and the live ones.
//!
//! This is the broker of `panal up` (one process). Several replicas share
//! channels through Redis instead (docs/realtime.md says what is built).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, ClientInfo, ProtocolError, Publication, PushBody, StreamPosition};

/// An encoded line for a connection's socket: the bytes of a WebSocket text
/// message, reference-counted, so every subscriber's queue (and socket)
/// shares one copy.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// How a hub keeps history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Publications kept per channel.
    pub size: usize,
    /// How long a publication is kept.
    pub ttl: Duration,
}

/// The hub's end of a connection: its send queue, and the signal that it
/// fell behind.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: u64,
    pub info: ClientInfo,
    /// It asked for join and leave pushes.
    pub join_leave: bool,
    pub queue: mpsc::Sender<Frame>,
    pub slow: CancellationToken,
}

impl Link {
    /// Queues `frame`; a full queue marks the connection slow (it is then
    /// closed by its session) and drops the frame.
    pub fn offer(&self, frame: Frame) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

struct Stored {
    publication: Publication,
    at: Instant,
    /// Users it is not for (see [`Hub::publish`]); usually none.
    skip: Vec<String>,
}

impl Stored {
    fn for_user(&self, user: &str) -> bool {
        !self.skip.iter().any(|u| u == user)
    }
}

struct ChannelState {
    epoch: String,
    offset: u64,
    history: VecDeque<Stored>,
    subscribers: HashMap<u64, Link>,
    /// Links subscribing through a shared broker ([`crate::shared`]),
    /// between listening and knowing their start position: what arrives
    /// meanwhile waits here with its offset.
    joining: HashMap<u64, (Link, Vec<(u64, Frame)>)>,
}

impl ChannelState {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            offset: 0,
            history: VecDeque::new(),
            subscribers: HashMap::new(),
            joining: HashMap::new(),
        }
    }

    fn idle(&self) -> bool {
        self.subscribers.is_empty() && self.joining.is_empty() && self.history.is_empty()
    }

    /// Adds `link`, telling the others who ask (not in `user:` channels;
    /// with a shared broker, the broker tells everyone instead).
    fn admit(&mut self, channel: &str, link: Link, local_presence: bool) {
        if local_presence && presence_of(channel) {
            let frame = Frame::from(protocol::push(channel, PushBody::Join { info: &link.info }));
            for other in self.subscribers.values().filter(|l| l.join_leave && l.id != link.id) {
                other.offer(frame.clone());
            }
        }
        self.subscribers.insert(link.id, link);
    }

    fn trim(&mut self, limits: HistoryLimits, now: Instant) {
        while self.history.len() > limits.size {
            self.history.pop_front();
        }
        while self.history.front().is_some_and(|s| now.duration_since(s.at) > limits.ttl) {
            self.history.pop_front();
        }
    }
}

/// A short random epoch: a channel whose state was lost (a restart, or
/// history that expired while nobody listened) starts a new one, and clients
/// recovering from the old one learn they cannot.
pub fn new_epoch() -> String {
    let bytes: [u8; 6] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a subscription starts from, by the same rules wherever the stream
/// lives (here, or Redis): for a client recovering from `recover`, the
/// publications after it (`missed`) and `recovered: true` when the stream at
/// `position` still keeps all of them (`first_kept`: its oldest kept
/// publication, none when `None`) in the same epoch; else none and
/// `recovered: false` — or error 112 with `reject_unrecovered`, and always
/// for a position ahead of the stream.
pub fn recovery(
    position: StreamPosition,
    first_kept: Option<u64>,
    recover: Option<&StreamPosition>,
    reject_unrecovered: bool,
    missed: impl FnOnce(u64) -> Vec<Publication>,
) -> Result<Subscribed, ProtocolError> {
    let (publications, recovered) = match recover {
        None => (Vec::new(), false),
        Some(since) if since.epoch != position.epoch => (Vec::new(), false),
        Some(since) if since.offset > position.offset => return Err(ProtocolError::UnrecoverablePosition),
        Some(since) if since.offset + 1 < first_kept.unwrap_or(position.offset + 1) => (Vec::new(), false),
        Some(since) => (missed(since.offset), true),
    };
    if recover.is_some() && !recovered && reject_unrecovered {
        return Err(ProtocolError::UnrecoverablePosition);
    }
    Ok(Subscribed { position, publications, recovered })
}

/// A `history` position must be of the stream's epoch and not ahead of it.
pub fn check_since(position: &StreamPosition, since: Option<&StreamPosition>) -> Result<(), ProtocolError> {
    match since {
        Some(since) if since.epoch != position.epoch || since.offset > position.offset => {
            Err(ProtocolError::UnrecoverablePosition)
        }
        _ => Ok(()),
    }
}

/// Encodes `publication` once and offers it to every subscriber of `state`
/// that is not one of `skip`'s users; how many took it.
fn offer(state: &ChannelState, channel: &str, publication: &Publication, skip: &[String]) -> usize {
    let frame = Frame::from(protocol::push(channel, PushBody::Pub(publication)));
    state.subscribers.values().filter(|link| !skip.contains(&link.info.user) && link.offer(frame.clone())).count()
}

/// Whether `channel` tells its subscribers who joins and leaves: not a
/// user's own channel (nobody else is in it).
fn presence_of(channel: &str) -> bool {
    !channel.starts_with("user:")
}

/// What a subscription starts from.
#[derive(Debug)]
pub struct Subscribed {
    pub position: StreamPosition,
    /// The publications missed since the client's position, when asked.
    pub publications: Vec<Publication>,
    /// Whether they are all of them (`false`: the client must reload).
    pub recovered: bool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The channels of one process.
pub struct Hub {
    shards: Vec<Mutex<HashMap<String, ChannelState>>>,
    limits: HistoryLimits,
    /// Join and leave pushes come from this hub (one process), or from the
    /// shared broker (replicas: [`Hub::deliver_presence`]).
    local_presence: bool,
}

const SHARDS: usize = 16;

impl Hub {
    pub fn new(limits: HistoryLimits) -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), limits, local_presence: true }
    }

    /// The local fan-out of a shared broker: presence comes from the broker.
    pub fn for_shared(limits: HistoryLimits) -> Self {
        Self { local_presence: false, ..Self::new(limits) }
    }

    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, HashMap<String, ChannelState>> {
        // Channel names are the clients' to choose, but a crafted name can at
        // worst crowd one shard; each shard's map keeps std's keyed hash.
        let index = std::hash::BuildHasher::hash_one(&kit::hash::FxBuildHasher, channel) as usize % SHARDS;
        // A poisoned shard means a panic while holding it; the maps hold
        // no invariant a panic can break halfway, so carry on.
        self.shards[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `link` to `channel` and says where the stream is; with
    /// `recover`, also the publications after that position, or
    /// `recovered: false` when the history no longer holds them all or the
    /// epoch changed (or, with `reject_unrecovered`, error 112 and no
    /// subscription). A position ahead of the stream is refused.
    ///
    /// The reply (`reply` of what was found) is queued to the link under
    /// the channel's lock, before the link can receive anything: a
    /// publication never reaches a client ahead of its subscription.
    pub fn subscribe(
        &self,
        channel: &str,
        link: Link,
        recover: Option<&StreamPosition>,
        reject_unrecovered: bool,
        reply: impl FnOnce(&Subscribed) -> Frame,
    ) -> Result<Subscribed, ProtocolError> {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.to_owned()).or_insert_with(ChannelState::new);
        state.trim(self.limits, now);
        let position = StreamPosition { offset: state.offset, epoch: state.epoch.clone() };
        let first_kept = state.history.front().map(|s| s.publication.offset);
        let user = link.info.user.as_str();
        let subscribed = recovery(position, first_kept, recover, reject_unrecovered, |after| {
            let missed = state.history.iter().filter(|s| s.publication.offset > after && s.for_user(user));
            missed.map(|s| s.publication.clone()).collect()
        })?;
        link.offer(reply(&subscribed));
        state.admit(channel, link, self.local_presence);
        Ok(subscribed)
    }

    /// A shared broker's subscription, first step: `link` is noted as
    /// joining `channel`; what is delivered from now on is kept for it.
    pub fn begin_join(&self, channel: &str, link: Link) {
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.to_owned()).or_insert_with(ChannelState::new);
        state.joining.insert(link.id, (link, Vec::new()));
    }

    /// Second step, once the broker said where the stream is: the reply is
    /// queued, then what arrived meanwhile after `position` (and ephemeral
    /// publications), and the link becomes a subscriber. `false` when the
    /// link gave up meanwhile.
    pub fn finish_join(&self, channel: &str, link: u64, position: u64, reply: Frame) -> bool {
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else { return false };
        let Some((link, waiting)) = state.joining.remove(&link) else { return false };
        link.offer(reply);
        for (offset, frame) in waiting {
            if offset == 0 || offset > position {
                link.offer(frame);
            }
        }
        state.admit(channel, link, self.local_presence);
        true
    }

    /// A join that failed: forgotten.
    pub fn abandon_join(&self, channel: &str, link: u64) {
        let mut shard = self.shard(channel);
        if let Some(state) = shard.get_mut(channel) {
            state.joining.remove(&link);
            if state.idle() {
                shard.remove(channel);
            }
        }
    }

    /// Delivers a publication numbered elsewhere (a shared broker) to this
    /// process's subscribers of `channel`, but `skip`'s users; kept for the
    /// links still joining. How many took it.
    pub fn deliver(&self, channel: &str, publication: &Publication, skip: &[String]) -> usize {
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else { return 0 };
        let reached = offer(state, channel, publication, skip);
        if !state.joining.is_empty() {
            let frame = Frame::from(protocol::push(channel, PushBody::Pub(publication)));
            for (link, waiting) in state.joining.values_mut() {
                if !skip.contains(&link.info.user) {
                    waiting.push((publication.offset, frame.clone()));
                }
            }
        }
        reached
    }

    /// A join or leave the shared broker reports: pushed to the subscribers
    /// here that asked, but the client it is about.
    pub fn deliver_presence(&self, channel: &str, info: &ClientInfo, joined: bool) {
        let shard = self.shard(channel);
        let Some(state) = shard.get(channel) else { return };
        let body = if joined { PushBody::Join { info } } else { PushBody::Leave { info } };
        let frame = Frame::from(protocol::push(channel, body));
        for link in state.subscribers.values().filter(|l| l.join_leave && l.info.client != info.client) {
            link.offer(frame.clone());
        }
    }

    /// Every subscription here, as (channel, who): for renewing them in a
    /// shared presence.
    pub fn subscriptions(&self) -> Vec<(String, ClientInfo)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (channel, state) in shard.iter() {
                all.extend(state.subscribers.values().map(|l| (channel.clone(), l.info.clone())));
            }
        }
        all
    }

    /// Whether anyone here listens to `channel` (subscribed or joining).
    pub fn listened(&self, channel: &str) -> bool {
        self.shard(channel).get(channel).is_some_and(|s| !s.subscribers.is_empty() || !s.joining.is_empty())
    }

    /// Every link here, for telling them all to go.
    pub fn links(&self) -> Vec<Link> {
        let mut links = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for state in shard.values() {
                links.extend(state.subscribers.values().cloned());
                links.extend(state.joining.values().map(|(l, _)| l.clone()));
            }
        }
        links
    }

    pub fn unsubscribe(&self, channel: &str, link: u64) {
        let mut shard = self.shard(channel);
        if let Some(state) = shard.get_mut(channel) {
            if let Some(left) = state.subscribers.remove(&link)
                && self.local_presence
                && presence_of(channel)
            {
                let frame = Frame::from(protocol::push(channel, PushBody::Leave { info: &left.info }));
                for other in state.subscribers.values().filter(|l| l.join_leave) {
                    other.offer(frame.clone());
                }
            }
            if state.idle() {
                shard.remove(channel);
            }
        }
    }

    /// Publishes `data` to `channel`: numbered, kept, and offered to every
    /// subscriber but those of the users in `skip` (who never see it, live,
    /// recovered or in history: chat's blocks). Returns its position and how
    /// many subscribers it reached.
    pub fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<ClientInfo>,
        skip: Vec<String>,
    ) -> (StreamPosition, usize) {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.to_owned()).or_insert_with(ChannelState::new);
        state.offset += 1;
        let publication = Publication { data, offset: state.offset, info, time: chrono::Utc::now().timestamp_millis() };
        let reached = offer(state, channel, &publication, &skip);
        if self.limits.size > 0 {
            state.history.push_back(Stored { publication, at: now, skip });
        }
        state.trim(self.limits, now);
        (StreamPosition { offset: state.offset, epoch: state.epoch.clone() }, reached)
    }

    /// Offers `data` to `channel`'s subscribers of this moment (but `skip`'s)
    /// without numbering or keeping it: what only matters live (typing).
    /// Returns how many it reached.
    pub fn publish_ephemeral(&self, channel: &str, data: Box<RawValue>, skip: &[String]) -> usize {
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else { return 0 };
        let publication = Publication { data, offset: 0, info: None, time: chrono::Utc::now().timestamp_millis() };
        offer(state, channel, &publication, skip)
    }

    /// Up to `limit` publications after `since` (or the latest `limit`),
    /// oldest first unless `reverse`, and the stream's position.
    pub fn history(
        &self,
        channel: &str,
        user: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), ProtocolError> {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else {
            return Ok((Vec::new(), StreamPosition { offset: 0, epoch: String::new() }));
        };
        state.trim(self.limits, now);
        let position = StreamPosition { offset: state.offset, epoch: state.epoch.clone() };
        check_since(&position, since)?;
        let after = since.map_or(0, |s| s.offset);
        let mut found: Vec<Publication> = state
            .history
            .iter()
            .filter(|s| s.publication.offset > after && s.for_user(user))
            .map(|s| s.publication.clone())
            .collect();
        if reverse {
            found.reverse();
        }
        found.truncate(limit);
        Ok((found, position))
    }

    /// Who is subscribed to `channel` here, by client id.
    pub fn presence(&self, channel: &str) -> Vec<ClientInfo> {
        self.shard(channel)
            .get(channel)
            .map(|s| s.subscribers.values().map(|l| l.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Drops channels nobody listens to whose history has expired.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            shard.retain(|_, state| {
                state.trim(self.limits, now);
                !state.idle()
            });
        }
    }

    /// Channels held, and subscriptions across them (for metrics).
    pub fn counts(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(channels, subs), shard| {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (channels + shard.len(), subs + shard.values().map(|s| s.subscribers.len()).sum::<usize>())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: u64, capacity: usize) -> (Link, mpsc::Receiver<Frame>) {
        let (queue, rx) = mpsc::channel(capacity);
        let info = ClientInfo { user: "u".into(), client: format!("c{id}") };
        (Link { id, info, join_leave: true, queue, slow: CancellationToken::new() }, rx)
    }

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap_or_else(|_| unreachable!())
    }

    fn no_reply(_: &Subscribed) -> Frame {
        Frame::from_static("{}")
    }

    const LIMITS: HistoryLimits = HistoryLimits { size: 10, ttl: Duration::from_secs(60) };

    #[test]
    fn a_subscriber_that_comes_back_gets_exactly_what_it_missed_or_is_told_it_cannot() {
        let hub = Hub::new(LIMITS);
        let (a, mut rx) = link(1, 64);
        let start = hub.subscribe("chat:1", a, None, false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(start.position.offset, 0);
        for n in 1..=3 {
            hub.publish("chat:1", data(n), None, Vec::new());
        }
        let reply = rx.try_recv().unwrap_or_else(|_| unreachable!());
        assert_eq!(reply.as_str(), "{}", "the subscribe reply is queued before any publication");
        let first: serde_json::Value =
            serde_json::from_str(rx.try_recv().unwrap_or_else(|_| unreachable!()).as_str()).unwrap_or_default();
        assert_eq!(
            (first["push"]["channel"].as_str(), first["push"]["pub"]["offset"].as_u64()),
            (Some("chat:1"), Some(1))
        );
        assert_eq!(first["push"]["pub"]["data"], serde_json::json!({"n": 1}), "data goes out as it came in");
        hub.unsubscribe("chat:1", 1);
        for n in 4..=8 {
            hub.publish("chat:1", data(n), None, Vec::new());
        }
        let (b, _rx) = link(2, 64);
        let back = StreamPosition { offset: 3, epoch: start.position.epoch.clone() };
        let again = hub.subscribe("chat:1", b, Some(&back), false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.recovered);
        assert_eq!(again.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [4, 5, 6, 7, 8]);

        // Beyond the history (10 kept): not recoverable.
        for n in 9..=30 {
            hub.publish("chat:1", data(n), None, Vec::new());
        }
        let (c, _rx) = link(3, 64);
        let lost = hub.subscribe("chat:1", c, Some(&back), false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        assert!(!lost.recovered && lost.publications.is_empty());
        // Another epoch: not recoverable; a position from the future: refused.
        let (d, _rx) = link(4, 64);
        let other = StreamPosition { offset: 3, epoch: "elsewhere".into() };
        assert!(
            !hub.subscribe("chat:1", d.clone(), Some(&other), false, no_reply)
                .unwrap_or_else(|e| panic!("{e}"))
                .recovered
        );
        let future = StreamPosition { offset: 31, epoch: start.position.epoch };
        assert_eq!(
            hub.subscribe("chat:1", d.clone(), Some(&future), false, no_reply).err(),
            Some(ProtocolError::UnrecoverablePosition)
        );
        // Asked to: a lost position is error 112 rather than `recovered: false`.
        assert_eq!(
            hub.subscribe("chat:1", d, Some(&back), true, no_reply).err(),
            Some(ProtocolError::UnrecoverablePosition)
        );
    }

    #[test]
    fn a_skipped_user_never_sees_a_publication_live_recovered_or_in_history() {
        let hub = Hub::new(LIMITS);
        let (skipped, mut skipped_rx) = link(1, 64);
        let (other, mut other_rx) = link(2, 64);
        let skipped = Link { info: ClientInfo { user: "bob".into(), client: "c1".into() }, ..skipped };
        let start = hub.subscribe("chat:1", skipped.clone(), None, false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        hub.subscribe("chat:1", other, None, false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        while other_rx.try_recv().is_ok() || skipped_rx.try_recv().is_ok() {}
        hub.publish("chat:1", data(1), None, vec!["bob".into()]);
        hub.publish("chat:1", data(2), None, Vec::new());
        assert_eq!(hub.publish_ephemeral("chat:1", data(3), &["bob".to_owned()]), 1);
        let offsets = |rx: &mut mpsc::Receiver<Frame>| {
            let mut seen = Vec::new();
            while let Ok(frame) = rx.try_recv() {
                let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap_or_default();
                seen.push((v["push"]["pub"]["data"]["n"].as_u64(), v["push"]["pub"]["offset"].as_u64()));
            }
            seen
        };
        assert_eq!(offsets(&mut skipped_rx), [(Some(2), Some(2))]);
        assert_eq!(
            offsets(&mut other_rx),
            [(Some(1), Some(1)), (Some(2), Some(2)), (Some(3), None)],
            "ephemeral: no offset"
        );
        hub.unsubscribe("chat:1", 1);
        let back =
            hub.subscribe("chat:1", skipped, Some(&start.position), false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.recovered);
        assert_eq!(back.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [2]);
        let (history, _) = hub.history("chat:1", "bob", None, 10, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(history.iter().map(|p| p.offset).collect::<Vec<_>>(), [2], "the ephemeral one is not kept either");
    }

    #[test]
    fn a_slow_subscriber_is_marked_and_the_others_keep_receiving() {
        let hub = Hub::new(LIMITS);
        let (slow, _never_read) = link(1, 2);
        let (fast, mut rx) = link(2, 64);
        let slow_signal = slow.slow.clone();
        hub.subscribe("chat:1", slow, None, false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        hub.subscribe("chat:1", fast, None, false, no_reply).unwrap_or_else(|e| panic!("{e}"));
        for n in 1..=5 {
            hub.publish("chat:1", data(n), None, Vec::new());
        }
        assert!(slow_signal.is_cancelled(), "its queue of 2 filled up");
        let mut received = 0;
        while rx.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, 6, "its subscribe reply and the five");
    }
}
