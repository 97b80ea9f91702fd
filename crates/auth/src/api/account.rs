//! What a signed-in user does with their own account: sessions, password,
//! email verification; and the signed-out flows of forgetting a password.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::auth::Caller;
use kit::extract::Path;
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Accepted, RequestMeta, live_account, seconds};
use crate::AppState;
use crate::domain::{Email, Password};
use crate::error::AuthError;
use crate::mail::{self, Mail};
use crate::store::Which;
use crate::store::accounts_purpose::{PURPOSE_RESET, PURPOSE_VERIFY};
use crate::throttle::Guarded;
use crate::tokens;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_other_sessions))
        .routes(routes!(change_password))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
}

/// One of the caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    /// The session of the token making this request.
    pub current: bool,
    pub created_at: DateTime<Utc>,
    /// Last refresh, or last request to auth (noted at most once a minute).
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The browser or app that signed in, as it named itself.
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>)))]
async fn list_sessions(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<SessionInfo>>, AuthError> {
    live_account(&state, &caller).await?;
    let now = Utc::now();
    let sessions = state
        .store
        .sessions_of(caller.user_id)
        .await?
        .into_iter()
        .filter(|s| s.revoked_at.is_none() && s.expires_at > now)
        .map(|s| SessionInfo {
            id: s.id,
            current: s.id == caller.session_id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    Ok(Json(sessions))
}

/// Ends one of the caller's sessions (signs that device out).
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No live session of the caller with this id", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AuthError> {
    live_account(&state, &caller).await?;
    let ended = state.store.revoke_sessions(caller.user_id, Which::One(id), "revoked", Utc::now()).await?;
    if ended.is_empty() {
        return Err(Problem::not_found("you have no live session with this id").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: usize,
}

/// Ends every session of the caller but this one.
#[utoipa::path(post, path = "/v1/auth/sessions/revoke-others", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, body = Revoked)))]
async fn revoke_other_sessions(State(state): State<AppState>, caller: Caller) -> Result<Json<Revoked>, AuthError> {
    live_account(&state, &caller).await?;
    let ended =
        state.store.revoke_sessions(caller.user_id, Which::AllBut(caller.session_id), "revoked", Utc::now()).await?;
    Ok(Json(Revoked { revoked: ended.len() }))
}

/// A new password, proven by the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(example = "correct horse battery staple", required = true)]
    pub current_password: Option<String>,
    /// 8 to 128 characters, not a common password, not containing the email or name.
    #[schema(example = "a longer and newer passphrase", required = true, min_length = 8, max_length = 128)]
    pub new_password: Option<String>,
}

/// Changes the caller's password. Every other session ends.
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; other sessions ended"),
        (status = 401, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is refused", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<StatusCode, AuthError> {
    let user = live_account(&state, &caller).await?;
    let mut errors = FieldErrors::new();
    let current = req.current_password.unwrap_or_default();
    if current.is_empty() {
        errors.add("current_password", "is required");
    }
    let new = errors.check("new_password", Password::parse(req.new_password.as_deref().unwrap_or_default()));
    if let Some(p) = &new {
        errors.check("new_password", crate::policy::check(p.expose(), &user.email, &user.display_name));
    }
    errors.finish()?;
    let Some(new) = new else { return Err(Problem::bad_request("invalid request").into()) };
    super::check_password(&state, &user.email, &current, meta.ip).await?;
    let hash = state.hasher.hash(new.expose()).await?;
    state.store.change_password(user.id, &hash, Some(caller.session_id), "change", Utc::now()).await?;
    tracing::info!(user_id = %user.id, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// A token from a link in a mail.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx", required = true)]
    pub token: Option<String>,
}

fn link_token(token: Option<String>) -> Result<String, AuthError> {
    match token {
        Some(t) if !t.is_empty() && t.len() <= 128 => Ok(t),
        Some(_) => Err(AuthError::InvalidLink),
        None => Err(FieldErrors::single("token", "is required").into()),
    }
}

/// Verifies the address a verification link was sent to.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "Unknown, used or expired link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_email(State(state): State<AppState>, Json(req): Json<TokenRequest>) -> Result<StatusCode, AuthError> {
    let token = link_token(req.token)?;
    let hash = tokens::hash_refresh_token(&token);
    match state.store.verify_email(&hash, Utc::now()).await? {
        Some(user) => {
            tracing::info!(user_id = %user, "email verified");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(AuthError::InvalidLink),
    }
}

/// Sends a new verification link to the caller's address.
#[utoipa::path(post, path = "/v1/auth/email/verify/resend", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Sent (or already verified)", body = Accepted),
        (status = 429, description = "Too many requests", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resend_verification(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
) -> Result<(StatusCode, Json<Accepted>), AuthError> {
    let user = live_account(&state, &caller).await?;
    if !user.email_verified {
        // Counted like reset mails, so nobody can turn this into a mail cannon.
        state.throttle.check(Guarded::Reset, &user.email, meta.ip).map_err(AuthError::Throttled)?;
        state.throttle.failed(Guarded::Reset, &user.email, meta.ip);
        send_verification(&state, user.id, &user.email, Utc::now()).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted", detail: "a new verification link is on its way" })))
}

/// Mails a verification link for `email`.
pub(crate) async fn send_verification(
    state: &AppState,
    user: Uuid,
    email: &str,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let token = tokens::new_refresh_token();
    let expires = now + seconds(state.settings.verify_email_ttl_secs);
    state
        .store
        .insert_email_token(&tokens::hash_refresh_token(&token), user, PURPOSE_VERIFY, email, now, expires)
        .await?;
    mail::send(
        state,
        Mail {
            kind: "verify_email",
            user_id: user,
            to: email.to_owned(),
            link: format!("{}/verify-email#token={token}", state.app_url),
            valid_for_minutes: Some(state.settings.verify_email_ttl_secs / 60),
        },
    );
    Ok(())
}

/// An address that forgot its password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[schema(required = true, example = "ada@example.com")]
    pub email: Option<String>,
}

const FORGOT_ACCEPTED: Accepted = Accepted {
    status: "accepted",
    detail: "if an account has this address, a message with a link to reset its password is on its way",
};

/// Mails a password-reset link (valid 30 minutes, usable once). The answer is
/// the same whether or not an account has this address.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "auth",
    request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 422, description = "Not an email address", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests", body = Problem, content_type = "application/problem+json"),
    ))]
async fn forgot_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    Json(req): Json<ForgotRequest>,
) -> Result<(StatusCode, Json<Accepted>), AuthError> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(req.email.as_deref().unwrap_or_default()));
    errors.finish()?;
    let Some(email) = email else { return Err(Problem::bad_request("invalid request").into()) };
    // Every request counts, for known and unknown addresses alike: after a few
    // mails to one address they slow down (no mail bombing, nothing learnt).
    state.throttle.check(Guarded::Reset, email.as_str(), meta.ip).map_err(AuthError::Throttled)?;
    state.throttle.failed(Guarded::Reset, email.as_str(), meta.ip);
    let now = Utc::now();
    match state.store.user_by_email(email.as_str()).await? {
        Some(user) if user.disabled_at.is_none() => {
            let token = tokens::new_refresh_token();
            let expires = now + seconds(state.settings.reset_password_ttl_secs);
            state
                .store
                .insert_email_token(
                    &tokens::hash_refresh_token(&token),
                    user.id,
                    PURPOSE_RESET,
                    &user.email,
                    now,
                    expires,
                )
                .await?;
            mail::send(
                &state,
                Mail {
                    kind: "password_reset",
                    user_id: user.id,
                    to: user.email.clone(),
                    link: format!("{}/reset-password#token={token}", state.app_url),
                    valid_for_minutes: Some(state.settings.reset_password_ttl_secs / 60),
                },
            );
            tracing::info!(user_id = %user.id, "password reset link sent");
        }
        _ => tracing::info!("password reset asked for an address without an enabled account"),
    }
    Ok((StatusCode::ACCEPTED, Json(FORGOT_ACCEPTED)))
}

/// A new password, proven by a reset link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx", required = true)]
    pub token: Option<String>,
    #[schema(example = "a longer and newer passphrase", required = true)]
    pub new_password: Option<String>,
}

/// Sets a new password with the token from a reset link. Every session of
/// the account ends.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 204, description = "Password set; every session ended"),
        (status = 400, description = "Unknown, used or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is refused", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reset_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    Json(req): Json<ResetRequest>,
) -> Result<StatusCode, AuthError> {
    let token = link_token(req.token)?;
    let password = Password::parse(req.new_password.as_deref().unwrap_or_default())
        .map_err(|m| AuthError::from(FieldErrors::single("new_password", m)))?;
    state.throttle.check(Guarded::Reset, "token", meta.ip).map_err(AuthError::Throttled)?;
    let hash = tokens::hash_refresh_token(&token);
    let now = Utc::now();
    // The policy needs the account; a token that is no good is reported as such.
    let Some((user_id, email)) = state.store.email_token(&hash, PURPOSE_RESET, now).await? else {
        state.throttle.failed(Guarded::Reset, "token", meta.ip);
        return Err(AuthError::InvalidLink);
    };
    let user = state.store.user_by_id(user_id).await?.ok_or(AuthError::InvalidLink)?;
    if let Err(m) = crate::policy::check(password.expose(), &email, &user.display_name) {
        return Err(FieldErrors::single("new_password", m).into());
    }
    let password_hash = state.hasher.hash(password.expose()).await?;
    match state.store.reset_password(&hash, &password_hash, now).await? {
        Some(user) => {
            tracing::info!(user_id = %user, "password reset; every session ended");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(AuthError::InvalidLink),
    }
}
