//! What notify consumes: people (auth's and users' events) and the events
//! that become notifications. Each notification is decided in the
//! consumer's transaction ([`Store::notify`]), keyed by the event's id.

use chrono::Utc;
use contracts::auth::{PasswordChanged, UserLoggedIn, UserRegistered};
use contracts::game::InvitationSent;
use contracts::tournament::RoundStarted;
use contracts::users::{FriendshipChanged, FriendshipState, ProfileUpdated, UserErased};
use kit::bus::Handlers;
use kit::db::Tx;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{self, Kind};
use crate::store::{NotifyError, Store};

/// Notifies `to` of `kind` (nothing when notify does not know them: a
/// local tournament's alias, an erased account). `vars` get the person's
/// `name` and the notification's `link` (a path of the web app; e-mails
/// make it absolute).
async fn notify(tx: &mut Tx, event: Uuid, kind: Kind, to: Uuid, subject: &str, mut vars: Value) -> anyhow::Result<()> {
    // The delivery's time is when it was decided (the consumer may lag the
    // event).
    let now = Utc::now();
    let Some(recipient) = Store::recipient_in(tx, to).await? else { return Ok(()) };
    vars["name"] = json!(recipient.display_name);
    vars["link"] = json!(domain::path(kind, subject));
    match Store::notify(tx, event, kind, &recipient, &vars, now).await {
        Ok(_) => Ok(()),
        Err(NotifyError::Database(e)) => Err(e.into()),
        // Retrying would render the same way: a dead letter, at once.
        Err(e) => Err(kit::bus::Rejected(e.to_string()).into()),
    }
}

/// A person's name as notify knows it.
async fn name_of(tx: &mut Tx, user: Uuid) -> Result<String, sqlx::Error> {
    Ok(Store::recipient_in(tx, user).await?.map_or_else(|| "Someone".to_owned(), |r| r.display_name))
}

pub fn handlers() -> Handlers {
    Handlers::new()
        .on::<UserRegistered, _>(|tx, e, _| {
            Box::pin(async move {
                Store::registered(tx, e.user_id, &e.email, &e.display_name, e.registered_at).await?;
                Ok(())
            })
        })
        .on::<ProfileUpdated, _>(|tx, e, _| {
            Box::pin(async move {
                let (locale, tz) = (e.locale.as_deref(), e.timezone.as_deref());
                Store::profile(tx, e.user_id, &e.display_name, locale, tz, e.updated_at).await?;
                Ok(())
            })
        })
        .on::<UserErased, _>(|tx, e, _| {
            Box::pin(async move {
                Store::erase(tx, e.user_id, Utc::now()).await?;
                Ok(())
            })
        })
        .on::<FriendshipChanged, _>(|tx, e, meta| {
            Box::pin(async move {
                let kind = match e.state {
                    FriendshipState::Requested => Kind::FriendRequest,
                    FriendshipState::Accepted => Kind::FriendAccepted,
                    _ => return Ok(()),
                };
                let actor = name_of(tx, e.actor).await?;
                let vars = match kind {
                    Kind::FriendRequest => json!({"from": actor}),
                    _ => json!({"friend": actor}),
                };
                notify(tx, meta.id, kind, e.other, "", vars).await
            })
        })
        .on::<InvitationSent, _>(|tx, e, meta| {
            Box::pin(async move {
                if e.bot {
                    return Ok(());
                }
                let from = name_of(tx, e.from).await?;
                let subject = e.invitation_id.to_string();
                notify(tx, meta.id, Kind::GameInvitation, e.to, &subject, json!({"from": from})).await
            })
        })
        .on::<RoundStarted, _>(|tx, e, meta| {
            Box::pin(async move {
                let subject = e.tournament_id.to_string();
                for p in &e.pairings {
                    let Some(b) = p.b else { continue };
                    for (me, them) in [(p.a, b), (b, p.a)] {
                        let vars = json!({"round": e.round + 1, "opponent": name_of(tx, them).await?});
                        notify(tx, meta.id, Kind::TournamentMatch, me, &subject, vars).await?;
                    }
                }
                Ok(())
            })
        })
        .on::<UserLoggedIn, _>(|tx, e, meta| {
            Box::pin(async move {
                if !e.new_device {
                    return Ok(());
                }
                let device = e.device.clone().unwrap_or_else(|| "an unknown device".to_owned());
                notify(tx, meta.id, Kind::NewDevice, e.user_id, "", json!({"device": device})).await
            })
        })
        .on::<PasswordChanged, _>(|tx, e, meta| {
            Box::pin(
                async move { notify(tx, meta.id, Kind::PasswordChanged, e.user_id, "", json!({"how": e.how})).await },
            )
        })
}
