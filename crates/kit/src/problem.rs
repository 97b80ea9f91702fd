//! RFC 9457 problem documents: the one shape every Panal error takes on the wire.
//!
//! Client errors say what is wrong in words meant for the client. Server errors
//! are logged with their cause and reach the client only as a generic 500 that
//! carries the request id, so support can find the log line.

use std::borrow::Cow;
use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem documents.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the request (`email`, `password`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:panal:problem:validation`).
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// A short summary of the kind of problem.
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The id of the request (also in the `x-request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Every invalid field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The OAuth 2.0 error code (RFC 6749 §5.2, RFC 7009), for the endpoints
    /// OAuth clients call: they read `error`, people read `detail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `status` with the standard title for it.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            status: status.as_u16(),
            detail: None,
            request_id: None,
            errors: Vec::new(),
            error: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Names the kind of problem: `urn:panal:problem:<slug>`.
    pub fn with_type(mut self, slug: &'static str, title: &'static str) -> Self {
        self.kind = Cow::Owned(format!("urn:panal:problem:{slug}"));
        self.title = Cow::Borrowed(title);
        self
    }

    /// Adds the OAuth 2.0 `error` code.
    pub fn with_oauth_error(mut self, code: &'static str) -> Self {
        self.error = Some(code);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 401 with the `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED)
            .with_type("unauthorized", "Authentication required")
            .with_detail(detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 401 for a token that was presented but is not acceptable.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED)
            .with_type("invalid-token", "Invalid access token")
            .with_detail(detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN).with_type("forbidden", "Forbidden").with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT).with_type("conflict", "Conflict").with_detail(detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE)
            .with_type("payload-too-large", "Request body too large")
            .with_detail(format!("the request body exceeds the limit of {limit} bytes"))
    }

    /// 503 with `Retry-After`, for overload and unavailable dependencies.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE).with_detail(detail);
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
            p = p.with_header(header::RETRY_AFTER, v);
        }
        p
    }

    /// 422 listing every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.len() {
            1 => "1 field is invalid".to_owned(),
            n => format!("{n} fields are invalid"),
        };
        let mut p =
            Self::new(StatusCode::UNPROCESSABLE_ENTITY).with_type("validation", "Invalid request").with_detail(detail);
        p.errors = errors;
        p
    }

    /// 500. Logs `cause` with the request id; the client sees nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("an internal error occurred; quote the request id when reporting it")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if self.request_id.is_none() {
            self.request_id = crate::scope::request_id().map(|id| id.to_string());
        }
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// Displays an error with its whole `source()` chain, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Collects every invalid field of a request before answering.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), message: message.into() });
    }

    /// Records the error of `result` under `field` and returns its value.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 422 problem for one invalid field.
    pub fn single(field: &str, message: impl Into<String>) -> Problem {
        Problem::validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    /// `Ok(())` when nothing was wrong, else the 422 problem listing every field.
    pub fn finish(self) -> Result<(), Problem> {
        if self.0.is_empty() { Ok(()) } else { Err(Problem::validation(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_problem_renders_as_problem_json_with_the_request_id() {
        let scope = crate::scope::Scope { request_id: "req-1".into(), trace: crate::trace::TraceContext::new_root() };
        let resp = scope.run(async { Problem::conflict("email already registered").into_response() }).await;
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 409);
        assert_eq!(v["detail"], "email already registered");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["type"], "urn:panal:problem:conflict");
    }

    #[test]
    fn field_errors_list_every_field() {
        let mut e = FieldErrors::new();
        e.add("email", "is not an email address");
        e.add("password", "must be at least 8 characters");
        let p = e.finish().unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 2);
    }
}
