//! Conversations and their messages: the caller's list with unread counts,
//! direct conversations, posting, editing, deleting, paging, read markers,
//! typing, search and reports.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use kit::auth::Caller;
use kit::extract::{Path, Query};
use kit::limit::Decision;
use kit::page::{Page, PageRequest};
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ConversationView, MessageView, actor, membership};
use crate::AppState;
use crate::domain::{self, Kind, MessageKind, PostRefusal, Role};
use crate::error::ChatError;
use crate::store::{AuditEntry, Conversation, Member, Message, NewMessage};

/// The caller's conversations, the most recently active first.
#[utoipa::path(get, path = "/v1/chat/conversations", tag = "messages", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConversationView>)))]
pub(super) async fn conversations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ConversationView>>, ChatError> {
    Ok(Json(state.store.conversations_of(caller.user_id).await?.iter().map(ConversationView::from).collect()))
}

/// Opens (or finds) the direct conversation with a user. Refused when
/// either has blocked the other.
#[utoipa::path(post, path = "/v1/chat/direct/{user}", tag = "messages", security(("bearer" = [])),
    params(("user" = Uuid, Path)),
    responses((status = 200, description = "It existed", body = ConversationView),
        (status = 201, description = "Opened", body = ConversationView),
        (status = 403, description = "A block stands between you", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Yourself", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn open_direct(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<Uuid>,
) -> Result<(StatusCode, Json<ConversationView>), ChatError> {
    let me = caller.user_id;
    if user == me {
        return Err(ChatError::conflict("a direct conversation is with someone else"));
    }
    if !state.store.person_exists(user).await? {
        return Err(ChatError::not_found("no such user"));
    }
    refuse_blocked(&state, me, user).await?;
    let (conversation, new) = state.store.direct(me, user, Utc::now()).await?;
    let view = state
        .store
        .conversation_of(me, conversation.id)
        .await?
        .as_ref()
        .map(ConversationView::from)
        .ok_or_else(ChatError::no_such_conversation)?;
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// 403 when `a` and `b` may not talk directly: one blocked the other.
async fn refuse_blocked(state: &AppState, me: Uuid, other: Uuid) -> Result<(), ChatError> {
    if state.store.blocked(other, me).await? {
        return Err(ChatError::forbidden("this user does not accept messages from you"));
    }
    if state.store.blocked(me, other).await? {
        return Err(ChatError::forbidden("you blocked this user; unblock them to write to them"));
    }
    Ok(())
}

/// The other member of a direct conversation.
async fn peer(state: &AppState, conversation: &Conversation, me: Uuid) -> Result<Option<Uuid>, ChatError> {
    if conversation.kind != Kind::Direct {
        return Ok(None);
    }
    Ok(state.store.members(conversation.id).await?.into_iter().map(|m| m.user_id).find(|u| *u != me))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Messages numbered below this, newest first (the default: the latest).
    pub before: Option<i64>,
    /// Messages numbered above this, oldest first (catching up).
    pub after: Option<i64>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
}

/// A page of messages, in conversation order.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    pub items: Vec<MessageView>,
    /// More lie beyond (pass the first item's `seq` as `before`, or the
    /// last one's as `after`, for the next page).
    pub has_more: bool,
}

/// Messages of a conversation the caller belongs to, by number: the latest
/// page, before a number (scrolling back) or after one (catching up).
/// Messages of people the caller blocked are left out; deleted ones are
/// tombstones.
#[utoipa::path(get, path = "/v1/chat/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), MessagesQuery),
    responses((status = 200, body = MessagesPage),
        (status = 403, description = "Not a member of this room", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    query: Option<Query<MessagesQuery>>,
) -> Result<Json<MessagesPage>, ChatError> {
    let q = query.map(|q| q.0).unwrap_or(MessagesQuery { before: None, after: None, limit: None });
    let mut errors = FieldErrors::new();
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        errors.add("limit", "must be between 1 and 100");
    }
    if q.before.is_some() && q.after.is_some() {
        errors.add("after", "goes without `before`: one direction at a time");
    }
    if q.before.is_some_and(|b| b < 1) {
        errors.add("before", "must be at least 1");
    }
    if q.after.is_some_and(|a| a < 0) {
        errors.add("after", "must be at least 0");
    }
    errors.finish()?;
    membership(&state, id, caller.user_id).await?;
    let mut rows = state.store.messages(id, caller.user_id, q.before, q.after, i64::from(limit) + 1).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if q.after.is_none() {
        rows.reverse();
    }
    Ok(Json(MessagesPage { items: rows.iter().map(MessageView::from).collect(), has_more }))
}

/// A message to post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// Text, 1 to 2000 characters (by default); markup is kept as text.
    #[schema(example = "good game!")]
    pub body: String,
}

/// Posts a message: stored, then delivered live to the conversation's
/// members (`chat:<id>`) — except those who blocked the author.
#[utoipa::path(post, path = "/v1/chat/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PostMessage,
    responses((status = 201, body = MessageView),
        (status = 403, description = "Not a member, muted, or blocked by the other person", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many messages, or slow mode; see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<PostMessage>,
) -> Result<(StatusCode, Json<MessageView>), ChatError> {
    let message = post_text(&state, &caller, id, &body.body).await?;
    Ok((StatusCode::CREATED, Json(MessageView::from(&message))))
}

/// Posting, over HTTP or the socket's rpc: every check, then the store.
pub(crate) async fn post_text(state: &AppState, caller: &Caller, id: Uuid, body: &str) -> Result<Message, ChatError> {
    let body =
        domain::parse_body(body, state.settings.max_message_chars).map_err(|e| FieldErrors::single("body", e))?;
    let (conversation, me) = membership(state, id, caller.user_id).await?;
    may_write(state, &conversation, &me, caller.user_id).await?;
    if let Decision::Deny { retry_after } = state.posting.check(&(caller.user_id, id)) {
        return Err(ChatError::TooMany {
            detail: format!(
                "at most {} messages a minute in one conversation (bursts of {})",
                state.settings.messages_per_minute, state.settings.message_burst
            ),
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
        });
    }
    let new = NewMessage {
        conversation: &conversation,
        author: Some(caller.user_id),
        kind: MessageKind::Text,
        body: &body,
        card: None,
    };
    Ok(state.store.post(new, Utc::now()).await?)
}

/// Whether `member` may write in `conversation` now: not muted, not in
/// slow mode, and in a direct conversation, no block between the two.
async fn may_write(state: &AppState, conversation: &Conversation, member: &Member, me: Uuid) -> Result<(), ChatError> {
    if let Some(other) = peer(state, conversation, me).await? {
        refuse_blocked(state, me, other).await?;
    }
    let slow = u32::try_from(conversation.slow_mode_secs).unwrap_or(0);
    match domain::may_post(member.role, member.muted_until, slow, member.last_posted_at, Utc::now()) {
        Ok(()) => Ok(()),
        Err(PostRefusal::Muted(until)) => {
            Err(ChatError::forbidden(format!("you are muted in this room until {}", until.to_rfc3339())))
        }
        Err(PostRefusal::SlowMode(wait)) => Err(ChatError::TooMany {
            detail: format!("this room is in slow mode: one message every {slow} s"),
            retry_after_secs: wait,
        }),
    }
}

/// The message `mid` of conversation `id`, with the caller's membership.
async fn message_of(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    mid: Uuid,
) -> Result<(Conversation, Member, Message), ChatError> {
    let (conversation, me) = membership(state, id, caller.user_id).await?;
    let message = state.store.message(id, mid).await?.ok_or_else(|| ChatError::not_found("no such message"))?;
    Ok((conversation, me, message))
}

/// Edits one's own message.
#[utoipa::path(patch, path = "/v1/chat/conversations/{id}/messages/{message}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message" = Uuid, Path)), request_body = PostMessage,
    responses((status = 200, body = MessageView),
        (status = 403, description = "Not the author", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The message was deleted", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn edit_message(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, mid)): Path<(Uuid, Uuid)>,
    Json(body): Json<PostMessage>,
) -> Result<Json<MessageView>, ChatError> {
    let text =
        domain::parse_body(&body.body, state.settings.max_message_chars).map_err(|e| FieldErrors::single("body", e))?;
    let (_, _, message) = message_of(&state, &caller, id, mid).await?;
    if message.author_id != Some(caller.user_id) || message.kind != MessageKind::Text {
        return Err(ChatError::forbidden("only its author edits a message"));
    }
    if message.deleted_at.is_some() {
        return Err(ChatError::conflict("this message was deleted"));
    }
    let revised = state.store.revise(&message, Some(&text), None, Utc::now()).await?;
    Ok(Json(MessageView::from(&revised)))
}

/// Deletes a message: its author, a room admin, or a platform moderator
/// (those two are audited). A tombstone stays in its place.
#[utoipa::path(delete, path = "/v1/chat/conversations/{id}/messages/{message}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Neither the author nor a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn delete_message(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, mid)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ChatError> {
    let moderator = super::is_moderator(&caller);
    let (conversation, me, message) = match message_of(&state, &caller, id, mid).await {
        Ok(found) => (Some(found.0), Some(found.1), found.2),
        // Platform moderators act in conversations they are not in.
        Err(_) if moderator => {
            (None, None, state.store.message(id, mid).await?.ok_or_else(|| ChatError::not_found("no such message"))?)
        }
        Err(e) => return Err(e),
    };
    if message.deleted_at.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let own = message.author_id == Some(caller.user_id);
    let room_admin = conversation.as_ref().is_some_and(|c| c.kind == Kind::Room)
        && actor(&caller, me.as_ref()).role.is_some_and(|r| r >= Role::Admin);
    if !own && !room_admin && !moderator {
        return Err(ChatError::forbidden("only its author or a moderator deletes a message"));
    }
    let entry = AuditEntry {
        conversation: Some(id),
        actor: caller.user_id,
        action: "delete_message",
        target_user: message.author_id,
        target_message: Some(message.id),
        detail: "",
    };
    state.store.revise(&message, None, (!own).then_some(&entry), Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The number of the last message read.
    #[schema(example = 42)]
    pub seq: i64,
}

/// The caller's read marker in a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadMarker {
    #[schema(example = 42)]
    pub last_read_seq: i64,
}

/// Moves the caller's read marker forward (never back, never past the last
/// message); their other devices hear of it on `user:<id>`.
#[utoipa::path(put, path = "/v1/chat/conversations/{id}/read", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReadRequest,
    responses((status = 200, body = ReadMarker),
        (status = 403, description = "Not a member of this room", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ReadRequest>,
) -> Result<Json<ReadMarker>, ChatError> {
    Ok(Json(read(&state, &caller, id, body.seq).await?))
}

pub(crate) async fn read(state: &AppState, caller: &Caller, id: Uuid, seq: i64) -> Result<ReadMarker, ChatError> {
    if seq < 0 {
        return Err(FieldErrors::single("seq", "must be at least 0").into());
    }
    membership(state, id, caller.user_id).await?;
    Ok(ReadMarker { last_read_seq: state.store.mark_read(id, caller.user_id, seq).await? })
}

/// Tells the conversation the caller is typing (delivered live, never
/// kept; not to members who blocked the caller). Clients send it at most
/// every few seconds while typing.
#[utoipa::path(post, path = "/v1/chat/conversations/{id}/typing", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204),
        (status = 403, description = "Not a member, muted, or blocked", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Slow mode; see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn typing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ChatError> {
    type_in(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn type_in(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ChatError> {
    let (conversation, me) = membership(state, id, caller.user_id).await?;
    may_write(state, &conversation, &me, caller.user_id).await?;
    Ok(state.store.typing(id, caller.user_id).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words; a message matches when it holds every one (whole words,
    /// without regard to case).
    pub q: String,
    /// 1 to 50 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Full-text search over the conversations the caller belongs to, newest
/// first. The same words find the same messages on SQLite and PostgreSQL.
#[utoipa::path(get, path = "/v1/chat/search", tag = "messages", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Page<MessageView>)))]
pub(super) async fn search_messages(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Page<MessageView>>, ChatError> {
    let page = PageRequest::<Uuid>::parse(q.limit, q.cursor.as_deref())?;
    if q.q.chars().count() > 200 {
        return Err(FieldErrors::single("q", "must be at most 200 characters").into());
    }
    let mut words = domain::search_words(&q.q);
    words.sort();
    words.dedup();
    if words.is_empty() {
        return Err(FieldErrors::single("q", "must hold at least one word (letters or digits)").into());
    }
    if words.len() > 10 {
        return Err(FieldErrors::single("q", "must hold at most 10 words").into());
    }
    let rows = state.store.search(caller.user_id, &words, page.after, page.sql_limit()).await?;
    Ok(Json(Page::of(rows, &page, |m| m.id, |m| MessageView::from(&m))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// Why, up to 500 characters.
    #[schema(example = "insults")]
    pub reason: String,
}

/// A report, as filed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reported {
    pub id: Uuid,
}

/// Reports a message to the platform's moderators.
#[utoipa::path(post, path = "/v1/chat/conversations/{id}/messages/{message}/reports", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message" = Uuid, Path)), request_body = ReportRequest,
    responses((status = 201, body = Reported),
        (status = 403, description = "Not a member of this room", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, mid)): Path<(Uuid, Uuid)>,
    Json(body): Json<ReportRequest>,
) -> Result<(StatusCode, Json<Reported>), ChatError> {
    let reason = domain::parse_reason(&body.reason).map_err(|e| FieldErrors::single("reason", e))?;
    if reason.is_empty() {
        return Err(FieldErrors::single("reason", "must say why").into());
    }
    let (_, _, message) = message_of(&state, &caller, id, mid).await?;
    let id = state.store.report(&message, caller.user_id, &reason, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(Reported { id })))
}
