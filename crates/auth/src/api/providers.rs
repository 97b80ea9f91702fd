//! Sign-in with an external provider (see [`crate::oauth`]). The web app asks
//! for an authorization URL, sends the browser there, receives it back on one
//! of its registered pages with `code` and `state`, and posts both here.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kit::auth::Caller;
use kit::extract::Path;
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{LoginResponse, RequestMeta, live_account, open_session, seconds};
use crate::AppState;
use crate::domain::{DisplayName, Email, ROLE_USER};
use crate::error::AuthError;
use crate::oauth::{OAuthError, Provider, pkce};
use crate::store::{NewUser, StoreError};
use crate::tokens;

/// How long a started sign-in waits for its callback.
const STATE_TTL_SECS: u64 = 600;
/// How long a proposed link waits for the account owner.
const LINK_TTL_SECS: u64 = 900;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(start)).routes(routes!(callback)).routes(routes!(link))
}

impl From<OAuthError> for AuthError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::CodeRefused(code) => Problem::bad_request(format!(
                "the provider refused the authorization code ({code}); it may be used, expired or not for this sign-in"
            ))
            .with_type("oauth-code-refused", "Authorization code refused")
            .into(),
            OAuthError::Upstream(detail) => {
                tracing::warn!(%detail, "identity provider failed");
                Problem::new(StatusCode::BAD_GATEWAY)
                    .with_type("identity-provider-unavailable", "Identity provider unavailable")
                    .with_detail("the identity provider could not be reached or gave an unusable answer; try again")
                    .into()
            }
        }
    }
}

fn provider<'a>(state: &'a AppState, name: &str) -> Result<&'a Provider, AuthError> {
    state
        .providers
        .get(name)
        .ok_or_else(|| Problem::not_found(format!("no identity provider is named {name:?}")).into())
}

/// A configured provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderInfo {
    #[schema(example = "42")]
    pub name: String,
    #[schema(example = "42 Intra")]
    pub display_name: String,
}

/// The providers one can sign in with.
#[utoipa::path(get, path = "/v1/auth/oauth/providers", tag = "oauth",
    responses((status = 200, body = Vec<ProviderInfo>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<ProviderInfo>> {
    Json(
        state
            .providers
            .all()
            .map(|p| ProviderInfo { name: p.name.clone(), display_name: p.display_name.clone() })
            .collect(),
    )
}

/// Where the provider should send the browser back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// One of the provider's configured `redirect_uris`, exactly.
    #[schema(required = true, example = "https://app.example.com/oauth/callback")]
    pub redirect_uri: Option<String>,
}

/// Where to send the browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartResponse {
    #[schema(
        example = "https://api.intra.42.fr/oauth/authorize?response_type=code&client_id=u-s4t2ud&redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Foauth%2F42%2Fcallback&state=Jx8fQ2mZk4LrT0vW&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    )]
    pub authorization_url: String,
    /// Keep it (e.g. in session storage) and check it comes back unchanged.
    #[schema(example = "Jx8fQ2mZk4LrT0vW")]
    pub state: String,
}

/// Starts a sign-in with `provider`: a one-time state and PKCE challenge,
/// and the URL to send the browser to.
#[utoipa::path(post, path = "/v1/auth/oauth/{provider}/start", tag = "oauth",
    params(("provider" = String, Path)),
    request_body = StartRequest,
    responses(
        (status = 200, body = StartResponse),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A redirect URI that is not registered", body = Problem, content_type = "application/problem+json"),
    ))]
async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<StartRequest>,
) -> Result<Json<StartResponse>, AuthError> {
    let p = provider(&state, &name)?;
    let redirect_uri = req.redirect_uri.unwrap_or_default();
    if !p.settings.redirect_uris.contains(&redirect_uri) {
        let mut e = FieldErrors::new();
        e.add("redirect_uri", "is not one of this provider's registered redirect URIs (they are matched exactly)");
        e.finish()?;
    }
    let endpoints = state.providers.endpoints(p).await?;
    let oauth_state = tokens::new_refresh_token();
    let nonce = tokens::new_refresh_token();
    let (verifier, challenge) = pkce();
    let now = Utc::now();
    state
        .store
        .insert_oauth_state(
            &tokens::hash_refresh_token(&oauth_state),
            &p.name,
            &verifier,
            &nonce,
            &redirect_uri,
            now,
            now + seconds(STATE_TTL_SECS),
        )
        .await?;
    let authorization_url = p.authorization_url(&endpoints, &redirect_uri, &oauth_state, &challenge, &nonce)?;
    Ok(Json(StartResponse { authorization_url, state: oauth_state }))
}

/// What the provider sent back to the web app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    #[schema(example = "7c1a9e3f5b", required = true)]
    pub code: Option<String>,
    #[schema(example = "Jx8fQ2mZk4LrT0vW", required = true)]
    pub state: Option<String>,
}

/// The identity matches an account that must confirm the link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkRequired {
    /// Always `true`.
    pub link_required: bool,
    /// Send to `POST /v1/auth/oauth/link`, signed in to the account.
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx")]
    pub link_token: String,
    #[schema(example = "42")]
    pub provider: String,
    #[schema(example = "ada@student.42.fr")]
    pub email: String,
    #[schema(example = 600)]
    pub expires_in: u64,
}

/// Finishes a sign-in: exchanges the code and signs in the linked account,
/// or creates an account. When the provider's verified email belongs to an
/// account with a verified email, the answer is 202 `link_required`: the
/// account's owner confirms by signing in and calling `/v1/auth/oauth/link`.
#[utoipa::path(post, path = "/v1/auth/oauth/{provider}/callback", tag = "oauth",
    params(("provider" = String, Path)),
    request_body = CallbackRequest,
    responses(
        (status = 200, description = "Signed in (tokens), or a second factor is needed", body = LoginResponse),
        (status = 202, description = "Confirm linking to the existing account", body = LinkRequired),
        (status = 400, description = "Unknown, used or expired state; code refused by the provider", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email belongs to an account that cannot be linked", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Path(name): Path<String>,
    Json(req): Json<CallbackRequest>,
) -> Result<Response, AuthError> {
    let p = provider(&state, &name)?;
    let mut errors = FieldErrors::new();
    let code = req.code.filter(|c| !c.is_empty() && c.len() <= 2048);
    let given_state = req.state.filter(|s| !s.is_empty() && s.len() <= 128);
    if code.is_none() {
        errors.add("code", "is required (at most 2048 characters)");
    }
    if given_state.is_none() {
        errors.add("state", "is required");
    }
    errors.finish()?;
    let (Some(code), Some(given_state)) = (code, given_state) else {
        return Err(Problem::bad_request("invalid request").into());
    };
    let now = Utc::now();
    let Some((verifier, _nonce, redirect_uri)) =
        state.store.take_oauth_state(&tokens::hash_refresh_token(&given_state), &p.name, now).await?
    else {
        return Err(Problem::bad_request(
            "the state is unknown, was used already or has expired; start the sign-in again",
        )
        .with_type("invalid-state", "Invalid state")
        .into());
    };
    let external = state.providers.identify(p, &code, &verifier, &redirect_uri).await?;
    let method = format!("oauth:{}", p.name);

    if let Some(user_id) = state.store.identity(&p.name, &external.subject).await? {
        let user = state.store.user_by_id(user_id).await?.ok_or(AuthError::InvalidCredentials)?;
        if user.disabled_at.is_some() {
            return Err(AuthError::Disabled);
        }
        return signed_in(&state, &user, &headers, &meta, &method).await;
    }

    let email = external.email.as_deref().and_then(|e| Email::parse(e).ok()).ok_or_else(|| {
        Problem::bad_request("the provider shared no usable email address; allow it to, and try again")
    })?;
    if let Some(existing) = state.store.user_by_email(email.as_str()).await? {
        // Linking needs both sides verified: otherwise whoever registered an
        // address first (perhaps not its owner) could capture the identity.
        if !(external.email_verified && existing.email_verified) || existing.disabled_at.is_some() {
            return Err(Problem::conflict(
                "an account already uses this email and cannot be linked automatically: both the provider and Panal \
                 must have verified the address; sign in to that account another way",
            )
            .into());
        }
        let token = tokens::new_refresh_token();
        state
            .store
            .insert_pending_link(
                &tokens::hash_refresh_token(&token),
                existing.id,
                &p.name,
                &external.subject,
                Some(email.as_str()),
                now,
                now + seconds(LINK_TTL_SECS),
            )
            .await?;
        let body = LinkRequired {
            link_required: true,
            link_token: token,
            provider: p.name.clone(),
            email: email.as_str().to_owned(),
            expires_in: LINK_TTL_SECS,
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }

    // A new account, signed up through the provider; it has no password.
    let display_name = external
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok())
        .or_else(|| {
            DisplayName::parse(&email.as_str().split('@').next().unwrap_or("user").chars().take(32).collect::<String>())
                .ok()
        })
        .map(|n| n.as_str().to_owned())
        .unwrap_or_else(|| "user".to_owned());
    let id = Uuid::now_v7();
    let new = NewUser {
        id,
        email: email.as_str(),
        display_name: &display_name,
        password_hash: "",
        roles: &[ROLE_USER],
        email_verified: external.email_verified,
        identity: Some((&p.name, &external.subject)),
        now,
    };
    match state.store.create_user(&new).await {
        Ok(()) => {}
        // Registered meanwhile by someone else: refuse rather than guess.
        Err(StoreError::EmailTaken) => return Err(Problem::conflict("an account already uses this email").into()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id = %id, provider = %p.name, "account created through an identity provider");
    let user = state.store.user_by_id(id).await?.ok_or(AuthError::InvalidCredentials)?;
    signed_in(&state, &user, &headers, &meta, &method).await
}

async fn signed_in(
    state: &AppState,
    user: &crate::domain::User,
    headers: &HeaderMap,
    meta: &RequestMeta,
    method: &str,
) -> Result<Response, AuthError> {
    // A second factor is asked whichever way the first was proven.
    if state.store.totp(user.id).await?.is_some_and(|f| f.confirmed) {
        let challenge = super::mfa::challenge(state, user.id).await?;
        return Ok(Json(LoginResponse::MfaRequired(challenge)).into_response());
    }
    let tokens = open_session(state, user, &meta.device(headers), method).await?;
    Ok(Json(LoginResponse::Tokens(tokens)).into_response())
}

/// A proposed link, from a callback's `link_required` answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[schema(example = "mQ5b0Yq3uX8sF1kP7wZ2dR9tL4vN6cH0aJeGiBoUyEx", required = true)]
    pub link_token: Option<String>,
}

/// Confirms linking an external identity to the caller's account. The caller
/// must be signed in to the very account the identity's email matched.
#[utoipa::path(post, path = "/v1/auth/oauth/link", tag = "oauth",
    security(("bearer" = [])),
    request_body = LinkRequest,
    responses(
        (status = 204, description = "Linked: the provider signs in to this account from now on"),
        (status = 400, description = "Unknown, used or expired link token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The link is for another account", body = Problem, content_type = "application/problem+json"),
    ))]
async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LinkRequest>,
) -> Result<StatusCode, AuthError> {
    let user = live_account(&state, &caller).await?;
    let token = req.link_token.filter(|t| !t.is_empty() && t.len() <= 128).ok_or(AuthError::InvalidLink)?;
    let hash = tokens::hash_refresh_token(&token);
    let now = Utc::now();
    let pending = state.store.pending_link(&hash, now).await?.ok_or(AuthError::InvalidLink)?;
    if pending.user_id != user.id {
        return Err(Problem::forbidden("this link is for another account").into());
    }
    if !state.store.use_pending_link(&hash, now).await? {
        return Err(AuthError::InvalidLink);
    }
    state.store.link_identity(&pending.provider, &pending.subject, user.id, pending.email.as_deref(), now).await?;
    tracing::info!(user_id = %user.id, provider = %pending.provider, "external identity linked");
    Ok(StatusCode::NO_CONTENT)
}
