//! Friendships and blocks between two users.

use chrono::{DateTime, Utc};
use contracts::users::{FriendshipChanged, FriendshipState, UserBlocked, UserUnblocked};
use kit::db::Tx;
use kit::{with_db, with_tx};
use uuid::Uuid;

use super::{BlockedUser, PROFILE_BY_ID, PROFILE_COLUMNS, Relation, Store, StoreError};
use crate::domain::{self, Answer, Asked, Audience, Between, Friendship, Profile, Refusal, pair};

/// The friendship row and the blocks between `$3` (viewer) and `$4` (other);
/// `$1`, `$2` are their pair key.
const BETWEEN: &str = "SELECT
   (SELECT state FROM friendships WHERE user_low = $1 AND user_high = $2),
   (SELECT requested_by FROM friendships WHERE user_low = $1 AND user_high = $2),
   (SELECT count(*) FROM blocks WHERE blocker = $3 AND blocked = $4),
   (SELECT count(*) FROM blocks WHERE blocker = $4 AND blocked = $3)";

type BetweenRow = (Option<Friendship>, Option<Uuid>, i64, i64);

fn between_from((state, by, viewer_blocked, blocked_viewer): BetweenRow) -> Between {
    Between { friendship: state.zip(by), viewer_blocked: viewer_blocked > 0, blocked_viewer: blocked_viewer > 0 }
}

impl Store {
    /// The friendship and blocks between `viewer` and `other`.
    pub async fn between(&self, viewer: Uuid, other: Uuid) -> Result<Between, StoreError> {
        let (low, high) = pair(viewer, other);
        let row: BetweenRow = with_db!(&self.db, pool => sqlx::query_as(BETWEEN)
            .bind(low)
            .bind(high)
            .bind(viewer)
            .bind(other)
            .fetch_one(pool)
            .await)?;
        Ok(between_from(row))
    }

    /// `me` asks `other` to be friends: the facts are read, the rule
    /// ([`domain::friend_request`]) decides, and the answer is applied with
    /// its `friendship_changed`, all in one transaction.
    pub async fn request_friend(
        &self,
        me: Uuid,
        other: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Result<Asked, Refusal>, StoreError> {
        // Two requests crossing (each asking the other at once) can both find
        // no row; the one whose insert loses decides again and accepts.
        for _ in 0..2 {
            if let Some(outcome) = self.try_request_friend(me, other, now).await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::Database(sqlx::Error::Protocol("a friend request kept racing another".to_owned())))
    }

    /// One attempt; `None` when a concurrent request inserted the row first.
    async fn try_request_friend(
        &self,
        me: Uuid,
        other: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<Asked, Refusal>>, StoreError> {
        let (low, high) = pair(me, other);
        let mut tx = self.db.begin().await?;
        let target: Option<Profile> = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(PROFILE_BY_ID.as_str()))
        .bind(other)
        .fetch_optional(conn)
        .await)?;
        let row: BetweenRow = with_tx!(&mut tx, conn => sqlx::query_as(BETWEEN)
            .bind(low)
            .bind(high)
            .bind(me)
            .bind(other)
            .fetch_one(conn)
            .await)?;
        let asked = match domain::friend_request(me, other, target.as_ref(), &between_from(row)) {
            Ok(asked) => asked,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(Some(Err(refusal)));
            }
        };
        let state = match asked {
            Asked::Requested => {
                let inserted = with_tx!(&mut tx, conn => sqlx::query(
                    "INSERT INTO friendships (user_low, user_high, state, requested_by, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                )
                .bind(low)
                .bind(high)
                .bind(Friendship::Pending)
                .bind(me)
                .bind(now)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?;
                if inserted == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                FriendshipState::Requested
            }
            Asked::Accepted => {
                set_accepted(&mut tx, low, high, now).await?;
                FriendshipState::Accepted
            }
        };
        tx.record(&FriendshipChanged { actor: me, other, state, changed_at: now }).await?;
        tx.commit().await?;
        Ok(Some(Ok(asked)))
    }

    /// `me` answers the request or ends the friendship with `other`, recording
    /// `friendship_changed`. `false` when there is no such request or
    /// friendship.
    pub async fn answer(&self, me: Uuid, other: Uuid, answer: Answer, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (low, high) = pair(me, other);
        let (state, requested_by) = answer.acts_on(me, other);
        let mut tx = self.db.begin().await?;
        let found: Option<i32> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT 1 FROM friendships WHERE user_low = $1 AND user_high = $2 AND state = $3
               AND ($4 IS NULL OR requested_by = $4)",
        )
        .bind(low)
        .bind(high)
        .bind(state)
        .bind(requested_by)
        .fetch_optional(conn)
        .await)?;
        if found.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        if answer == Answer::Accept {
            set_accepted(&mut tx, low, high, now).await?;
        } else {
            with_tx!(&mut tx, conn => sqlx::query("DELETE FROM friendships WHERE user_low = $1 AND user_high = $2")
                .bind(low)
                .bind(high)
                .execute(conn)
                .await
                .map(|_| ()))?;
        }
        tx.record(&FriendshipChanged { actor: me, other, state: answer.outcome(), changed_at: now }).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// `me`'s friendships and requests, newest first, with the other side's
    /// profile.
    pub async fn relations(&self, me: Uuid) -> Result<Vec<Relation>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT f.state, f.requested_by, f.updated_at AS since, {PROFILE_COLUMNS}
             FROM friendships f
             JOIN profiles p ON p.user_id = CASE WHEN f.user_low = $1 THEN f.user_high ELSE f.user_low END
             WHERE f.user_low = $1 OR f.user_high = $1
             ORDER BY f.updated_at DESC"
        )))
        .bind(me)
        .fetch_all(pool)
        .await)?)
    }

    /// `me` blocks `other`: any friendship or request between them ends, and
    /// `user_blocked` is recorded. `false` when the block already existed.
    pub async fn block(&self, me: Uuid, other: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (low, high) = pair(me, other);
        let mut tx = self.db.begin().await?;
        let inserted = with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(me)
        .bind(other)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM friendships WHERE user_low = $1 AND user_high = $2")
            .bind(low)
            .bind(high)
            .execute(conn)
            .await
            .map(|_| ()))?;
        if inserted == 1 {
            tx.record(&UserBlocked { blocker: me, blocked: other, blocked_at: now }).await?;
        }
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Lifts `me`'s block on `other`, recording `user_unblocked`. `false` when
    /// there was none.
    pub async fn unblock(&self, me: Uuid, other: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let deleted = with_tx!(&mut tx, conn => sqlx::query("DELETE FROM blocks WHERE blocker = $1 AND blocked = $2")
            .bind(me)
            .bind(other)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
        if deleted == 1 {
            tx.record(&UserUnblocked { blocker: me, blocked: other, unblocked_at: now }).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// The users `me` has blocked, newest first.
    pub async fn blocks(&self, me: Uuid) -> Result<Vec<BlockedUser>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT b.created_at AS since, {PROFILE_COLUMNS}
             FROM blocks b JOIN profiles p ON p.user_id = b.blocked
             WHERE b.blocker = $1 ORDER BY b.created_at DESC"
        )))
        .bind(me)
        .fetch_all(pool)
        .await)?)
    }
}

async fn set_accepted(tx: &mut Tx, low: Uuid, high: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "UPDATE friendships SET state = $1, updated_at = $2 WHERE user_low = $3 AND user_high = $4",
    )
    .bind(Friendship::Accepted)
    .bind(now)
    .bind(low)
    .bind(high)
    .execute(conn)
    .await
    .map(|_| ()))
}

impl Store {
    /// Notes what `replica` says of `user` at `at`, unless it already said
    /// something newer.
    pub async fn set_presence(
        tx: &mut Tx,
        user: Uuid,
        replica: &str,
        online: bool,
        at: DateTime<Utc>,
        valid_secs: u32,
    ) -> Result<(), sqlx::Error> {
        let at_ms = at.timestamp_millis();
        let until_ms = at_ms + i64::from(valid_secs) * 1000;
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO presence (user_id, replica, online, at_ms, until_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, replica) DO UPDATE SET online = excluded.online, at_ms = excluded.at_ms,
                 until_ms = excluded.until_ms
             WHERE presence.at_ms <= excluded.at_ms",
        )
        .bind(user)
        .bind(replica)
        .bind(online)
        .bind(at_ms)
        .bind(until_ms)
        .execute(conn)
        .await
        .map(|_| ()))
    }

    /// Orders presence changes of one user: a write to their profile row
    /// first (a row lock until commit on PostgreSQL; the write lock on
    /// SQLite), so two replicas' announcements handled at once cannot each
    /// read the other's change as not yet made and both stay silent.
    pub async fn lock_presence(tx: &mut Tx, user: Uuid) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query("UPDATE profiles SET status = status WHERE user_id = $1")
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))
    }

    /// Whether some realtime replica vouches for `user` at `now`, read in
    /// the handler's transaction (before and after a presence change).
    pub async fn online_now(tx: &mut Tx, user: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        with_tx!(tx, conn => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM presence WHERE user_id = $1 AND online AND until_ms > $2")
            .bind(user)
            .bind(now.timestamp_millis())
            .fetch_one(conn)
            .await
            .map(|n| n > 0))
    }

    /// `user`'s friends and who `user` shows their online status to, in the
    /// handler's transaction; `None` for a user without an active profile.
    pub async fn status_audience(tx: &mut Tx, user: Uuid) -> Result<Option<(Audience, Vec<Uuid>)>, sqlx::Error> {
        let audience: Option<Audience> = with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT status_audience FROM profiles WHERE user_id = $1 AND status = 'active'")
            .bind(user)
            .fetch_optional(conn)
            .await)?;
        let Some(audience) = audience else { return Ok(None) };
        let friends: Vec<Uuid> = with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT CASE WHEN user_low = $1 THEN user_high ELSE user_low END FROM friendships
             WHERE (user_low = $1 OR user_high = $1) AND state = 'accepted'")
            .bind(user)
            .fetch_all(conn)
            .await)?;
        Ok(Some((audience, friends)))
    }

    /// Which of `users` some realtime replica vouches for at `now`.
    pub async fn online(
        &self,
        users: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let mut online = std::collections::HashSet::new();
        for part in users.chunks(500) {
            let list = (0..part.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
            let sql =
                format!("SELECT DISTINCT user_id FROM presence WHERE online AND until_ms > $1 AND user_id IN ({list})");
            let found: Vec<Uuid> = with_db!(&self.db, pool => {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(now.timestamp_millis());
                for user in part {
                    query = query.bind(*user);
                }
                query.fetch_all(pool).await
            })?;
            online.extend(found);
        }
        Ok(online)
    }
}
