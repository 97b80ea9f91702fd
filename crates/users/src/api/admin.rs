//! Moderation: listing, reading, banning and unbanning profiles
//! (administrators).

use axum::extract::State;
use chrono::Utc;
use kit::auth::{Admin, Authorized};
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::MyProfile;
use super::profiles::search_key;
use crate::AppState;
use crate::domain::{Status, key_of};
use crate::error::UsersError;
use crate::store::Ban;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    pub q: Option<String>,
    /// `active`, `banned`, `erased` or `all` (default).
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Lists and searches every profile (administrators).
#[utoipa::path(get, path = "/v1/users/admin/users", tag = "admin", security(("bearer" = ["admin"])), params(AdminQuery),
    responses((status = 200, body = Page<MyProfile>), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn admin_list(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    query: Option<Query<AdminQuery>>,
) -> Result<Json<Page<MyProfile>>, UsersError> {
    let q = query.map(|q| q.0).unwrap_or(AdminQuery { q: None, status: None, limit: None, cursor: None });
    let page = PageRequest::<(String, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let statuses = match q.status.as_deref() {
        None | Some("all") => vec![Status::Active, Status::Banned, Status::Erased],
        Some("active") => vec![Status::Active],
        Some("banned") => vec![Status::Banned],
        Some("erased") => vec![Status::Erased],
        Some(other) => {
            return Err(UsersError::invalid(format!("status must be active, banned, erased or all, not {other:?}")));
        }
    };
    let prefix = key_of(q.q.as_deref().unwrap_or("").trim());
    let rows = state.store.search(&prefix, None, &statuses, page.after.clone(), page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, search_key, |hit| MyProfile::from(&hit.profile))))
}

/// Any profile, whole (administrators).
#[utoipa::path(get, path = "/v1/users/admin/users/{id}", tag = "admin", security(("bearer" = ["admin"])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn admin_get(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<MyProfile>, UsersError> {
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}

/// Why a user is banned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// 1 to 500 characters.
    #[schema(required = true, min_length = 1, max_length = 500, example = "spam")]
    pub reason: Option<String>,
}

/// Bans a user: their profile disappears for others, and auth disables the
/// account (through `user_banned`).
#[utoipa::path(post, path = "/v1/users/admin/users/{id}/ban", tag = "admin", security(("bearer" = ["admin"])), params(("id" = Uuid, Path)), request_body = BanRequest,
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn admin_ban(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<Admin>,
    Path(id): Path<Uuid>,
    Json(req): Json<BanRequest>,
) -> Result<Json<MyProfile>, UsersError> {
    let reason = req.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(UsersError::from(FieldErrors::single("reason", "is required, at most 500 characters")));
    }
    if id == admin.user_id {
        return Err(UsersError::invalid("you cannot ban yourself".to_owned()));
    }
    let ban = Ban { by: admin.user_id, reason };
    if !state.store.set_ban(id, Some(&ban), Utc::now()).await? {
        return Err(UsersError::no_such_user());
    }
    tracing::info!(user_id = %id, admin = %admin.user_id, "user banned");
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}

/// Lifts a ban (the account must be re-enabled in auth separately).
#[utoipa::path(post, path = "/v1/users/admin/users/{id}/unban", tag = "admin", security(("bearer" = ["admin"])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MyProfile), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn admin_unban(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<Uuid>,
) -> Result<Json<MyProfile>, UsersError> {
    if !state.store.set_ban(id, None, Utc::now()).await? {
        return Err(UsersError::no_such_user());
    }
    let p = state.store.profile(id).await?.ok_or_else(UsersError::no_such_user)?;
    Ok(Json(MyProfile::from(&p)))
}
