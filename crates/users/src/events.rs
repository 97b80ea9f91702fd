//! What users publishes and what it consumes.

use chrono::{DateTime, Utc};
use contracts::auth::UserRegistered;
use contracts::users::{
    AvatarChanged, FriendshipChanged, FriendshipState, ProfileUpdated, UserBanned, UserBlocked, UserErased,
    UserUnblocked,
};
use contracts::{Envelope, Event};
use kit::bus::{Handlers, Tx};
use uuid::Uuid;

use crate::domain::{DisplayName, Profile};
use crate::store::Store;

/// The event types users consumes.
pub const CONSUMES: &[&str] = &[UserRegistered::TYPE];

/// Users' handlers: a profile for every new account.
pub fn handlers() -> Handlers {
    Handlers::new().on::<UserRegistered, _>(|tx, event, _meta| Box::pin(create_profile(tx, event)))
}

async fn create_profile(tx: &mut Tx, event: UserRegistered) -> anyhow::Result<()> {
    // Auth accepts names users may refuse (other scripts mixed, say); the
    // account still gets a profile, under a neutral name the user can change.
    let name = DisplayName::parse(&event.display_name)
        .or_else(|_| DisplayName::parse(&format!("user {}", &event.user_id.simple().to_string()[..12])))
        .map_err(|e| anyhow::anyhow!("no usable display name: {e}"))?;
    Store::create_profile(tx, event.user_id, &name, event.registered_at).await?;
    Ok(())
}

fn envelope<E: Event>(event: &E, trace: Option<&str>) -> Envelope {
    Envelope::new(event, trace.map(str::to_owned))
}

/// The address an avatar is served at; `v` changes with the picture so caches
/// can keep it for ever.
pub fn avatar_url(user: Uuid, etag: &str) -> String {
    format!("/v1/users/{user}/avatar?v={etag}")
}

pub fn profile_updated(p: &Profile, trace: Option<&str>) -> Envelope {
    envelope(
        &ProfileUpdated {
            user_id: p.user_id,
            display_name: p.display_name.clone(),
            locale: p.locale.clone(),
            timezone: p.timezone.clone(),
            updated_at: p.updated_at,
        },
        trace,
    )
}

pub fn avatar_changed(user: Uuid, etag: &str, at: DateTime<Utc>, trace: Option<&str>) -> Envelope {
    envelope(&AvatarChanged { user_id: user, avatar_url: avatar_url(user, etag), changed_at: at }, trace)
}

pub fn friendship_changed(
    actor: Uuid,
    other: Uuid,
    state: FriendshipState,
    at: DateTime<Utc>,
    trace: Option<&str>,
) -> Envelope {
    envelope(&FriendshipChanged { actor, other, state, changed_at: at }, trace)
}

pub fn user_blocked(blocker: Uuid, blocked: Uuid, at: DateTime<Utc>, trace: Option<&str>) -> Envelope {
    envelope(&UserBlocked { blocker, blocked, blocked_at: at }, trace)
}

pub fn user_unblocked(blocker: Uuid, blocked: Uuid, at: DateTime<Utc>, trace: Option<&str>) -> Envelope {
    envelope(&UserUnblocked { blocker, blocked, unblocked_at: at }, trace)
}

pub fn user_banned(user: Uuid, by: Uuid, reason: &str, at: DateTime<Utc>, trace: Option<&str>) -> Envelope {
    envelope(&UserBanned { user_id: user, banned_by: by, reason: reason.to_owned(), banned_at: at }, trace)
}

pub fn user_erased(user: Uuid, at: DateTime<Utc>, trace: Option<&str>) -> Envelope {
    envelope(&UserErased { user_id: user, erased_at: at }, trace)
}
