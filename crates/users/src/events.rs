//! What users publishes and what it consumes.

use contracts::auth::UserRegistered;
use contracts::users::ProfileUpdated;
use kit::bus::{Handlers, Tx};
use uuid::Uuid;

use crate::domain::{DisplayName, Profile};
use crate::store::Store;

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
