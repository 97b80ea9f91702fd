//! HTTP plumbing shared by every service.
//!
//! A service, built ([`Server`]): its router, its OpenAPI document, its
//! database, its background workers. [`serve`] runs it on a bound listener until
//! a shutdown token fires, adding what every service shares:
//!
//! - `x-request-id` kept (when sane) or generated, and returned;
//! - W3C `traceparent` continued; both ids on every log line of the request;
//! - one access-log line and Prometheus metrics per request;
//! - a body-size limit (413) and a handler timeout (503);
//! - panics and bare error statuses turned into problem documents;
//! - `/healthz`, `/readyz`, `/metrics` and `/openapi.json`;
//! - graceful shutdown: stop accepting, finish in-flight requests within a grace
//!   period, stop workers, close the database.

use std::any::Any;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use utoipa::openapi::OpenApi;

use crate::auth::TokenVerifier;
use crate::config::HttpSettings;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::scope::Scope;
use crate::trace::TraceContext;

pub mod front;

use front::{
    Closing, ConnectionFront, Front, FrontConnection, Handoff, Observer, Rewind, content_length_over, front_call,
    payload_too_large,
};

/// The request id of the request being handled (also in the extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

/// A background task of a service. It must return soon after the token is
/// cancelled.
pub type Worker = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// A readiness check: what `/readyz` reports.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Readiness> + Send + Sync>;

/// The state of one dependency in a readiness report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// `up` or `down`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckResult {
    pub fn up() -> Self {
        Self { status: "up", detail: None }
    }
    pub fn down(detail: impl Into<String>) -> Self {
        Self { status: "down", detail: Some(detail.into()) }
    }
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub checks: BTreeMap<String, CheckResult>,
}

impl Readiness {
    pub fn from_checks(checks: BTreeMap<String, CheckResult>) -> Self {
        let ready = checks.values().all(CheckResult::is_up);
        Self { status: if ready { "ready" } else { "not_ready" }, checks }
    }
}

/// A service, built: ready to be served or mounted.
pub struct Server {
    pub name: &'static str,
    router: Router,
    openapi: OpenApi,
    metrics: Metrics,
    db: Option<Db>,
    bus: Option<crate::bus::Bus>,
    verifier: Option<Arc<TokenVerifier>>,
    readiness: Option<ReadyCheck>,
    workers: Vec<Worker>,
    openapi_route: bool,
    own_fallback: bool,
    body_limits: std::collections::HashMap<String, usize>,
    front: Option<Arc<dyn Front>>,
    connection_front: Option<Arc<dyn ConnectionFront>>,
}

impl Server {
    /// A service from its API router and the OpenAPI document describing it.
    pub fn new(name: &'static str, router: Router, openapi: OpenApi) -> Self {
        Self {
            name,
            router,
            openapi: crate::openapi::finish(name, openapi),
            metrics: Metrics::new(name),
            db: None,
            bus: None,
            verifier: None,
            readiness: None,
            workers: Vec::new(),
            openapi_route: true,
            own_fallback: false,
            body_limits: std::collections::HashMap::new(),
            front: None,
            connection_front: None,
        }
    }

    /// Requests `front` claims skip the router (see [`Front`]).
    pub fn with_front(mut self, front: Arc<dyn Front>) -> Self {
        self.front = Some(front);
        self
    }

    /// Plaintext connections go to `front` first (see [`ConnectionFront`]).
    pub fn with_connection_front(mut self, front: Arc<dyn ConnectionFront>) -> Self {
        self.connection_front = Some(front);
        self
    }

    /// A body limit of its own for one path (or route template), instead of
    /// `http.body_limit`: uploads need more.
    pub fn with_body_limit(mut self, path: &str, bytes: usize) -> Self {
        self.body_limits.insert(path.to_owned(), bytes);
        self
    }

    /// Leaves `/openapi.json` to the service's own router (the gateway serves
    /// the merged document there).
    pub fn without_openapi_route(mut self) -> Self {
        self.openapi_route = false;
        self
    }

    /// The router answers unknown paths itself (the gateway forwards them);
    /// otherwise they get a 404 problem.
    pub fn with_own_fallback(mut self) -> Self {
        self.own_fallback = true;
        self
    }

    /// The service's database: checked by `/readyz`, watched by `/metrics`,
    /// closed at shutdown.
    pub fn with_db(mut self, db: Db) -> Self {
        self.metrics.watch_pool(db.clone());
        self.db = Some(db);
        self
    }

    /// The event bus the service publishes to or consumes from: checked by `/readyz`.
    pub fn with_bus(mut self, bus: crate::bus::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The verifier the [`Caller`](crate::auth::Caller) extractor uses.
    pub fn with_verifier(mut self, verifier: Arc<TokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Replaces the default readiness check (the database answers).
    pub fn with_readiness(mut self, check: ReadyCheck) -> Self {
        self.readiness = Some(check);
        self
    }

    /// Publishes the service's outbox: the relay runs as a worker and its
    /// counters join the service's metrics.
    pub fn with_relay(mut self, relay: crate::bus::Relay) -> Self {
        relay.register_metrics(self.metrics.registry_mut());
        self.with_worker(relay.worker())
    }

    /// Consumes events from `bus`: the consumer runs as a worker and its
    /// counters join the service's metrics.
    pub fn with_consumer(mut self, consumer: crate::bus::Consumer, bus: crate::bus::Bus) -> Self {
        consumer.register_metrics(self.metrics.registry_mut());
        self.with_worker(consumer.worker(bus))
    }

    pub fn with_worker(mut self, worker: Worker) -> Self {
        self.workers.push(worker);
        self
    }

    /// The service's metrics, to register its own.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    pub fn openapi(&self) -> &OpenApi {
        &self.openapi
    }

    /// The complete router with every shared route and layer, and the workers
    /// still to be started. Tests can call the router without a server.
    pub fn into_parts(self, settings: &HttpSettings) -> (Router, Vec<Worker>, Option<Db>) {
        let (app, workers, db) = self.into_app(settings);
        (app.router, workers, db)
    }

    fn into_app(self, settings: &HttpSettings) -> (App, Vec<Worker>, Option<Db>) {
        let state = Arc::new(Shared {
            name: self.name,
            metrics: self.metrics,
            db: self.db.clone(),
            bus: self.bus,
            readiness: self.readiness,
            openapi: serde_json::to_vec(&self.openapi).unwrap_or_default().into(),
            settings: settings.clone(),
            body_limits: self.body_limits,
        });
        let mut ops =
            Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics));
        if self.openapi_route {
            ops = ops.route("/openapi.json", get(openapi));
        }
        let front = self.front.map(|front| (front, state.clone()));
        let connection_front = self.connection_front.map(|front| (front, Observer(state.clone())));
        let ops = ops.with_state(state.clone());
        let mut router = self.router.merge(ops);
        if !self.own_fallback {
            router = router.fallback(not_found);
        }
        if let Some(verifier) = self.verifier {
            router = router.layer(axum::Extension(verifier));
        }
        let router = router
            .layer(CatchPanicLayer::custom(panic_response))
            // The limit is applied by `observe` (per route), on the body itself.
            .layer(DefaultBodyLimit::disable())
            .layer(middleware::from_fn_with_state(state, observe));
        (App { router, front, connection_front }, self.workers, self.db)
    }
}

/// What serves a connection's requests: the front, for those it claims, and
/// the router.
#[derive(Clone)]
struct App {
    router: Router,
    front: Option<(Arc<dyn Front>, Arc<Shared>)>,
    connection_front: Option<(Arc<dyn ConnectionFront>, Observer)>,
}

impl App {
    fn call(
        &self,
        mut req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Response, std::convert::Infallible>> + Send + use<> {
        use futures_util::FutureExt;
        use futures_util::future::Either;
        if let Some((front, shared)) = &self.front
            && front.claims(&req)
        {
            return Either::Left(front_call(shared.clone(), front.clone(), req, peer).map(Ok));
        }
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        Either::Right(tower::ServiceExt::oneshot(self.router.clone(), req.map(Body::new)))
    }
}

struct Shared {
    name: &'static str,
    metrics: Metrics,
    db: Option<Db>,
    bus: Option<crate::bus::Bus>,
    readiness: Option<ReadyCheck>,
    openapi: bytes::Bytes,
    settings: HttpSettings,
    body_limits: std::collections::HashMap<String, usize>,
}

impl Shared {
    /// The largest body a request may carry: its route's limit, else its
    /// path's, else `http.body_limit`.
    fn body_limit(&self, route: Option<&str>, path: &str) -> usize {
        route
            .and_then(|r| self.body_limits.get(r))
            .or_else(|| self.body_limits.get(path))
            .copied()
            .unwrap_or(self.settings.body_limit)
    }
}

/// Runs `service` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    service: Server,
    settings: &HttpSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let name = service.name;
    let grace = settings.shutdown_grace();
    let tls = tls_acceptor(settings)?;
    let (app, workers, db) = service.into_app(settings);
    let worker_token = shutdown.child_token();
    let worker_handles: Vec<_> = workers.into_iter().map(|w| tokio::spawn(w(worker_token.clone()))).collect();

    let threads = settings.threads;
    if threads > 1 {
        // Thread per core: each thread runs its own single-threaded runtime,
        // so a request's tasks never hop between threads (see
        // docs/benchmarks.md). Connections are dealt to the threads in turn:
        // had the threads raced to accept, one could end up with more of the
        // connections than it can serve while the other idles.
        let mut handles = Vec::new();
        let mut dealt = Vec::new();
        for i in 0..threads {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            dealt.push(tx);
            let (app, settings, tls, shutdown) = (app.clone(), settings.clone(), tls.clone(), shutdown.clone());
            let handle = std::thread::Builder::new().name(format!("{name}-http-{i}")).spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(accept_loop(name, Connections::Dealt(rx), app, &settings, tls, shutdown));
                Ok::<(), std::io::Error>(())
            })?;
            handles.push(handle);
        }
        let mut turn = 0;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        accept_failed(name, &e).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            match stream.into_std() {
                Ok(stream) => {
                    let _ = dealt[turn % threads].send((stream, peer));
                    turn = turn.wrapping_add(1);
                }
                Err(e) => tracing::debug!(service = name, error = %e, "a connection could not be handed over"),
            }
        }
        drop(dealt);
        drop(listener);
        let _ = tokio::task::spawn_blocking(move || {
            for h in handles {
                match h.join() {
                    Ok(Err(e)) => tracing::warn!(service = name, error = %e, "an HTTP thread failed"),
                    Err(_) => tracing::error!(service = name, "an HTTP thread panicked"),
                    Ok(Ok(())) => {}
                }
            }
        })
        .await;
    } else {
        accept_loop(name, Connections::Listener(listener), app, settings, tls, shutdown).await;
    }
    worker_token.cancel();
    for handle in worker_handles {
        if tokio::time::timeout(grace, handle).await.is_err() {
            tracing::warn!(service = name, "a worker did not stop within the shutdown grace period");
        }
    }
    if let Some(db) = db {
        db.close().await;
    }
    tracing::debug!(service = name, "stopped");
    Ok(())
}

/// Where a serving loop gets its connections: its own listener, or the
/// acceptor dealing them out to threads.
enum Connections {
    Listener(TcpListener),
    Dealt(tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>),
}

impl Connections {
    /// The next connection; `None` when no more will come.
    async fn next(&mut self) -> Option<std::io::Result<(tokio::net::TcpStream, SocketAddr)>> {
        match self {
            Connections::Listener(listener) => Some(listener.accept().await),
            Connections::Dealt(rx) => {
                let (stream, peer) = rx.recv().await?;
                Some(tokio::net::TcpStream::from_std(stream).map(|s| (s, peer)))
            }
        }
    }
}

/// Out of file descriptors and the like: say so, and wait rather than spin.
async fn accept_failed(name: &'static str, e: &std::io::Error) {
    tracing::warn!(service = name, error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Accepts and serves connections from `incoming` until `shutdown`, then lets
/// the connections finish their request in flight, up to the grace period.
async fn accept_loop(
    name: &'static str,
    mut incoming: Connections,
    app: App,
    settings: &HttpSettings,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let grace = settings.shutdown_grace();
    // Connections are served by hyper directly (not `axum::serve`) for the
    // limits it does not expose: a client gets `header_read_timeout` to send a
    // request head (slow clients are cut off, idle keep-alive connections
    // too), a head over `max_header_bytes` is answered 431, and upgraded
    // connections (WebSocket) are handed to the handler.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout())
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    // Each connection watches `closing`: at shutdown it finishes the request
    // in flight and closes; `connections` waits for them, up to the grace.
    let closing = Closing::default();
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = incoming.next() => match accepted {
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    accept_failed(name, &e).await;
                    continue;
                }
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection_front = app.connection_front.clone();
        let app = app.clone();
        let svc = hyper::service::service_fn(move |req| app.call(req, peer));
        let http1 = http1.clone();
        let closing = closing.clone();
        macro_rules! drive {
            ($io:expr) => {{
                let conn = http1.serve_connection(hyper_util::rt::TokioIo::new($io), svc).with_upgrades();
                tokio::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = closing.wait() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }};
        }
        match (&tls, connection_front) {
            (None, Some((front, observer))) => {
                let conn = FrontConnection { stream, peer, closing: closing.clone(), observer };
                connections.spawn(async move {
                    // Awaited apart: a temporary in the `if let` would keep
                    // the front's whole connection state alive under hyper.
                    let handoff = front.serve(conn).await;
                    if let Some(Handoff { stream, read }) = handoff {
                        // Boxed: hyper's connection is large, and most
                        // connections never get here (an idle one's task
                        // would hold that room all the same).
                        Box::pin(async move { drive!(Rewind { read, stream }) }).await
                    }
                });
            }
            (None, None) => {
                connections.spawn(async move { drive!(stream) });
            }
            (Some(acceptor), _) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = settings.header_read_timeout();
                connections.spawn(async move {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    drive!(stream)
                });
            }
        }
    }
    drop(incoming);
    closing.close();
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(
            service = name,
            grace_ms = grace.as_millis() as u64,
            "in-flight requests did not finish within the shutdown grace period; closing them"
        );
    }
}

/// The TLS acceptor for `http.tls_cert` / `http.tls_key`, if set.
fn tls_acceptor(settings: &HttpSettings) -> std::io::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        if settings.tls_cert.is_some() || settings.tls_key.is_some() {
            return Err(std::io::Error::other("invalid configuration: http.tls_cert and http.tls_key go together"));
        }
        return Ok(None);
    };
    crate::install_crypto();
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("invalid configuration: {what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("http.tls_cert", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("http.tls_cert", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("http.tls_key", key, &e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| std::io::Error::other(format!("invalid configuration: http.tls_cert/tls_key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))))
}

/// A UUIDv7 (time-ordered, so ids sort by arrival in logs) whose random bits
/// need only be unique.
fn new_request_id(at: Instant) -> Arc<str> {
    let ms = crate::local::unix_ms_at(at);
    let id = uuid::Builder::from_unix_timestamp_millis(ms, &crate::trace::random_bytes()).into_uuid();
    Arc::from(&*id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
}

/// Longest request id accepted from a client; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's `x-request-id` value when it is sane (printable ASCII, at
/// most [`MAX_REQUEST_ID_LEN`] bytes), else a new id.
fn request_id_in(value: Option<&[u8]>, at: Instant) -> Arc<str> {
    value
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.iter().all(u8::is_ascii_graphic))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(Arc::from)
        .unwrap_or_else(|| new_request_id(at))
}

/// What kit does around every request, on the router's path ([`observe`])
/// and a front's ([`front_call`]): begun before the handler, finished after.
struct Observation<'a> {
    shared: SharedRef<'a>,
    start: Instant,
    /// Printable ASCII (checked or generated). One allocation, shared by
    /// reference count with the request's task-local scope.
    request_id: Arc<str>,
    trace: TraceContext,
    method: Method,
    /// Kept for the access log, when it is on.
    path: Option<String>,
    span: tracing::Span,
}

/// The service an observation belongs to: owned by a request handed to a
/// task of its own, borrowed by a front's (no reference count touched).
enum SharedRef<'a> {
    Owned(Arc<Shared>),
    Borrowed(&'a Shared),
}

impl std::ops::Deref for SharedRef<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        match self {
            SharedRef::Owned(shared) => shared,
            SharedRef::Borrowed(shared) => shared,
        }
    }
}

impl Observation<'static> {
    /// Begins observing `req`.
    fn of<B>(shared: Arc<Shared>, req: &http::Request<B>, route: Option<&str>) -> Self {
        let h = req.headers();
        let value = |name: &str| h.get(name).map(HeaderValue::as_bytes);
        let (id, parent) = (value("x-request-id"), value("traceparent"));
        Self::begin(SharedRef::Owned(shared), req.method(), req.uri().path(), id, parent, route)
    }
}

impl<'a> Observation<'a> {
    /// `route` is the matched route, when known before the handler runs (a
    /// front records it in the span itself); `request_id` and `traceparent`
    /// are the client's values, if any.
    fn begin(
        shared: SharedRef<'a>,
        method: &Method,
        path: &str,
        request_id: Option<&[u8]>,
        traceparent: Option<&[u8]>,
        route: Option<&str>,
    ) -> Self {
        let start = Instant::now();
        let request_id = request_id_in(request_id, start);
        let mut trace = TraceContext::from_value(traceparent);
        let span = tracing::info_span!(
            "request",
            service = shared.name,
            method = %method,
            route = route,
            request_id = %request_id,
            trace_id = %trace.trace_id_hex(),
            span_id = %trace.span_id_hex(),
            user_id = tracing::field::Empty,
            upstream = tracing::field::Empty,
        );
        crate::telemetry::adopt(&span, &mut trace);
        shared.metrics.http.in_flight.inc();
        Self {
            start,
            request_id,
            trace,
            method: method.clone(),
            path: shared.settings.access_log.then(|| path.to_owned()),
            span,
            shared,
        }
    }

    /// Runs `handler` in the request's span, with its id for problem
    /// documents. (Not an `async fn`: one would keep a second copy of
    /// `handler` in its state, and handlers' futures are large.)
    fn scope<F: Future>(&self, handler: F) -> impl Future<Output = F::Output> + use<F> {
        self.scope_value().run(handler.instrument(self.span.clone()))
    }

    fn scope_value(&self) -> Scope {
        Scope { request_id: self.request_id.clone(), trace: self.trace }
    }

    /// Headers, metrics and the access log of the answer.
    fn finish(self, route: &str, mut response: Response) -> Response {
        const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
        response.headers_mut().insert(X_REQUEST_ID, self.id_header());
        security_headers(response.headers_mut());
        let bytes = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        self.record(route, response.status(), bytes);
        response
    }

    /// The request id as a header value.
    fn id_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.request_id).unwrap_or(HeaderValue::from_static("-"))
    }

    /// Metrics and the access log of an answer of `bytes` (when known);
    /// returns the clock reading its duration was taken from.
    fn record(mut self, route: &str, status: StatusCode, bytes: Option<u64>) -> Instant {
        let end = Instant::now();
        let elapsed = end.saturating_duration_since(self.start);
        self.shared.metrics.http.record(&self.method, route, status.as_u16(), elapsed);
        crate::telemetry::describe_request(&self.span, &self.method, route, status.as_u16());
        if let Some(path) = self.path.take() {
            let _enter = self.span.enter();
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            let quiet = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
            if status.is_server_error() {
                tracing::warn!(status = status.as_u16(), path, duration_ms, bytes, "request failed");
            } else if quiet {
                tracing::debug!(status = status.as_u16(), path, duration_ms, bytes, "request");
            } else {
                tracing::info!(status = status.as_u16(), path, duration_ms, bytes, "request");
            }
        }
        end
    }
}

impl Drop for Observation<'_> {
    /// Answered, or dropped unanswered (the client went away): no longer in
    /// flight either way.
    fn drop(&mut self) {
        self.shared.metrics.http.in_flight.dec();
    }
}

/// What every answer of every service carries: no MIME sniffing, no
/// framing, no referrer. Each with whether it replaces a value the handler
/// set (`false`: the handler's own is kept).
pub const SECURITY_HEADERS: [(http::HeaderName, HeaderValue, bool); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"), true),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"), false),
    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"), false),
];

fn security_headers(h: &mut http::HeaderMap) {
    for (name, value, replaces) in SECURITY_HEADERS {
        if replaces {
            h.insert(name, value);
        } else {
            h.entry(name).or_insert(value);
        }
    }
}

/// The middleware every request on the router's path goes through; see the
/// module documentation.
async fn observe(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let obs = Observation::of(shared.clone(), &req, Some(&route));
    req.extensions_mut().insert(RequestId(obs.request_id.clone()));
    req.extensions_mut().insert(obs.trace);
    if let Some(problem) = head_problem(&req, shared.settings.max_header_fields) {
        let response = obs.scope(async { problem.into_response() }).await;
        return obs.finish(&route, response);
    }
    let limit = shared.body_limit(Some(&route), req.uri().path());
    if content_length_over(req.headers(), limit) {
        let response = obs.scope(async { payload_too_large(limit) }).await;
        return obs.finish(&route, response);
    }
    // Bodies sent without a length are cut off as they cross the limit;
    // extractors turn that into a 413.
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let timeout = shared.settings.request_timeout();
    let response = obs
        .scope(async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => problem_for_bare_error(response),
                Err(_) => {
                    Problem::unavailable(format!("the request was not handled within {} ms", timeout.as_millis()), 1)
                        .with_type("timeout", "Request timed out")
                        .into_response()
                }
            }
        })
        .await;
    obs.finish(&route, response)
}

/// What is wrong with a request head that hyper let through: a missing Host
/// on HTTP/1.1 or more than one (RFC 9112 §3.2 asks for a 400: which host
/// is meant is ambiguous), or more header fields than `max_fields`.
pub(crate) fn head_problem<B>(req: &http::Request<B>, max_fields: usize) -> Option<Problem> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == http::Version::HTTP_11) {
        return Some(
            Problem::bad_request(format!(
                "a request carries exactly one Host field (RFC 9112 §3.2); this one has {hosts}"
            ))
            .with_type("bad-host", "Missing or repeated Host")
            .with_header(header::CONNECTION, HeaderValue::from_static("close")),
        );
    }
    let fields = req.headers().len();
    if fields > max_fields {
        return Some(
            Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                .with_type("too-many-fields", "Too many header fields")
                .with_detail(format!("the request has {fields} header fields; at most {max_fields} are accepted"))
                .with_header(header::CONNECTION, HeaderValue::from_static("close")),
        );
    }
    None
}

/// Error responses produced below the handlers (405 from the router, limits)
/// come without a body; give them a problem document, keeping their headers
/// (`Allow`, `Retry-After`).
fn problem_for_bare_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (parts, _) = response.into_parts();
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut new = Problem::new(status).with_detail(detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    new
}

fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .with_detail("an internal error occurred; quote the request id when reporting it")
        .into_response()
}

async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let report = readiness(&shared).await;
    let status = if report.status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report)).into_response()
}

/// What `/readyz` reports: the service's own check, or its database and bus.
async fn readiness(shared: &Shared) -> Readiness {
    match &shared.readiness {
        Some(check) => check().await,
        None => {
            let mut checks = BTreeMap::new();
            if let Some(db) = &shared.db {
                checks.insert("database".to_owned(), check_db(db).await);
            }
            if let Some(bus) = &shared.bus {
                let result = match tokio::time::timeout(Duration::from_secs(2), bus.check()).await {
                    Ok(Ok(())) => CheckResult::up(),
                    Ok(Err(e)) => CheckResult::down(e.to_string()),
                    Err(_) => CheckResult::down("no answer within 2 s"),
                };
                checks.insert(format!("bus ({})", bus.backend()), result);
            }
            Readiness::from_checks(checks)
        }
    }
}

/// Pings `db` with a short timeout.
pub async fn check_db(db: &Db) -> CheckResult {
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => CheckResult::up(),
        Ok(Err(e)) => CheckResult::down(e.to_string()),
        Err(_) => CheckResult::down("no answer within 2 s"),
    }
}

/// `/metrics`: OpenMetrics to a scraper that asks for it (Prometheus does),
/// the Prometheus text format 0.0.4 otherwise (curl, promtool, older agents).
async fn metrics(State(shared): State<Arc<Shared>>, headers: http::HeaderMap) -> Response {
    // Readiness as a series too, for alerting on an instance that serves but
    // cannot do its work.
    let ready = readiness(&shared).await.status == "ready";
    shared.metrics.refresh(ready).await;
    let text = shared.metrics.render();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, crate::metrics::PROMETHEUS_TEXT)], crate::metrics::prometheus_text(&text))
            .into_response()
    }
}

async fn openapi(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], shared.openapi.clone()).into_response()
}

/// Binds `addr`, with a message naming the address when it is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Waits for Ctrl-C or SIGTERM. Only `main` should call this.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Waits up to `timeout` for `url` to answer 200 (used to report readiness).
pub async fn wait_ready(client: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The client's IP address: the peer's, or, when the peer is a proxy on this
/// host (the gateway), the last address it appended to `x-forwarded-for`.
/// Addresses from anywhere else in that header are ignored, since clients can
/// write whatever they like there.
pub fn client_ip(parts: &http::request::Parts) -> Option<std::net::IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    Some(client_ip_from(&parts.headers, peer))
}

/// [`client_ip`] from the headers and the peer address.
pub fn client_ip_from(headers: &http::HeaderMap, peer: std::net::IpAddr) -> std::net::IpAddr {
    client_ip_in(headers.get_all("x-forwarded-for").iter().map(HeaderValue::as_bytes), peer)
}

/// [`client_ip`] from the `x-forwarded-for` values, in order, and the peer address.
pub fn client_ip_in<'a>(forwarded_for: impl Iterator<Item = &'a [u8]>, peer: std::net::IpAddr) -> std::net::IpAddr {
    if peer.is_loopback() {
        let forwarded = forwarded_for
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .last();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_request_ids_are_unique_time_ordered_uuids() {
        let ids: Vec<Arc<str>> = (0..2000).map(|_| new_request_id(Instant::now())).collect();
        let distinct: std::collections::BTreeSet<&Arc<str>> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
        }
        // Milliseconds first: a later id never sorts before an earlier one's millisecond.
        assert!(ids.first().unwrap()[..13] <= ids.last().unwrap()[..13]);
    }

    #[test]
    fn a_client_request_id_is_kept_only_when_sane() {
        let mut h = http::HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-42"));
        let id = |h: &http::HeaderMap| request_id_in(h.get("x-request-id").map(HeaderValue::as_bytes), Instant::now());
        assert_eq!(&*id(&h), "req-42");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(&*id(&h), "has space");
        h.insert("x-request-id", HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(id(&h).len(), 36);
    }
}
