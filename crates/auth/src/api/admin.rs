//! Administrators' API: list and search accounts, change roles, disable and
//! enable. Every call checks the caller's session and that the database still
//! makes them an administrator (their token's roles may be minutes old).

use axum::extract::State;
use chrono::{DateTime, Utc};
use kit::auth::{Admin, Authorized, Caller};
use kit::extract::{Path, Query};
use kit::{FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::live_account;
use crate::AppState;
use crate::domain::{ROLE_ADMIN, ROLES, parse_roles};
use crate::error::AuthError;
use crate::store::{AccountRow, RolesOutcome};

/// Most accounts in one page.
pub const MAX_PAGE: u32 = 100;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts))
        .routes(routes!(get_account))
        .routes(routes!(set_roles))
        .routes(routes!(disable_account))
        .routes(routes!(enable_account))
}

/// An account as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminAccount {
    pub id: Uuid,
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(example = "Ada")]
    pub display_name: String,
    pub email_verified: bool,
    #[schema(example = json!(["user", "admin"]))]
    pub roles: Vec<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub two_factor_enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<AccountRow> for AdminAccount {
    fn from(r: AccountRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            email_verified: r.email_verified,
            roles: r.roles,
            disabled_at: r.disabled_at,
            two_factor_enabled: r.mfa_enabled,
            created_at: r.created_at,
        }
    }
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub items: Vec<AdminAccount>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Email prefix or part of the display name, case-insensitive.
    pub q: Option<String>,
    /// Only accounts holding this role.
    pub role: Option<String>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<Uuid>,
}

/// The caller, if their session is live and the database makes them an admin.
async fn admin(state: &AppState, caller: &Caller) -> Result<Uuid, AuthError> {
    let user = live_account(state, caller).await?;
    if !user.roles.iter().any(|r| r == ROLE_ADMIN) {
        return Err(Problem::forbidden("this action needs the `admin` role").into());
    }
    Ok(user.id)
}

/// Lists and searches accounts, in creation order.
#[utoipa::path(get, path = "/v1/auth/admin/accounts", tag = "admin",
    security(("bearer" = ["admin"])),
    params(ListParams),
    responses(
        (status = 200, body = AccountPage),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_accounts(
    State(state): State<AppState>,
    Authorized(caller, _): Authorized<Admin>,
    Query(p): Query<ListParams>,
) -> Result<Json<AccountPage>, AuthError> {
    let mut errors = FieldErrors::new();
    let limit = p.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        errors.add("limit", format!("must be between 1 and {MAX_PAGE}"));
    }
    if let Some(role) = &p.role
        && !ROLES.contains(&role.as_str())
    {
        errors.add("role", format!("must be one of {}", ROLES.join(", ")));
    }
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 254) {
        errors.add("q", "must be at most 254 characters");
    }
    errors.finish()?;
    admin(&state, &caller).await?;
    let rows = state.store.list_accounts(q, p.role.as_deref(), p.after, limit + 1).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<AdminAccount> = rows.into_iter().take(limit as usize).map(AdminAccount::from).collect();
    let next = if more { items.last().map(|a| a.id) } else { None };
    Ok(Json(AccountPage { items, next }))
}

async fn account_view(state: &AppState, id: Uuid) -> Result<AdminAccount, AuthError> {
    let user = state.store.user_by_id(id).await?.ok_or_else(|| Problem::not_found("no account has this id"))?;
    let two_factor_enabled = state.store.totp(id).await?.is_some_and(|f| f.confirmed);
    Ok(AdminAccount {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        email_verified: user.email_verified,
        roles: user.roles,
        disabled_at: user.disabled_at,
        two_factor_enabled,
        created_at: user.created_at,
    })
}

/// One account.
#[utoipa::path(get, path = "/v1/auth/admin/accounts/{id}", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminAccount), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_account(
    State(state): State<AppState>,
    Authorized(caller, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminAccount>, AuthError> {
    admin(&state, &caller).await?;
    Ok(Json(account_view(&state, id).await?))
}

/// The roles an account should hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    /// Must include `user`; any of `user`, `admin`, `moderator`, `professional`, `support`.
    #[schema(required = true, example = json!(["user", "moderator"]))]
    pub roles: Option<Vec<String>>,
}

/// Replaces an account's roles. Removing a role ends the account's sessions
/// (their tokens carry the old roles); the last enabled administrator cannot
/// lose the role.
#[utoipa::path(put, path = "/v1/auth/admin/accounts/{id}/roles", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    request_body = RolesRequest,
    responses(
        (status = 200, body = AdminAccount),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It would leave no administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_roles(
    State(state): State<AppState>,
    Authorized(caller, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
    Json(req): Json<RolesRequest>,
) -> Result<Json<AdminAccount>, AuthError> {
    let mut errors = FieldErrors::new();
    let roles = match req.roles {
        Some(r) if r.len() <= ROLES.len() * 2 => errors.check("roles", parse_roles(&r)),
        Some(_) => {
            errors.add("roles", "has too many entries");
            None
        }
        None => {
            errors.add("roles", "is required");
            None
        }
    };
    errors.finish()?;
    let Some(roles) = roles else { return Err(Problem::bad_request("invalid request").into()) };
    let by = admin(&state, &caller).await?;
    match state.store.set_roles(id, &roles, by, Utc::now()).await? {
        RolesOutcome::NotFound => return Err(Problem::not_found("no account has this id").into()),
        RolesOutcome::LastAdmin => {
            return Err(Problem::conflict("this is the last enabled administrator; make another one first").into());
        }
        RolesOutcome::Changed { .. } => {
            tracing::info!(user_id = %id, by = %by, roles = ?roles, "roles changed");
        }
        RolesOutcome::Unchanged => {}
    }
    Ok(Json(account_view(&state, id).await?))
}

async fn set_disabled(
    state: AppState,
    caller: Caller,
    id: Uuid,
    disabled: bool,
) -> Result<Json<AdminAccount>, AuthError> {
    let by = admin(&state, &caller).await?;
    if disabled && id == by {
        return Err(Problem::conflict("administrators cannot disable their own account").into());
    }
    match state.store.set_disabled(id, disabled, by, Utc::now()).await? {
        None => return Err(Problem::not_found("no account has this id").into()),
        Some(RolesOutcome::LastAdmin) => {
            return Err(Problem::conflict("this is the last enabled administrator; make another one first").into());
        }
        Some(RolesOutcome::Changed { .. }) => {
            tracing::info!(user_id = %id, by = %by, disabled, "account disabled state changed");
        }
        Some(_) => {}
    }
    Ok(Json(account_view(&state, id).await?))
}

/// Disables an account: it cannot sign in, and every session ends.
#[utoipa::path(post, path = "/v1/auth/admin/accounts/{id}/disable", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = AdminAccount),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Yourself, or the last administrator", body = Problem, content_type = "application/problem+json"),
    ))]
async fn disable_account(
    State(state): State<AppState>,
    Authorized(caller, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminAccount>, AuthError> {
    set_disabled(state, caller, id, true).await
}

/// Enables a disabled account again.
#[utoipa::path(post, path = "/v1/auth/admin/accounts/{id}/enable", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminAccount), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn enable_account(
    State(state): State<AppState>,
    Authorized(caller, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminAccount>, AuthError> {
    set_disabled(state, caller, id, false).await
}
