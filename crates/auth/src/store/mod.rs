//! Auth's SQL. Every query is written once with `$n` placeholders and runs on
//! SQLite and PostgreSQL through `with_db!` (`with_db!(write …)` for changes).

mod accounts;
mod bots;
mod clients;
mod secrets;

pub use accounts::{AccountRow, RolesOutcome};
/// The purposes of email tokens.
pub mod accounts_purpose {
    pub use super::accounts::{PURPOSE_RESET, PURPOSE_VERIFY};
}
pub use bots::BotRow;
pub use clients::{ClientRow, KeyRecord};
pub use secrets::{Challenge, PendingLink, TotpFactor};

use chrono::{DateTime, Utc};
use contracts::Event;
use contracts::auth::SessionRevoked;
use kit::db::{Db, Tx, is_unique_violation};
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::{Device, Session, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// An account to create.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub roles: &'a [&'a str],
    /// Signed up through a provider that vouches for the address.
    pub email_verified: bool,
    /// `(provider, subject)` of the external identity it signed up with.
    pub identity: Option<(&'a str, &'a str)>,
    pub now: DateTime<Utc>,
}

/// A session to open, with its first refresh token.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device: &'a Device,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub refresh_hash: &'a [u8],
    pub refresh_expires_at: DateTime<Utc>,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now used, and its successor is stored.
    Rotated { session: Session, user: User },
    /// No such token.
    Unknown,
    /// The token had been used before: its whole session is now revoked.
    Reused,
    /// The token or its session has expired or was revoked.
    Inactive,
}

/// One of a user's sessions, as stored (and as its owner's export shows it).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// An account row with its roles as one space-separated column.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    password_hash: String,
    email_verified: bool,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    roles: Option<String>,
}

/// An account with its roles, in one query: sign-in takes the same path for
/// every account, and known and unknown emails cost the same round trips.
fn user_select(roles: &str, by: &str) -> String {
    format!(
        "SELECT u.id, u.email, u.display_name, u.password_hash, u.email_verified, u.disabled_at, u.created_at,
           {roles} AS roles
         FROM users u WHERE u.{by} = $1"
    )
}

fn user_from(r: UserRow) -> User {
    let roles = r.roles.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    User {
        id: r.id,
        email: r.email,
        display_name: r.display_name,
        password_hash: r.password_hash,
        email_verified: r.email_verified,
        disabled_at: r.disabled_at,
        created_at: r.created_at,
        roles,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Creates the account, its roles and its `user_registered` event (made
    /// from the account) in one transaction.
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
        let registered = contracts::auth::UserRegistered {
            user_id: user.id,
            email: user.email.to_owned(),
            display_name: user.display_name.to_owned(),
            registered_at: user.now,
        };
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.db.begin().await?;
            with_tx!(&mut tx, conn => sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, email_verified, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(user.id)
            .bind(user.email)
            .bind(user.display_name)
            .bind(user.password_hash)
            .bind(user.email_verified)
            .bind(user.now)
            .execute(conn)
            .await
            .map(|_| ()))?;
            if let Some((provider, subject)) = user.identity {
                with_tx!(&mut tx, conn => sqlx::query(
                    "INSERT INTO external_identities (provider, subject, user_id, email, linked_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(provider)
                .bind(subject)
                .bind(user.id)
                .bind(user.email)
                .bind(user.now)
                .execute(conn)
                .await
                .map(|_| ()))?;
            }
            for role in user.roles {
                with_tx!(&mut tx, conn => sqlx::query("INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, $2, $3)")
                    .bind(user.id)
                    .bind(*role)
                    .bind(user.now)
                    .execute(conn)
                    .await
                    .map(|_| ()))?;
            }
            tx.record(&registered).await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::EmailTaken),
            other => Ok(other?),
        }
    }

    /// The roles column expression for this backend.
    pub(crate) fn role_list(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => accounts::ROLE_LIST_SQLITE,
            Db::Postgres(_) => accounts::ROLE_LIST,
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = user_select(self.role_list(), "email");
        let row: Option<UserRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(email)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(user_from))
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let sql = user_select(self.role_list(), "id");
        let row: Option<UserRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(user_from))
    }

    /// Stores a new hash of the same password (after a parameter upgrade).
    pub async fn set_password_hash(&self, user_id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Opens a session with its first refresh token.
    /// Whether `user` signed in before, and whether ever with this user
    /// agent (a sign-in from a new device is told to the owner).
    pub async fn known_device(&self, user: Uuid, user_agent: Option<&str>) -> Result<(bool, bool), StoreError> {
        let (before, seen): (i64, i64) = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE user_agent = $2 OR (user_agent IS NULL AND $2 IS NULL)) FROM sessions WHERE user_id = $1")
            .bind(user).bind(user_agent).fetch_one(pool).await)?;
        Ok((before > 0, seen > 0))
    }

    #[tracing::instrument(skip_all, fields(session_id = %s.id))]
    pub async fn create_session(&self, s: &NewSession<'_>, event: &impl Event) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip)
             VALUES ($1, $2, $3, $3, $4, $5, $6)",
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(s.now)
        .bind(s.expires_at)
        .bind(s.device.user_agent.as_deref())
        .bind(s.device.ip.as_deref())
        .execute(conn)
        .await
        .map(|_| ()))?;
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(s.refresh_hash)
        .bind(s.id)
        .bind(s.now)
        .bind(s.refresh_expires_at)
        .execute(conn)
        .await
        .map(|_| ()))?;
        tx.record(event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?)
    }

    /// The session a refresh token belongs to.
    pub async fn session_of_refresh_token(&self, hash: &[u8]) -> Result<Option<Uuid>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await)?)
    }

    /// Ends one session unless it already ended, with its `session_revoked`
    /// event. Returns whether it changed.
    pub async fn revoke_session(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let user: Option<Uuid> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT user_id FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await)?;
        let Some(user) = user else { return Ok(false) };
        let ended = revoke_in(&mut tx, user, Which::One(id), reason, now).await?;
        tx.commit().await?;
        Ok(!ended.is_empty())
    }

    /// Ends `which` of `user`'s live sessions, with their events.
    pub async fn revoke_sessions(
        &self,
        user: Uuid,
        which: Which,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.db.begin().await?;
        let ended = revoke_in(&mut tx, user, which, reason, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Records that a session was used (an access token was checked against it).
    pub async fn touch_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE sessions SET last_used_at = $1 WHERE id = $2 AND last_used_at < $3",
        )
        .bind(now)
        .bind(id)
        .bind(now - chrono::Duration::seconds(60))
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Uses the refresh token hashed `old` and stores `new` as its successor,
    /// all in one transaction. A token used twice revokes its session: whoever
    /// holds the other copy (a thief, or the user) must sign in again.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_refresh_token(
        &self,
        old: &[u8],
        new: &[u8],
        now: DateTime<Utc>,
        refresh_ttl: chrono::Duration,
    ) -> Result<Rotation, StoreError> {
        type Row = (Uuid, DateTime<Utc>, Option<DateTime<Utc>>, Uuid, DateTime<Utc>, Option<DateTime<Utc>>);
        let outcome: Result<Result<Session, Rotation>, sqlx::Error> = async {
            let mut tx = self.db.begin().await?;
            let row: Option<Row> = with_tx!(&mut tx, conn => sqlx::query_as(
                "SELECT rt.session_id, rt.expires_at, rt.used_at, s.user_id, s.expires_at, s.revoked_at
                 FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
                 WHERE rt.token_hash = $1",
            )
            .bind(old)
            .fetch_optional(conn)
            .await)?;
            let Some((session_id, token_expires, used_at, user_id, session_expires, revoked_at)) = row else {
                return Ok(Err(Rotation::Unknown));
            };
            let session = Session { id: session_id, user_id, expires_at: session_expires, revoked_at };
            if used_at.is_none() && (!session.is_active(now) || token_expires <= now) {
                return Ok(Err(Rotation::Inactive));
            }
            // The `used_at IS NULL` condition also settles a race between two
            // uses of the same token: the second finds the row already used.
            let claimed = match used_at {
                Some(_) => 0,
                None => with_tx!(&mut tx, conn => sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(old)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?,
            };
            if claimed != 1 {
                let ended = with_tx!(&mut tx, conn => sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoked_reason = 'refresh_token_reuse'
                     WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(session_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?;
                if ended > 0 {
                    tx.record(&revoked_event(user_id, session_id, "refresh_token_reuse", now)).await?;
                }
                tx.commit().await?;
                return Ok(Err(Rotation::Reused));
            }
            let new_expires = std::cmp::min(now + refresh_ttl, session_expires);
            with_tx!(&mut tx, conn => sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(new)
            .bind(session_id)
            .bind(now)
            .bind(new_expires)
            .execute(conn)
            .await
            .map(|_| ()))?;
            with_tx!(&mut tx, conn => sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(session_id)
                .execute(conn)
                .await
                .map(|_| ()))?;
            tx.commit().await?;
            Ok(Ok(session))
        }
        .await;
        match outcome? {
            Ok(session) => match self.user_by_id(session.user_id).await? {
                Some(user) => Ok(Rotation::Rotated { session, user }),
                None => Ok(Rotation::Inactive),
            },
            Err(rotation) => Ok(rotation),
        }
    }

    /// The user's sessions, newest first.
    pub async fn sessions_of(&self, user: Uuid) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, created_at, last_used_at, expires_at, revoked_at, revoked_reason, user_agent, ip
             FROM sessions WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user)
        .fetch_all(pool)
        .await)?)
    }

    /// Erases an account in the event handler's transaction (`user_erased`):
    /// the email, name and password go, every session (with its device and IP)
    /// is deleted, and the bus tables forget what they held about the user.
    /// The row stays, disabled, so the id is never reused.
    pub async fn erase_account(tx: &mut Tx, user: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let placeholder = format!("erased+{}@erased.invalid", user.simple());
        with_tx!(tx, conn => sqlx::query(
            "UPDATE users SET email = $1, display_name = 'erased', password_hash = '', email_verified = $2,
               disabled_at = COALESCE(disabled_at, $3), updated_at = $3
             WHERE id = $4",
        )
        .bind(&placeholder)
        .bind(false)
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|_| ()))?;
        // Everything else keyed by the account goes: mailed tokens (they name the
        // address), the second factor, linked identities (their emails).
        for table in
            ["email_tokens", "totp_factors", "recovery_codes", "mfa_challenges", "external_identities", "pending_links"]
        {
            let sql = format!("DELETE FROM {table} WHERE user_id = $1");
            with_tx!(tx, conn => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user).execute(conn).await.map(|_| ()))?;
        }
        kit::bus::store::forget_subject(tx, &user.to_string()).await?;
        // Services watching revocations hear of these sessions before they go.
        revoke_in(tx, user, Which::All, "erased", now).await?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))
    }

    /// Disables an account and ends its sessions (`user_banned`, or an
    /// administrator), with `user_disabled` and `session_revoked` events.
    /// Returns whether the account was enabled before.
    pub async fn disable_account(
        tx: &mut Tx,
        user: Uuid,
        reason: &str,
        by: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let changed = with_tx!(tx, conn => sqlx::query(
            "UPDATE users SET disabled_at = $1, updated_at = $1 WHERE id = $2 AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed > 0 {
            let event = contracts::auth::UserDisabled { user_id: user, disabled: true, by, at: now };
            tx.record(&event).await?;
        }
        revoke_in(tx, user, Which::All, reason, now).await?;
        Ok(changed > 0)
    }
}

/// Which of a user's sessions to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    One(Uuid),
    AllBut(Uuid),
    All,
}

fn revoked_event(user: Uuid, session: Uuid, reason: &str, now: DateTime<Utc>) -> SessionRevoked {
    SessionRevoked { user_id: user, session_id: session, reason: reason.to_owned(), revoked_at: now }
}

/// Ends `which` of `user`'s live sessions in `tx`, appending a
/// `session_revoked` event for each. Every path that ends sessions comes here,
/// so none forgets the event that lets other services refuse their tokens.
pub(crate) async fn revoke_in(
    tx: &mut Tx,
    user: Uuid,
    which: Which,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    const LIVE: &str = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2
         WHERE user_id = $3 AND revoked_at IS NULL AND expires_at > $1";
    let (sql, other) = match which {
        Which::One(id) => (format!("{LIVE} AND id = $4 RETURNING id"), Some(id)),
        Which::AllBut(id) => (format!("{LIVE} AND id <> $4 RETURNING id"), Some(id)),
        Which::All => (format!("{LIVE} RETURNING id"), None),
    };
    let ended: Vec<Uuid> = with_tx!(tx, conn => {
        let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(now).bind(reason).bind(user);
        let q = match other { Some(id) => q.bind(id), None => q };
        q.fetch_all(conn).await
    })?;
    for session in &ended {
        tx.record(&revoked_event(user, *session, reason, now)).await?;
    }
    Ok(ended)
}

/// A refresh token as introspection reports it.
#[derive(Debug, Clone)]
pub struct RefreshInfo {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Unused, unexpired, and its session live.
    pub active: bool,
}

impl Store {
    pub async fn refresh_info(&self, hash: &[u8], now: DateTime<Utc>) -> Result<Option<RefreshInfo>, StoreError> {
        type Row =
            (Uuid, Uuid, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, DateTime<Utc>, Option<DateTime<Utc>>);
        let row: Option<Row> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT rt.session_id, s.user_id, rt.created_at, rt.expires_at, rt.used_at, s.expires_at, s.revoked_at
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(session_id, user_id, issued_at, expires_at, used_at, session_expires, revoked_at)| RefreshInfo {
            session_id,
            user_id,
            issued_at,
            expires_at,
            active: used_at.is_none() && expires_at > now && session_expires > now && revoked_at.is_none(),
        }))
    }
}
