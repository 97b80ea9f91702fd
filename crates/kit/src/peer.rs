//! Calling another service over HTTP.
//!
//! A [`PeerClient`] is one service's client for another: every call carries
//! the current request's `traceparent` and `x-request-id` ([`crate::scope`]),
//! so one trace and one id follow the work across services, and the
//! credentials the caller chooses (the user's own token, passed on, or a
//! service token). Calls go through a circuit breaker and a retry budget
//! ([`crate::resilience::Guard`]): a failing peer is answered 503 at once
//! instead of piling up waits, and only idempotent calls are retried.

use std::time::Duration;

use http::{HeaderValue, header};

use crate::problem::Problem;
use crate::resilience::{BreakerSettings, Guard, RetrySettings};

/// A client for one peer service.
#[derive(Debug)]
pub struct PeerClient {
    name: String,
    base: String,
    http: reqwest::Client,
    guard: Guard,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The breaker is open: nothing was sent. Retry after this long.
    #[error("{peer} is failing; not calling it for {retry_after:?}")]
    Open { peer: String, retry_after: Duration },
    /// The peer could not be reached, or did not answer in time.
    #[error("{peer} could not be reached: {source}")]
    Unreachable {
        peer: String,
        #[source]
        source: reqwest::Error,
    },
}

impl From<PeerError> for Problem {
    fn from(e: PeerError) -> Self {
        match &e {
            PeerError::Open { peer, retry_after } => {
                Problem::unavailable(format!("{peer} is failing; retry later"), retry_after.as_secs().max(1))
            }
            PeerError::Unreachable { peer, .. } => {
                tracing::warn!(error = %crate::problem::ErrorChain(&e), "a peer could not be reached");
                Problem::unavailable(format!("{peer} could not be reached; retry later"), 1)
            }
        }
    }
}

impl From<PeerError> for crate::Error {
    fn from(e: PeerError) -> Self {
        crate::Error::Problem(e.into())
    }
}

/// The credentials a call carries.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// None: a public endpoint.
    None,
    /// An `Authorization` value as the caller sent it (the user's token,
    /// passed on: the peer sees the same user, with the same rights).
    Forward(&'a HeaderValue),
    /// A bearer token of the calling service's own.
    Bearer(&'a str),
}

/// The caller's own `Authorization` header, to pass on to a peer: the peer
/// sees the same user with the same rights (`Credentials::Forward`). A
/// request without one is answered 401.
#[derive(Debug, Clone)]
pub struct CallerAuthorization(pub HeaderValue);

impl CallerAuthorization {
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials::Forward(&self.0)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallerAuthorization {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get(header::AUTHORIZATION)
            .cloned()
            .map(Self)
            .ok_or_else(|| Problem::unauthorized("this endpoint needs an access token (`Authorization: Bearer …`)"))
    }
}

impl PeerClient {
    /// A client for `name` at `base` (`http://host:port`), giving up on a
    /// call after `timeout`.
    pub fn new(name: impl Into<String>, base: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::install_crypto();
        Ok(Self {
            name: name.into(),
            base: base.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().timeout(timeout).build()?,
            guard: Guard::new(BreakerSettings::default(), RetrySettings::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `GET <base><path>`; retried within the budget on failure.
    pub async fn get(&self, path: &str, credentials: Credentials<'_>) -> Result<reqwest::Response, PeerError> {
        self.send(reqwest::Method::GET, path, credentials, None::<&()>).await
    }

    /// `method <base><path>` with an optional JSON body (anything
    /// serializable: a body holding raw JSON is sent as it is, not parsed
    /// again). Only GET, HEAD, PUT and DELETE are retried (the idempotent ones).
    pub async fn send<B: serde::Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        credentials: Credentials<'_>,
        json: Option<&B>,
    ) -> Result<reqwest::Response, PeerError> {
        let idempotent = [reqwest::Method::GET, reqwest::Method::HEAD, reqwest::Method::PUT, reqwest::Method::DELETE]
            .contains(&method);
        let url = format!("{}{path}", self.base);
        let call = || {
            let mut request = self.http.request(method.clone(), &url);
            for (name, value) in propagation() {
                request = request.header(name, value);
            }
            request = match credentials {
                Credentials::None => request,
                Credentials::Forward(value) => request.header(header::AUTHORIZATION, value.clone()),
                Credentials::Bearer(token) => request.bearer_auth(token),
            };
            if let Some(body) = json {
                request = request.json(body);
            }
            request.send()
        };
        // A 5xx or no answer counts against the peer; a 4xx is the
        // caller's business.
        let failed =
            |r: &Result<reqwest::Response, reqwest::Error>| r.as_ref().map_or(true, |r| r.status().is_server_error());
        let sent = self
            .guard
            .run(idempotent, failed, call)
            .await
            .map_err(|open| PeerError::Open { peer: self.name.clone(), retry_after: open.retry_after })?;
        sent.map_err(|source| PeerError::Unreachable { peer: self.name.clone(), source })
    }
}

/// The fields that carry the current scope to a peer: `traceparent` (this
/// hop's span as the parent) and `x-request-id`.
pub fn propagation() -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(2);
    if let Some(trace) = crate::scope::trace() {
        fields.push(("traceparent", trace.header_value()));
    }
    if let Some(id) = crate::scope::request_id() {
        fields.push(("x-request-id", id.to_string()));
    }
    fields
}
