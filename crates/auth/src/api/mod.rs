//! Auth's HTTP API: where each request lands.

mod account;
mod admin;
mod bots;
mod mfa;
mod oauth2;
mod providers;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contracts::auth::UserLoggedIn;
use kit::auth::{AccessClaims, Caller, Jwks, TokenError};
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{DisplayName, Email, MAX_PASSWORD_CHARS, Password, ROLE_USER, User};
use crate::error::AuthError;
use crate::mail::{self, Mail};
use crate::password::Verified;
use crate::store::{NewSession, NewUser, Rotation, Store, StoreError};
use crate::throttle::Guarded;
use crate::tokens;

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(login_second_factor))
        .merge(account::router())
        .merge(admin::router())
        .merge(bots::router())
        .merge(mfa::router())
        .merge(oauth2::router())
        .merge(providers::router())
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(export))
        .routes(routes!(jwks))
        .routes(routes!(authorization_server_metadata))
        .with_state(state)
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// An email address; stored lower-cased.
    #[schema(required = true, example = "ada@example.com", format = Email, max_length = 254)]
    pub email: Option<String>,
    /// 8 to 128 characters.
    #[schema(required = true, example = "correct horse battery staple", min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// 1 to 32 characters, no invisible characters, one writing system.
    #[schema(required = true, example = "Ada", min_length = 1, max_length = 32)]
    pub display_name: Option<String>,
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(required = true, example = "ada@example.com")]
    pub email: Option<String>,
    #[schema(required = true, example = "correct horse battery staple")]
    pub password: Option<String>,
}

/// A refresh token to exchange, or to revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx", required = true)]
    pub refresh_token: Option<String>,
}

/// An account as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: Uuid,
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(example = "Ada")]
    pub display_name: String,
    pub email_verified: bool,
    #[schema(example = json!(["user"]))]
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<User> for Account {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            email_verified: u.email_verified,
            roles: u.roles,
            created_at: u.created_at,
        }
    }
}

/// Tokens for a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer …`.
    #[schema(
        example = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcksiLCJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiIwMWEyM2NlNSJ9.c2lnbmF0dXJl"
    )]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Exchange at `/v1/auth/refresh` for new tokens; usable once.
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx")]
    pub refresh_token: String,
    /// The session these tokens belong to.
    pub session_id: Uuid,
}

/// What registering answers, whether or not the email was free: the same
/// words, so the answer does not tell who has an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
    #[schema(example = "If the address can receive mail, a message is on its way.")]
    pub detail: &'static str,
}

const REGISTER_ACCEPTED: Accepted = Accepted {
    status: "accepted",
    detail: "if this address can be registered, a message with a link to verify it is on its way; sign in with the password you chose",
};

/// Creates an account and mails a link to verify its address. The answer is
/// the same when the email is already registered (its owner gets a mail
/// saying so instead), so registering cannot be used to find out who has an
/// account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Accepted (account created, or a mail sent to the existing owner)", body = Accepted),
        (status = 422, description = "Invalid fields, or a password the policy refuses", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<Accepted>), AuthError> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(req.email.as_deref().unwrap_or_default()));
    let password = errors.check("password", Password::parse(req.password.as_deref().unwrap_or_default()));
    let display_name =
        errors.check("display_name", DisplayName::parse(req.display_name.as_deref().unwrap_or_default()));
    if let (Some(p), Some(e), Some(n)) = (&password, &email, &display_name) {
        errors.check("password", crate::policy::check(p.expose(), e.as_str(), n.as_str()));
    }
    errors.finish()?;
    let (Some(email), Some(password), Some(display_name)) = (email, password, display_name) else {
        return Err(Problem::bad_request("invalid request").into());
    };

    // Hashed either way: the answer takes as long for a taken address.
    let password_hash = state.hasher.hash(password.expose()).await?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let new = NewUser {
        id,
        email: email.as_str(),
        display_name: display_name.as_str(),
        password_hash: &password_hash,
        roles: &[ROLE_USER],
        email_verified: false,
        identity: None,
        now,
    };
    match state.store.create_user(&new).await {
        Ok(()) => {
            tracing::info!(user_id = %id, "account registered");
            account::send_verification(&state, id, email.as_str(), now).await?;
        }
        Err(StoreError::EmailTaken) => {
            // Counted like reset mails: repeated attempts stop mailing the
            // owner (no mail bombing through this form), the answer stays the same.
            if state.throttle.check(Guarded::Reset, email.as_str(), None).is_err() {
                tracing::info!("registration attempted again for an existing account; owner already told recently");
                return Ok((StatusCode::ACCEPTED, Json(REGISTER_ACCEPTED)));
            }
            state.throttle.failed(Guarded::Reset, email.as_str(), None);
            tracing::info!("registration attempted for an existing account; its owner is told by mail");
            if let Some(owner) = state.store.user_by_email(email.as_str()).await? {
                mail::send(
                    &state,
                    Mail {
                        kind: "account_exists",
                        user_id: owner.id,
                        to: owner.email,
                        link: format!("{}/forgot-password", state.app_url),
                        valid_for_minutes: None,
                    },
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok((StatusCode::ACCEPTED, Json(REGISTER_ACCEPTED)))
}

/// The second step a sign-in needs when the account has two-factor
/// authentication.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always `true`.
    pub mfa_required: bool,
    /// Send back to `/v1/auth/login/mfa` with a code; usable once.
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx")]
    pub mfa_token: String,
    /// Seconds the challenge stays valid.
    #[schema(example = 300)]
    pub expires_in: u64,
    /// What the code may be: `totp` or `recovery_code`.
    #[schema(example = json!(["totp", "recovery_code"]))]
    pub methods: Vec<&'static str>,
}

/// A sign-in's answer: tokens, or a second step.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    MfaRequired(MfaRequired),
}

/// Signs in with email and password, opening a session — or, when the account
/// has two-factor authentication, answering with a challenge for
/// `/v1/auth/login/mfa`.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in, or a second factor is needed", body = LoginResponse),
        (status = 401, description = "Unknown email or wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Account disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing saturated", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, AuthError> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(req.email.as_deref().unwrap_or_default()));
    let password = req.password.unwrap_or_default();
    if password.is_empty() {
        errors.add("password", "is required");
    } else if password.chars().count() > MAX_PASSWORD_CHARS {
        errors.add("password", format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    errors.finish()?;
    let Some(email) = email else {
        return Err(Problem::bad_request("invalid request").into());
    };
    let user = check_password(&state, email.as_str(), &password, meta.ip).await?;
    if state.store.totp(user.id).await?.is_some_and(|f| f.confirmed) {
        return Ok(Json(LoginResponse::MfaRequired(mfa::challenge(&state, user.id).await?)));
    }
    let tokens = open_session(&state, &user, &meta.device(&headers), "password").await?;
    Ok(Json(LoginResponse::Tokens(tokens)))
}

/// Checks an email and password under the brute-force throttle. Unknown
/// accounts cost the same hash as known ones, so the answer's timing does
/// not tell which emails are registered.
pub(crate) async fn check_password(
    state: &AppState,
    email: &str,
    password: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<User, AuthError> {
    state.throttle.check(Guarded::Login, email, ip).map_err(AuthError::Throttled)?;
    let user = state.store.user_by_email(email).await?;
    let verified = match &user {
        Some(user) => state.hasher.verify(password, &user.password_hash).await?,
        None => {
            state.hasher.verify_dummy(password).await?;
            Verified::No
        }
    };
    let (Some(user), Verified::Yes | Verified::YesRehash) = (user, verified) else {
        state.throttle.failed(Guarded::Login, email, ip);
        return Err(AuthError::InvalidCredentials);
    };
    state.throttle.succeeded(Guarded::Login, email, ip);
    if user.disabled_at.is_some() {
        return Err(AuthError::Disabled);
    }
    if verified == Verified::YesRehash {
        match state.hasher.hash(password).await {
            Ok(hash) => state.store.set_password_hash(user.id, &hash, Utc::now()).await?,
            Err(e) => tracing::warn!(error = %e, "could not upgrade a password hash"),
        }
    }
    Ok(user)
}

/// The second step of a sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    /// From the first step's answer.
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx", required = true)]
    pub mfa_token: Option<String>,
    /// Six digits from the authenticator app…
    #[schema(example = "492039")]
    pub code: Option<String>,
    /// …or one of the recovery codes (each works once).
    pub recovery_code: Option<String>,
}

/// Completes a sign-in with a code from the authenticator app or a recovery
/// code. A code works once; five wrong codes end the challenge.
#[utoipa::path(post, path = "/v1/auth/login/mfa", tag = "auth",
    request_body = SecondFactorRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong or reused code, or an invalid challenge", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn login_second_factor(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Json(req): Json<SecondFactorRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let token = req
        .mfa_token
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(|| AuthError::from(FieldErrors::single("mfa_token", "is required (at most 128 characters)")))?;
    let (user, method) = mfa::answer_challenge(&state, &token, req.code, req.recovery_code, meta.ip).await?;
    let tokens = open_session(&state, &user, &meta.device(&headers), method).await?;
    Ok(Json(tokens))
}

/// Opens a session for `user` signed in by `method`, with its
/// `user_logged_in` event, and issues its first tokens.
pub(crate) async fn open_session(
    state: &AppState,
    user: &User,
    device: &crate::domain::Device,
    method: &str,
) -> Result<TokenResponse, AuthError> {
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let refresh = tokens::new_refresh_token();
    let refresh_hash = tokens::hash_refresh_token(&refresh);
    let expires_at = now + seconds(state.settings.session_max_age_secs);
    let (before, seen) = state.store.known_device(user.id, device.user_agent.as_deref()).await?;
    let event = UserLoggedIn {
        user_id: user.id,
        session_id,
        method: method.to_owned(),
        logged_in_at: now,
        new_device: before && !seen,
        device: device.describe(),
    };
    state
        .store
        .create_session(
            &NewSession {
                id: session_id,
                user_id: user.id,
                device,
                now,
                expires_at,
                refresh_hash: &refresh_hash,
                refresh_expires_at: std::cmp::min(now + seconds(state.settings.refresh_token_ttl_secs), expires_at),
            },
            &event,
        )
        .await?;
    tracing::info!(user_id = %user.id, session_id = %session_id, method, "signed in");
    issue(state, user, session_id, refresh, now).await
}

/// The caller's account, if their session is live and the account enabled.
/// Signature checks alone cannot see a logout; auth also checks the session,
/// so its own endpoints refuse a revoked session's tokens at once.
pub(crate) async fn live_account(state: &AppState, caller: &Caller) -> Result<User, AuthError> {
    let now = Utc::now();
    let active =
        state.store.session(caller.session_id).await?.is_some_and(|s| s.user_id == caller.user_id && s.is_active(now));
    if !active {
        return Err(TokenError::Revoked.into());
    }
    let user = state.store.user_by_id(caller.user_id).await?.ok_or(AuthError::Token(TokenError::Revoked))?;
    if user.disabled_at.is_some() {
        return Err(AuthError::Disabled);
    }
    state.store.touch_session(caller.session_id, now).await?;
    Ok(user)
}

/// Exchanges a refresh token for new tokens. Each refresh token works once;
/// presenting one again ends its session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Invalid, expired, reused or revoked refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let presented = required_refresh_token(req)?;
    let now = Utc::now();
    let next = tokens::new_refresh_token();
    let rotation = state
        .store
        .rotate_refresh_token(
            &tokens::hash_refresh_token(&presented),
            &tokens::hash_refresh_token(&next),
            now,
            seconds(state.settings.refresh_token_ttl_secs),
        )
        .await?;
    match rotation {
        Rotation::Rotated { session, user } => {
            if user.disabled_at.is_some() {
                return Err(AuthError::InvalidRefreshToken);
            }
            Ok(Json(issue(&state, &user, session.id, next, now).await?))
        }
        Rotation::Reused => {
            tracing::warn!("a used refresh token was presented again; its session is revoked");
            Err(AuthError::InvalidRefreshToken)
        }
        Rotation::Unknown | Rotation::Inactive => Err(AuthError::InvalidRefreshToken),
    }
}

/// Ends a session: with the session's access token (`Authorization: Bearer`),
/// or with its refresh token in the body. The refresh token stops working at
/// once, and auth refuses the session's access tokens at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Only when no access token is sent"),
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "Session ended (or already ended)"),
        (status = 401, description = "Neither a valid access token nor a refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn logout(State(state): State<AppState>, req: Request) -> Result<StatusCode, AuthError> {
    let now = Utc::now();
    let session_id = if req.headers().contains_key(header::AUTHORIZATION) {
        let (mut parts, _) = req.into_parts();
        Caller::from_request_parts(&mut parts, &()).await?.session_id
    } else {
        let no_body = req.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v == "0")
            && !req.headers().contains_key(header::TRANSFER_ENCODING);
        if no_body {
            return Err(Problem::unauthorized("send the session's access token or its refresh token").into());
        }
        let Json(body) = Json::<RefreshRequest>::from_request(req, &()).await?;
        let token = required_refresh_token(body)?;
        match state.store.session_of_refresh_token(&tokens::hash_refresh_token(&token)).await? {
            Some(id) => id,
            // Nothing to end; answering as for success tells an attacker nothing.
            None => return Ok(StatusCode::NO_CONTENT),
        }
    };
    if state.store.revoke_session(session_id, "logout", now).await? {
        tracing::info!(session_id = %session_id, "signed out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The account of the caller.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = Account),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Account>, AuthError> {
    Ok(Json(Account::from(live_account(&state, &caller).await?)))
}

/// An external identity linked to the account.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedIdentity {
    #[schema(example = "42")]
    pub provider: String,
    #[schema(example = "ada@student.42.fr")]
    pub email: Option<String>,
    pub linked_at: DateTime<Utc>,
}

/// What auth holds about the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthExport {
    pub account: Account,
    pub sessions: Vec<crate::store::SessionRecord>,
    pub identities: Vec<LinkedIdentity>,
    pub two_factor_enabled: bool,
}

/// Everything auth holds about the caller (GDPR export; users gathers it into
/// the archive at `/v1/users/me/export`).
#[utoipa::path(get, path = "/v1/auth/me/export", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, body = AuthExport)))]
async fn export(State(state): State<AppState>, caller: Caller) -> Result<Json<AuthExport>, AuthError> {
    let user = live_account(&state, &caller).await?;
    let sessions = state.store.sessions_of(caller.user_id).await?;
    let identities = state
        .store
        .identities_of(caller.user_id)
        .await?
        .into_iter()
        .map(|(provider, email, linked_at)| LinkedIdentity { provider, email, linked_at })
        .collect();
    let two_factor_enabled = state.store.totp(caller.user_id).await?.is_some_and(|f| f.confirmed);
    Ok(Json(AuthExport { account: Account::from(user), sessions, identities, two_factor_enabled }))
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> Result<Response, AuthError> {
    let set = published_jwks(&state.store).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(set)).into_response())
}

/// Authorization-server metadata (RFC 8414): how a generic OAuth client
/// finds the token, introspection and revocation endpoints and the keys.
/// Auth issues no ID tokens, so it publishes no OpenID Connect discovery
/// document: it does not claim to be an OpenID provider. `response_types`
/// is `none`: there is no authorization endpoint (only client credentials
/// and refresh tokens reach the token endpoint).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Authorization-server metadata (RFC 8414)", body = Object)))]
async fn authorization_server_metadata(State(state): State<AppState>) -> Response {
    let iss = &state.issuer;
    let body = serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/v1/auth/token"),
        "introspection_endpoint": format!("{iss}/v1/auth/introspect"),
        "revocation_endpoint": format!("{iss}/v1/auth/revoke"),
        "response_types_supported": ["none"],
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "service_documentation": format!("{iss}/docs"),
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

/// Every key whose tokens may still be valid.
pub(crate) async fn published_jwks(store: &Store) -> Result<Jwks, crate::store::StoreError> {
    let now = Utc::now();
    let keys = store.keys().await?.into_iter().filter(|k| k.published_at(now)).map(|k| k.material.jwk()).collect();
    Ok(Jwks { keys })
}

fn required_refresh_token(req: RefreshRequest) -> Result<String, AuthError> {
    match req.refresh_token {
        Some(t) if !t.is_empty() && t.len() <= 128 => Ok(t),
        Some(t) if t.len() > 128 => Err(AuthError::InvalidRefreshToken),
        _ => Err(FieldErrors::single("refresh_token", "is required").into()),
    }
}

fn seconds(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// Signs an access token for `user` in `session_id` and packs the response.
async fn issue(
    state: &AppState,
    user: &User,
    session_id: Uuid,
    refresh_token: String,
    now: DateTime<Utc>,
) -> Result<TokenResponse, AuthError> {
    let ttl = state.settings.access_token_ttl_secs;
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        aud: state.audience.clone(),
        sub: user.id,
        sid: Some(session_id),
        iat: now.timestamp(),
        exp: now.timestamp() + i64::try_from(ttl).unwrap_or(900),
        jti: Uuid::now_v7(),
        roles: user.roles.clone(),
        // RFC 9068 §2.2 asks every access token to name the client that got
        // it: a user's, signed in through Panal's own apps, names Panal's.
        client_id: Some(crate::domain::FIRST_PARTY_CLIENT.to_owned()),
        scope: None,
    };
    let key = state.keys.signing_key().await.map_err(AuthError::Internal)?;
    let access_token = tokens::sign_access_token(&key, &claims)?;
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in: ttl, refresh_token, session_id })
}

/// What a request says about the device it came from.
pub(crate) struct RequestMeta {
    pub ip: Option<std::net::IpAddr>,
}

impl RequestMeta {
    pub(crate) fn device(&self, headers: &HeaderMap) -> crate::domain::Device {
        let user_agent =
            headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
        crate::domain::Device { user_agent, ip: self.ip.map(|ip| ip.to_string()) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { ip: kit::http::client_ip(parts) })
    }
}
