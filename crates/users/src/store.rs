//! Users' SQL, on SQLite and PostgreSQL. Reads go through `with_db!`; every
//! change is one transaction (`Tx`) that also writes its event to the outbox.

use chrono::{DateTime, Utc};
use contracts::Event;
use contracts::users::{FriendshipChanged, FriendshipState};
use kit::db::{Db, Tx, is_unique_violation};
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::{Audience, DisplayName, Privacy, Profile, Status, pair};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this display name is taken")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

type ProfileRow = (
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    DateTime<Utc>,
);

const PROFILE_COLUMNS: &str = "p.user_id, p.display_name, p.bio, p.locale, p.timezone, p.profile_audience, p.status_audience, \
     p.requests_audience, p.avatar_etag, p.status, p.banned_reason, p.last_seen_at, p.created_at, p.updated_at";

fn profile_from(r: ProfileRow) -> Profile {
    let (
        user_id,
        display_name,
        bio,
        locale,
        timezone,
        profile,
        online,
        requests,
        avatar_etag,
        status,
        banned_reason,
        last_seen_at,
        created_at,
        updated_at,
    ) = r;
    Profile {
        user_id,
        display_name,
        bio,
        locale,
        timezone,
        privacy: Privacy {
            profile: Audience::parse(&profile),
            online_status: Audience::parse(&online),
            friend_requests: Audience::parse(&requests),
        },
        avatar_etag,
        status: Status::parse(&status),
        banned_reason,
        last_seen_at,
        created_at,
        updated_at,
    }
}

/// The changes `PUT /v1/users/me` asks for; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub display_name: Option<DisplayName>,
    pub bio: Option<String>,
    pub locale: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
    pub privacy: Option<Privacy>,
}

/// What asking someone to be friends did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Requested,
    /// They had asked first: now friends.
    Accepted,
    AlreadyRequested,
    AlreadyFriends,
    /// Either has blocked the other.
    Blocked,
}

/// A friendship or request, seen from one side.
#[derive(Debug, Clone)]
pub struct Relation {
    pub other: Profile,
    pub state: String,
    pub requested_by: Uuid,
    pub since: DateTime<Utc>,
}

/// Everything between two users, in one query.
#[derive(Debug, Clone, Default)]
pub struct Between {
    /// `pending` or `accepted`, when there is a row.
    pub state: Option<String>,
    pub requested_by: Option<Uuid>,
    /// The viewer blocked the other.
    pub viewer_blocked: bool,
    /// The other blocked the viewer.
    pub blocked_viewer: bool,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates the profile of a new account in the event handler's
    /// transaction, once: a second delivery finds it. A taken name gets a
    /// number (`Ada 2`); the user can change it.
    pub async fn create_profile(
        tx: &mut Tx,
        user: Uuid,
        name: &DisplayName,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let exists: Option<i32> = with_tx!(tx, conn => sqlx::query_scalar("SELECT 1 FROM profiles WHERE user_id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await)?;
        if exists.is_some() {
            return Ok(());
        }
        for n in 1..=1000u32 {
            let candidate = if n == 1 { name.clone() } else { name.with_suffix(n) };
            let inserted = with_tx!(tx, conn => sqlx::query(
                "INSERT INTO profiles (user_id, display_name, display_name_key, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(candidate.as_str())
            .bind(candidate.key())
            .bind(now)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
            if inserted == 1 {
                return Ok(());
            }
        }
        // A thousand namesakes: fall back on the id, which is unique.
        let fallback =
            DisplayName::parse(&format!("user {}", &user.simple().to_string()[..12])).map_err(sqlx::Error::Protocol)?;
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO profiles (user_id, display_name, display_name_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(user)
        .bind(fallback.as_str())
        .bind(fallback.key())
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ()))
    }

    pub async fn profile(&self, user: Uuid) -> Result<Option<Profile>, StoreError> {
        let row: Option<ProfileRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles p WHERE p.user_id = $1"
        )))
        .bind(user)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(profile_from))
    }

    /// Applies `changes` and records `profile_updated`.
    pub async fn update_profile(
        &self,
        user: Uuid,
        changes: &ProfileChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<Profile>, StoreError> {
        let Some(mut p) = self.profile(user).await? else { return Ok(None) };
        let mut key = None;
        if let Some(name) = &changes.display_name {
            p.display_name = name.as_str().to_owned();
            key = Some(name.key().to_owned());
        }
        if let Some(bio) = &changes.bio {
            p.bio = bio.clone();
        }
        if let Some(locale) = &changes.locale {
            p.locale = locale.clone();
        }
        if let Some(tz) = &changes.timezone {
            p.timezone = tz.clone();
        }
        if let Some(privacy) = changes.privacy {
            p.privacy = privacy;
        }
        p.updated_at = now;
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.db.begin().await?;
            with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE profiles SET display_name = $1, display_name_key = COALESCE($2, display_name_key), bio = $3,
                   locale = $4, timezone = $5, profile_audience = $6, status_audience = $7, requests_audience = $8,
                   updated_at = $9
                 WHERE user_id = $10",
            )
            .bind(&p.display_name)
            .bind(key.as_deref())
            .bind(&p.bio)
            .bind(p.locale.as_deref())
            .bind(p.timezone.as_deref())
            .bind(p.privacy.profile.as_str())
            .bind(p.privacy.online_status.as_str())
            .bind(p.privacy.friend_requests.as_str())
            .bind(now)
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))?;
            tx.record(&crate::events::profile_updated(&p)).await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::NameTaken),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(Some(p)),
        }
    }

    /// Sets (or with `None` clears) the avatar version and records `event`;
    /// returns the previous version.
    pub async fn set_avatar(
        &self,
        user: Uuid,
        etag: Option<&str>,
        now: DateTime<Utc>,
        event: &impl Event,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.db.begin().await?;
        let previous: Option<Option<String>> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT avatar_etag FROM profiles WHERE user_id = $1")
                .bind(user)
                .fetch_optional(conn)
                .await)?;
        with_tx!(&mut tx, conn => sqlx::query("UPDATE profiles SET avatar_etag = $1, updated_at = $2 WHERE user_id = $3")
            .bind(etag)
            .bind(now)
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))?;
        tx.record(event).await?;
        tx.commit().await?;
        Ok(previous.flatten())
    }

    /// Notes that the user was active, at most once a minute (a write per
    /// request would be wasteful).
    pub async fn touch(&self, user: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE profiles SET last_seen_at = $1 WHERE user_id = $2 AND (last_seen_at IS NULL OR last_seen_at < $3)",
        )
        .bind(now)
        .bind(user)
        .bind(now - chrono::Duration::seconds(60))
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The friendship and blocks between `viewer` and `other`.
    pub async fn between(&self, viewer: Uuid, other: Uuid) -> Result<Between, StoreError> {
        let (low, high) = pair(viewer, other);
        let row: (Option<String>, Option<Uuid>, i64, i64) = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT
               (SELECT state FROM friendships WHERE user_low = $1 AND user_high = $2),
               (SELECT requested_by FROM friendships WHERE user_low = $1 AND user_high = $2),
               (SELECT count(*) FROM blocks WHERE blocker = $3 AND blocked = $4),
               (SELECT count(*) FROM blocks WHERE blocker = $4 AND blocked = $3)",
        )
        .bind(low)
        .bind(high)
        .bind(viewer)
        .bind(other)
        .fetch_one(pool)
        .await)?;
        Ok(Between { state: row.0, requested_by: row.1, viewer_blocked: row.2 > 0, blocked_viewer: row.3 > 0 })
    }

    /// Whether `a` blocked `b`.
    pub async fn blocked(&self, a: Uuid, b: Uuid) -> Result<bool, StoreError> {
        let hit: Option<i32> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(pool)
        .await)?;
        Ok(hit.is_some())
    }

    /// The friendship row between `a` and `b`: `(state, requested_by)`.
    pub async fn relation(&self, a: Uuid, b: Uuid) -> Result<Option<(String, Uuid)>, StoreError> {
        let (low, high) = pair(a, b);
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT state, requested_by FROM friendships WHERE user_low = $1 AND user_high = $2",
        )
        .bind(low)
        .bind(high)
        .fetch_optional(pool)
        .await)?)
    }

    /// `me` asks `other` to be friends (or accepts their pending request),
    /// recording `friendship_changed` when something changed.
    pub async fn request_friend(
        &self,
        me: Uuid,
        other: Uuid,
        now: DateTime<Utc>,
    ) -> Result<RequestOutcome, StoreError> {
        let (low, high) = pair(me, other);
        let mut tx = self.db.begin().await?;
        let blocked: Option<i32> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT 1 FROM blocks WHERE (blocker = $1 AND blocked = $2) OR (blocker = $2 AND blocked = $1)",
        )
        .bind(me)
        .bind(other)
        .fetch_optional(conn)
        .await)?;
        if blocked.is_some() {
            tx.rollback().await?;
            return Ok(RequestOutcome::Blocked);
        }
        let existing: Option<(String, Uuid)> = with_tx!(&mut tx, conn => sqlx::query_as(
            "SELECT state, requested_by FROM friendships WHERE user_low = $1 AND user_high = $2",
        )
        .bind(low)
        .bind(high)
        .fetch_optional(conn)
        .await)?;
        let outcome = match existing {
            None => {
                with_tx!(&mut tx, conn => sqlx::query(
                    "INSERT INTO friendships (user_low, user_high, state, requested_by, created_at, updated_at)
                     VALUES ($1, $2, 'pending', $3, $4, $4)",
                )
                .bind(low)
                .bind(high)
                .bind(me)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ()))?;
                RequestOutcome::Requested
            }
            Some((state, by)) if state == "pending" && by == other => {
                with_tx!(&mut tx, conn => sqlx::query(
                    "UPDATE friendships SET state = 'accepted', updated_at = $1 WHERE user_low = $2 AND user_high = $3",
                )
                .bind(now)
                .bind(low)
                .bind(high)
                .execute(conn)
                .await
                .map(|_| ()))?;
                RequestOutcome::Accepted
            }
            Some((state, _)) if state == "pending" => RequestOutcome::AlreadyRequested,
            Some(_) => RequestOutcome::AlreadyFriends,
        };
        let state = match outcome {
            RequestOutcome::Requested => Some(FriendshipState::Requested),
            RequestOutcome::Accepted => Some(FriendshipState::Accepted),
            _ => None,
        };
        if let Some(state) = state {
            tx.record(&FriendshipChanged { actor: me, other, state, changed_at: now }).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Accepts the pending request `requester` sent `me`. `false` when there is none.
    pub async fn accept_friend(
        &self,
        me: Uuid,
        requester: Uuid,
        now: DateTime<Utc>,
        event: &impl Event,
    ) -> Result<bool, StoreError> {
        let (low, high) = pair(me, requester);
        let mut tx = self.db.begin().await?;
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE friendships SET state = 'accepted', updated_at = $1
             WHERE user_low = $2 AND user_high = $3 AND state = 'pending' AND requested_by = $4",
        )
        .bind(now)
        .bind(low)
        .bind(high)
        .bind(requester)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed == 1 {
            tx.record(event).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Deletes the row between `me` and `other` when it is in `state` and (for
    /// requests) was sent by `requested_by`. `false` when there is none.
    pub async fn end_relation(
        &self,
        me: Uuid,
        other: Uuid,
        state: &str,
        requested_by: Option<Uuid>,
        event: &impl Event,
    ) -> Result<bool, StoreError> {
        let (low, high) = pair(me, other);
        let mut tx = self.db.begin().await?;
        let deleted = with_tx!(&mut tx, conn => sqlx::query(
            "DELETE FROM friendships WHERE user_low = $1 AND user_high = $2 AND state = $3
               AND ($4 IS NULL OR requested_by = $4)",
        )
        .bind(low)
        .bind(high)
        .bind(state)
        .bind(requested_by)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if deleted == 1 {
            tx.record(event).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// `me`'s friendships and requests, with the other side's profile.
    pub async fn relations(&self, me: Uuid) -> Result<Vec<Relation>, StoreError> {
        let rows: Vec<(String, Uuid, DateTime<Utc>, Uuid)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT state, requested_by, updated_at, CASE WHEN user_low = $1 THEN user_high ELSE user_low END
             FROM friendships WHERE user_low = $1 OR user_high = $1 ORDER BY updated_at DESC",
        )
        .bind(me)
        .fetch_all(pool)
        .await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (state, requested_by, since, other) in rows {
            if let Some(other) = self.profile(other).await? {
                out.push(Relation { other, state, requested_by, since });
            }
        }
        Ok(out)
    }

    /// `me` blocks `other`: any friendship or request between them ends.
    /// Returns `false` when the block already existed.
    pub async fn block(
        &self,
        me: Uuid,
        other: Uuid,
        now: DateTime<Utc>,
        event: &impl Event,
    ) -> Result<bool, StoreError> {
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
            tx.record(event).await?;
        }
        tx.commit().await?;
        Ok(inserted == 1)
    }

    pub async fn unblock(&self, me: Uuid, other: Uuid, event: &impl Event) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let deleted = with_tx!(&mut tx, conn => sqlx::query("DELETE FROM blocks WHERE blocker = $1 AND blocked = $2")
            .bind(me)
            .bind(other)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
        if deleted == 1 {
            tx.record(event).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// The users `me` has blocked.
    pub async fn blocks(&self, me: Uuid) -> Result<Vec<(Profile, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(Uuid, DateTime<Utc>)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT blocked, created_at FROM blocks WHERE blocker = $1 ORDER BY created_at DESC",
        )
        .bind(me)
        .fetch_all(pool)
        .await)?;
        let mut out = Vec::new();
        for (id, at) in rows {
            if let Some(p) = self.profile(id).await? {
                out.push((p, at));
            }
        }
        Ok(out)
    }

    /// Profiles whose name key starts with `prefix_key`, in name order, after
    /// the cursor `(lower-cased name, id)`, hiding those who blocked `viewer`.
    pub async fn search(
        &self,
        prefix_key: &str,
        viewer: Option<Uuid>,
        statuses: &[Status],
        after: Option<(String, Uuid)>,
        limit: i64,
    ) -> Result<Vec<(Profile, String)>, StoreError> {
        let pattern = format!("{}%", escape_like(prefix_key));
        let (after_key, after_id) = after.unwrap_or_default();
        let status_list: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let statuses_json = serde_json::to_string(&status_list).unwrap_or_else(|_| "[]".to_owned());
        let sql = match &self.db {
            Db::Sqlite(_) => format!(
                "SELECT {PROFILE_COLUMNS}, lower(p.display_name) FROM profiles p
                 WHERE p.display_name_key LIKE $1 ESCAPE '\\' AND p.status IN (SELECT value FROM json_each($2))
                   AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = p.user_id AND b.blocked = $3)
                   AND (lower(p.display_name) > $4 OR (lower(p.display_name) = $4 AND p.user_id > $5))
                 ORDER BY lower(p.display_name), p.user_id LIMIT $6"
            ),
            Db::Postgres(_) => format!(
                "SELECT {PROFILE_COLUMNS}, lower(p.display_name) FROM profiles p
                 WHERE p.display_name_key LIKE $1 ESCAPE '\\' AND p.status IN (SELECT jsonb_array_elements_text($2::jsonb))
                   AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = p.user_id AND b.blocked = $3)
                   AND (lower(p.display_name) > $4 OR (lower(p.display_name) = $4 AND p.user_id > $5))
                 ORDER BY lower(p.display_name), p.user_id LIMIT $6"
            ),
        };
        type Row = (
            Uuid,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
            DateTime<Utc>,
            String,
        );
        let rows: Vec<Row> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&pattern)
            .bind(&statuses_json)
            .bind(viewer.unwrap_or_default())
            .bind(&after_key)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = r.14.clone();
                (profile_from((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13)), key)
            })
            .collect())
    }

    /// Bans (or with `None`, lifts the ban on) a user.
    pub async fn set_ban(
        &self,
        user: Uuid,
        reason: Option<&str>,
        now: DateTime<Utc>,
        event: Option<&impl Event>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let status = if reason.is_some() { "banned" } else { "active" };
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE profiles SET status = $1, banned_reason = $2, updated_at = $3 WHERE user_id = $4 AND status <> 'erased'",
        )
        .bind(status)
        .bind(reason)
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed == 1
            && let Some(e) = event
        {
            tx.record(e).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Erases a user: the profile is anonymised, friendships and blocks go,
    /// and the bus tables forget what they held about them. Returns the avatar
    /// version to delete from storage.
    pub async fn erase(
        &self,
        user: Uuid,
        now: DateTime<Utc>,
        event: &impl Event,
    ) -> Result<Option<String>, StoreError> {
        let placeholder = DisplayName::parse(&format!("erased {}", &user.simple().to_string()[..12]))
            .map_err(|e| StoreError::Database(sqlx::Error::Protocol(e)))?;
        let mut tx = self.db.begin().await?;
        let avatar: Option<Option<String>> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT avatar_etag FROM profiles WHERE user_id = $1")
                .bind(user)
                .fetch_optional(conn)
                .await)?;
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE profiles SET display_name = $1, display_name_key = $2, bio = '', locale = NULL, timezone = NULL,
               avatar_etag = NULL, status = 'erased', banned_reason = NULL, last_seen_at = NULL, updated_at = $3
             WHERE user_id = $4",
        )
        .bind(placeholder.as_str())
        .bind(placeholder.key())
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|_| ()))?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM friendships WHERE user_low = $1 OR user_high = $1")
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM blocks WHERE blocker = $1 OR blocked = $1")
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))?;
        kit::bus::store::forget_subject(&mut tx, &user.to_string()).await?;
        tx.record(event).await?;
        tx.commit().await?;
        Ok(avatar.flatten())
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
