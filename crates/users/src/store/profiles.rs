//! Profiles: creation from auth's event, changes, avatars, bans, erasure and
//! search.

use chrono::{DateTime, Utc};
use contracts::users::{AvatarChanged, UserBanned, UserErased};
use kit::db::{Db, Tx, is_unique_violation};
use kit::{with_db, with_tx};
use uuid::Uuid;

use super::{Hit, PROFILE_BY_ID, PROFILE_COLUMNS, Store, StoreError};
use crate::domain::{DisplayName, Privacy, Profile, Status};
use crate::events;

/// The changes `PUT /v1/users/me` asks for; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub display_name: Option<DisplayName>,
    pub bio: Option<String>,
    pub locale: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
    pub privacy: Option<Privacy>,
}

/// A ban: who and why.
#[derive(Debug, Clone)]
pub struct Ban {
    pub by: Uuid,
    pub reason: String,
}

impl Store {
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
        Ok(with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(PROFILE_BY_ID.as_str()))
        .bind(user)
        .fetch_optional(pool)
        .await)?)
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
            .bind(p.privacy.profile)
            .bind(p.privacy.online_status)
            .bind(p.privacy.friend_requests)
            .bind(now)
            .bind(user)
            .execute(conn)
            .await
            .map(|_| ()))?;
            tx.record(&events::profile_updated(&p)).await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::NameTaken),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(Some(p)),
        }
    }

    /// Sets (or with `None` clears) the avatar version and records
    /// `avatar_changed`; returns the previous version.
    pub async fn set_avatar(
        &self,
        user: Uuid,
        etag: Option<&str>,
        now: DateTime<Utc>,
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
        let avatar_url = events::avatar_url(user, etag.unwrap_or(&crate::avatars::default_etag(user)));
        tx.record(&AvatarChanged { user_id: user, avatar_url, changed_at: now }).await?;
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

    /// Profiles whose name key starts with `prefix_key`, in name order, after
    /// the cursor `(lower-cased name, id)`, hiding those who blocked `viewer`.
    pub async fn search(
        &self,
        prefix_key: &str,
        viewer: Option<Uuid>,
        statuses: &[Status],
        after: Option<(String, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Hit>, StoreError> {
        let pattern = format!("{}%", escape_like(prefix_key));
        let (after_key, after_id) = after.unwrap_or_default();
        let status_list: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let statuses_json = serde_json::to_string(&status_list).unwrap_or_else(|_| "[]".to_owned());
        let status_set = match &self.db {
            Db::Sqlite(_) => "SELECT value FROM json_each($2)",
            Db::Postgres(_) => "SELECT jsonb_array_elements_text($2::jsonb)",
        };
        let sql = format!(
            "SELECT {PROFILE_COLUMNS}, lower(p.display_name) AS sort_name FROM profiles p
             WHERE p.display_name_key LIKE $1 ESCAPE '\\' AND p.status IN ({status_set})
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = p.user_id AND b.blocked = $3)
               AND (lower(p.display_name) > $4 OR (lower(p.display_name) = $4 AND p.user_id > $5))
             ORDER BY lower(p.display_name), p.user_id LIMIT $6"
        );
        Ok(with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&pattern)
            .bind(&statuses_json)
            .bind(viewer.unwrap_or_default())
            .bind(&after_key)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// Bans a user (recording `user_banned`), or with `None` lifts the ban.
    /// `false` when there is no such user, or they were erased.
    pub async fn set_ban(&self, user: Uuid, ban: Option<&Ban>, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let status = if ban.is_some() { Status::Banned } else { Status::Active };
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE profiles SET status = $1, banned_reason = $2, updated_at = $3 WHERE user_id = $4 AND status <> 'erased'",
        )
        .bind(status)
        .bind(ban.map(|b| b.reason.as_str()))
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed == 1
            && let Some(ban) = ban
        {
            tx.record(&UserBanned { user_id: user, banned_by: ban.by, reason: ban.reason.clone(), banned_at: now })
                .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Erases a user: the profile is anonymised, friendships and blocks go,
    /// the bus tables forget what they held about them, and `user_erased`
    /// tells the other services. Returns the avatar version to delete from
    /// storage.
    pub async fn erase(&self, user: Uuid, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
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
        tx.record(&UserErased { user_id: user, erased_at: now }).await?;
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
