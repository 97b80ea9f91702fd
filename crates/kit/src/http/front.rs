//! The hooks through which a service serves requests itself, ahead of the
//! router and of hyper: the gateway's proxy path and byte-level front use
//! them (`crates/gateway/src/proxy.rs`, `front.rs`). An ordinary service
//! never meets them; kit still observes what they serve (ids, trace, span,
//! metrics, access log).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use tokio::net::TcpStream;

use super::{Observation, Shared, SharedRef, panic_response};
use crate::config::HttpSettings;
use crate::problem::Problem;
use crate::trace::TraceContext;

/// A service's own handling of the requests it claims, ahead of its router.
///
/// The gateway forwards almost every request it gets; taking those through
/// axum's router and middleware stack cost more than the forwarding itself
/// (docs/benchmarks.md), so it claims them here. kit still does for them what
/// it does for every request: request id, trace context, a span with both,
/// metrics, the access log, security headers, and a panic turned into a 500
/// problem. What the router's path also does and a front must do itself:
/// timeouts, and body limits ([`FrontContext::body_limit`],
/// [`content_length_over`], [`payload_too_large`]).
pub trait Front: Send + Sync + 'static {
    /// Whether the front handles `req`; the router gets the others.
    fn claims(&self, req: &http::Request<hyper::body::Incoming>) -> bool;

    /// Handles a request the front claimed.
    fn call(&self, req: http::Request<hyper::body::Incoming>, ctx: FrontContext) -> BoxFuture<'static, FrontResponse>;
}

/// What kit tells a [`Front`] about a request.
#[derive(Debug, Clone)]
pub struct FrontContext {
    /// The address of the connection's peer.
    pub peer: SocketAddr,
    pub request_id: HeaderValue,
    pub trace: TraceContext,
    /// The largest body this path may carry (`http.body_limit`, or the
    /// service's limit for the path).
    pub body_limit: usize,
}

/// A [`Front`]'s answer and the route to count it under (a template or a
/// prefix, never the raw path, so that series stay bounded).
#[derive(Debug)]
pub struct FrontResponse {
    pub response: Response,
    pub route: Arc<str>,
}

/// A service's own serving of whole plaintext connections, ahead of hyper.
///
/// The gateway reads request heads in place and forwards them without
/// building header maps (docs/gateway.md); a connection it cannot or will
/// not serve that way — a request of a kind it leaves to hyper, anything
/// malformed or oversized — it gives back, with what it has read, and hyper
/// serves the rest of that connection's life through the service's
/// [`Front`] and router as usual. TLS connections always go to hyper.
pub trait ConnectionFront: Send + Sync + 'static {
    /// Serves `conn` until it closes (`None`) or is handed back.
    fn serve(&self, conn: FrontConnection) -> BoxFuture<'static, Option<Handoff>>;
}

/// A plaintext connection given to a [`ConnectionFront`].
pub struct FrontConnection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Says when the service shuts down: the request in flight is
    /// finished, then the connection closed.
    pub closing: Closing,
    pub observer: Observer,
}

/// The shutdown signal of one serving loop's connections. Cheaper to watch
/// than a [`CancellationToken`] (whose every poll takes a lock shared by
/// all threads): a flag, and a wake-up per serving thread.
#[derive(Clone, Default)]
pub struct Closing(Arc<ClosingState>);

#[derive(Default)]
struct ClosingState {
    closed: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Closing {
    pub fn is_closing(&self) -> bool {
        self.0.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once shutdown has begun.
    pub async fn wait(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so no wake-up is lost.
        notified.as_mut().enable();
        if !self.is_closing() {
            notified.await;
        }
    }

    pub(super) fn close(&self) {
        self.0.closed.store(true, std::sync::atomic::Ordering::Release);
        self.0.notify.notify_waiters();
    }
}

/// A connection a [`ConnectionFront`] gives back: hyper serves it from here,
/// reading `read` (the bytes the front had read and not used) first.
pub struct Handoff {
    pub stream: TcpStream,
    pub read: bytes::Bytes,
}

/// What kit does around a request, for a [`ConnectionFront`] that parses
/// requests itself: ids, trace context, span, metrics and access log.
#[derive(Clone)]
pub struct Observer(pub(super) Arc<Shared>);

impl Observer {
    pub fn settings(&self) -> &HttpSettings {
        &self.0.settings
    }

    /// The largest body a request to `path` may carry.
    pub fn body_limit(&self, path: &str) -> usize {
        self.0.body_limit(None, path)
    }

    /// Begins observing a request: the client's `x-request-id` and
    /// `traceparent` values, when it sent them, are kept if sane.
    pub fn begin(
        &self,
        method: &Method,
        path: &str,
        request_id: Option<&[u8]>,
        traceparent: Option<&[u8]>,
    ) -> Exchange<'_> {
        Exchange(Observation::begin(SharedRef::Borrowed(&self.0), method, path, request_id, traceparent, None))
    }
}

/// One request observed by kit on behalf of a [`ConnectionFront`].
pub struct Exchange<'a>(Observation<'a>);

impl Exchange<'_> {
    /// The request id, as the `x-request-id` value to send on (printable
    /// ASCII).
    pub fn request_id(&self) -> &str {
        &self.0.request_id
    }

    pub fn trace(&self) -> &TraceContext {
        &self.0.trace
    }

    /// When kit began observing it: the request's arrival, for whatever
    /// else wants the time (one clock read for all).
    pub fn started(&self) -> Instant {
        self.0.start
    }

    /// Runs `handler` in the request's span, with its id for problem documents.
    pub fn scope<F: Future>(&self, handler: F) -> impl Future<Output = F::Output> + use<F> {
        self.0.scope(handler)
    }

    /// [`Exchange::scope`] for work that does not wait (building a problem
    /// document, say).
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = self.0.span.enter();
        self.0.scope_value().run_sync(f)
    }

    /// Finishes an answer built as a response: kit's fields (`x-request-id`,
    /// [`SECURITY_HEADERS`]) are added, and it is counted and logged.
    pub fn finish(self, route: &str, response: Response) -> Response {
        self.0.finish(route, response)
    }

    /// Counts and logs an answer the front wrote itself, with kit's fields.
    /// Returns when it was done: the clock reading its duration was taken
    /// from, for the caller to reuse.
    pub fn finished(self, route: &str, status: u16, bytes: Option<u64>) -> Instant {
        self.0.record(route, StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), bytes)
    }
}

/// Whether `headers` announce a body longer than `limit`.
pub fn content_length_over(headers: &http::HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// The 413 for a body announced too long. The body is left unread, so the
/// connection cannot carry another request; the answer says so, or clients
/// would reuse it.
pub fn payload_too_large(limit: usize) -> Response {
    Problem::payload_too_large(limit).with_header(header::CONNECTION, HeaderValue::from_static("close")).into_response()
}

/// A request a [`Front`] claimed, observed like the router's.
pub(super) async fn front_call(
    shared: Arc<Shared>,
    front: Arc<dyn Front>,
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Response {
    use futures_util::FutureExt;
    let body_limit = shared.body_limit(None, req.uri().path());
    let head_problem = super::head_problem(&req, shared.settings.max_header_fields);
    let obs = Observation::of(shared, &req, None);
    if let Some(problem) = head_problem {
        let response = obs.scope(async { problem.into_response() }).await;
        return obs.finish("unmatched", response);
    }
    let ctx = FrontContext { peer, request_id: obs.id_header(), trace: obs.trace, body_limit };
    let call = std::panic::AssertUnwindSafe(front.call(req, ctx)).catch_unwind();
    let answer = obs
        .scope(async {
            match call.await {
                Ok(answer) => answer,
                Err(panic) => FrontResponse { response: panic_response(panic), route: Arc::from("unmatched") },
            }
        })
        .await;
    obs.finish(&answer.route, answer.response)
}

/// A connection handed back by a [`ConnectionFront`]: what it had read comes
/// first, then the socket.
pub(super) struct Rewind {
    pub(super) read: bytes::Bytes,
    pub(super) stream: TcpStream,
}

impl tokio::io::AsyncRead for Rewind {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read.split_to(n));
        if self.read.is_empty() {
            // An empty slice would still keep the front's whole buffer alive.
            self.read = bytes::Bytes::new();
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Rewind {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
