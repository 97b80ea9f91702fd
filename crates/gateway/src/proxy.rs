//! Forwarding requests to upstreams.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::Problem;
use kit::auth::{AccessClaims, TokenError, bearer_token};
use kit::http::front::{Front, FrontContext, FrontResponse};
use kit::http::{CheckResult, Readiness};
use kit::metrics::LocalCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::balance::Pool;
use crate::edge;
use crate::fields::{Field, named_in_connection};
use crate::limits::Verdict;
use crate::routes::{RouteTable, Target};
use crate::upstream::{self, Answer, MapAnswer, Outgoing, RequestBody, SendError, UpstreamBody};
use crate::{AppState, State as GatewayState};

/// The pooled HTTP/1.1 client of the health checks (requests go through
/// [`upstream`]).
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

pub fn client(connect_timeout: Duration) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// The fields the `Connection` fields of `headers` name (usually none,
/// which allocates nothing).
fn connection_named(headers: &HeaderMap) -> Vec<&[u8]> {
    headers.get_all(header::CONNECTION).iter().flat_map(|v| named_in_connection(v.as_bytes())).collect()
}

/// Removes the fields that describe one connection, not the message
/// (RFC 9110 §7.6.1): hop-by-hop fields and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers).into_iter().filter_map(|n| HeaderName::from_bytes(n).ok());
    let named: Vec<HeaderName> = named.collect();
    let present = headers.keys().filter(|n| Field::of(n.as_str().as_bytes()).is_hop_by_hop()).cloned();
    let present: Vec<HeaderName> = present.collect();
    for name in named.into_iter().chain(present) {
        headers.remove(name);
    }
}

/// The gateway's own metrics, besides kit's per-route request metrics.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Upstream calls by upstream, instance and outcome (`2xx` … `5xx`,
    /// `connect_error`, `failed` (the exchange broke, or the answer was
    /// malformed), `timeout`).
    pub upstream: Family<Vec<(String, String)>, LocalCounter>,
    pub retries: Family<Vec<(String, String)>, Counter>,
    /// Requests refused at once by an open breaker.
    pub breaker_rejections: Family<Vec<(String, String)>, Counter>,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<Vec<(String, String)>, Gauge>,
    pub available_instances: Family<Vec<(String, String)>, Gauge>,
    pub denied_tokens: Counter,
}

impl GatewayMetrics {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry, state: &GatewayState) {
        registry.register(
            "gateway_upstream_requests",
            "Calls to upstream instances, by outcome",
            self.upstream.clone(),
        );
        registry.register("gateway_retries", "Retried upstream calls", self.retries.clone());
        registry.register(
            "gateway_breaker_rejections",
            "Requests refused at once by an open circuit breaker",
            self.breaker_rejections.clone(),
        );
        registry.register(
            "gateway_breaker_state",
            "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        registry.register(
            "gateway_available_instances",
            "Instances in rotation (healthy, not ejected)",
            self.available_instances.clone(),
        );
        registry.register(
            "gateway_revoked_token_refusals",
            "Requests refused for a revoked session",
            self.denied_tokens.clone(),
        );
        registry.register("gateway_rate_limited", "Requests refused by a rate limit", state.limits.limited.clone());
        registry.register(
            "gateway_rate_limit_redis_errors",
            "Rate-limit checks that fell back to local memory because Redis failed",
            state.limits.redis_errors.clone(),
        );
    }

    /// Counts an upstream call. The counters of an instance are looked up in
    /// the family once and kept, so a request costs no label allocation.
    pub(crate) fn count(&self, pool: &Pool, i: usize, outcome: &str) {
        const OUTCOMES: [&str; 8] = ["1xx", "2xx", "3xx", "4xx", "5xx", "connect_error", "failed", "timeout"];
        let instance = &pool.instances[i];
        let counters = instance.counters.get_or_init(|| {
            OUTCOMES.map(|o| self.upstream.get_or_create(&labels(pool, Some(&instance.url), Some(o))).clone())
        });
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(k) => {
                counters[k].inc();
            }
            None => {
                self.upstream.get_or_create(&labels(pool, Some(&instance.url), Some(outcome))).inc();
            }
        }
    }

    /// Refreshes the gauges of every pool.
    pub(crate) fn observe_pools(&self, table: &RouteTable) {
        for pool in table.pools() {
            let labels = vec![("upstream".to_owned(), pool.name.clone())];
            self.breaker_state.get_or_create(&labels).set(pool.breaker.state().as_gauge());
            self.available_instances.get_or_create(&labels).set(i64::try_from(pool.available()).unwrap_or(0));
        }
    }
}

fn labels(pool: &Pool, instance: Option<&str>, outcome: Option<&str>) -> Vec<(String, String)> {
    let mut l = vec![("upstream".to_owned(), pool.name.clone())];
    if let Some(i) = instance {
        l.push(("instance".to_owned(), i.to_owned()));
    }
    if let Some(o) = outcome {
        l.push(("outcome".to_owned(), o.to_owned()));
    }
    l
}

/// The gateway's own paths, served by its router; the proxy takes every other.
pub(crate) fn is_own_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/docs")
        || path.starts_with("/docs/")
        || path.starts_with("/admin/")
}

/// The proxy, as kit's [`Front`]: every request but the gateway's own goes
/// straight from hyper to here, without axum's router (see [`kit::http::front::Front`]).
pub(crate) struct Proxy(pub AppState);

impl Front for Proxy {
    fn claims(&self, req: &hyper::Request<Incoming>) -> bool {
        !is_own_path(req.uri().path())
    }

    fn call(&self, req: hyper::Request<Incoming>, ctx: FrontContext) -> BoxFuture<'static, FrontResponse> {
        Box::pin(forward(self.0.clone(), req, ctx))
    }
}

/// The answer to a path no route takes.
pub(crate) fn no_route(path: &str) -> Problem {
    Problem::not_found(format!("no service serves {path}"))
}

/// Names the request's route and upstream in its span (and access log line).
pub(crate) fn record_target(target: Target<'_>) {
    let span = tracing::Span::current();
    span.record("route", &*target.route.label);
    span.record("upstream", target.route.pool.name.as_str());
}

/// Proxies one request to the upstream its path belongs to.
async fn forward(state: AppState, req: hyper::Request<Incoming>, ctx: FrontContext) -> FrontResponse {
    let table = state.table();
    let Some(target) = table.resolve(req.uri().path()) else {
        // No service's path: the web client's, or a 404 problem.
        let accept_encoding = req.headers().get(hyper::header::ACCEPT_ENCODING).map(|v| v.as_bytes());
        let mut response = crate::web::answer(req.method(), req.uri().path(), accept_encoding)
            .unwrap_or_else(|| no_route(req.uri().path()).into_response());
        state.edge.finish(edge::origin(&req).as_ref(), false, &mut response);
        return FrontResponse { response, route: state.unmatched.clone() };
    };
    record_target(target);
    let origin = edge::origin(&req);
    let (mut response, preflight) = match state.edge.preflight_answer(&req) {
        Some(answer) => (answer, true),
        None => (forward_to(&state, target, req, ctx).await.unwrap_or_else(IntoResponse::into_response), false),
    };
    state.edge.finish(origin.as_ref(), preflight, &mut response);
    FrontResponse { response, route: target.route.label.clone() }
}

/// Idempotent requests without a body may be sent again.
fn retriable<B>(req: &hyper::Request<B>) -> bool {
    upstream::is_idempotent(req.method()) && !has_body(req.headers())
}

/// Whether a request announces a body (RFC 9112 §6.3: a length or a transfer coding).
fn has_body(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_LENGTH).is_some_and(|v| v != "0") || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_websocket<B>(req: &hyper::Request<B>) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    upgrade && connection && req.method() == Method::GET
}

/// The access token of a request: `Authorization: Bearer`, or, for WebSocket
/// upgrades (browsers cannot set headers on them), `access_token` in the query.
fn token_of<B>(req: &hyper::Request<B>, websocket: bool) -> Result<Option<Cow<'_, str>>, Problem> {
    if let Some(t) = bearer_token(req.headers())? {
        return Ok(Some(Cow::Borrowed(t)));
    }
    if websocket {
        let from_query = req
            .uri()
            .query()
            .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v));
        return Ok(from_query);
    }
    Ok(None)
}

/// An access token's claims, if it verifies and its session was not revoked.
pub(crate) async fn verify(state: &GatewayState, token: &str, now: Instant) -> Result<Arc<AccessClaims>, Problem> {
    let claims = state.verifier.verify_at(token, now).await?;
    if let Some(sid) = claims.sid
        && state.denied.contains_at(sid, now)
    {
        state.metrics.denied_tokens.inc();
        return Err(TokenError::Revoked.into());
    }
    Ok(claims)
}

/// What a request must pass before it goes upstream: on a protected route
/// a valid access token (`token`, the one it carries) of a session not
/// revoked; then the rate limits, at `now` (the request's arrival). Returns
/// the verdict whose `RateLimit-*` fields its answer carries.
pub(crate) async fn admit(
    state: &AppState,
    target: Target<'_>,
    path: &str,
    token: Option<&str>,
    client_ip: std::net::IpAddr,
    now: Instant,
) -> Result<Option<Verdict>, Problem> {
    let mut user = None;
    if !target.public {
        let token = token
            .ok_or_else(|| Problem::unauthorized("this endpoint needs an access token (`Authorization: Bearer …`)"))?;
        let claims = verify(state, token, now).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
        user = Some(claims.sub);
    }
    let verdict = state.limits.check_at(path, Some(client_ip), user, now).await;
    if let Some(v) = verdict
        && !v.allowed
    {
        let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .with_type("rate-limited", "Too many requests")
            .with_detail(format!("rate limit reached; retry in {} s", v.reset_secs))
            .with_header(header::RETRY_AFTER, HeaderValue::from(v.reset_secs));
        for (name, value) in v.headers() {
            problem = problem.with_header(name, value);
        }
        return Err(problem);
    }
    Ok(verdict)
}

async fn forward_to(
    state: &AppState,
    target: Target<'_>,
    req: hyper::Request<Incoming>,
    ctx: FrontContext,
) -> Result<Response, Problem> {
    let websocket = is_websocket(&req);
    let token = if target.public { None } else { token_of(&req, websocket)? };
    let client_ip = kit::http::client_ip_from(req.headers(), ctx.peer.ip());
    let verdict = admit(state, target, req.uri().path(), token.as_deref(), client_ip, Instant::now()).await?;

    let mut response = if websocket {
        // Boxed: upgrades are rare, and their future is large.
        Box::pin(upgrade(state, target, req, &ctx)).await?
    } else {
        send_request(state, target, req, &ctx).await?
    };
    if let Some(v) = verdict {
        for (name, value) in v.headers() {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// What the gateway sets on a request it forwards, in place of anything the
/// client sent under those names: `x-forwarded-for` (the client's chain,
/// then its peer), `x-forwarded-proto`, `x-forwarded-host` (the client's
/// `Host`), `x-request-id` and `traceparent`; and which of the client's
/// fields go with them. (`Host` is the instance's, set when sending.) Both
/// ways in — hyper's header map and the byte-level front — forward by it.
pub(crate) struct Forwarding<'a> {
    /// The client's own `x-forwarded-for`, which its peer's address extends.
    prior_for: Option<&'a [u8]>,
    peer: HeaderValue,
    proto: &'static [u8],
    host: Option<&'a [u8]>,
    request_id: &'a [u8],
    trace: [u8; 55],
    /// The fields the client's `Connection` names, which stay behind too.
    named: Vec<&'a [u8]>,
}

impl<'a> Forwarding<'a> {
    /// `prior_for` and `host`: the client's `x-forwarded-for` and `Host`;
    /// `named`: what its `Connection` names.
    pub(crate) fn new(
        prior_for: Option<&'a [u8]>,
        host: Option<&'a [u8]>,
        named: Vec<&'a [u8]>,
        peer: std::net::IpAddr,
        proto: &'static [u8],
        request_id: &'a [u8],
        trace: &kit::trace::TraceContext,
    ) -> Self {
        Forwarding { prior_for, peer: ip_header(peer), proto, host, request_id, trace: trace.encode(), named }
    }

    fn of_map(headers: &'a HeaderMap, ctx: &'a FrontContext, proto: &'static [u8]) -> Self {
        let value = |name| headers.get(name).map(HeaderValue::as_bytes);
        let named = connection_named(headers);
        let id = ctx.request_id.as_bytes();
        Self::new(value(X_FORWARDED_FOR), value(header::HOST), named, ctx.peer.ip(), proto, id, &ctx.trace)
    }

    /// Whether a client's field goes upstream: see [`Field::forwarded`];
    /// those its `Connection` names stay behind too.
    pub(crate) fn passes(&self, kind: Field, name: &[u8]) -> bool {
        kind.forwarded() && !self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The fields the gateway adds, each a name and its value in pieces.
    fn added(&self, mut put: impl FnMut(&'static str, &[&[u8]])) {
        match self.prior_for {
            Some(prior) => put("x-forwarded-for", &[prior, b", ", self.peer.as_bytes()]),
            None => put("x-forwarded-for", &[self.peer.as_bytes()]),
        }
        put("x-forwarded-proto", &[self.proto]);
        if let Some(host) = self.host {
            put("x-forwarded-host", &[host]);
        }
        put("x-request-id", &[self.request_id]);
        put("traceparent", &[&self.trace]);
    }

    /// Writes the fields the gateway adds.
    pub(crate) fn write_added(&self, out: &mut Vec<u8>) {
        self.added(|name, pieces| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            for piece in pieces {
                out.extend_from_slice(piece);
            }
            out.extend_from_slice(b"\r\n");
        });
    }
}

/// The fields of a request hyper read, as they go upstream: the client's
/// that pass, then the gateway's. A chunked body's length is unknown: a
/// stray length does not travel with it.
struct MapFields<'a> {
    headers: &'a HeaderMap,
    forwarding: Forwarding<'a>,
    chunked: bool,
}

impl upstream::Fields for MapFields<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in self.headers {
            let kind = Field::of(name.as_str().as_bytes());
            if self.forwarding.passes(kind, name.as_str().as_bytes()) && !(self.chunked && kind == Field::ContentLength)
            {
                upstream::put_field(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        self.forwarding.write_added(out);
    }
}

/// The headers an upstream gets, in the map itself (for the upgrade path,
/// which goes through hyper's client; other requests are encoded from the
/// client's fields). An upgrade keeps its `Upgrade` and `Connection`.
fn upstream_headers(headers: &mut HeaderMap, ctx: &FrontContext, proto: &'static [u8], keep_upgrade: bool) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    let (left_behind, mut added) = (Vec::new(), Vec::new());
    let mut left_behind: Vec<HeaderName> = left_behind;
    {
        let forwarding = Forwarding::of_map(headers, ctx, proto);
        for name in headers.keys() {
            if !forwarding.passes(Field::of(name.as_str().as_bytes()), name.as_str().as_bytes()) {
                left_behind.push(name.clone());
            }
        }
        forwarding.added(|name, pieces| {
            if let Ok(value) = HeaderValue::from_bytes(&pieces.concat()) {
                added.push((HeaderName::from_static(name), value));
            }
        });
    }
    for name in left_behind {
        headers.remove(name);
    }
    for (name, value) in added {
        headers.insert(name, value);
    }
    if keep_upgrade && let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// `ip` as a header value. A connection's requests all come from one
/// address, so the last one made on this thread is kept.
fn ip_header(ip: std::net::IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => value.clone(),
        _ => {
            let value = HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
            *last = Some((ip, value.clone()));
            value
        }
    })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The request target as upstreams get it: origin-form (`/path?query`).
fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    let path_and_query = uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Uri::from(path_and_query)
}

fn breaker_problem(state: &AppState, pool: &Pool, open: kit::resilience::BreakerOpen) -> Problem {
    state.metrics.breaker_rejections.get_or_create(&labels(pool, None, None)).inc();
    let secs = open.retry_after.as_secs() + u64::from(open.retry_after.subsec_nanos() > 0);
    Problem::unavailable(
        format!("the {} service is failing; the gateway is not sending it requests for now", pool.name),
        secs.max(1),
    )
    .with_type("upstream-circuit-open", "Upstream circuit open")
}

// Lives on the stack for one attempt; boxing the answer would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum Attempt<H> {
    Answered(u16, H, UpstreamBody),
    Failed(SendError),
    TimedOut,
    BodyTooLarge,
    /// The client's body was malformed or broke off: no fault of the upstream's.
    ClientBody(String),
}

/// A request to send upstream, whichever way it came in.
pub(crate) struct Forward<'a> {
    pub(crate) req: Outgoing<'a>,
    pub(crate) body: Option<RequestBody<'a>>,
    /// Idempotent and without a body: another attempt may send it again.
    pub(crate) may_retry: bool,
    /// The body limit, for the 413 of a body that goes over it on the way.
    pub(crate) limit: usize,
}

/// Sends a request hyper read to the target's pool; the answer comes back
/// as a response for hyper to send on.
async fn send_request(
    state: &AppState,
    target: Target<'_>,
    req: hyper::Request<Incoming>,
    ctx: &FrontContext,
) -> Result<Response, Problem> {
    let limit = ctx.body_limit;
    if kit::http::front::content_length_over(req.headers(), limit) {
        return Ok(kit::http::front::payload_too_large(limit));
    }
    let may_retry = retriable(&req);
    let with_body = has_body(req.headers());
    let (parts, body) = req.into_parts();
    let chunked = with_body && !parts.headers.contains_key(header::CONTENT_LENGTH);
    let forwarding = Forwarding::of_map(&parts.headers, ctx, state.forwarded_proto);
    let fields = MapFields { headers: &parts.headers, forwarding, chunked };
    let target_bytes = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).as_bytes();
    let forward = Forward {
        req: Outgoing { method: &parts.method, target: target_bytes, fields: &fields, chunked, at: Instant::now() },
        body: with_body.then(|| RequestBody::Streamed(Limited::new(body, limit))),
        may_retry,
        limit,
    };
    let ((status, version, headers), body) = send(state, target, forward, &mut MapAnswer, &mut EachAttempt).await?;
    // The upstream client left the hop-by-hop fields out.
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(response)
}

/// How [`send`] holds each attempt to its route's timeout.
pub(crate) trait Timer {
    /// `work`'s output, or `None` if `limit` passes first.
    async fn within<F: Future>(&mut self, limit: Duration, work: F) -> Option<F::Output>;
}

/// A timer of tokio's for each attempt.
pub(crate) struct EachAttempt;

impl Timer for EachAttempt {
    async fn within<F: Future>(&mut self, limit: Duration, work: F) -> Option<F::Output> {
        tokio::time::timeout(limit, work).await.ok()
    }
}

/// Sends `forward` to an instance of the target's pool, retrying
/// (idempotent requests without a body, within the pool's retry budget) on
/// another instance when one cannot be reached or answers 502/503/504.
pub(crate) async fn send<A: Answer>(
    state: &AppState,
    target: Target<'_>,
    forward: Forward<'_>,
    answer: &mut A,
    timer: &mut impl Timer,
) -> Result<(A::Head, UpstreamBody), Problem> {
    let pool = &target.route.pool;
    let permit = pool.breaker.acquire().map_err(|open| breaker_problem(state, pool, open))?;
    pool.budget.deposit();
    let Forward { req, mut body, may_retry, limit } = forward;
    let mut avoid = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(i) = pool.pick(avoid) else {
            pool.breaker.failure(permit);
            return Err(unavailable(pool));
        };
        let instance = &pool.instances[i];
        let flight = pool.start(i);
        // Pinned in place and passed by reference: moved into the timer's
        // future, the attempt's (a request's largest) would be copied.
        let outcome = {
            let sent = std::pin::pin!(state.upstreams.send(instance, &req, body.take(), answer));
            match timer.within(target.route.timeout, sent).await {
                None => Attempt::TimedOut,
                Some(Err(SendError::BodyTooLarge)) => Attempt::BodyTooLarge,
                Some(Err(SendError::ClientBody(e))) => Attempt::ClientBody(e),
                Some(Err(e)) => Attempt::Failed(e),
                Some(Ok((head, body))) => Attempt::Answered(A::status(&head), head, body),
            }
        };
        drop(flight);
        let (failed, outcome_label, retry_worthy) = match &outcome {
            Attempt::Answered(s, _, _) => {
                let class =
                    ["1xx", "2xx", "3xx", "4xx", "5xx"].get(usize::from(s / 100).saturating_sub(1)).unwrap_or(&"5xx");
                (*s >= 500, *class, matches!(s, 502..=504))
            }
            Attempt::Failed(SendError::Connect(_)) => (true, "connect_error", true),
            Attempt::Failed(_) => (true, "failed", true),
            Attempt::TimedOut => (true, "timeout", true),
            Attempt::BodyTooLarge => (false, "body_too_large", false),
            Attempt::ClientBody(_) => (false, "client_body", false),
        };
        state.metrics.count(pool, i, outcome_label);
        pool.report(i, !failed);
        if failed && retry_worthy && may_retry && attempt < pool.budget.max_attempts() && pool.budget.try_retry() {
            state.metrics.retries.get_or_create(&labels(pool, None, None)).inc();
            tracing::info!(upstream = %pool.name, instance = %instance.url, outcome = %outcome_label, "retrying on another instance");
            avoid = Some(i);
            continue;
        }
        if failed {
            pool.breaker.failure(permit);
        } else {
            pool.breaker.success(permit);
        }
        return match outcome {
            Attempt::Answered(_, head, body) => Ok((head, body)),
            Attempt::BodyTooLarge => Err(Problem::payload_too_large(limit)),
            Attempt::ClientBody(e) => Err(Problem::bad_request(format!("the request body could not be read: {e}"))),
            Attempt::TimedOut => {
                tracing::warn!(upstream = %pool.name, instance = %instance.url, "upstream timed out");
                Err(Problem::new(StatusCode::GATEWAY_TIMEOUT)
                    .with_type("upstream-timeout", "Upstream timed out")
                    .with_detail(format!(
                        "the {} service did not answer within {} ms",
                        pool.name,
                        target.route.timeout.as_millis()
                    )))
            }
            Attempt::Failed(e) => {
                tracing::warn!(upstream = %pool.name, instance = %instance.url, error = %e, "upstream unavailable");
                Err(unavailable(pool))
            }
        };
    }
}

/// An upstream's answer as the client gets it: streamed, hop-by-hop headers removed.
fn downstream<B>(r: hyper::Response<B>) -> Response
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = r.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

fn unavailable(pool: &Pool) -> Problem {
    Problem::new(StatusCode::BAD_GATEWAY)
        .with_type("upstream-unavailable", "Upstream unavailable")
        .with_detail(format!("the {} service is unavailable", pool.name))
}

/// Proxies a WebSocket upgrade: the upstream's 101 is passed back, then bytes
/// flow both ways until either side closes.
async fn upgrade(
    state: &AppState,
    target: Target<'_>,
    mut req: hyper::Request<Incoming>,
    ctx: &FrontContext,
) -> Result<Response, Problem> {
    let pool = &target.route.pool;
    let permit = pool.breaker.acquire().map_err(|open| breaker_problem(state, pool, open))?;
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    upstream_headers(&mut parts.headers, ctx, state.forwarded_proto, true);
    let Some(i) = pool.pick(None) else {
        pool.breaker.failure(permit);
        return Err(unavailable(pool));
    };
    let mut upstream_req = hyper::Request::new(http_body_util::Empty::new());
    *upstream_req.uri_mut() = origin_form(&parts.uri);
    *upstream_req.headers_mut() = parts.headers;
    let sent = upstream::send_upgrade(&pool.instances[i], upstream_req, state.upstreams.connect_timeout);
    let mut response = match tokio::time::timeout(target.route.timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            pool.report(i, false);
            pool.breaker.failure(permit);
            tracing::warn!(upstream = %pool.name, error = %e, "upstream unavailable for an upgrade");
            return Err(unavailable(pool));
        }
        Err(_) => {
            pool.report(i, false);
            pool.breaker.failure(permit);
            return Err(Problem::new(StatusCode::GATEWAY_TIMEOUT).with_type("upstream-timeout", "Upstream timed out"));
        }
    };
    pool.report(i, response.status().as_u16() < 500);
    pool.breaker.success(permit);
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(downstream(response));
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    let pool_name = pool.name.clone();
    tokio::spawn(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(upstream = %pool_name, error = %e, "WebSocket connection ended");
                }
            }
            Err(e) => tracing::debug!(upstream = %pool_name, error = %e, "WebSocket upgrade failed"),
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

/// Checks one instance: `GET <url><path>`, healthy on 2xx (on any answer
/// below 500 for a lenient pool).
async fn probe(client: &Client, url: &str, path: &str, timeout: Duration, lenient: bool) -> Result<(), String> {
    let target = format!("{url}{path}");
    let uri: Uri = target.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let req = Request::get(uri).body(Body::empty()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(r)) => {
            let status = r.status();
            let _ = r.into_body().collect().await;
            if status.is_success() || (lenient && status.as_u16() < 500) {
                Ok(())
            } else {
                Err(format!("{target} answered {status}"))
            }
        }
        Ok(Err(e)) => Err(format!("{target}: {e}")),
        Err(_) => Err(format!("{target}: no answer within {} ms", timeout.as_millis())),
    }
}

/// Active health checks: every instance of every pool, each interval.
pub(crate) fn health_worker(state: AppState) -> kit::http::Worker {
    Box::new(move |stop: tokio_util::sync::CancellationToken| {
        Box::pin(async move {
            let health = state.settings.health.clone();
            let interval = Duration::from_millis(health.interval_ms.max(100));
            loop {
                let table = state.table();
                let checks = table.pools().flat_map(|pool| {
                    let (state, health) = (&state, &health);
                    (0..pool.instances.len()).map(move |i| async move {
                        let timeout = Duration::from_millis(health.timeout_ms);
                        let ok = probe(
                            &state.client,
                            &pool.instances[i].url,
                            pool.health_path.as_deref().unwrap_or(&health.path),
                            timeout,
                            pool.lenient_health,
                        )
                        .await;
                        pool.checked(i, ok.is_ok(), health);
                    })
                });
                futures_util::future::join_all(checks).await;
                state.metrics.observe_pools(&table);
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = stop.cancelled() => return,
                }
            }
        })
    })
}

/// `/readyz`: an upstream is up when one of its instances answers its own
/// `/readyz`, checked now.
pub(crate) async fn upstream_readiness(state: &AppState) -> Readiness {
    let table = state.table();
    let timeout = Duration::from_secs(2);
    let checks = table.pools().map(|pool| {
        let client = state.client.clone();
        async move {
            let mut errors = Vec::new();
            for instance in &pool.instances {
                let path = pool.health_path.as_deref().unwrap_or("/readyz");
                match probe(&client, &instance.url, path, timeout, pool.lenient_health).await {
                    Ok(()) => return (pool.name.clone(), CheckResult::up()),
                    Err(e) => errors.push(e),
                }
            }
            (pool.name.clone(), CheckResult::down(errors.join("; ")))
        }
    });
    let results: BTreeMap<String, CheckResult> = futures_util::future::join_all(checks).await.into_iter().collect();
    Readiness::from_checks(results)
}
