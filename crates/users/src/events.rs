//! What users publishes and what it consumes.

use chrono::Utc;
use contracts::auth::UserRegistered;
use contracts::realtime::{PresenceChanged, PresenceSnapshot, Publication};
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
                Store::lock_presence(tx, e.user_id).await?;
                let before = Store::online_now(tx, e.user_id, Utc::now()).await?;
                Store::set_presence(tx, e.user_id, &e.replica, e.online, e.at, e.valid_secs).await?;
                tell_friends(tx, e.user_id, before).await
            })
        })
        .on::<PresenceSnapshot, _>(|tx, mut e, _meta| {
            Box::pin(async move {
                // Locked in one order, so two replicas' snapshots handled at
                // once cannot deadlock.
                e.online.sort_unstable();
                for user in e.online {
                    Store::lock_presence(tx, user).await?;
                    let before = Store::online_now(tx, user, Utc::now()).await?;
                    Store::set_presence(tx, user, &e.replica, true, e.at, e.valid_secs).await?;
                    tell_friends(tx, user, before).await?;
                }
                Ok(())
            })
        })
}

/// When `user` comes online or goes offline (whichever replica says so),
/// each friend who may see it is told on their own channel, in the
/// transaction that records the change: `{"type": "presence", "user_id",
/// "online"}`, ephemeral (the friends list is the state; this is the nudge
/// to show it). A replica that dies sends nothing: its word expires, and
/// lists read after that show the user offline.
async fn tell_friends(tx: &mut Tx, user: Uuid, before: bool) -> anyhow::Result<()> {
    let now = Store::online_now(tx, user, Utc::now()).await?;
    if now == before {
        return Ok(());
    }
    let Some((audience, friends)) = Store::status_audience(tx, user).await? else { return Ok(()) };
    if !audience.admits(false, true) {
        return Ok(());
    }
    for friend in friends {
        tx.record(&Publication {
            channel: format!("user:{friend}"),
            data: serde_json::json!({"type": "presence", "user_id": user, "online": now}),
            skip_users: Vec::new(),
            ephemeral: true,
        })
        .await?;
    }
    Ok(())
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
