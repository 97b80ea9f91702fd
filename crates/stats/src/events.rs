//! What stats consumes: game's finished matches (the only source of its
//! numbers), display names from auth and users, and erasures.

use contracts::auth::UserRegistered;
use contracts::game::MatchFinished;
use contracts::users::{ProfileUpdated, UserErased};
use kit::bus::{Handlers, Rejected};

use crate::store::{self, ApplyError};

/// Stats' handlers.
pub fn handlers() -> Handlers {
    Handlers::new()
        .on::<MatchFinished, _>(|tx, e, _| {
            Box::pin(async move {
                match store::apply(tx, &e, chrono::Utc::now()).await {
                    Ok(_) => Ok(()),
                    // A result that contradicts itself is never half-counted:
                    // it goes to the dead letters for someone to look at.
                    Err(ApplyError::Inconsistent(why)) => Err(Rejected(format!("match {}: {why}", e.match_id)).into()),
                    Err(ApplyError::Database(err)) => Err(err.into()),
                }
            })
        })
        .on::<UserRegistered, _>(|tx, e, _| {
            Box::pin(async move {
                store::upsert_person(tx, e.user_id, &e.display_name, e.registered_at).await?;
                Ok(())
            })
        })
        .on::<ProfileUpdated, _>(|tx, e, _| {
            Box::pin(async move {
                store::upsert_person(tx, e.user_id, &e.display_name, e.updated_at).await?;
                Ok(())
            })
        })
        .on::<UserErased, _>(|tx, e, _| {
            Box::pin(async move {
                store::erase(tx, e.user_id, e.erased_at).await?;
                Ok(())
            })
        })
}
