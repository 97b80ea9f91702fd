//! At the edge, around every request: CORS from an allow-list and the
//! security headers every response carries.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use kit::Problem;
use serde::Deserialize;

use crate::AppState;

/// `[gateway.cors]`: which web origins may call the API from a browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`); `*` allowed only without credentials.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    /// Let browsers send cookies and `Authorization` along (never with `*`).
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight, in seconds.
    pub max_age_secs: u64,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"].map(str::to_owned).to_vec(),
            allowed_headers: ["authorization", "content-type", "x-request-id", "traceparent"]
                .map(str::to_owned)
                .to_vec(),
            exposed_headers: [
                "x-request-id",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "retry-after",
            ]
            .map(str::to_owned)
            .to_vec(),
            allow_credentials: true,
            max_age_secs: 600,
        }
    }
}

#[derive(Debug)]
pub struct Edge {
    cors: CorsSettings,
    any_origin: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    exposed: HeaderValue,
    hsts: bool,
}

fn joined(v: &[String]) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&v.join(", ")).map_err(|e| anyhow::anyhow!("invalid configuration: gateway.cors: {e}"))
}

impl Edge {
    pub fn new(cors: &CorsSettings, hsts: bool) -> anyhow::Result<Self> {
        let any_origin = cors.allowed_origins.iter().any(|o| o == "*");
        if any_origin && cors.allow_credentials {
            anyhow::bail!(
                "invalid configuration: gateway.cors allows any origin (`*`) with credentials; list the origins, or set allow_credentials = false"
            );
        }
        for o in cors.allowed_origins.iter().filter(|o| *o != "*") {
            let ok = url::Url::parse(o).is_ok_and(|u| u.path() == "/" && !o.ends_with('/') && u.query().is_none());
            if !ok {
                anyhow::bail!("invalid configuration: gateway.cors origin {o:?} must be scheme://host[:port]");
            }
        }
        Ok(Self {
            any_origin,
            methods: joined(&cors.allowed_methods)?,
            headers: joined(&cors.allowed_headers)?,
            exposed: joined(&cors.exposed_headers)?,
            cors: cors.clone(),
            hsts,
        })
    }

    fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.cors.allowed_origins.iter().any(|o| o.as_bytes() == origin)
    }

    fn preflight(&self, headers: &http::HeaderMap, origin: &str) -> Response {
        let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).and_then(|v| v.to_str().ok()).unwrap_or("");
        let method_ok = self.cors.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(method));
        let asked: Vec<String> = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let headers_ok = asked.iter().all(|h| self.cors.allowed_headers.iter().any(|a| a.eq_ignore_ascii_case(h)));
        if !self.allows(origin.as_bytes()) || !method_ok || !headers_ok {
            let why = if !self.allows(origin.as_bytes()) {
                format!("origin {origin} is not allowed")
            } else if !method_ok {
                format!("method {method} is not allowed from a browser")
            } else {
                format!("request headers {asked:?} are not all allowed")
            };
            return Problem::forbidden(format!("CORS preflight refused: {why}"))
                .with_type("cors-refused", "CORS request refused")
                .into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        self.allow_origin(origin.as_bytes(), &mut |name, value, mode| apply(h, name, value, mode));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.cors.max_age_secs));
        r
    }

    fn allow_origin<'s>(&'s self, origin: &'s [u8], put: &mut impl FnMut(HeaderName, &'s [u8], Mode)) {
        // The answer depends on the Origin, so caches must keep them apart.
        put(header::VARY, b"origin", Mode::Append);
        if self.any_origin && !self.cors.allow_credentials {
            put(header::ACCESS_CONTROL_ALLOW_ORIGIN, b"*", Mode::Replace);
        } else {
            put(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin, Mode::Replace);
            if self.cors.allow_credentials {
                put(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, b"true", Mode::Replace);
            }
        }
    }

    /// The CORS fields of an answer to a request from `origin`, when that
    /// origin is allowed (a preflight's answer has its own).
    pub(crate) fn cors_fields<'s>(&'s self, origin: &'s [u8], mut put: impl FnMut(HeaderName, &'s [u8], Mode)) {
        if self.allows(origin) {
            self.allow_origin(origin, &mut put);
            put(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.exposed.as_bytes(), Mode::Replace);
        }
    }

    /// What every answer gets from the edge, beside kit's
    /// [`kit::http::SECURITY_HEADERS`]: `Cross-Origin-Resource-Policy`, and
    /// HSTS when on.
    pub(crate) fn fixed_fields(&self) -> impl Iterator<Item = (HeaderName, HeaderValue, Mode)> {
        const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
        const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");
        let hsts = self.hsts.then_some((header::STRICT_TRANSPORT_SECURITY, HSTS, Mode::Replace));
        [(CORP, HeaderValue::from_static("same-site"), Mode::IfAbsent)].into_iter().chain(hsts)
    }
}

/// How a field the gateway sets on an answer meets one of the same name
/// that the upstream set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Ours instead of theirs.
    Replace,
    /// Theirs if they set one.
    IfAbsent,
    /// Both.
    Append,
}

/// Sets a field on a header map as `mode` says.
fn apply(h: &mut http::HeaderMap, name: HeaderName, value: &[u8], mode: Mode) {
    let Ok(value) = HeaderValue::from_bytes(value) else { return };
    match mode {
        Mode::Replace => {
            h.insert(name, value);
        }
        Mode::IfAbsent => {
            h.entry(name).or_insert(value);
        }
        Mode::Append => {
            h.append(name, value);
        }
    }
}

/// A request's `Origin`, kept for the answer.
pub(crate) fn origin<B>(req: &http::Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::ORIGIN).cloned()
}

impl Edge {
    /// The answer to a CORS preflight (allowed or refused), when `req` is one.
    pub(crate) fn preflight_answer<B>(&self, req: &http::Request<B>) -> Option<Response> {
        let is_preflight =
            req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok())?;
        is_preflight.then(|| self.preflight(req.headers(), origin))
    }

    /// CORS headers on an answer to an allowed origin (a preflight's answer
    /// has its own), and the security headers on every answer.
    pub(crate) fn finish(&self, origin: Option<&HeaderValue>, preflight: bool, response: &mut Response) {
        let h = response.headers_mut();
        if let Some(o) = origin
            && !preflight
        {
            self.cors_fields(o.as_bytes(), |name, value, mode| apply(h, name, value, mode));
        }
        for (name, value, mode) in self.fixed_fields() {
            apply(h, name, value.as_bytes(), mode);
        }
    }
}

/// The edge middleware of the gateway's own routes (proxied requests get the
/// same from the proxy): preflights answered (or refused) here, CORS headers
/// on allowed cross-origin answers, security headers on every answer.
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let edge: &Edge = &state.edge;
    let origin = origin(&req);
    let (mut response, preflight) = match edge.preflight_answer(&req) {
        Some(answer) => (answer, true),
        None => (next.run(req).await, false),
    };
    edge.finish(origin.as_ref(), preflight, &mut response);
    response
}
