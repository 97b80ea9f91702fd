//! At the edge, around every request: CORS from an allow-list and the
//! security headers every response carries.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
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

    fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.cors.allowed_origins.iter().any(|o| o == origin)
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
        if !self.allows(origin) || !method_ok || !headers_ok {
            let why = if !self.allows(origin) {
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
        self.allow_origin(h, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.cors.max_age_secs));
        r
    }

    fn allow_origin(&self, h: &mut http::HeaderMap, origin: &str) {
        // The answer depends on the Origin, so caches must keep them apart.
        h.append(header::VARY, HeaderValue::from_static("origin"));
        if self.any_origin && !self.cors.allow_credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            if self.cors.allow_credentials {
                h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
    }

    /// Beside kit's `nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy:
    /// no-referrer` (on every service's answers).
    fn security_headers(&self, h: &mut http::HeaderMap) {
        const CORP: header::HeaderName = header::HeaderName::from_static("cross-origin-resource-policy");
        h.entry(CORP).or_insert(HeaderValue::from_static("same-site"));
        if self.hsts {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
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
        if let Some(o) = origin.and_then(|o| o.to_str().ok())
            && !preflight
            && self.allows(o)
        {
            self.allow_origin(h, o);
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.exposed.clone());
        }
        self.security_headers(h);
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
