//! What chat consumes (users' names, avatars, blocks, erasures) and the
//! shape of what it pushes to sockets.

use contracts::ai::BotCreated;
use contracts::auth::UserRegistered;
use contracts::users::{AvatarChanged, ProfileUpdated, UserBlocked, UserErased, UserUnblocked};
use kit::bus::Handlers;

use crate::api::MessageView;
use crate::domain::MessageKind;
use crate::store::{Message, Store};

/// Chat's handlers: its copies of users' data.
pub fn handlers() -> Handlers {
    Handlers::new()
        .on::<UserRegistered, _>(|tx, e, _| {
            Box::pin(async move {
                // The first name; profile_updated (newer) wins when it came first.
                Store::upsert_person(tx, e.user_id, &e.display_name, None, e.registered_at).await?;
                Ok(())
            })
        })
        // The AI service's bots: people one can write to (a direct
        // conversation holds a game invitation to a bot), who never write.
        .on::<BotCreated, _>(|tx, e, _| {
            Box::pin(async move {
                Store::upsert_person(tx, e.bot_id, &e.name, None, e.created_at).await?;
                Ok(())
            })
        })
        .on::<ProfileUpdated, _>(|tx, e, _| {
            Box::pin(async move {
                Store::upsert_person(tx, e.user_id, &e.display_name, None, e.updated_at).await?;
                Ok(())
            })
        })
        .on::<AvatarChanged, _>(|tx, e, _| {
            Box::pin(async move {
                Store::set_avatar(tx, e.user_id, &e.avatar_url).await?;
                Ok(())
            })
        })
        .on::<UserBlocked, _>(|tx, e, _| {
            Box::pin(async move {
                Store::set_block(tx, e.blocker, e.blocked, true).await?;
                Ok(())
            })
        })
        .on::<UserUnblocked, _>(|tx, e, _| {
            Box::pin(async move {
                Store::set_block(tx, e.blocker, e.blocked, false).await?;
                Ok(())
            })
        })
        .on::<UserErased, _>(|tx, e, _| {
            Box::pin(async move {
                Store::erase(tx, e.user_id, e.erased_at).await?;
                Ok(())
            })
        })
}

/// What a conversation's subscribers receive about a message:
/// `{"type": "message" | "message_edited" | "message_deleted", "message": …}`,
/// the message as the HTTP API shows it.
pub fn message_pushed(what: &str, message: &Message) -> serde_json::Value {
    serde_json::json!({"type": what, "message": MessageView::from(message)})
}

pub fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Notice => "notice",
        MessageKind::Card => "card",
    }
}
