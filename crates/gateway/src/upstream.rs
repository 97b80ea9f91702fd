//! Requests to upstream instances: a lean HTTP/1.1 client, its connections
//! pooled per thread and driven by the request's own task.
//!
//! Why not hyper's client: it runs each connection as a task of its own, so
//! a proxied request crosses tasks four times (request in, response head
//! out, body out, connection back), and it builds a header map, a channel
//! and a callback per request; under load that was a third of the gateway's
//! instructions per request (docs/benchmarks.md). Here the task serving the
//! client's connection writes the request and reads the answer itself, and
//! the answer's body reads from the upstream socket as the client side
//! takes it. The client side of every connection is still hyper's; response
//! heads are parsed by httparse, the parser hyper uses.
//!
//! What this client does, per RFC 9112:
//! - requests: `Host` is the instance's; bodies are sent with their
//!   `Content-Length`, or chunked when the client sent them chunked; an
//!   answer that arrives while the body is still being sent ends the sending
//!   (the connection is then not reused);
//! - answers: interim (1xx) answers are skipped (a 101 nobody asked for is
//!   refused); the body is framed by
//!   `Transfer-Encoding: chunked` (decoded; trailers are dropped), else by a
//!   `Content-Length` (conflicting or malformed lengths are refused), else by
//!   the end of the connection; HEAD, 204 and 304 answers have none; heads
//!   over 64 KiB or 100 headers are refused;
//! - reuse: a connection goes back to its thread's pool once an HTTP/1.1
//!   answer without `Connection: close` has been read to its end with
//!   nothing after it. An idle connection whose upstream closed it is seen
//!   from the reactor's readiness, without a system call, and dropped; idle
//!   connections are closed after `idle_timeout`, which should be shorter
//!   than the upstreams' own keep-alive limit (Panal services: 10 s).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use kit::hash::FxBuildHasher;

use crate::balance::Instance;
use crate::fields::{Field, named_in_connection, says_close};

/// A client's request body, as it goes upstream: streamed as hyper reads
/// it, or read whole already (the byte-level front's).
pub enum RequestBody<'a> {
    Streamed(Limited<Incoming>),
    Buffered(&'a [u8]),
}

/// A request as it goes upstream, but for the `Host` line (the instance's).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// In origin form, as the client sent it.
    pub target: &'a [u8],
    /// Writes the header fields, each `name: value\r\n`, the gateway's own
    /// included, straight into the head being built (again for each attempt).
    pub fields: &'a (dyn Fields + Sync),
    /// The body goes chunked (it came so): no length was forwarded.
    pub chunked: bool,
    /// When the request arrived. A pooled connection is reckoned idle from
    /// the arrival of the last request it carried (a little earlier than
    /// its end: idle connections are closed a little early, never late),
    /// which saves reading the clock twice per request.
    pub at: Instant,
}

/// A request's header fields, written where its head is built.
pub trait Fields {
    fn write(&self, out: &mut Vec<u8>);
}

/// What becomes of an upstream's answer head: a header map for hyper, or
/// the client's answer head written at once, for the byte-level front.
pub trait Answer {
    type Head;
    fn head(&mut self, head: &UpstreamHead<'_>) -> Result<Self::Head, String>;
    /// The status of a head built, for the retry and breaker decisions.
    fn status(head: &Self::Head) -> u16;
}

/// An upstream's answer head as parsed, its framing decided.
pub struct UpstreamHead<'a> {
    pub code: u16,
    pub http11: bool,
    /// The head's bytes; the fields' names and values are slices of it.
    pub raw: &'a [u8],
    fields: &'a [httparse::Header<'a>],
    kinds: [Field; MAX_HEADERS],
    /// The fields its `Connection` names (usually none).
    named: Vec<&'a [u8]>,
    /// Its `Content-Length` does not describe the body the client gets.
    drop_length: bool,
    framing: Framing,
    keep_alive: bool,
}

impl<'a> UpstreamHead<'a> {
    /// The head of `parsed` (`raw`, complete), or why it cannot be passed on.
    fn of(parsed: &'a httparse::Response<'_, 'a>, raw: &'a [u8], head_request: bool) -> Result<Self, String> {
        let code = parsed.code.unwrap_or(0);
        if !(100..=999).contains(&code) {
            return Err(format!("status {code}"));
        }
        let http11 = parsed.version == Some(1);
        let fields: &'a [httparse::Header<'a>] = parsed.headers;
        let mut kinds = [Field::Other; MAX_HEADERS];
        let mut named = Vec::new();
        let mut length: Option<u64> = None;
        let mut transfer_coding_chunked: Option<bool> = None;
        let mut close = !http11;
        for (h, kind) in fields.iter().zip(kinds.iter_mut()) {
            *kind = Field::of(h.name.as_bytes());
            match *kind {
                Field::ContentLength => {
                    for part in h.value.split(|b| *b == b',') {
                        let n = std::str::from_utf8(part.trim_ascii())
                            .ok()
                            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|d| d.parse::<u64>().ok())
                            .ok_or_else(|| format!("content-length {:?}", String::from_utf8_lossy(h.value)))?;
                        if length.is_some_and(|l| l != n) {
                            return Err("conflicting content-length".into());
                        }
                        length = Some(n);
                    }
                }
                Field::TransferEncoding => {
                    let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"").trim_ascii();
                    transfer_coding_chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
                }
                Field::Connection => {
                    close |= says_close(h.value);
                    named.extend(named_in_connection(h.value));
                }
                _ => {}
            }
        }
        let no_body = head_request || matches!(code, 204 | 304) || (100..200).contains(&code);
        let mut drop_length = false;
        let framing = match (no_body, transfer_coding_chunked, length) {
            (true, _, _) | (false, None, Some(0)) => Framing::Done,
            (false, Some(true), _) => {
                // Chunked wins over a length (RFC 9112 §6.3); the length goes,
                // and so does the connection afterwards if it came with one.
                if length.is_some() {
                    drop_length = true;
                    close = true;
                }
                Framing::Chunked(Chunk::Size)
            }
            (false, Some(false), _) => {
                drop_length = true;
                close = true;
                Framing::UntilClose
            }
            (false, None, Some(n)) => Framing::Length(n),
            (false, None, None) => {
                close = true;
                Framing::UntilClose
            }
        };
        Ok(Self { code, http11, raw, fields, kinds, named, drop_length, framing, keep_alive: !close })
    }

    /// The fields that describe the message, with their kind: not those
    /// that describe this connection (RFC 9110 §7.6.1) — hop-by-hop fields
    /// and those its `Connection` names —, nor a length the body does not have.
    pub fn message_fields(&self) -> impl Iterator<Item = (Field, &'a httparse::Header<'a>)> + '_ {
        self.fields.iter().zip(self.kinds).map(|(h, kind)| (kind, h)).filter(|(kind, h)| {
            !(kind.is_hop_by_hop()
                || (self.drop_length && *kind == Field::ContentLength)
                || self.named.iter().any(|n| n.eq_ignore_ascii_case(h.name.as_bytes())))
        })
    }

    /// Whether a body follows whose length is not known ahead: it reaches
    /// an HTTP/1.1 client chunked.
    pub fn length_unknown(&self) -> bool {
        matches!(self.framing, Framing::Chunked(_) | Framing::UntilClose)
    }
}

/// The answer as a header map, for hyper to send on.
pub struct MapAnswer;

impl Answer for MapAnswer {
    type Head = (StatusCode, Version, HeaderMap);

    fn head(&mut self, up: &UpstreamHead<'_>) -> Result<Self::Head, String> {
        let status = StatusCode::from_u16(up.code).map_err(|e| e.to_string())?;
        // Values are shared slices of one copy of the head.
        let head = Bytes::copy_from_slice(up.raw);
        let base = up.raw.as_ptr() as usize;
        // Room for what the gateway adds (request id, security, rate limits, CORS).
        let mut headers = HeaderMap::with_capacity(up.fields.len() + 12);
        for (_, h) in up.message_fields() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| e.to_string())?;
            let start = (h.value.as_ptr() as usize).wrapping_sub(base);
            let range = start..start.saturating_add(h.value.len());
            let value = if h.value.is_empty() {
                HeaderValue::from_static("")
            } else if range.end <= head.len() {
                HeaderValue::from_maybe_shared(head.slice(range)).map_err(|e| format!("{name}: {e}"))?
            } else {
                HeaderValue::from_bytes(h.value).map_err(|e| format!("{name}: {e}"))?
            };
            headers.append(name, value);
        }
        Ok((status, if up.http11 { Version::HTTP_11 } else { Version::HTTP_10 }, headers))
    }

    fn status(head: &Self::Head) -> u16 {
        head.0.as_u16()
    }
}

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a response head.
const MAX_HEADERS: usize = 100;
/// The fields parsed for at first; a head with more is parsed again.
const FEW_HEADERS: usize = 24;
/// The longest chunk-size line, and the most trailer bytes, accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// How much is read from an upstream at a time.
const READ_SIZE: usize = 8 * 1024;
/// Body data up to this size is copied out of the connection's buffer, which
/// is then reused as is; larger data is handed over without a copy.
const COPY_BELOW: usize = 4 * 1024;
/// Idle connections a thread keeps per instance; more are closed.
const MAX_IDLE: usize = 256;

/// How the gateway connects to upstreams.
#[derive(Debug, Clone, Copy)]
pub struct Upstreams {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timed out); the
    /// request was not sent.
    Connect(String),
    /// The exchange failed once the request was on its way: the upstream
    /// may have acted on it.
    Request(String),
    /// The client's body went over the limit while being sent.
    BodyTooLarge,
    /// The client's body broke off or was malformed (bad chunking): the
    /// client's fault, not the upstream's.
    ClientBody(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connecting: {e}"),
            SendError::Request(e) => f.write_str(e),
            SendError::BodyTooLarge => f.write_str("the request body is over the limit"),
            SendError::ClientBody(e) => write!(f, "reading the client's body: {e}"),
        }
    }
}

/// One connection to an instance.
struct Conn {
    io: TcpStream,
    /// Read from the upstream and not yet consumed.
    buf: BytesMut,
    /// The head of the request being sent.
    out: Vec<u8>,
    instance: u64,
    /// When it last went idle.
    since: Instant,
}

thread_local! {
    /// This thread's idle connections, by instance id.
    static IDLE: RefCell<HashMap<u64, Vec<Conn>, FxBuildHasher>> = RefCell::new(HashMap::default());
}

/// How a failed exchange ended, for deciding whether another connection may
/// carry the request.
struct Failure {
    error: SendError,
    /// Nothing of an answer came back.
    unanswered: bool,
}

fn failed(error: SendError, unanswered: bool) -> Failure {
    Failure { error, unanswered }
}

impl Upstreams {
    /// Sends `req` to `instance`, with `body` when it has one. Returns once
    /// the answer's head has arrived, as `answer` makes it, and its body.
    pub async fn send<A: Answer>(
        &self,
        instance: &Instance,
        req: &Outgoing<'_>,
        body: Option<RequestBody<'_>>,
        answer: &mut A,
    ) -> Result<(A::Head, UpstreamBody), SendError> {
        let mut body = body;
        loop {
            let (mut conn, reused) = match self.checkout(instance.id, req.at) {
                Some(conn) => (conn, true),
                // Boxed: a new connection is the rare path, and its future is large.
                None => (Box::pin(self.connect(instance, req.at)).await?, false),
            };
            encode_head(&mut conn.out, req, &instance.host);
            let resendable = body.is_none() && is_idempotent(req.method);
            match conn.exchange(body.take(), req.chunked, *req.method == Method::HEAD, answer).await {
                Ok(answered) => return Ok(answered),
                // A pooled connection the upstream had closed: nothing came
                // back, and the request can be sent again as it was.
                Err(f) if reused && f.unanswered && resendable => continue,
                Err(f) => return Err(f.error),
            }
        }
    }

    /// An idle connection of this thread to `instance` that is still open,
    /// for a request that arrived `at`.
    fn checkout(&self, instance: u64, at: Instant) -> Option<Conn> {
        loop {
            let mut conn = IDLE.with_borrow_mut(|pool| pool.get_mut(&instance).and_then(Vec::pop))?;
            if at.saturating_duration_since(conn.since) <= self.idle_timeout && conn.still_open() {
                conn.since = at;
                return Some(conn);
            }
        }
    }

    async fn connect(&self, instance: &Instance, at: Instant) -> Result<Conn, SendError> {
        let io = open(instance, self.connect_timeout).await?;
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(512),
            instance: instance.id,
            since: at,
        })
    }
}

async fn open(instance: &Instance, timeout: Duration) -> Result<TcpStream, SendError> {
    let io = match tokio::time::timeout(timeout, TcpStream::connect(instance.address.as_str())).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Err(_) => return Err(SendError::Connect(format!("no connection within {} ms", timeout.as_millis()))),
    };
    let _ = io.set_nodelay(true);
    Ok(io)
}

/// Idempotent methods (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

fn checkin(conn: Conn) {
    IDLE.with_borrow_mut(|pool| {
        let idle = pool.entry(conn.instance).or_default();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    });
}

/// The request line, the instance's `Host` and the request's fields. Method,
/// target and fields come from a parse of the client's request (hyper's or
/// the byte-level front's): no CR or LF can be in them.
fn encode_head(out: &mut Vec<u8>, req: &Outgoing<'_>, host: &HeaderValue) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    req.fields.write(out);
    if req.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed field's line as it stands in `raw` (the head it was parsed
/// from, `name` and `value` slices of it): from its name to its value's
/// end, the colon and whatever space the sender put around the value
/// included. Passed on whole, it is one copy instead of three.
pub(crate) fn field_line<'a>(raw: &'a [u8], name: &[u8], value: &[u8]) -> &'a [u8] {
    let at = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let start = at(name);
    let end = (at(value) + value.len()).max(start + name.len());
    raw.get(start..end).unwrap_or_default()
}

/// Writes a field line and its end.
pub(crate) fn put_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: value` and the line's end.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A chunk's size line (RFC 9112 §7.1).
pub(crate) fn chunk_header(out: &mut Vec<u8>, len: usize) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    UntilClose,
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields (dropped), `n` bytes so far.
    Trailers(usize),
}

impl Conn {
    /// Whether the upstream closed this idle connection (or sent something
    /// unasked), as far as the reactor knows: no system call unless it
    /// saw the socket become readable.
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                matches!(self.io.try_read_buf(&mut self.buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes the request (head in `out`, then the body) and reads the
    /// answer's head.
    async fn exchange<A: Answer>(
        mut self,
        body: Option<RequestBody<'_>>,
        chunked: bool,
        head_request: bool,
        answer: &mut A,
    ) -> Result<(A::Head, UpstreamBody), Failure> {
        self.buf.clear();
        // An answer that came before the request was all written leaves
        // the connection in no state to carry another.
        let reusable = match body {
            None => !self.write_out().await?,
            Some(RequestBody::Buffered(data)) => {
                self.out.extend_from_slice(data);
                !self.write_out().await?
            }
            // Boxed: streamed uploads are hyper's rare path, and in place
            // their state would make every exchange's future larger.
            Some(RequestBody::Streamed(body)) => Box::pin(self.send_body(body, chunked)).await?,
        };
        let (head, framing, keep_alive) = self.read_head(head_request, answer).await?;
        let mut body = UpstreamBody { conn: Some(self), framing, reusable: reusable && keep_alive };
        if body.framing == Framing::Done {
            body.finish();
        }
        Ok((head, body))
    }

    /// Sends the head and the body. An answer arriving meanwhile ends the
    /// sending; returns whether the connection can still be reused.
    async fn send_body(&mut self, mut body: Limited<Incoming>, chunked: bool) -> Result<bool, Failure> {
        // A small body has usually arrived with the head: one write for both.
        let mut pending = body.frame().now_or_never();
        let mut finished = false;
        loop {
            let step = match pending.take() {
                Some(step) => step,
                None => {
                    if self.write_out().await? {
                        return Ok(false);
                    }
                    if finished {
                        return Ok(true);
                    }
                    tokio::select! {
                        biased;
                        answered = answered_early(&self.io, &mut self.buf) => {
                            if answered? {
                                return Ok(false);
                            }
                            continue;
                        }
                        step = body.frame() => step,
                    }
                }
            };
            match step {
                None => {
                    if chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    finished = true;
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        if chunked {
                            chunk_header(&mut self.out, data.len());
                        }
                        self.out.extend_from_slice(&data);
                        if chunked {
                            self.out.extend_from_slice(b"\r\n");
                        }
                    }
                    // The last data: no need to wait for the end to be said.
                    if body.is_end_stream() {
                        pending = Some(None);
                    }
                }
                Some(Err(e)) => {
                    let error =
                        if is_body_limit(&*e) { SendError::BodyTooLarge } else { SendError::ClientBody(e.to_string()) };
                    return Err(failed(error, true));
                }
            }
        }
    }

    /// Writes what is in `out`, watching for an answer that comes before it
    /// is all written (an upstream refusing a body may stop reading it).
    /// Returns whether one came.
    async fn write_out(&mut self) -> Result<bool, Failure> {
        // Usually the socket takes it all at once, with no wait.
        let mut at = match self.io.try_write(&self.out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(failed(SendError::Request(e.to_string()), true)),
        };
        while at < self.out.len() {
            tokio::select! {
                biased;
                answered = answered_early(&self.io, &mut self.buf) => {
                    if answered? {
                        return Ok(true);
                    }
                }
                writable = self.io.writable() => {
                    writable.map_err(|e| failed(SendError::Request(e.to_string()), true))?;
                    match self.io.try_write(&self.out[at..]) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(failed(SendError::Request(e.to_string()), true)),
                    }
                }
            }
        }
        self.out.clear();
        Ok(false)
    }

    /// Reads until an answer's head (interim answers skipped) is complete.
    /// Returns the head as `answer` made it, its framing, and whether the
    /// upstream keeps the connection open after it.
    async fn read_head<A: Answer>(
        &mut self,
        head_request: bool,
        answer: &mut A,
    ) -> Result<(A::Head, Framing, bool), Failure> {
        loop {
            if !self.buf.is_empty() {
                // Few answers have more than a handful of fields, and the
                // slots are written before parsing: 3 KiB for every answer
                // cost more than the parse. A second try takes the rest.
                let mut few = [httparse::EMPTY_HEADER; FEW_HEADERS];
                let mut many;
                let mut parsed = httparse::Response::new(&mut few);
                let mut status = parsed.parse(&self.buf);
                if matches!(status, Err(httparse::Error::TooManyHeaders)) {
                    many = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    parsed = httparse::Response::new(&mut many);
                    status = parsed.parse(&self.buf);
                }
                match status {
                    Ok(httparse::Status::Complete(len)) => {
                        let code = parsed.code.unwrap_or(0);
                        if code == 101 {
                            // Upgrades go through `send_upgrade`; here nobody asked for one.
                            return Err(failed(SendError::Request("an unasked-for 101 answer".into()), false));
                        }
                        if (100..200).contains(&code) {
                            self.buf.advance(len);
                            continue;
                        }
                        let built = UpstreamHead::of(&parsed, &self.buf[..len], head_request)
                            .and_then(|head| Ok((answer.head(&head)?, head.framing, head.keep_alive)))
                            .map_err(|e| failed(SendError::Request(format!("invalid answer: {e}")), false))?;
                        self.buf.advance(len);
                        return Ok(built);
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => {
                        return Err(failed(SendError::Request("the answer's head is over 64 KiB".into()), false));
                    }
                    Err(e) => return Err(failed(SendError::Request(format!("invalid answer: {e}")), false)),
                }
            }
            let unanswered = self.buf.is_empty();
            self.buf.reserve(READ_SIZE);
            match std::future::poll_fn(|cx| tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf))
                .await
            {
                Ok(0) => {
                    return Err(failed(
                        SendError::Request("the upstream closed the connection before answering".into()),
                        unanswered,
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(failed(SendError::Request(e.to_string()), unanswered)),
            }
        }
    }
}

/// Waits until the upstream's side of `io` is readable; then whether it sent
/// something (or closed), which ends the sending of a body. A readiness that
/// was stale reads nothing, and the sending goes on.
async fn answered_early(io: &TcpStream, buf: &mut BytesMut) -> Result<bool, Failure> {
    io.readable().await.map_err(|e| failed(SendError::Request(e.to_string()), true))?;
    Ok(!matches!(io.try_read_buf(buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock))
}

fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// An upstream's response body, read from its connection as the client's
/// side asks for it; the connection goes back to the pool at its end.
pub struct UpstreamBody {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the upstream's answer body is malformed: {what}"))
}

impl UpstreamBody {
    /// How much body data is at the front of the connection's buffer, if
    /// any is there yet; the caller takes exactly that much out of it.
    fn decode(&mut self) -> Result<Option<usize>, io::Error> {
        let Some(conn) = self.conn.as_mut() else { return Ok(None) };
        let buf = &mut conn.buf;
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.framing = if left == 0 { Framing::Done } else { Framing::Length(left) };
                    return Ok(Some(n));
                }
                Framing::UntilClose => {
                    return Ok((!buf.is_empty()).then_some(buf.len()));
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(end) = find_crlf(buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(broken("chunk-size line too long"));
                        }
                        return Ok(None);
                    };
                    let line = &buf[..end];
                    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                    let rest = &line[digits..];
                    // Chunk extensions (`;name=value`) are allowed and ignored.
                    if digits == 0
                        || digits > 15
                        || !(rest.is_empty() || rest[0] == b';' || rest[0] == b' ' || rest[0] == b'\t')
                    {
                        return Err(broken("bad chunk size"));
                    }
                    let size = line[..digits]
                        .iter()
                        .fold(0u64, |acc, b| acc * 16 + u64::from(char::from(*b).to_digit(16).unwrap_or(0)));
                    buf.advance(end + 2);
                    self.framing = Framing::Chunked(if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) });
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.framing = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                    return Ok(Some(n));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(broken("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers(seen)) => {
                    let Some(end) = find_crlf(buf) else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Err(broken("trailers too long"));
                        }
                        return Ok(None);
                    };
                    buf.advance(end + 2);
                    // An empty line ends the trailers, and the body.
                    self.framing =
                        if end == 0 { Framing::Done } else { Framing::Chunked(Chunk::Trailers(seen + end + 2)) };
                }
            }
        }
    }

    /// Reads more of the body from the upstream. The end of the connection
    /// ends a body framed by it; any other body it breaks.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(())) };
        conn.buf.reserve(READ_SIZE);
        match ready!(tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)) {
            Ok(0) if self.framing == Framing::UntilClose => {
                self.framing = Framing::Done;
                self.conn = None;
                Poll::Ready(Ok(()))
            }
            Ok(0) => Poll::Ready(Err(broken("the connection closed before its end"))),
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Moves the body data already read into `out` — in chunks when
    /// `chunked` (the terminating one too) — and says whether the body has
    /// ended. A body that breaks is an error, and its connection closed.
    pub fn drain_into(&mut self, out: &mut Vec<u8>, chunked: bool) -> io::Result<bool> {
        loop {
            match self.decode() {
                Err(e) => {
                    self.conn = None;
                    self.framing = Framing::Done;
                    return Err(e);
                }
                Ok(Some(n)) => {
                    let Some(conn) = self.conn.as_mut() else { continue };
                    if chunked {
                        chunk_header(out, n);
                    }
                    out.extend_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                }
                Ok(None) if self.framing == Framing::Done => {
                    self.finish();
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    return Ok(true);
                }
                Ok(None) => return Ok(false),
            }
        }
    }

    /// Waits for more of the body (see [`UpstreamBody::drain_into`]).
    pub async fn fill(&mut self) -> io::Result<()> {
        let read = std::future::poll_fn(|cx| self.poll_fill(cx)).await;
        if read.is_err() {
            self.conn = None;
            self.framing = Framing::Done;
        }
        read
    }

    /// The body ends in `error`; the connection, mid-message, is closed.
    fn broke(&mut self, error: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// At the end of the body: the connection back to the pool if it can
    /// carry another request (nothing unasked after the answer).
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            checkin(conn);
        }
    }
}

/// `n` bytes from the front of `buf`: copied when small, so that the
/// connection's buffer stays its own and is reused without a new allocation.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match this.decode() {
                Err(e) => return this.broke(e),
                Ok(Some(n)) => {
                    let data = this.conn.as_mut().map_or_else(Bytes::new, |conn| take(&mut conn.buf, n));
                    if this.framing == Framing::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.framing == Framing::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            if let Err(e) = ready!(this.poll_fill(cx)) {
                return this.broke(e);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Sends an upgrade request (WebSocket) on a connection of its own, which
/// becomes the tunnel when the upstream answers 101. hyper's client does
/// this one: upgrades are rare and their handshake is its business.
pub async fn send_upgrade(
    instance: &Instance,
    mut req: http::Request<Empty<Bytes>>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    req.headers_mut().insert(header::HOST, instance.host.clone());
    let io = open(instance, connect_timeout).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| SendError::Connect(e.to_string()))?;
    let address = instance.address.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(upstream = %address, error = %e, "upgraded upstream connection ended");
        }
    });
    sender.send_request(req).await.map_err(|e| SendError::Request(kit::problem::ErrorChain(&e).to_string()))
}
