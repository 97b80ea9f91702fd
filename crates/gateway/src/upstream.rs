//! Connections to upstream instances: HTTP/1.1 on hyper's connection API,
//! pooled per thread.
//!
//! hyper-util's pooled client spawns a task per request (to take the
//! connection back once the response has been read), locks a pool shared by
//! every thread and formats a `Host` header per request; on the gateway's hot
//! path that cost more than the proxying itself. Here each thread keeps its
//! own idle connections per instance, so the request, its connection and its
//! response stay on one thread (with `http.threads`, on one single-threaded
//! runtime). A connection goes back to the pool when its response body has
//! been read to the end; one whose body was not finished is dropped, which
//! closes it. Every connection is driven by a task of its own, so an idle one
//! notices when its upstream closes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::balance::Instance;

/// What goes to an upstream: the client's body, limited, or nothing.
pub type RequestBody = Either<Limited<Incoming>, Empty<Bytes>>;

/// Idle connections a thread keeps per instance; more are closed.
const MAX_IDLE: usize = 256;

/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

thread_local! {
    /// This thread's idle connections, by instance id.
    static IDLE: RefCell<HashMap<u64, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timed out); the
    /// request was not sent.
    Connect(String),
    /// The connection failed once the request was on its way: the upstream
    /// may have acted on it.
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connecting: {e}"),
            SendError::Request(e) => write!(f, "{}", kit::problem::ErrorChain(e)),
        }
    }
}

/// Sends `req` (origin-form URI; `Host` is set here) to `instance` on a
/// pooled connection, or a new one made within `connect_timeout`.
pub async fn send(
    instance: &Instance,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    req.headers_mut().insert(http::header::HOST, instance.host.clone());
    loop {
        let (mut sender, reused) = match checkout(instance, connect_timeout).await {
            Some(sender) => (sender, true),
            // Boxed: a new connection is the rare path, and its future is large.
            None => (Box::pin(connect(instance, connect_timeout, false)).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(response) => {
                return Ok(response.map(|body| UpstreamBody { body, done: false, back: Some((instance.id, sender)) }));
            }
            Err(mut e) => match e.take_message() {
                // A pooled connection that closed before the request could
                // be written: nothing was sent, so a fresh connection may
                // carry it, whatever the method.
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError::Request(e.into_error())),
            },
        }
    }
}

/// Sends an upgrade request (WebSocket) on a connection of its own, which
/// becomes the tunnel when the upstream answers 101.
pub async fn send_upgrade(
    instance: &Instance,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    req.headers_mut().insert(http::header::HOST, instance.host.clone());
    let mut sender = connect(instance, connect_timeout, true).await?;
    sender.send_request(req).await.map_err(SendError::Request)
}

/// An idle connection of this thread to `instance` that can take a request now.
async fn checkout(instance: &Instance, wait: Duration) -> Option<SendRequest<RequestBody>> {
    loop {
        let mut idle = IDLE.with(|pool| pool.borrow_mut().get_mut(&instance.id).and_then(Vec::pop))?;
        if idle.sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
            continue;
        }
        if idle.sender.is_ready() {
            return Some(idle.sender);
        }
        // Just put back: its connection task has not yet seen the end of
        // the last response. It will in a moment, or it failed.
        if let Ok(Ok(())) = tokio::time::timeout(wait, idle.sender.ready()).await {
            return Some(idle.sender);
        }
    }
}

fn checkin(instance: u64, sender: SendRequest<RequestBody>) {
    if sender.is_closed() {
        return;
    }
    let now = Instant::now();
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(instance).or_default();
        // The oldest are at the front: close those past their time.
        let stale = idle.iter().take_while(|i| now.duration_since(i.since) > IDLE_TIMEOUT).count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    });
}

async fn connect(
    instance: &Instance,
    timeout: Duration,
    upgrades: bool,
) -> Result<SendRequest<RequestBody>, SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(instance.address.as_str())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Err(_) => return Err(SendError::Connect(format!("no connection within {} ms", timeout.as_millis()))),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    let address = instance.address.clone();
    let log = move |e: hyper::Error| tracing::debug!(upstream = %address, error = %e, "upstream connection ended");
    if upgrades {
        tokio::spawn(async move { connection.with_upgrades().await.map_err(log) });
    } else {
        tokio::spawn(async move { connection.await.map_err(log) });
    }
    Ok(sender)
}

/// An upstream's response body; its connection returns to this thread's
/// pool once the body has been read to the end.
pub struct UpstreamBody {
    body: Incoming,
    done: bool,
    back: Option<(u64, SendRequest<RequestBody>)>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.is_end_stream()
            && let Some((instance, sender)) = self.back.take()
        {
            checkin(instance, sender);
        }
    }
}
