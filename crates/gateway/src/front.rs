//! The byte-level front: how most requests pass the gateway.
//!
//! Turning request and answer heads into header maps and back cost the
//! gateway more than nginx spends on a whole request (docs/benchmarks.md).
//! So plaintext connections come here first (a [`ConnectionFront`]): heads
//! are parsed in place by httparse, the parser hyper uses, and the request
//! upstream and the answer to the client are written straight from the
//! parsed fields — nginx's way. Everything the gateway does to a request is
//! done here too, by the same code as on hyper's path: routing, token,
//! rate limits, balancing, breaker, retries, the forwarding policy
//! ([`Forwarding`]), kit's ids, metrics and access log, the edge's CORS and
//! security headers.
//!
//! **What is left to hyper.** A request is taken here only if hyper would
//! take it exactly so; anything else, and anything malformed, is left to
//! hyper untouched: the connection is handed back with every byte read
//! ([`Handoff`]), and hyper serves the rest of its life (it answers 400,
//! 431 and the like itself, as it always did). Left to hyper: other
//! versions than HTTP/1.1; heads over `http.max_header_bytes` or with more
//! than [`MAX_FIELDS`] fields; targets not in origin form or with a byte
//! hyper's URI parser would refuse or read differently (a fragment,
//! anything not ASCII); `Transfer-Encoding`, `Upgrade` and `Expect`; a
//! `Content-Length` that is repeated or not plain digits; no `Host` or more
//! than one; a `Connection` naming fields; `CONNECT`; CORS preflights;
//! bodies over [`MAX_BUFFERED_BODY`] or the path's limit (hyper streams
//! them, or answers 413); the gateway's own paths. So the only framing a
//! request here has is one valid length, the body is read whole before it
//! is forwarded with that same length, and the upstream gets a head written
//! afresh: nothing the client sent can make the gateway and its upstream
//! read the byte stream differently (request smuggling).
//!
//! **Connections.** A client has `http.header_read_timeout_ms` to send a
//! head and a buffered body (which is also how long an idle keep-alive
//! connection stays open). An idle connection holds no buffer: they go back
//! to the thread's spares between requests, so 10,000 idle connections cost
//! little more than their sockets. At shutdown an idle connection is
//! closed, and one with a request in hand finishes it, then closes.
//! Pipelined requests are answered in order.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use kit::Problem;
use kit::http::front::{Closing, ConnectionFront, FrontConnection, Handoff, Observer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::AppState;
use crate::edge::Mode;
use crate::fields::{Field, named_in_connection, says_close};
use crate::limits::Verdict;
use crate::proxy::{self, Forward, Forwarding};
use crate::routes::RouteTable;
use crate::upstream::{self, Answer, Outgoing, RequestBody, UpstreamHead, is_idempotent, put_field, put_line};

/// The most header fields a request may have here; one with more goes to
/// hyper (which takes 100).
pub const MAX_FIELDS: usize = 64;
/// The largest body read whole before it is forwarded; larger ones go to
/// hyper, which streams them.
pub const MAX_BUFFERED_BODY: usize = 64 * 1024;
/// How much is read from a client at a time.
const READ_SIZE: usize = 8 * 1024;
/// Spare buffer sets a thread keeps for its connections' next requests.
const SPARES: usize = 128;

/// The front, as kit's [`ConnectionFront`].
pub(crate) struct ByteFront(Arc<Inner>);

struct Inner {
    state: AppState,
    /// What every answer gets (kit's security headers and the edge's),
    /// each line written once.
    fixed: Vec<Fixed>,
    /// The fields of an upstream's answer that those replace.
    fixed_replaced: u64,
}

struct Fixed {
    kind: Field,
    /// `name: value\r\n`.
    line: Box<[u8]>,
    mode: Mode,
}

impl ByteFront {
    pub(crate) fn new(state: AppState) -> Self {
        let kit = kit::http::SECURITY_HEADERS
            .into_iter()
            .map(|(name, value, replaces)| (name, value, if replaces { Mode::Replace } else { Mode::IfAbsent }));
        let fixed = kit
            .chain(state.edge.fixed_fields())
            .map(|(name, value, mode)| {
                let mut line = Vec::new();
                put_field(&mut line, name.as_str().as_bytes(), value.as_bytes());
                Fixed { kind: Field::of(name.as_str().as_bytes()), line: line.into(), mode }
            })
            .collect::<Vec<_>>();
        let fixed_replaced = fixed.iter().filter(|f| f.mode == Mode::Replace).fold(0, |set, f| set | f.kind.bit());
        ByteFront(Arc::new(Inner { state, fixed, fixed_replaced }))
    }
}

impl ConnectionFront for ByteFront {
    fn serve(&self, conn: FrontConnection) -> BoxFuture<'static, Option<Handoff>> {
        Box::pin(serve(self.0.clone(), conn))
    }
}

/// A connection's buffers, held only while it has a request in hand.
struct Buffers {
    /// Read from the client and not yet used.
    read: BytesMut,
    /// The answer on its way to the client.
    out: Vec<u8>,
    /// The fields of the request head, as parsed.
    slots: Vec<Slot>,
}

thread_local! {
    static SPARE: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

impl Buffers {
    fn take() -> Self {
        SPARE.with_borrow_mut(Vec::pop).unwrap_or_else(|| Buffers {
            read: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(2048),
            slots: Vec::with_capacity(MAX_FIELDS),
        })
    }

    /// Back to the thread's spares, unless grown by a large request.
    fn give_back(mut self) {
        if self.read.capacity() > 4 * READ_SIZE || self.out.capacity() > 4 * READ_SIZE {
            return;
        }
        self.read.clear();
        self.out.clear();
        self.slots.clear();
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < SPARES {
                spare.push(self);
            }
        });
    }
}

/// What becomes of a connection after a request.
enum Next {
    Again,
    Close,
    /// Left to hyper, from the request at the front of the buffer on.
    Hyper,
}

/// One client connection as the front serves it: what every request on it
/// shares.
struct Conn<'a> {
    front: &'a Inner,
    observer: &'a Observer,
    closing: &'a Closing,
    io: TcpStream,
    peer: SocketAddr,
    /// The route table and its version, kept while it is current: taking the
    /// shared one costs a lock and a reference count per request.
    table: (u64, Arc<RouteTable>),
}

impl Conn<'_> {
    /// The current route table.
    fn refresh_table(&mut self) {
        let version = self.front.state.routes_version.load(Ordering::Acquire);
        if version != self.table.0 {
            self.table = (version, self.front.state.table());
        }
    }
}

async fn serve(front: Arc<Inner>, conn: FrontConnection) -> Option<Handoff> {
    let FrontConnection { stream, peer, closing, observer } = conn;
    let head_timeout = observer.settings().header_read_timeout();
    let timer = tokio::time::sleep(head_timeout);
    let closed = closing.wait();
    tokio::pin!(timer, closed);
    let mut waits = Waits { timer, closed, deadline: Instant::now(), now: None };
    let mut held: Option<Buffers> = None;
    let table = (front.state.routes_version.load(Ordering::Acquire), front.state.table());
    let mut conn = Conn { front: &front, observer: &observer, closing: &closing, io: stream, peer, table };
    loop {
        waits.start(head_timeout);
        if held.as_ref().is_none_or(|b| b.read.is_empty()) {
            // Idle: no buffers are kept while the client thinks.
            if let Some(b) = held.take() {
                b.give_back();
            }
            if !waits.readable(&conn.io).await {
                return None;
            }
        }
        let buffers = held.get_or_insert_with(Buffers::take);
        conn.refresh_table();
        match Box::pin(request(&mut conn, buffers, &mut waits)).await {
            Next::Again => {}
            Next::Close => {
                let _ = conn.io.shutdown().await;
                return None;
            }
            Next::Hyper => {
                let read = held.take().map(|b| b.read.freeze()).unwrap_or_default();
                return Some(Handoff { stream: conn.io, read });
            }
        }
    }
}

/// What waiting for a client ends: its data, its deadline (a head and a
/// buffered body must arrive within `http.header_read_timeout_ms` of the
/// wait's start), or shutdown.
///
/// One timer serves the connection's whole life and is moved on lazily:
/// arming a timer per request cost more than parsing the request. When it
/// goes off before the deadline (it lags behind), it is set to the deadline.
struct Waits<'a, C> {
    timer: std::pin::Pin<&'a mut tokio::time::Sleep>,
    /// The connection's wait for shutdown, made once.
    closed: std::pin::Pin<&'a mut C>,
    deadline: Instant,
    /// A clock reading of a moment ago (the request's arrival, the end of
    /// its answer), for the next deadline: a clock read costs more than
    /// the few microseconds it is off by.
    now: Option<Instant>,
}

/// How far the timer may lag behind the deadline before it is set again.
const TIMER_SLACK: std::time::Duration = std::time::Duration::from_millis(250);

impl<C: Future<Output = ()>> Waits<'_, C> {
    /// A new wait, of `timeout` from now (or from the reading in `now`).
    fn start(&mut self, timeout: std::time::Duration) {
        self.deadline = self.now.take().unwrap_or_else(Instant::now) + timeout;
        self.arm();
    }

    /// Sets the timer to the deadline, unless it is due a little before.
    fn arm(&mut self) {
        let due = self.timer.deadline();
        if due > self.deadline || due + TIMER_SLACK < self.deadline || self.timer.is_elapsed() {
            self.timer.as_mut().reset(self.deadline);
        }
    }

    /// Waits for `wait` (on the socket) to end; `None` on the deadline or,
    /// if `at_shutdown`, at shutdown.
    async fn until<T>(&mut self, wait: impl Future<Output = T>, at_shutdown: bool) -> Option<T> {
        tokio::pin!(wait);
        loop {
            tokio::select! {
                biased;
                done = wait.as_mut() => return Some(done),
                () = self.timer.as_mut() => {
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                    self.timer.as_mut().reset(self.deadline);
                }
                () = self.closed.as_mut(), if at_shutdown => return None,
            }
        }
    }

    /// Waits for the idle client to send something.
    async fn readable(&mut self, io: &TcpStream) -> bool {
        matches!(self.until(io.readable(), true).await, Some(Ok(())))
    }

    /// Reads more from the client into `read`; false when it closed, failed,
    /// was too slow, or the service is shutting down.
    async fn read(&mut self, io: &mut TcpStream, read: &mut BytesMut) -> bool {
        use tokio::io::AsyncReadExt;
        read.reserve(READ_SIZE);
        matches!(self.until(io.read_buf(read), true).await, Some(Ok(n)) if n > 0)
    }
}

/// The upstream's answer is waited for with the same timer (shutdown does
/// not end it: a request in hand is finished).
impl<C: Future<Output = ()>> proxy::Timer for Waits<'_, C> {
    async fn within<F: Future>(&mut self, limit: std::time::Duration, work: F) -> Option<F::Output> {
        self.start(limit);
        self.until(work, false).await
    }
}

/// One request at the front of `b.read`: read whole, answered, consumed.
async fn request(conn: &mut Conn<'_>, b: &mut Buffers, waits: &mut Waits<'_, impl Future<Output = ()>>) -> Next {
    let max_head = conn.observer.settings().max_header_bytes;
    let head = loop {
        match parse(&b.read, &mut b.slots, max_head) {
            Parsed::Complete(head) => break head,
            Parsed::Hyper => return Next::Hyper,
            Parsed::Partial => {}
        }
        if !waits.read(&mut conn.io, &mut b.read).await {
            return Next::Close;
        }
    };
    let limit = conn.observer.body_limit(head.path(&b.read));
    if head.length > limit.min(MAX_BUFFERED_BODY) as u64 {
        return Next::Hyper;
    }
    let end = head.len + head.length as usize;
    while b.read.len() < end {
        if !waits.read(&mut conn.io, &mut b.read).await {
            return Next::Close;
        }
    }
    let close = head.close || conn.closing.is_closing();
    let next = answer(conn, b, &head, close, limit, waits).await;
    b.read.advance(end);
    next
}

/// A request field, as offsets into the read buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: Field,
    name: (u32, u32),
    value: (u32, u32),
}

/// A request head the front takes, as offsets into the read buffer.
#[derive(Debug)]
struct Head {
    /// Its length: the body starts here.
    len: usize,
    method: Method,
    target: Range<usize>,
    /// Where the path ends in the target (at `?`, or its end).
    path_len: usize,
    /// The body's length (0 without one).
    length: u64,
    /// The client asked to close the connection after the answer.
    close: bool,
    // The first field of each kind the front reads, by slot.
    host: Option<usize>,
    authorization: Option<usize>,
    origin: Option<usize>,
    request_id: Option<usize>,
    traceparent: Option<usize>,
    forwarded_for: Option<usize>,
}

impl Head {
    fn path<'b>(&self, buf: &'b [u8]) -> &'b str {
        // Checked ASCII by `origin_form`.
        std::str::from_utf8(&buf[self.target.start..self.target.start + self.path_len]).unwrap_or("/")
    }
}

fn span(buf: &[u8], (start, end): (u32, u32)) -> &[u8] {
    &buf[start as usize..end as usize]
}

impl Slot {
    fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        span(buf, self.name)
    }
    fn value<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        span(buf, self.value)
    }
}

enum Parsed {
    Complete(Head),
    Partial,
    /// Not a request the front takes: hyper's.
    Hyper,
}

/// Where `inner`, a slice of `buf`, starts and ends in it.
fn offsets(buf: &[u8], inner: &[u8]) -> (u32, u32) {
    let start = (inner.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    (start as u32, (start + inner.len()) as u32)
}

/// Parses the head at the front of `buf`, its fields into `slots`, and
/// decides whether the front takes it (see the module documentation).
fn parse(buf: &[u8], slots: &mut Vec<Slot>, max_head: usize) -> Parsed {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_FIELDS] = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        // Too long, too many fields, or malformed: hyper says so.
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Hyper;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::Hyper };
    let Some(path_len) = origin_form(target.as_bytes()) else { return Parsed::Hyper };
    if len > max_head || method == Method::CONNECT || proxy::is_own_path(&target[..path_len]) {
        return Parsed::Hyper;
    }
    let (start, end) = offsets(buf, target.as_bytes());
    let mut head = Head {
        len,
        target: start as usize..end as usize,
        path_len,
        length: 0,
        close: false,
        host: None,
        authorization: None,
        origin: None,
        request_id: None,
        traceparent: None,
        forwarded_for: None,
        method,
    };
    let (mut hosts, mut lengths) = (0, 0);
    slots.clear();
    for field in req.headers.iter() {
        let kind = Field::of(field.name.as_bytes());
        let at = slots.len();
        let first = |seen: &mut Option<usize>| {
            seen.get_or_insert(at);
        };
        match kind {
            Field::TransferEncoding | Field::Upgrade | Field::Expect => return Parsed::Hyper,
            Field::AccessControlRequestMethod if head.method == Method::OPTIONS => return Parsed::Hyper,
            Field::ContentLength => {
                let v = field.value;
                lengths += 1;
                if lengths > 1 || v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                    return Parsed::Hyper;
                }
                head.length = v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
            }
            Field::Connection => {
                if named_in_connection(field.value).next().is_some() {
                    return Parsed::Hyper;
                }
                head.close |= says_close(field.value);
            }
            Field::Host => {
                hosts += 1;
                first(&mut head.host);
            }
            Field::Authorization => first(&mut head.authorization),
            Field::Origin => first(&mut head.origin),
            Field::XRequestId => first(&mut head.request_id),
            Field::Traceparent => first(&mut head.traceparent),
            Field::XForwardedFor => first(&mut head.forwarded_for),
            _ => {}
        }
        slots.push(Slot { kind, name: offsets(buf, field.name.as_bytes()), value: offsets(buf, field.value) });
    }
    if hosts != 1 {
        return Parsed::Hyper;
    }
    Parsed::Complete(head)
}

/// A table of the bytes that match a pattern.
macro_rules! byte_class {
    ($pattern:pat) => {{
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            table[i] = matches!(i as u8, $pattern);
            i += 1;
        }
        table
    }};
}

/// Bytes of a path hyper's URI parser (the `http` crate's) takes as they are.
const PATH_BYTES: [bool; 256] =
    byte_class!(0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}');
/// Bytes of a query it takes as they are (after the first `?`).
const QUERY_BYTES: [bool; 256] = byte_class!(0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);

/// Where the path of `target` ends, if it is an origin-form target
/// (`/path?query`) of bytes `http`'s parser takes as they are: ASCII, no
/// fragment. Anything else is hyper's to judge.
fn origin_form(target: &[u8]) -> Option<usize> {
    if target.first() != Some(&b'/') {
        return None;
    }
    let path_len = target.iter().position(|b| !PATH_BYTES[usize::from(*b)]).unwrap_or(target.len());
    match target.get(path_len) {
        None => Some(path_len),
        Some(b'?') if target[path_len + 1..].iter().all(|b| QUERY_BYTES[usize::from(*b)]) => Some(path_len),
        Some(_) => None,
    }
}

/// Answers the request `head` (in `b.read`): forwarded, or refused by the
/// gateway with a problem document.
async fn answer(
    conn: &mut Conn<'_>,
    b: &mut Buffers,
    head: &Head,
    close: bool,
    limit: usize,
    waits: &mut Waits<'_, impl Future<Output = ()>>,
) -> Next {
    let &mut Conn { front, observer, ref mut io, peer, table: (_, ref table), .. } = conn;
    let Buffers { read, out, slots } = b;
    let buf: &[u8] = read;
    let value = |at: Option<usize>| at.map(|i| slots[i].value(buf));
    let path = head.path(buf);
    let state = &front.state;
    let exchange = observer.begin(&head.method, path, value(head.request_id), value(head.traceparent));
    let origin = value(head.origin);
    let head_request = head.method == Method::HEAD;
    let Some(target) = table.resolve(path) else {
        // No service's path: the web client's, or a 404 problem.
        let response = exchange.in_scope(|| {
            let accept_encoding =
                slots.iter().find(|s| s.name(buf).eq_ignore_ascii_case(b"accept-encoding")).map(|s| s.value(buf));
            crate::web::answer(&head.method, path, accept_encoding)
                .unwrap_or_else(|| proxy::no_route(path).into_response())
        });
        let response = finish_problem(state, origin, response);
        let response = exchange.finish(&state.unmatched, response);
        return write_response(io, out, response, head_request, close).await;
    };
    let route: &str = &target.route.label;
    let proxied = {
        // Pinned here and passed by reference: moved into kit's wrappers, a
        // future this size would be copied at each.
        let handler = std::pin::pin!(async {
            proxy::record_target(target);
            // What `proxy::admit` checks, from the head's fields.
            let token = if target.public { None } else { kit::auth::bearer_token_in(value(head.authorization))? };
            let forwarded_for = slots.iter().filter(|s| s.kind == Field::XForwardedFor).map(|s| s.value(buf));
            let client_ip = kit::http::client_ip_in(forwarded_for, peer.ip());
            let verdict = proxy::admit(state, target, path, token, client_ip, exchange.started()).await?;
            let forwarding = Forwarding::new(
                value(head.forwarded_for),
                value(head.host),
                Vec::new(),
                peer.ip(),
                state.forwarded_proto,
                exchange.request_id().as_bytes(),
                exchange.trace(),
            );
            let fields = ClientFields { buf, slots, forwarding };
            let body = &buf[head.len..head.len + head.length as usize];
            let forward = Forward {
                req: Outgoing {
                    method: &head.method,
                    target: &buf[head.target.clone()],
                    fields: &fields,
                    chunked: false,
                    at: exchange.started(),
                },
                body: (!body.is_empty()).then_some(RequestBody::Buffered(body)),
                may_retry: is_idempotent(&head.method) && body.is_empty(),
                limit,
            };
            let mut ours = Ours::new(front, exchange.request_id().as_bytes(), verdict);
            if let Some(origin) = origin {
                state.edge.cors_fields(origin, |name, value, mode| {
                    ours.push(Field::of(name.as_str().as_bytes()), value, mode)
                });
            }
            let mut sink = ByteAnswer { out, ours: &ours, head_request, close, chunked: false };
            // The route's timeout counts from the request's arrival.
            waits.now = Some(Instant::from_std(exchange.started()));
            let sent = proxy::send(state, target, forward, &mut sink, waits).await;
            waits.now = None;
            let (status, body) = sent?;
            Ok::<_, Problem>((status, body, sink.chunked))
        });
        exchange.scope(handler).await
    };
    let (status, mut body, chunked) = match proxied {
        Ok(answered) => answered,
        Err(problem) => {
            let response = exchange.in_scope(|| problem.into_response());
            let response = finish_problem(state, origin, response);
            let response = exchange.finish(route, response);
            return write_response(io, out, response, head_request, close).await;
        }
    };
    // The head is in `out`; the body follows, sent on as it comes.
    let bytes = body.size_hint().exact();
    let ended = loop {
        match body.drain_into(out, chunked) {
            Ok(true) => break true,
            Ok(false) => {}
            Err(_) => break false,
        }
        // Nothing of the answer waits while the upstream is slow.
        if !out.is_empty() && io.write_all(out).await.is_err() {
            return Next::Close;
        }
        out.clear();
        if body.fill().await.is_err() {
            break false;
        }
    };
    let written = io.write_all(out).await.is_ok();
    // The next request's head is waited for from here.
    waits.now = Some(Instant::from_std(exchange.finished(route, status, bytes)));
    // A body that broke off ends the connection: the client sees it cut,
    // never a short answer passed for a whole one.
    if written && ended && !close { Next::Again } else { Next::Close }
}

/// The fields of a request the front read, as they go upstream: the
/// client's that pass, then the gateway's.
struct ClientFields<'a> {
    buf: &'a [u8],
    slots: &'a [Slot],
    forwarding: Forwarding<'a>,
}

impl upstream::Fields for ClientFields<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        for slot in self.slots {
            let name = slot.name(self.buf);
            if self.forwarding.passes(slot.kind, name) {
                put_line(out, upstream::field_line(self.buf, name, slot.value(self.buf)));
            }
        }
        self.forwarding.write_added(out);
    }
}

/// The edge's fields on an answer the gateway made itself, as on hyper's path.
fn finish_problem(state: &AppState, origin: Option<&[u8]>, mut response: Response) -> Response {
    let origin = origin.and_then(|o| HeaderValue::from_bytes(o).ok());
    state.edge.finish(origin.as_ref(), false, &mut response);
    response
}

/// The fields the gateway sets on a forwarded answer: every answer's
/// ([`Inner::fixed`]), the request id, `RateLimit-*`, and CORS.
struct Ours<'a> {
    fixed: &'a [Fixed],
    /// Each its kind, value and mode (its name is the kind's).
    dynamic: [(Field, &'a [u8], Mode); 8],
    len: usize,
    /// The `RateLimit-*` fields' numbers.
    limits: Option<Verdict>,
    /// The fields of the upstream's answer that ours replace.
    replaced: u64,
}

impl<'a> Ours<'a> {
    fn new(front: &'a Inner, request_id: &'a [u8], limits: Option<Verdict>) -> Self {
        let mut replaced = front.fixed_replaced;
        for (name, _) in limits.iter().flat_map(Verdict::fields) {
            replaced |= Field::of(name.as_bytes()).bit();
        }
        let dynamic = [(Field::Other, &[][..], Mode::Append); 8];
        let mut ours = Ours { fixed: &front.fixed, dynamic, len: 0, limits, replaced };
        ours.push(Field::XRequestId, request_id, Mode::Replace);
        ours
    }

    /// One more field, which must be one [`Field`] knows (they all are).
    fn push(&mut self, kind: Field, value: &'a [u8], mode: Mode) {
        debug_assert!(kind != Field::Other);
        if let Some(slot) = self.dynamic.get_mut(self.len) {
            *slot = (kind, value, mode);
            self.len += 1;
            if mode == Mode::Replace {
                self.replaced |= kind.bit();
            }
        }
    }

    /// Writes ours; `present`: the fields the upstream's answer had.
    fn write(&self, out: &mut Vec<u8>, present: u64) {
        let skip = |kind: Field, mode: Mode| mode == Mode::IfAbsent && present & kind.bit() != 0;
        for f in self.fixed.iter().filter(|f| !skip(f.kind, f.mode)) {
            out.extend_from_slice(&f.line);
        }
        for (kind, value, mode) in &self.dynamic[..self.len] {
            if !skip(*kind, *mode) {
                put_field(out, kind.name().as_bytes(), value);
            }
        }
        for (name, n) in self.limits.iter().flat_map(Verdict::fields) {
            put_field(out, name.as_bytes(), decimal(n, &mut [0; 20]));
        }
    }
}

/// `n` in decimal, written at the end of `room`.
fn decimal(mut n: u64, room: &mut [u8; 20]) -> &[u8] {
    let mut at = room.len();
    loop {
        at -= 1;
        room[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &room[at..];
        }
    }
}

/// The client's answer head, written from the upstream's as it is parsed.
struct ByteAnswer<'o, 'a> {
    out: &'o mut Vec<u8>,
    ours: &'o Ours<'a>,
    head_request: bool,
    close: bool,
    /// The body reaches the client chunked (its length is not known ahead).
    chunked: bool,
}

impl Answer for ByteAnswer<'_, '_> {
    type Head = u16;

    fn head(&mut self, up: &UpstreamHead<'_>) -> Result<u16, String> {
        let out = &mut *self.out;
        out.clear();
        status_line(out, up.code);
        let mut present = 0;
        for (kind, field) in up.message_fields() {
            present |= kind.bit();
            if self.ours.replaced & kind.bit() == 0 {
                put_line(out, upstream::field_line(up.raw, field.name.as_bytes(), field.value));
            }
        }
        self.ours.write(out, present);
        self.chunked = !self.head_request && up.length_unknown();
        if self.chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        end_head(out, present & Field::Date.bit() != 0, self.close);
        Ok(up.code)
    }

    fn status(code: &u16) -> u16 {
        *code
    }
}

fn status_line(out: &mut Vec<u8>, code: u16) {
    let reason = http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[b'0' + (code / 100 % 10) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Date` (when the answer has none) and `Connection: close` (when it is
/// the connection's last), and the empty line.
fn end_head(out: &mut Vec<u8>, has_date: bool, close: bool) {
    if !has_date {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The current time as an HTTP date, formatted once a second per thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static NOW: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(now).into_bytes();
        }
        out.extend_from_slice(text);
    });
}

/// Writes an answer the gateway made itself (a problem document, always
/// small and whole) and says what becomes of the connection.
async fn write_response(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    head_request: bool,
    close: bool,
) -> Next {
    use futures_util::FutureExt;
    let (parts, body) = response.into_parts();
    // The gateway's own answers have their body in memory: ready at once.
    let body = body.collect().now_or_never().and_then(Result::ok).map(|b| b.to_bytes()).unwrap_or_default();
    // An answer that asks for the connection to close gets it closed.
    let close = close || parts.headers.get_all(http::header::CONNECTION).iter().any(|v| says_close(v.as_bytes()));
    out.clear();
    status_line(out, parts.status.as_u16());
    let mut has_date = false;
    for (name, value) in &parts.headers {
        let kind = Field::of(name.as_str().as_bytes());
        has_date |= kind == Field::Date;
        if !(kind.is_hop_by_hop() || kind == Field::ContentLength) {
            put_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    put_field(out, b"content-length", body.len().to_string().as_bytes());
    end_head(out, has_date, close);
    if !head_request {
        out.extend_from_slice(&body);
    }
    if io.write_all(out).await.is_err() || close { Next::Close } else { Next::Again }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_taken_are_exactly_those_http_parses_as_they_are() {
        // Every byte, in the path and in the query: the front takes a target
        // only if `http` (hyper's URI parser) parses it to the same path and
        // query; everything else it leaves to hyper.
        for b in 0..=255u8 {
            for target in [vec![b'/', b'a', b, b'z'], vec![b'/', b'a', b'?', b'q', b, b'z']] {
                let ours = origin_form(&target);
                let theirs = http::uri::PathAndQuery::try_from(&target[..]);
                if let Some(path_len) = ours {
                    let pq = theirs.unwrap_or_else(|e| panic!("{target:?} taken but http refuses it: {e}"));
                    assert_eq!(pq.as_str().as_bytes(), &target[..], "{target:?}");
                    assert_eq!(pq.path().as_bytes(), &target[..path_len], "{target:?}");
                } else {
                    assert!(
                        b >= 0x80
                            || b == b'#'
                            || theirs.is_err()
                            || theirs.is_ok_and(|pq| pq.as_str().as_bytes() != &target[..]),
                        "{target:?} (byte {b:#x}) left to hyper though http takes it as it is"
                    );
                }
            }
        }
        assert_eq!(origin_form(b"/v1/users/me?x=1?y"), Some(12));
        for not_origin in [&b"*"[..], b"http://a/b", b"", b"a/b"] {
            assert_eq!(origin_form(not_origin), None);
        }
    }

    fn parsed(raw: &str) -> Parsed {
        parse(raw.as_bytes(), &mut Vec::new(), 16 * 1024)
    }

    fn taken(raw: &str) -> Head {
        match parsed(raw) {
            Parsed::Complete(head) => head,
            Parsed::Partial => panic!("partial: {raw:?}"),
            Parsed::Hyper => panic!("left to hyper: {raw:?}"),
        }
    }

    #[test]
    fn numbers_in_decimal() {
        for n in [0, 7, 10, 99, 100, 123_456, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn plain_requests_are_taken() {
        let head = taken("GET /v1/users/me?a=b HTTP/1.1\r\nHost: x\r\nauthorization: Bearer t\r\n\r\n");
        assert_eq!((head.method, head.path_len, head.length, head.close), (Method::GET, 12, 0, false));
        let head = taken("POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\nconnection: close\r\n\r\n");
        assert_eq!((head.length, head.close), (12, true));
        assert!(matches!(parsed("GET /v1/x HTTP/1.1\r\nhost: x\r\n"), Parsed::Partial));
    }

    #[test]
    fn what_could_be_read_two_ways_is_left_to_hyper() {
        for raw in [
            // Framing: a transfer coding, with or without a length beside it.
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            // Lengths repeated, listed, signed, spaced or too long.
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3, 3\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: +3\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3 4\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length:\r\n\r\n",
            // A folded field (obs-fold), a bare CR, a space before the colon.
            "GET /v1/x HTTP/1.1\r\nhost: x\r\nx-a: b\r\n c\r\n\r\n",
            "GET /v1/x HTTP/1.1\r\nhost: x\r\nx-a: b\rc\r\n\r\n",
            "GET /v1/x HTTP/1.1\r\nhost : x\r\n\r\n",
            // No Host, two.
            "GET /v1/x HTTP/1.1\r\n\r\n",
            "GET /v1/x HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            // Other versions, targets and methods.
            "GET /v1/x HTTP/1.0\r\nhost: x\r\n\r\n",
            "GET http://x/v1/x HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET /v1/x#frag HTTP/1.1\r\nhost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nhost: x\r\n\r\n",
            // Upgrades, expectations, fields named by Connection, preflights.
            "GET /v1/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n",
            "GET /v1/x HTTP/1.1\r\nhost: x\r\nconnection: x-secret\r\n\r\n",
            "OPTIONS /v1/x HTTP/1.1\r\nhost: x\r\norigin: https://a\r\naccess-control-request-method: PUT\r\n\r\n",
            // The gateway's own paths.
            "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            "GET /admin/upstreams HTTP/1.1\r\nhost: x\r\n\r\n",
        ] {
            assert!(matches!(parsed(raw), Parsed::Hyper), "{raw:?} was taken");
        }
        // Bare LF line ends are read as hyper reads them (httparse's rules),
        // and the upstream gets a head written afresh with CRLF.
        let bare_lf = "GET /v1/x HTTP/1.1\nhost: x\n\n";
        assert_eq!(taken(bare_lf).len, bare_lf.len());
    }

    #[test]
    fn oversized_heads_and_too_many_fields_are_left_to_hyper() {
        let big = format!("GET /v1/x HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
        assert!(matches!(parsed(&big), Parsed::Hyper));
        let partial_big = format!("GET /v1/x HTTP/1.1\r\nhost: x\r\nx-big: {}", "a".repeat(20_000));
        assert!(matches!(parsed(&partial_big), Parsed::Hyper));
        let many: String = (0..MAX_FIELDS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(matches!(parsed(&format!("GET /v1/x HTTP/1.1\r\nhost: x\r\n{many}\r\n")), Parsed::Hyper));
    }
}
