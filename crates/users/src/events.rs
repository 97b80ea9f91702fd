//! What users publishes and what it consumes.

use contracts::auth::UserRegistered;
use contracts::realtime::{PresenceChanged, PresenceSnapshot};
use contracts::users::ProfileUpdated;
use kit::bus::{Handlers, Tx};
use uuid::Uuid;

use crate::domain::{DisplayName, Profile};
use crate::store::Store;

/// Users' handlers: a profile for every new account; who is online, from
/// realtime.
pub fn handlers() -> Handlers {
    Handlers::new()
        .on::<UserRegistered, _>(|tx, event, _meta| Box::pin(create_profile(tx, event)))
        .on::<PresenceChanged, _>(|tx, e, _meta| {
            Box::pin(async move {
                Store::set_presence(tx, e.user_id, &e.replica, e.online, e.at, e.valid_secs).await?;
                Ok(())
            })
        })
        .on::<PresenceSnapshot, _>(|tx, e, _meta| {
            Box::pin(async move {
                for user in e.online {
                    Store::set_presence(tx, user, &e.replica, true, e.at, e.valid_secs).await?;
                }
                Ok(())
            })
        })
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

/// The address an avatar is served at; `v` changes with the picture so caches
/// can keep it for ever.
pub fn avatar_url(user: Uuid, etag: &str) -> String {
    format!("/v1/users/{user}/avatar?v={etag}")
}

pub fn profile_updated(p: &Profile) -> ProfileUpdated {
    ProfileUpdated {
        user_id: p.user_id,
        display_name: p.display_name.clone(),
        locale: p.locale.clone(),
        timezone: p.timezone.clone(),
        updated_at: p.updated_at,
    }
}
