//! Two-factor authentication with TOTP: enrol, confirm, disable, recovery
//! codes; and the second step of a sign-in.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use kit::auth::Caller;
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{MfaRequired, RequestMeta, live_account, seconds};
use crate::AppState;
use crate::domain::User;
use crate::error::AuthError;
use crate::throttle::Guarded;
use crate::{tokens, totp};

/// Wrong codes a challenge survives.
pub const MAX_CHALLENGE_FAILURES: i64 = 5;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(enrol))
        .routes(routes!(confirm))
        .routes(routes!(disable_totp))
        .routes(routes!(new_recovery_codes))
}

/// The caller's second factor.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    pub totp_enabled: bool,
    pub recovery_codes_left: i64,
}

/// Whether the caller has two-factor authentication.
#[utoipa::path(get, path = "/v1/auth/mfa", tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, body = MfaStatus)))]
async fn status(State(state): State<AppState>, caller: Caller) -> Result<Json<MfaStatus>, AuthError> {
    live_account(&state, &caller).await?;
    let totp_enabled = state.store.totp(caller.user_id).await?.is_some_and(|f| f.confirmed);
    let recovery_codes_left = if totp_enabled { state.store.recovery_codes_left(caller.user_id).await? } else { 0 };
    Ok(Json(MfaStatus { totp_enabled, recovery_codes_left }))
}

/// The caller's password, to prove it is them at the keyboard.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    #[schema(example = "correct horse battery staple", required = true)]
    pub password: Option<String>,
}

/// What an authenticator app needs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrolment {
    /// The secret in base32, for typing in.
    #[schema(example = "JBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The `otpauth://` URI the QR code holds.
    #[schema(
        example = "otpauth://totp/Panal:ada%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Panal&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
    /// The QR code, an SVG image.
    #[schema(example = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 45 45\">…</svg>")]
    pub qr_svg: String,
}

fn required(field: &str, value: Option<String>) -> Result<String, AuthError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(FieldErrors::single(field, "is required").into()),
    }
}

/// Starts enrolment: a new secret, as a URI and a QR code for the
/// authenticator app. Nothing changes at sign-in until it is confirmed.
#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 200, body = Enrolment),
        (status = 401, description = "Wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already enabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn enrol(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Json(req): Json<PasswordRequest>,
) -> Result<Json<Enrolment>, AuthError> {
    let password = required("password", req.password)?;
    let user = live_account(&state, &caller).await?;
    super::check_password(&state, &user.email, &password, meta.ip).await?;
    let secret = totp::new_secret();
    if !state.store.begin_totp(user.id, &secret, Utc::now()).await? {
        return Err(Problem::conflict("two-factor authentication is already enabled; disable it first").into());
    }
    let otpauth_uri = totp::otpauth_uri(&state.settings.totp_issuer, &user.email, &secret);
    let qr_svg = totp::qr_svg(&otpauth_uri).unwrap_or_default();
    Ok(Json(Enrolment { secret: totp::secret_base32(&secret), otpauth_uri, qr_svg }))
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(required = true, example = "123456")]
    pub code: Option<String>,
}

/// Recovery codes: each works once in place of a code. Shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(example = json!(["7hq2-mx4k", "p9dz-3rwa", "b6tn-8ycs"]))]
    pub recovery_codes: Vec<String>,
}

async fn fresh_recovery_codes(
    state: &AppState,
    user: Uuid,
    confirm_step: Option<i64>,
) -> Result<Option<Vec<String>>, AuthError> {
    let codes = totp::new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| totp::hash_recovery_code(c)).collect();
    let now = Utc::now();
    match confirm_step {
        Some(step) => {
            if !state.store.confirm_totp(user, step, &hashes, now).await? {
                return Ok(None);
            }
        }
        None => state.store.set_recovery_codes(user, &hashes, now).await?,
    }
    Ok(Some(codes))
}

/// Confirms enrolment with a first code: two-factor authentication is on,
/// and ten recovery codes are given, once.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "mfa",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 401, description = "Wrong code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrolment in progress", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Json(req): Json<CodeRequest>,
) -> Result<Json<RecoveryCodes>, AuthError> {
    let code = required("code", req.code)?;
    let user = live_account(&state, &caller).await?;
    let factor = state
        .store
        .totp(user.id)
        .await?
        .filter(|f| !f.confirmed)
        .ok_or_else(|| Problem::conflict("no enrolment is in progress; start one at POST /v1/auth/mfa/totp"))?;
    let key = user.id.to_string();
    state.throttle.check(Guarded::SecondFactor, &key, meta.ip).map_err(AuthError::Throttled)?;
    let Some(step) = totp::matching_step(&factor.secret, &code, totp::step_at(Utc::now().timestamp())) else {
        state.throttle.failed(Guarded::SecondFactor, &key, meta.ip);
        return Err(AuthError::InvalidCode);
    };
    let codes = fresh_recovery_codes(&state, user.id, Some(step))
        .await?
        .ok_or_else(|| Problem::conflict("two-factor authentication is already enabled"))?;
    tracing::info!(user_id = %user.id, "two-factor authentication enabled");
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// The password and a current code (or a recovery code).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordAndCode {
    #[schema(example = "correct horse battery staple", required = true)]
    pub password: Option<String>,
    #[schema(example = "492039")]
    pub code: Option<String>,
    pub recovery_code: Option<String>,
}

async fn prove_both(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    req: PasswordAndCode,
) -> Result<User, AuthError> {
    let password = required("password", req.password)?;
    if req.code.is_none() && req.recovery_code.is_none() {
        return Err(required("code", None).err().unwrap_or(AuthError::InvalidCode));
    }
    let user = live_account(state, caller).await?;
    super::check_password(state, &user.email, &password, meta.ip).await?;
    if !state.store.totp(user.id).await?.is_some_and(|f| f.confirmed) {
        return Err(Problem::conflict("two-factor authentication is not enabled").into());
    }
    check_code(state, &user, req.code, req.recovery_code, meta.ip).await?;
    Ok(user)
}

/// Turns two-factor authentication off: needs the password and a code.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/disable", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordAndCode,
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "Wrong password or code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Two-factor authentication is not enabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn disable_totp(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Json(req): Json<PasswordAndCode>,
) -> Result<StatusCode, AuthError> {
    let user = prove_both(&state, &caller, &meta, req).await?;
    state.store.delete_totp(user.id).await?;
    tracing::info!(user_id = %user.id, "two-factor authentication disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the recovery codes: needs the password and a code.
#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "mfa",
    security(("bearer" = [])),
    request_body = PasswordAndCode,
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 401, description = "Wrong password or code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Two-factor authentication is not enabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn new_recovery_codes(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Json(req): Json<PasswordAndCode>,
) -> Result<Json<RecoveryCodes>, AuthError> {
    let user = prove_both(&state, &caller, &meta, req).await?;
    let codes = fresh_recovery_codes(&state, user.id, None).await?.unwrap_or_default();
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Checks a TOTP code (each step once) or a recovery code (each once) for
/// `user`, under the throttle. Returns how the user proved it.
async fn check_code(
    state: &AppState,
    user: &User,
    code: Option<String>,
    recovery_code: Option<String>,
    ip: Option<std::net::IpAddr>,
) -> Result<&'static str, AuthError> {
    let key = user.id.to_string();
    state.throttle.check(Guarded::SecondFactor, &key, ip).map_err(AuthError::Throttled)?;
    let ok = match (code, recovery_code) {
        (Some(code), _) => match state.store.totp(user.id).await?.filter(|f| f.confirmed) {
            Some(factor) => match totp::matching_step(&factor.secret, &code, totp::step_at(Utc::now().timestamp())) {
                // Claiming the step fails if it (or a later one) was used: no replay.
                Some(step) => state.store.use_totp_step(user.id, step).await?.then_some("password+totp"),
                None => None,
            },
            None => None,
        },
        (None, Some(recovery)) if recovery.len() <= 64 => state
            .store
            .use_recovery_code(user.id, &totp::hash_recovery_code(&recovery), Utc::now())
            .await?
            .then_some("password+recovery_code"),
        _ => None,
    };
    match ok {
        Some(method) => {
            state.throttle.succeeded(Guarded::SecondFactor, &key, ip);
            Ok(method)
        }
        None => {
            state.throttle.failed(Guarded::SecondFactor, &key, ip);
            Err(AuthError::InvalidCode)
        }
    }
}

/// Opens the second step of a sign-in for `user`.
pub(crate) async fn challenge(state: &AppState, user: Uuid) -> Result<MfaRequired, AuthError> {
    let token = tokens::new_refresh_token();
    let now = Utc::now();
    let ttl = state.settings.mfa_challenge_ttl_secs;
    state.store.create_challenge(&tokens::hash_refresh_token(&token), user, now, now + seconds(ttl)).await?;
    Ok(MfaRequired { mfa_required: true, mfa_token: token, expires_in: ttl, methods: vec!["totp", "recovery_code"] })
}

/// Answers a challenge: the account, and how it was proven.
pub(crate) async fn answer_challenge(
    state: &AppState,
    token: &str,
    code: Option<String>,
    recovery_code: Option<String>,
    ip: Option<std::net::IpAddr>,
) -> Result<(User, &'static str), AuthError> {
    let hash = tokens::hash_refresh_token(token);
    let now = Utc::now();
    let challenge = state
        .store
        .challenge(&hash)
        .await?
        .filter(|c| !c.used && c.expires_at > now && c.failures < MAX_CHALLENGE_FAILURES)
        .ok_or(AuthError::InvalidChallenge)?;
    let user = state.store.user_by_id(challenge.user_id).await?.ok_or(AuthError::InvalidChallenge)?;
    if user.disabled_at.is_some() {
        return Err(AuthError::Disabled);
    }
    if code.is_none() && recovery_code.is_none() {
        return Err(required("code", None).err().unwrap_or(AuthError::InvalidCode));
    }
    let method = match check_code(state, &user, code, recovery_code, ip).await {
        Ok(m) => m,
        Err(e) => {
            if matches!(e, AuthError::InvalidCode) {
                state.store.fail_challenge(&hash).await?;
            }
            return Err(e);
        }
    };
    if !state.store.use_challenge(&hash, now).await? {
        return Err(AuthError::InvalidChallenge);
    }
    Ok((user, method))
}
