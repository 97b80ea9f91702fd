//! Invitations to a match: the SQL. Sent as a card in the two users'
//! direct conversation (chat), accepted or declined by the invitee (or
//! withdrawn by the inviter); an accepted one becomes a live match with both
//! seated, and both players are told on their `user:` channel, in the same
//! transaction.

use chrono::{DateTime, Utc};
use contracts::game::InvitationSent;
use kit::db::Db;
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::{Mode, Options};
use crate::store::StoreError;

/// How long an invitation stands.
pub const VALID_FOR_SECS: i64 = 300;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitation {
    pub id: Uuid,
    pub from_user: Uuid,
    pub to_user: Uuid,
    pub mode: String,
    pub options: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub match_id: Option<Uuid>,
}

const COLUMNS: &str = "id, from_user, to_user, mode, options, status, created_at, expires_at, answered_at, match_id";

/// What the caller does with an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// The invitee declines, or the inviter withdraws.
    Decline,
}

pub struct Invitations {
    db: Db,
}

impl Invitations {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn create(
        &self,
        id: Uuid,
        from: Uuid,
        to: Uuid,
        options: &Options,
        now: DateTime<Utc>,
    ) -> Result<Invitation, sqlx::Error> {
        let options = serde_json::to_string(options).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let expires_at = now + chrono::Duration::seconds(VALID_FOR_SECS);
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO invitations (id, from_user, to_user, mode, options, status, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)")
            .bind(id).bind(from).bind(to).bind(Mode::Duel.as_str()).bind(&options).bind(now).bind(expires_at)
            .execute(conn).await.map(|_| ()))?;
        // Notify tells the person invited; for a bot, the AI service
        // answers in its name.
        let bot: bool = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM bots WHERE user_id = $1)").bind(to).fetch_one(conn).await)?;
        tx.record(&InvitationSent { invitation_id: id, from, to, bot, invited_at: now, expires_at }).await?;
        tx.commit().await?;
        self.get(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Every invitation `user` sent or received, oldest first (their export).
    pub async fn all_of(&self, user: Uuid) -> Result<Vec<Invitation>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as::<_, Invitation>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE from_user = $1 OR to_user = $1 ORDER BY created_at, id")))
            .bind(user).fetch_all(pool).await)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Invitation>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as::<_, Invitation>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE id = $1"))).bind(id).fetch_optional(pool).await)
    }

    /// The caller's pending invitations, sent and received, newest first.
    pub async fn pending(&self, user: Uuid, now: DateTime<Utc>) -> Result<Vec<Invitation>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as::<_, Invitation>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations
             WHERE (to_user = $1 OR from_user = $1) AND status = 'pending' AND expires_at > $2
             ORDER BY created_at DESC LIMIT 50"))).bind(user).bind(now).fetch_all(pool).await)
    }

    /// Answers a pending invitation. Accepting creates the match with both
    /// players (live at once), marks the invitation, and tells both players
    /// on their `user:` channels — one transaction. Returns the match id.
    pub async fn answer(
        &self,
        id: Uuid,
        user: Uuid,
        answer: Answer,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.db.begin().await?;
        let invitation: Option<Invitation> = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE id = $1"))).bind(id).fetch_optional(conn).await)?;
        let Some(inv) = invitation else { return Err(StoreError::NotFound) };
        let invitee = inv.to_user == user;
        let status = match (answer, invitee, inv.from_user == user) {
            (_, false, false) => return Err(StoreError::Forbidden("this invitation is not yours")),
            (Answer::Accept, false, true) => return Err(StoreError::Forbidden("only the invited player accepts")),
            (Answer::Accept, true, _) => "accepted",
            (Answer::Decline, true, _) => "declined",
            (Answer::Decline, false, true) => "withdrawn",
        };
        if inv.status != "pending" {
            return Err(StoreError::Refused("the invitation was answered already"));
        }
        if inv.expires_at <= now {
            return Err(StoreError::Refused("the invitation has expired"));
        }
        let match_id = if answer == Answer::Accept {
            let options: Options = serde_json::from_str(&inv.options).unwrap_or_default();
            let players = [inv.from_user, inv.to_user];
            Some(crate::store::seat_all(&mut tx, &players, Mode::Duel, &options, "invitation", now).await?)
        } else {
            None
        };
        // Only a pending one changes: two answers racing, one wins.
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE invitations SET status = $2, answered_at = $3, match_id = $4 WHERE id = $1 AND status = 'pending'")
            .bind(id).bind(status).bind(now).bind(match_id)
            .execute(conn).await.map(|r| r.rows_affected()))?;
        if changed == 0 {
            tx.rollback().await?;
            return Err(StoreError::Refused("the invitation was answered already"));
        }
        tx.commit().await?;
        Ok(match_id)
    }
}
