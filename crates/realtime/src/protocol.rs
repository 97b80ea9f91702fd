//! The Centrifugo client protocol, version 2, JSON format: what goes over
//! the socket, and nothing else (no I/O here).
//!
//! A text frame holds one or more commands, one JSON object per line. A
//! command has an `id` (echoed in its reply; 0 for commands without a reply)
//! and exactly one request field (`connect`, `subscribe`, …). An empty object
//! is the client's pong. Replies carry the same `id` and a result field of
//! the same name, or `error`; pushes (publications, joins, leaves,
//! unsubscribes) are replies without an id, under `push`. A frame the server
//! writes is likewise one or more lines. Publication `data` is JSON carried
//! as it is (not base64, as the protobuf format would).
//!
//! The subset Panal supports, the codes, and what each means:
//! `docs/realtime.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A client's command, as read. Unknown fields are ignored (SDKs add fields
/// over time); a command with no request field, or two, is a bad request.
#[derive(Debug, Default, Deserialize)]
pub struct Command {
    #[serde(default)]
    pub id: u32,
    pub connect: Option<ConnectRequest>,
    pub subscribe: Option<SubscribeRequest>,
    pub unsubscribe: Option<ChannelRequest>,
    pub publish: Option<PublishRequest>,
    pub presence: Option<ChannelRequest>,
    pub presence_stats: Option<ChannelRequest>,
    pub history: Option<HistoryRequest>,
    pub ping: Option<Empty>,
    pub send: Option<SendRequest>,
    pub rpc: Option<RpcRequest>,
    pub refresh: Option<RefreshRequest>,
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// The request a command makes.
#[derive(Debug)]
pub enum Request {
    /// An empty command: the client's answer to a server ping.
    Pong,
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(ChannelRequest),
    Publish(PublishRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    Ping,
    Send(SendRequest),
    Rpc(RpcRequest),
    Refresh(RefreshRequest),
    SubRefresh(SubRefreshRequest),
}

impl Request {
    /// The protocol's name for it (metrics label).
    pub fn method(&self) -> &'static str {
        match self {
            Request::Pong => "pong",
            Request::Connect(_) => "connect",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
            Request::Publish(_) => "publish",
            Request::Presence(_) => "presence",
            Request::PresenceStats(_) => "presence_stats",
            Request::History(_) => "history",
            Request::Ping => "ping",
            Request::Send(_) => "send",
            Request::Rpc(_) => "rpc",
            Request::Refresh(_) => "refresh",
            Request::SubRefresh(_) => "sub_refresh",
        }
    }
}

impl Command {
    /// The one request of this command, or why there is none.
    pub fn request(self) -> Result<(u32, Request), ProtocolError> {
        let Command {
            id,
            connect,
            subscribe,
            unsubscribe,
            publish,
            presence,
            presence_stats,
            history,
            ping,
            send,
            rpc,
            refresh,
            sub_refresh,
        } = self;
        let requests = [
            connect.map(Request::Connect),
            subscribe.map(Request::Subscribe),
            unsubscribe.map(Request::Unsubscribe),
            publish.map(Request::Publish),
            presence.map(Request::Presence),
            presence_stats.map(Request::PresenceStats),
            history.map(Request::History),
            ping.map(|_| Request::Ping),
            send.map(Request::Send),
            rpc.map(Request::Rpc),
            refresh.map(Request::Refresh),
            sub_refresh.map(Request::SubRefresh),
        ];
        let mut present = requests.into_iter().flatten();
        match (present.next(), present.next()) {
            (None, _) if id == 0 => Ok((0, Request::Pong)),
            (None, _) => Err(ProtocolError::BadRequest("a command names no method")),
            (Some(_), Some(_)) => Err(ProtocolError::BadRequest("a command names more than one method")),
            (Some(request), None) => Ok((id, request)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    #[serde(default)]
    pub token: String,
    /// SDK name and version, for the logs.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    #[serde(default)]
    pub channel: String,
    /// A subscription token, for namespaces whose owner grants by token.
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub recover: bool,
    #[serde(default)]
    pub epoch: String,
    #[serde(default)]
    pub offset: u64,
    /// Feature bits; [`REJECT_UNRECOVERED`] is the one Panal honours.
    #[serde(default)]
    pub flag: i64,
    /// Asks for join and leave pushes (in namespaces that keep presence).
    #[serde(default)]
    pub join_leave: bool,
}

/// Subscribe flag: answer error 112 instead of `recovered: false` (an SDK
/// with a state loader reloads on it).
pub const REJECT_UNRECOVERED: i64 = 2;

#[derive(Debug, Default, Deserialize)]
pub struct ChannelRequest {
    #[serde(default)]
    pub channel: String,
}

#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    #[serde(default)]
    pub channel: String,
    pub data: Box<RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub channel: String,
    /// At most this many; 0 asks for the stream position only.
    #[serde(default)]
    pub limit: i32,
    pub since: Option<StreamPosition>,
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamPosition {
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub epoch: String,
}

#[derive(Debug, Deserialize)]
pub struct SendRequest {
    pub data: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct RpcRequest {
    #[serde(default)]
    pub method: String,
    pub data: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SubRefreshRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub token: String,
}

/// A publication in a channel: its data, as published, and its offset in
/// the channel's stream (the epoch is the subscription's).
#[derive(Debug, Clone, Serialize)]
pub struct Publication {
    pub data: Box<RawValue>,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub time: i64,
}

/// Who is behind a connection: in presence, joins, leaves and client
/// publications.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ClientInfo {
    pub user: String,
    pub client: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ConnectResult {
    pub client: String,
    pub version: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// Seconds between the server's pings; the client answers each.
    pub ping: u32,
    pub pong: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SubscribeResult {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub positioned: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub was_recovering: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct HistoryResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    pub epoch: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct PresenceResult {
    pub presence: BTreeMap<String, ClientInfo>,
}

#[derive(Debug, Default, Serialize)]
pub struct PresenceStatsResult {
    pub num_clients: u32,
    pub num_users: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct RefreshResult {
    pub client: String,
    pub version: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct RpcResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

/// What a reply carries besides its id.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Connect(ConnectResult),
    Subscribe(SubscribeResult),
    Unsubscribe(EmptyResult),
    Publish(EmptyResult),
    Presence(PresenceResult),
    PresenceStats(PresenceStatsResult),
    History(HistoryResult),
    Ping(EmptyResult),
    Rpc(RpcResult),
    Refresh(RefreshResult),
    SubRefresh(SubRefreshResult),
    Error(ErrorBody),
    /// Already queued by whoever handled the command (a subscribe reply,
    /// queued before the subscription's first publication): nothing to send.
    #[serde(skip)]
    Sent,
}

#[derive(Debug, Default, Serialize)]
pub struct EmptyResult {}

#[derive(Debug, Default, Serialize)]
pub struct SubRefreshResult {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: u32,
    pub message: std::borrow::Cow<'static, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

#[derive(Serialize)]
struct ReplyFrame<'a> {
    id: u32,
    #[serde(flatten)]
    outcome: &'a Outcome,
}

/// The line of a reply to command `id`.
pub fn reply(id: u32, outcome: &Outcome) -> String {
    serde_json::to_string(&ReplyFrame { id, outcome }).unwrap_or_else(|_| {
        // Only our own types are serialised here; they always serialise.
        format!(r#"{{"id":{id},"error":{{"code":100,"message":"internal server error"}}}}"#)
    })
}

/// What a push carries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushBody<'a> {
    Pub(&'a Publication),
    Join { info: &'a ClientInfo },
    Leave { info: &'a ClientInfo },
    Unsubscribe { code: u32, reason: &'static str },
}

#[derive(Serialize)]
struct PushFrame<'a> {
    push: PushInner<'a>,
}

#[derive(Serialize)]
struct PushInner<'a> {
    channel: &'a str,
    #[serde(flatten)]
    body: PushBody<'a>,
}

/// The line of a push in `channel`.
pub fn push(channel: &str, body: PushBody<'_>) -> String {
    serde_json::to_string(&PushFrame { push: PushInner { channel, body } }).unwrap_or_default()
}

/// The server's ping: an empty reply.
pub const PING: &str = "{}";

/// Splits a frame into its commands. Blank lines are skipped; a line that is
/// not a command is a protocol error (the connection is closed, as
/// Centrifugo does: a client that sends garbage is broken).
pub fn commands(frame: &str) -> impl Iterator<Item = Result<Command, ProtocolError>> + '_ {
    frame.split('\n').filter(|line| !line.trim().is_empty()).map(|line| {
        serde_json::from_str::<Command>(line).map_err(|_| ProtocolError::BadRequest("a command is not valid JSON"))
    })
}

/// Why a command failed (its reply's `error`), by Centrifugo's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("internal server error")]
    Internal,
    #[error("unauthorized")]
    Unauthorized,
    #[error("unknown channel")]
    UnknownChannel,
    #[error("permission denied")]
    PermissionDenied,
    #[error("method not found")]
    MethodNotFound,
    #[error("already subscribed")]
    AlreadySubscribed,
    #[error("limit exceeded")]
    LimitExceeded,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not available")]
    NotAvailable,
    #[error("token expired")]
    TokenExpired,
    #[error("too many requests")]
    TooManyRequests,
    #[error("unrecoverable position")]
    UnrecoverablePosition,
}

impl ProtocolError {
    pub fn code(self) -> u32 {
        match self {
            ProtocolError::Internal => 100,
            ProtocolError::Unauthorized => 101,
            ProtocolError::UnknownChannel => 102,
            ProtocolError::PermissionDenied => 103,
            ProtocolError::MethodNotFound => 104,
            ProtocolError::AlreadySubscribed => 105,
            ProtocolError::LimitExceeded => 106,
            ProtocolError::BadRequest(_) => 107,
            ProtocolError::NotAvailable => 108,
            ProtocolError::TokenExpired => 109,
            ProtocolError::TooManyRequests => 111,
            ProtocolError::UnrecoverablePosition => 112,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ProtocolError::Internal => "internal server error",
            ProtocolError::Unauthorized => "unauthorized",
            ProtocolError::UnknownChannel => "unknown channel",
            ProtocolError::PermissionDenied => "permission denied",
            ProtocolError::MethodNotFound => "method not found",
            ProtocolError::AlreadySubscribed => "already subscribed",
            ProtocolError::LimitExceeded => "limit exceeded",
            ProtocolError::BadRequest(why) => why,
            ProtocolError::NotAvailable => "not available",
            ProtocolError::TokenExpired => "token expired",
            ProtocolError::TooManyRequests => "too many requests",
            ProtocolError::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// The reply's `error`. Internal errors and rate limits are temporary:
    /// the SDKs retry those.
    pub fn body(self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: std::borrow::Cow::Borrowed(self.message()),
            temporary: matches!(self, ProtocolError::Internal | ProtocolError::TooManyRequests),
        }
    }
}

/// Why the server closes a connection: the WebSocket close code and reason.
/// Codes 3000–3499 tell the SDKs to reconnect; 3500–3999 not to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The server is shutting down.
    Shutdown,
    /// The connection token expired without a refresh.
    Expired,
    /// The client reads too slowly: its send queue filled up.
    Slow,
    /// No pong within the window after a ping.
    NoPong,
    /// The client exceeded its command rate.
    TooManyRequests,
    /// The connect token is invalid, or the session behind it was revoked.
    InvalidToken,
    /// A frame that is not a command, or a binary frame.
    BadRequest,
    /// A message over 64 KiB.
    MessageTooBig,
    /// No connect command within the first seconds.
    Stale,
    /// Too many subscriptions on one connection.
    ChannelLimit,
    /// The session behind the connection was revoked (logout, password
    /// change, ban): not to be reconnected.
    Revoked,
    /// This replica may have missed publications (its link to Redis
    /// dropped): reconnect and recover.
    InsufficientState,
}

impl Disconnect {
    pub fn code(self) -> u16 {
        match self {
            Disconnect::Shutdown => 3001,
            Disconnect::Expired => 3005,
            Disconnect::Slow => 3008,
            Disconnect::NoPong => 3012,
            Disconnect::TooManyRequests => 3013,
            Disconnect::InvalidToken => 3500,
            Disconnect::BadRequest => 3501,
            Disconnect::MessageTooBig => 3511,
            Disconnect::Stale => 3502,
            Disconnect::ChannelLimit => 3505,
            Disconnect::Revoked => 3503,
            Disconnect::InsufficientState => 3010,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Disconnect::Shutdown => "shutdown",
            Disconnect::Expired => "expired",
            Disconnect::Slow => "slow",
            Disconnect::NoPong => "no pong",
            Disconnect::TooManyRequests => "too many requests",
            Disconnect::InvalidToken => "invalid token",
            Disconnect::BadRequest => "bad request",
            Disconnect::MessageTooBig => "message too big",
            Disconnect::Stale => "stale",
            Disconnect::ChannelLimit => "channel limit",
            Disconnect::Revoked => "session revoked",
            Disconnect::InsufficientState => "insufficient state",
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_of_several_commands_is_read_line_by_line() {
        let frame = "{\"id\":1,\"connect\":{\"token\":\"t\",\"name\":\"py\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"user:1\",\"recover\":true,\"epoch\":\"e\",\"offset\":7}}\n{}";
        let parsed: Vec<_> = commands(frame).map(|c| c.and_then(Command::request)).collect();
        assert!(matches!(&parsed[0], Ok((1, Request::Connect(c))) if c.token == "t"));
        assert!(matches!(&parsed[1], Ok((2, Request::Subscribe(s))) if s.recover && s.offset == 7 && s.epoch == "e"));
        assert!(matches!(&parsed[2], Ok((0, Request::Pong))));
    }

    #[test]
    fn commands_with_no_method_or_two_or_garbage_are_bad_requests() {
        for bad in ["{\"id\":3}", "{\"id\":4,\"ping\":{},\"presence\":{\"channel\":\"x\"}}", "not json", "[1,2]"] {
            let parsed: Vec<_> = commands(bad).map(|c| c.and_then(Command::request)).collect();
            assert!(matches!(parsed[0], Err(ProtocolError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn replies_and_pushes_have_the_protocols_shape() {
        let r = reply(5, &Outcome::Error(ProtocolError::PermissionDenied.body()));
        assert_eq!(r, r#"{"id":5,"error":{"code":103,"message":"permission denied"}}"#);
        let publication = Publication {
            data: RawValue::from_string("{\"text\":\"hi\"}".to_owned()).unwrap_or_else(|_| unreachable!()),
            offset: 3,
            info: None,
            time: 0,
        };
        assert_eq!(
            push("chat:1", PushBody::Pub(&publication)),
            r#"{"push":{"channel":"chat:1","pub":{"data":{"text":"hi"},"offset":3}}}"#
        );
        let ok = reply(
            2,
            &Outcome::Subscribe(SubscribeResult {
                recoverable: true,
                epoch: "ab".into(),
                offset: 3,
                ..Default::default()
            }),
        );
        assert_eq!(ok, r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"ab","offset":3}}"#);
    }
}
