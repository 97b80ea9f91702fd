//! Auth as an OAuth 2.0 authorization server for machines: the
//! client-credentials grant (RFC 6749 §4.4) so services get their own tokens,
//! token introspection (RFC 7662) and revocation (RFC 7009) for clients that
//! cannot verify JWTs. Bodies are form-encoded, as the RFCs say; errors are
//! answered as RFC 6749 §5.2 says (JSON `error` and `error_description`), the
//! shape every OAuth client library reads.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use kit::Json;
use kit::auth::{AccessClaims, TokenVerifier};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::error::AuthError;
use crate::store::ClientRow;
use crate::tokens;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token)).routes(routes!(introspect)).routes(routes!(revoke))
}

/// An error of the OAuth endpoints (RFC 6749 §5.2).
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

/// Its body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `server_error` or `temporarily_unavailable`.
    pub error: &'static str,
    pub error_description: String,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
            Json(OAuthErrorBody { error: self.error, error_description: self.description }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 names the scheme the client may use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic realm=\"panal\""));
        }
        response
    }
}

/// What went wrong below (the database, the key ring), in OAuth's words.
impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        let response = e.into_response();
        let (status, error) = match response.status() {
            StatusCode::SERVICE_UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            StatusCode::TOO_MANY_REQUESTS => (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        Self { status, error, description: "the request could not be handled now; retry later".to_owned() }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        AuthError::from(e).into()
    }
}

impl From<jsonwebtoken::errors::Error> for OAuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        AuthError::from(e).into()
    }
}

fn invalid_client() -> OAuthError {
    OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: "client authentication failed (unknown client, wrong secret, or disabled)".to_owned(),
    }
}

fn invalid_request(detail: &str, code: &'static str) -> OAuthError {
    OAuthError { status: StatusCode::BAD_REQUEST, error: code, description: detail.to_owned() }
}

/// The form, or `invalid_request` (a missing or malformed body, another
/// content type).
fn form<T>(form: Result<axum::Form<T>, FormRejection>) -> Result<T, OAuthError> {
    form.map(|f| f.0).map_err(|e| {
        invalid_request(
            &format!("the body must be application/x-www-form-urlencoded fields: {}", e.body_text()),
            "invalid_request",
        )
    })
}

/// The client's credentials, from `Authorization: Basic` or the form.
fn credentials(
    headers: &HeaderMap,
    id: Option<&str>,
    secret: Option<&str>,
) -> Result<Option<(String, String)>, OAuthError> {
    // A bearer token is not client authentication (a web app revoking its own
    // tokens may send one): as if no credentials were sent.
    let basic = headers
        .get(header::AUTHORIZATION)
        .filter(|v| v.to_str().is_ok_and(|s| !s.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer "))));
    if let Some(value) = basic {
        // RFC 6749 §2.3: one authentication method per request.
        if secret.is_some() {
            return Err(invalid_request(
                "send the client's credentials once: in Authorization: Basic or in the form, not both",
                "invalid_request",
            ));
        }
        let value = value.to_str().map_err(|_| invalid_client())?;
        let Some(("Basic" | "basic", encoded)) = value.split_once(' ') else { return Err(invalid_client()) };
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid_client())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid_client())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
        // RFC 6749 §2.3.1: both parts are form-encoded inside Basic.
        let unescape =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Ok(Some((unescape(id).ok_or_else(invalid_client)?, unescape(secret).ok_or_else(invalid_client)?)));
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some((id.to_owned(), secret.to_owned()))),
        (None, None) => Ok(None),
        _ => Err(invalid_client()),
    }
}

/// The enabled client these credentials prove, compared in constant time.
async fn authenticate(state: &AppState, id: &str, secret: &str) -> Result<ClientRow, OAuthError> {
    use subtle::ConstantTimeEq;
    if id.len() > 64 || secret.len() > 128 {
        return Err(invalid_client());
    }
    let client = state.store.client(id).await?.ok_or_else(invalid_client)?;
    let presented = tokens::hash_refresh_token(secret);
    if !bool::from(presented.ct_eq(&client.secret_hash)) || client.disabled_at.is_some() {
        return Err(invalid_client());
    }
    Ok(client)
}

/// A token request (only `client_credentials`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    /// `client_credentials`.
    pub grant_type: Option<String>,
    /// Space-separated; a subset of the client's scopes (default: all of them).
    pub scope: Option<String>,
    /// With `client_secret`, when not sent as `Authorization: Basic`.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// A service client's access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientToken {
    #[schema(
        example = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcksiLCJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiIwMWEyM2NlNSJ9.c2lnbmF0dXJl"
    )]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
    #[schema(example = "users:read")]
    pub scope: String,
}

/// Issues an access token to a service client (client-credentials grant).
#[utoipa::path(post, path = "/v1/auth/token", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    // Its errors are RFC 6749's, not problem documents: see OAuthError.
    extensions(("x-panal-errors" = json!("own"))),
    responses(
        (status = 200, body = ClientToken),
        (status = 400, description = "`unsupported_grant_type`, `invalid_scope`, `invalid_request` (a missing or malformed body, two authentication methods)", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = OAuthErrorBody),
    ))]
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let form = form(body)?;
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(invalid_request("only the client_credentials grant is served here", "unsupported_grant_type"));
        }
        None => return Err(invalid_request("grant_type is required", "invalid_request")),
    }
    let (id, secret) =
        credentials(&headers, form.client_id.as_deref(), form.client_secret.as_deref())?.ok_or_else(invalid_client)?;
    let client = authenticate(&state, &id, &secret).await?;
    let granted: Vec<String> = match form.scope.as_deref().map(str::split_whitespace) {
        Some(asked) => {
            let asked: Vec<String> = asked.map(str::to_owned).collect();
            if let Some(bad) = asked.iter().find(|s| !client.scopes.contains(s)) {
                return Err(invalid_request(&format!("scope {bad:?} is not granted to this client"), "invalid_scope"));
            }
            asked
        }
        None => client.scopes.clone(),
    };
    let Ok(sub) = Uuid::parse_str(&client.client_id) else { return Err(invalid_client()) };
    let now = Utc::now();
    let ttl = state.settings.client_token_ttl_secs;
    let scope = granted.join(" ");
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        aud: state.audience.clone(),
        sub,
        sid: None,
        iat: now.timestamp(),
        exp: now.timestamp() + i64::try_from(ttl).unwrap_or(900),
        jti: Uuid::now_v7(),
        roles: Vec::new(),
        client_id: Some(client.client_id.clone()),
        scope: Some(scope.clone()),
    };
    let key = state.keys.signing_key().await.map_err(AuthError::Internal)?;
    let access_token = tokens::sign_access_token(&key, &claims)?;
    tracing::info!(client_id = %client.client_id, scope = %scope, "client token issued");
    // RFC 6749 §5.1: token responses are not to be cached.
    Ok((
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        Json(ClientToken { access_token, token_type: "Bearer", expires_in: ttl, scope }),
    )
        .into_response())
}

/// A token to introspect or revoke.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenHintForm {
    pub token: Option<String>,
    /// `access_token` or `refresh_token`. RFC 7009 §2.1 lets the server
    /// ignore it, and auth does: both kinds are cheap to recognise.
    #[allow(dead_code)]
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// What introspection tells (RFC 7662 §2.2). Inactive tokens say only
/// `active: false`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// The verified claims of an access token that is still in force: its
/// session live (a user's) or its client enabled and the token not revoked
/// (a service client's).
async fn live_access_token(
    state: &AppState,
    verifier: &TokenVerifier,
    token: &str,
) -> Result<Option<AccessClaims>, AuthError> {
    let Ok(claims) = verifier.verify(token).await.map(Arc::unwrap_or_clone) else { return Ok(None) };
    let now = Utc::now();
    let live = match (&claims.sid, &claims.client_id) {
        (Some(sid), _) => {
            state.store.session(*sid).await?.is_some_and(|s| s.user_id == claims.sub && s.is_active(now))
                && state.store.user_by_id(claims.sub).await?.is_some_and(|u| u.disabled_at.is_none())
        }
        (None, Some(client)) => {
            state.store.client(client).await?.is_some_and(|c| c.disabled_at.is_none())
                && !state.store.is_token_revoked(claims.jti).await?
        }
        (None, None) => false,
    };
    Ok(live.then_some(claims))
}

/// Tells a service client whether a token is active, and what it carries.
/// Needs client authentication.
#[utoipa::path(post, path = "/v1/auth/introspect", tag = "oauth2",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    extensions(("x-panal-errors" = json!("own"))),
    responses(
        (status = 200, body = Introspection),
        (status = 400, description = "`invalid_request`: no token, a missing or malformed body, two authentication methods", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = OAuthErrorBody),
    ))]
async fn introspect(
    State(state): State<AppState>,
    Extension(verifier): Extension<Arc<TokenVerifier>>,
    headers: HeaderMap,
    body: Result<axum::Form<TokenHintForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let form = form(body)?;
    let (id, secret) =
        credentials(&headers, form.client_id.as_deref(), form.client_secret.as_deref())?.ok_or_else(invalid_client)?;
    authenticate(&state, &id, &secret).await?;
    let token =
        form.token.filter(|t| !t.is_empty()).ok_or_else(|| invalid_request("token is required", "invalid_request"))?;
    let mut answer = Introspection::default();
    if token.len() <= 16 * 1024 {
        if let Some(c) = live_access_token(&state, &verifier, &token).await? {
            answer = Introspection {
                active: true,
                token_type: Some("access_token"),
                sub: Some(c.sub),
                sid: c.sid,
                client_id: c.client_id,
                scope: c.scope,
                roles: (!c.roles.is_empty()).then_some(c.roles),
                exp: Some(c.exp),
                iat: Some(c.iat),
                iss: Some(c.iss),
                aud: Some(c.aud),
                jti: Some(c.jti),
            };
        } else if token.len() <= 128
            && let Some(r) = state.store.refresh_info(&tokens::hash_refresh_token(&token), Utc::now()).await?
            && r.active
            && state.store.user_by_id(r.user_id).await?.is_some_and(|u| u.disabled_at.is_none())
        {
            answer = Introspection {
                active: true,
                token_type: Some("refresh_token"),
                sub: Some(r.user_id),
                sid: Some(r.session_id),
                exp: Some(r.expires_at.timestamp()),
                iat: Some(r.issued_at.timestamp()),
                iss: Some(state.issuer.clone()),
                ..Default::default()
            };
        }
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// Revokes a token (RFC 7009). A refresh token or a user's access token ends
/// its session; a service client's access token is refused from then on by
/// introspection (and expires within its lifetime elsewhere). Answers 200
/// whether or not the token was valid, as the RFC says. Client credentials
/// are optional (holding a token is the right to end it), checked if sent.
#[utoipa::path(post, path = "/v1/auth/revoke", tag = "oauth2",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    extensions(("x-panal-errors" = json!("own"))),
    responses(
        (status = 200, description = "Revoked, or was not valid"),
        (status = 400, description = "`invalid_request`: no token, a missing or malformed body, two authentication methods", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client` (wrong credentials sent)", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`", body = OAuthErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Extension(verifier): Extension<Arc<TokenVerifier>>,
    headers: HeaderMap,
    body: Result<axum::Form<TokenHintForm>, FormRejection>,
) -> Result<StatusCode, OAuthError> {
    let form = form(body)?;
    if let Some((id, secret)) = credentials(&headers, form.client_id.as_deref(), form.client_secret.as_deref())? {
        authenticate(&state, &id, &secret).await?;
    }
    let token =
        form.token.filter(|t| !t.is_empty()).ok_or_else(|| invalid_request("token is required", "invalid_request"))?;
    let now = Utc::now();
    if token.len() <= 16 * 1024
        && let Ok(claims) = verifier.verify(&token).await
    {
        match claims.sid {
            Some(sid) => {
                state.store.revoke_session(sid, "revoked", now).await?;
            }
            None => {
                let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(now)
                    + chrono::Duration::seconds(i64::try_from(state.leeway_secs).unwrap_or(60));
                state.store.revoke_token(claims.jti, expires, now).await?;
            }
        }
    } else if token.len() <= 128
        && let Some(sid) = state.store.session_of_refresh_token(&tokens::hash_refresh_token(&token)).await?
    {
        state.store.revoke_session(sid, "revoked", now).await?;
    }
    Ok(StatusCode::OK)
}
