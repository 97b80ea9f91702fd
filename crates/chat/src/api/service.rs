//! What other services call: posting notices and cards into
//! conversations; what realtime calls: may a user subscribe to a
//! conversation's channel, and the socket's rpc methods.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kit::auth::{Caller, ServiceClient};
use kit::extract::Path;
use kit::{Fail, FieldErrors, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::MessageView;
use super::messages::{ReadMarker, post_text, read, type_in};
use crate::AppState;
use crate::domain::{self, Kind, MessageKind};
use crate::error::ChatError;
use crate::store::NewMessage;

/// The scope a service client needs to post into conversations.
pub const POST_SCOPE: &str = "chat:post";

/// What a card is about; clients pick how to draw it by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardKind {
    GameInvitation,
    TournamentCall,
    MarketplaceOffer,
}

/// A line of a card: "Points to win: 11".
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardField {
    #[schema(example = "Points to win")]
    pub label: String,
    #[schema(example = "11")]
    pub value: String,
}

/// How an action is sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionMethod {
    Post,
    Delete,
}

/// A button on a card: the client sends `method href` through the gateway
/// with the user's own token, to the service that posted the card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardAction {
    /// `accept`, `decline`, … (lower-case letters and `_`).
    #[schema(example = "accept")]
    pub name: String,
    #[schema(example = "Play")]
    pub label: String,
    pub method: ActionMethod,
    /// A path of Panal's API (`/v1/…`), never an outside address.
    #[schema(example = "/v1/game/invitations/01a23ce5-3f4f-7d4b-8ada-5bdc3de59327/accept")]
    pub href: String,
}

/// A structured message: typed, drawn by the client, with actions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Card {
    #[serde(rename = "type")]
    pub kind: CardKind,
    #[schema(example = "Ada invites you to a match")]
    pub title: String,
    /// The owning service's id of what the card is about (an invitation).
    #[schema(example = "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub reference: Option<String>,
    #[serde(default)]
    pub fields: Vec<CardField>,
    #[serde(default)]
    pub actions: Vec<CardAction>,
    /// After this the actions are void (the client greys them out).
    pub expires_at: Option<DateTime<Utc>>,
}

fn check_card(card: &Card, errors: &mut FieldErrors) {
    let short =
        |s: &str, max: usize| !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control);
    if !short(&card.title, 200) {
        errors.add("card.title", "must be 1 to 200 characters, no control characters");
    }
    if card.reference.as_deref().is_some_and(|r| !short(r, 100)) {
        errors.add("card.reference", "must be 1 to 100 characters");
    }
    if card.fields.len() > 10 || card.fields.iter().any(|f| !short(&f.label, 40) || !short(&f.value, 200)) {
        errors.add("card.fields", "at most 10, labels up to 40 characters, values up to 200");
    }
    if card.actions.len() > 4 {
        errors.add("card.actions", "at most 4");
    }
    for action in &card.actions {
        let name_ok =
            (1..=20).contains(&action.name.len()) && action.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        // Only Panal's own API: a card cannot send a user elsewhere.
        let href_ok = action.href.starts_with("/v1/")
            && action.href.len() <= 300
            && !action.href.contains("//")
            && !action.href.contains("..")
            && action.href.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok || !short(&action.label, 40) || !href_ok {
            errors.add(
                "card.actions",
                "each needs a name (lower-case letters and _), a label up to 40 characters and an href under /v1/",
            );
            break;
        }
    }
}

/// A notice or card a service posts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicePost {
    /// Where: a conversation…
    pub conversation_id: Option<Uuid>,
    /// …or the direct conversation between two users (opened if new).
    pub between: Option<[Uuid; 2]>,
    /// The user the card comes from (a game invitation's inviter): shown as
    /// its author, and subject to blocks like their own messages.
    pub on_behalf_of: Option<Uuid>,
    /// The text (a notice), or the card's fallback text. 1 to 2000 characters.
    #[schema(example = "Ada invites you to a match")]
    pub text: String,
    pub card: Option<Card>,
}

/// Posts a notice or a card (a service client with the `chat:post` scope).
#[utoipa::path(post, path = "/v1/chat/service/messages", tag = "service", security(("bearer" = [])),
    request_body = ServicePost,
    responses((status = 201, body = MessageView),
        (status = 403, description = "Not a service client with chat:post, or a block stands between the two users", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation or user", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn post_as_service(
    State(state): State<AppState>,
    client: ServiceClient,
    Json(body): Json<ServicePost>,
) -> Result<(StatusCode, Json<MessageView>), ChatError> {
    client.require_scope(POST_SCOPE)?;
    let mut errors = FieldErrors::new();
    let text = errors.check("text", domain::parse_body(&body.text, state.settings.max_message_chars));
    if let Some(card) = &body.card {
        check_card(card, &mut errors);
    }
    match (&body.conversation_id, &body.between) {
        (Some(_), Some(_)) | (None, None) => {
            errors.add("conversation_id", "give `conversation_id` or `between`, one of them")
        }
        (None, Some([a, b])) if a == b => errors.add("between", "must be two different users"),
        (None, Some([a, b])) if body.on_behalf_of.is_some_and(|u| u != *a && u != *b) => {
            errors.add("on_behalf_of", "must be one of `between`")
        }
        _ => {}
    }
    errors.finish()?;
    let text = text.unwrap_or_default();
    let now = Utc::now();
    let conversation = match (body.conversation_id, body.between) {
        (Some(id), _) => state.store.conversation(id).await?.ok_or_else(ChatError::no_such_conversation)?,
        (None, Some([a, b])) => {
            for user in [a, b] {
                if !state.store.person_exists(user).await? {
                    return Err(ChatError::not_found("no such user"));
                }
            }
            state.store.direct(a, b, now).await?.0
        }
        (None, None) => return Err(ChatError::no_such_conversation()),
    };
    if let Some(author) = body.on_behalf_of {
        if state.store.member(conversation.id, author).await?.is_none() {
            return Err(ChatError::not_found("`on_behalf_of` is not a member of this conversation"));
        }
        if conversation.kind == Kind::Direct {
            let members = state.store.members(conversation.id).await?;
            for other in members.iter().map(|m| m.user_id).filter(|u| *u != author) {
                if state.store.blocked(other, author).await? {
                    return Err(ChatError::forbidden("the other user blocked this one"));
                }
            }
        }
    }
    let card = body.card.as_ref().map(serde_json::to_value).transpose().map_err(ChatError::internal)?;
    let kind = if card.is_some() { MessageKind::Card } else { MessageKind::Notice };
    let new =
        NewMessage { conversation: &conversation, author: body.on_behalf_of, kind, body: &text, card: card.as_ref() };
    let message = state.store.post(new, now).await?;
    Ok((StatusCode::CREATED, Json(MessageView::from(&message))))
}

/// Realtime asks whether the caller may subscribe to `channel`
/// (`chat:<conversation>`): 204 for a member, 404 otherwise.
#[utoipa::path(get, path = "/v1/chat/realtime/channels/{channel}", tag = "service", security(("bearer" = [])),
    params(("channel" = String, Path, example = "chat:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")),
    responses((status = 204, description = "A member: may subscribe"),
        (status = 404, description = "Not a member, or no such conversation", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(channel): Path<String>,
) -> Result<StatusCode, ChatError> {
    let id = channel
        .strip_prefix("chat:")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(ChatError::no_such_conversation)?;
    match state.store.member(id, caller.user_id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ChatError::no_such_conversation()),
    }
}

/// `send`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRpc {
    conversation_id: Uuid,
    body: String,
}

/// `typing`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingRpc {
    conversation_id: Uuid,
}

/// `read`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadRpc {
    conversation_id: Uuid,
    seq: i64,
}

fn data<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ChatError> {
    serde_json::from_value(value).map_err(|e| ChatError::from(FieldErrors::single("data", e.to_string())))
}

/// The socket's rpc methods (realtime forwards `chat.<method>` here with
/// the user's token): `send` `{conversation_id, body}` → the message;
/// `typing` `{conversation_id}` → `{}`; `read` `{conversation_id, seq}` →
/// the marker. The same checks and answers as the HTTP operations.
#[utoipa::path(post, path = "/v1/chat/rpc/{method}", tag = "service", security(("bearer" = [])),
    params(("method" = String, Path, example = "send")),
    request_body(content = Object, example = json!({"conversation_id": "01a23ce5-3f4f-7d4b-8ada-5bdc3de59327", "body": "hi"})),
    responses((status = 200, description = "The method's result", body = Object),
        (status = 403, description = "As the HTTP operation", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such method or conversation", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "As the HTTP operation", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn rpc(
    State(state): State<AppState>,
    caller: Caller,
    Path(method): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ChatError> {
    let result = match method.as_str() {
        "send" => {
            let r: SendRpc = data(body)?;
            let message = post_text(&state, &caller, r.conversation_id, &r.body).await?;
            serde_json::to_value(MessageView::from(&message))
        }
        "typing" => {
            let r: TypingRpc = data(body)?;
            type_in(&state, &caller, r.conversation_id).await?;
            Ok(serde_json::json!({}))
        }
        "read" => {
            let r: ReadRpc = data(body)?;
            let marker: ReadMarker = read(&state, &caller, r.conversation_id, r.seq).await?;
            serde_json::to_value(marker)
        }
        _ => return Err(ChatError::from(Problem::not_found("no such method (send, typing, read)"))),
    };
    Ok(Json(result.map_err(ChatError::internal)?))
}
