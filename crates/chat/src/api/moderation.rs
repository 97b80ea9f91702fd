//! The platform's moderators (`admin` or `moderator` role): reported
//! messages, and the audit log of every room.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use kit::auth::Caller;
use kit::extract::{Path, Query};
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::rooms::{AuditView, PageQuery, audit_page};
use crate::AppState;
use crate::domain;
use crate::error::ChatError;
use crate::store::AuditEntry;

fn moderator(caller: &Caller) -> Result<(), ChatError> {
    if super::is_moderator(caller) {
        Ok(())
    } else {
        Err(ChatError::from(Problem::forbidden("this needs the `moderator` or `admin` role")))
    }
}

/// A reported message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    pub id: Uuid,
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    /// Absent when the reporter erased their account.
    pub reporter_id: Option<Uuid>,
    #[schema(example = "insults")]
    pub reason: String,
    pub created_at: chrono::DateTime<Utc>,
    pub resolved_at: Option<chrono::DateTime<Utc>>,
    pub resolved_by: Option<Uuid>,
    #[schema(example = "message removed")]
    pub resolution: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    /// Only those not resolved yet (default true).
    pub open: Option<bool>,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Reported messages, newest first.
#[utoipa::path(get, path = "/v1/chat/moderation/reports", tag = "moderation", security(("bearer" = ["moderator"])),
    params(ReportsQuery), responses((status = 200, body = Page<ReportView>)))]
pub(super) async fn reports(
    State(state): State<AppState>,
    caller: Caller,
    query: Option<Query<ReportsQuery>>,
) -> Result<Json<Page<ReportView>>, ChatError> {
    moderator(&caller)?;
    let q = query.map(|q| q.0).unwrap_or(ReportsQuery { open: None, limit: None, cursor: None });
    let page = PageRequest::<Uuid>::parse(q.limit, q.cursor.as_deref())?;
    let rows = state.store.reports(q.open.unwrap_or(true), page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(
        rows,
        &page,
        |r| r.id,
        |r| ReportView {
            id: r.id,
            message_id: r.message_id,
            conversation_id: r.conversation_id,
            reporter_id: r.reporter_id,
            reason: r.reason,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            resolution: r.resolution,
        },
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What was done, up to 500 characters (kept in the audit log).
    #[schema(example = "message removed, author muted for a day")]
    pub resolution: String,
}

/// Closes a report with what was done about it.
#[utoipa::path(post, path = "/v1/chat/moderation/reports/{id}/resolve", tag = "moderation", security(("bearer" = ["moderator"])),
    params(("id" = Uuid, Path)), request_body = Resolve,
    responses((status = 204), (status = 404, description = "No such open report", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Resolve>,
) -> Result<StatusCode, ChatError> {
    moderator(&caller)?;
    let resolution = domain::parse_reason(&body.resolution).map_err(|e| FieldErrors::single("resolution", e))?;
    let entry = AuditEntry {
        conversation: None,
        actor: caller.user_id,
        action: "resolve_report",
        target_user: None,
        target_message: None,
        detail: &resolution,
    };
    if !state.store.resolve_report(&entry, id, Utc::now()).await? {
        return Err(ChatError::not_found("no such open report"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every moderation action in every room, newest first.
#[utoipa::path(get, path = "/v1/chat/moderation/audit", tag = "moderation", security(("bearer" = ["moderator"])),
    params(PageQuery), responses((status = 200, body = Page<AuditView>)))]
pub(super) async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Option<Query<PageQuery>>,
) -> Result<Json<Page<AuditView>>, ChatError> {
    moderator(&caller)?;
    audit_page(&state, None, query).await
}
