//! GDPR export (art. 15 and 20): what chat holds about the caller. Erasure
//! comes from users' `user_erased` (see [`crate::store::Store::erase`]).

use axum::extract::State;
use kit::Json;
use kit::auth::Caller;

use super::MessageView;
use crate::AppState;
use crate::error::ChatError;

/// What chat holds about the caller: their conversations and roles, the
/// messages they wrote, their invitations and the reports they filed.
#[utoipa::path(get, path = "/v1/chat/me/export", tag = "chat", security(("bearer" = [])),
    responses((status = 200, description = "Chat's part of the archive", body = Object)))]
pub(super) async fn export_chat_data(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = caller.user_id;
    let conversations = state.store.conversations_of(id).await?;
    let messages = state.store.authored(id).await?;
    let invitations = state.store.invitations(id).await?;
    let reports = state.store.reports_by(id).await?;
    Ok(Json(serde_json::json!({
        "conversations": conversations.iter().map(|l| serde_json::json!({
            "id": l.conversation.id, "kind": l.conversation.kind, "name": l.conversation.name,
            "role": l.role, "last_read_seq": l.last_read_seq })).collect::<Vec<_>>(),
        "messages": messages.iter().map(MessageView::from).collect::<Vec<_>>(),
        "invitations": invitations.iter().map(|i| serde_json::json!({
            "room_id": i.conversation_id, "invited_by": i.invited_by, "invited_at": i.invited_at })).collect::<Vec<_>>(),
        "reports": reports.iter().map(|r| serde_json::json!({
            "message_id": r.message_id, "reason": r.reason, "created_at": r.created_at })).collect::<Vec<_>>(),
    })))
}
