//! What auth consumes: users' erasures and bans end the account's sign-in.

use kit::bus::Handlers;

use crate::store::Store;

/// Auth's event handlers: an erased user's account is erased, a banned one's
/// disabled.
pub(crate) fn handlers() -> Handlers {
    Handlers::new()
        .on::<contracts::users::UserErased, _>(|tx, e, _meta| {
            Box::pin(async move { Ok(Store::erase_account(tx, e.user_id, e.erased_at).await?) })
        })
        .on::<contracts::users::UserBanned, _>(|tx, e, _meta| {
            Box::pin(async move {
                Store::disable_account(tx, e.user_id, "banned", None, e.banned_at).await?;
                Ok(())
            })
        })
}
