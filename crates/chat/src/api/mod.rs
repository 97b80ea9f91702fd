//! Chat's HTTP API: where each request lands, by area.
//!
//! - rooms, membership and room moderation: [`rooms`]
//! - conversations, messages, read markers, typing, search: [`messages`]
//! - reports and the audit log for platform moderators: [`moderation`]
//! - what services and realtime call (cards, grants, rpc): [`service`]
//! - GDPR export: [`gdpr`]
//!
//! The views and the membership checks here are shared by all of them.

mod gdpr;
mod messages;
mod moderation;
mod rooms;
mod service;

use chrono::{DateTime, Utc};
use kit::Fail;
use kit::auth::Caller;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{self, Actor, Kind, MessageKind, Role, Visibility};
use crate::error::ChatError;
use crate::store::{Conversation, Listed, Member, Message};

pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(rooms::create_room, rooms::directory))
        .routes(routes!(rooms::get_room, rooms::update_room))
        .routes(routes!(rooms::join))
        .routes(routes!(rooms::leave))
        .routes(routes!(rooms::members))
        .routes(routes!(rooms::kick))
        .routes(routes!(rooms::set_role))
        .routes(routes!(rooms::mute, rooms::unmute))
        .routes(routes!(rooms::bans))
        .routes(routes!(rooms::ban, rooms::unban))
        .routes(routes!(rooms::invite))
        .routes(routes!(rooms::invitations))
        .routes(routes!(rooms::decline))
        .routes(routes!(rooms::room_audit))
        .routes(routes!(messages::conversations))
        .routes(routes!(messages::open_direct))
        .routes(routes!(messages::list_messages, messages::post_message))
        .routes(routes!(messages::edit_message, messages::delete_message))
        .routes(routes!(messages::mark_read))
        .routes(routes!(messages::typing))
        .routes(routes!(messages::search_messages))
        .routes(routes!(messages::report))
        .routes(routes!(moderation::reports))
        .routes(routes!(moderation::resolve))
        .routes(routes!(moderation::audit))
        .routes(routes!(service::post_as_service))
        .routes(routes!(service::grant))
        .routes(routes!(service::rpc))
        .routes(routes!(gdpr::export_chat_data))
        .with_state(state)
}

/// Whether the caller moderates every room (platform `admin` or `moderator`).
pub(crate) fn is_moderator(caller: &Caller) -> bool {
    domain::MODERATOR_ROLES.iter().any(|r| caller.has_role(r))
}

/// A person as chat shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Person {
    pub id: Uuid,
    #[schema(example = "Ada")]
    pub display_name: String,
    #[schema(example = "/v1/users/01a23ce5-3f4f-7d4b-8ada-5bdc3de59327/avatar?v=3")]
    pub avatar_url: Option<String>,
}

fn person(id: Uuid, name: Option<&String>, avatar: Option<&String>) -> Person {
    // A name chat has not heard of yet (users' event is on its way).
    Person { id, display_name: name.cloned().unwrap_or_else(|| "unknown user".to_owned()), avatar_url: avatar.cloned() }
}

/// A message as members see it. `body` is text exactly as written: clients
/// render it as text, never as markup.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Its number in the conversation: 1, 2, … (read markers and paging use it).
    #[schema(example = 42)]
    pub seq: i64,
    pub kind: MessageKind,
    /// Absent for a service's notice or card.
    pub author: Option<Person>,
    #[schema(example = "good game!")]
    pub body: String,
    /// Cards: the typed payload (docs/chat.md).
    #[schema(value_type = Option<Object>)]
    pub card: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// Deleted: a tombstone, its body and card gone.
    pub deleted: bool,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            kind: m.kind,
            author: m.author_id.map(|id| person(id, m.author_name.as_ref(), m.author_avatar.as_ref())),
            body: m.body.clone(),
            card: m.card.as_deref().and_then(|c| serde_json::from_str(c).ok()),
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted: m.deleted_at.is_some(),
        }
    }
}

/// A room.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub id: Uuid,
    #[schema(example = "pong-lovers")]
    pub name: String,
    #[schema(example = "Everything Pong")]
    pub topic: String,
    pub visibility: Visibility,
    /// Seconds a member waits between messages (0: off).
    #[schema(example = 0)]
    pub slow_mode_secs: i32,
    pub owner_id: Option<Uuid>,
    #[schema(example = 12)]
    pub members: i64,
    /// The caller's role; absent when not a member.
    pub my_role: Option<Role>,
    /// Where its messages are pushed (subscribe once a member).
    #[schema(example = "chat:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub channel: String,
    pub created_at: DateTime<Utc>,
}

impl RoomView {
    fn of(c: &Conversation, members: i64, my_role: Option<Role>) -> Self {
        Self {
            id: c.id,
            name: c.name.clone().unwrap_or_default(),
            topic: c.topic.clone(),
            visibility: c.visibility.unwrap_or(Visibility::Private),
            slow_mode_secs: c.slow_mode_secs,
            owner_id: c.owner_id,
            members,
            my_role,
            channel: domain::channel(c.id),
            created_at: c.created_at,
        }
    }
}

/// One of the caller's conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: Uuid,
    pub kind: Kind,
    /// Rooms: the name.
    pub name: Option<String>,
    /// Direct conversations: the other person.
    pub peer: Option<Person>,
    pub role: Role,
    /// Messages after the caller's read marker (not theirs, not deleted,
    /// not from people they blocked).
    #[schema(example = 3)]
    pub unread: i64,
    #[schema(example = 39)]
    pub last_read_seq: i64,
    #[schema(example = 42)]
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
    #[schema(example = "chat:01a23ce5-3f4f-7d4b-8ada-5bdc3de59327")]
    pub channel: String,
}

impl From<&Listed> for ConversationView {
    fn from(l: &Listed) -> Self {
        let c = &l.conversation;
        Self {
            id: c.id,
            kind: c.kind,
            name: c.name.clone(),
            peer: l.peer_id.map(|id| person(id, l.peer_name.as_ref(), l.peer_avatar.as_ref())),
            role: l.role,
            unread: l.unread,
            last_read_seq: l.last_read_seq,
            last_seq: c.last_seq,
            last_message_at: c.last_message_at,
            channel: domain::channel(c.id),
        }
    }
}

/// A member of a room.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user: Person,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub muted_until: Option<DateTime<Utc>>,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            user: person(m.user_id, m.display_name.as_ref(), m.avatar_url.as_ref()),
            role: m.role,
            joined_at: m.joined_at,
            muted_until: m.muted_until.filter(|u| *u > Utc::now()),
        }
    }
}

/// The conversation `id` and the caller's membership in it. Someone who is
/// not a member learns nothing from a private room or a direct
/// conversation (404); of a room they could see, they are told why they
/// cannot act (403).
pub(crate) async fn membership(state: &AppState, id: Uuid, user: Uuid) -> Result<(Conversation, Member), ChatError> {
    let conversation = state.store.conversation(id).await?.ok_or_else(ChatError::no_such_conversation)?;
    if let Some(member) = state.store.member(id, user).await? {
        return Ok((conversation, member));
    }
    let listed = conversation.kind == Kind::Room && conversation.visibility != Some(Visibility::Private);
    if state.store.banned(id, user).await? {
        return Err(ChatError::forbidden("you are banned from this room"));
    }
    if listed {
        return Err(ChatError::forbidden("you are not a member of this room; join it first"));
    }
    Err(ChatError::no_such_conversation())
}

/// The room `id` (a direct conversation is not one: 404).
pub(crate) async fn room(state: &AppState, id: Uuid) -> Result<Conversation, ChatError> {
    state.store.conversation(id).await?.filter(|c| c.kind == Kind::Room).ok_or_else(ChatError::no_such_conversation)
}

/// The caller as an actor in a room.
pub(crate) fn actor(caller: &Caller, member: Option<&Member>) -> Actor {
    Actor { role: member.map(|m| m.role), moderator: is_moderator(caller) }
}
