//! Accounts as administrators and their owners change them: roles, disabling,
//! passwords, email verification.

use chrono::{DateTime, Utc};
use contracts::auth::{EmailVerified, PasswordChanged, RoleChanged, UserDisabled};
use kit::db::Tx;
use kit::with_tx;
use uuid::Uuid;

use super::{Store, StoreError, Which, revoke_in};
use crate::domain::ROLE_ADMIN;

/// An account as administrators list it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub roles: Vec<String>,
    pub mfa_enabled: bool,
}

/// An [`AccountRow`] as read: the roles as one space-separated column.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    email: String,
    display_name: String,
    email_verified: bool,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    roles: Option<String>,
    mfa_enabled: bool,
}

/// What a change of roles led to.
#[derive(Debug, PartialEq, Eq)]
pub enum RolesOutcome {
    Changed {
        removed_any: bool,
    },
    Unchanged,
    NotFound,
    /// Refused: no enabled administrator would be left.
    LastAdmin,
}

/// Roles as one text column, ordered, for list queries on both backends.
pub(super) const ROLE_LIST: &str =
    "(SELECT string_agg(role, ' ' ORDER BY role) FROM user_roles r WHERE r.user_id = u.id)";
pub(super) const ROLE_LIST_SQLITE: &str =
    "(SELECT group_concat(role, ' ') FROM (SELECT role FROM user_roles r WHERE r.user_id = u.id ORDER BY role))";

/// Escapes `%`, `_` and `\` for a LIKE pattern (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Serialises changes to who is an administrator, so two administrators
/// demoting each other cannot both succeed and leave none (PostgreSQL runs
/// them concurrently; SQLite has one writer already).
async fn lock_admins(tx: &mut Tx) -> Result<(), sqlx::Error> {
    if let kit::db::TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('panal.auth.admins')::bigint)").execute(&mut **t).await?;
    }
    Ok(())
}

async fn enabled_admins_other_than(tx: &mut Tx, user: Uuid) -> Result<i64, sqlx::Error> {
    with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles r JOIN users u ON u.id = r.user_id
         WHERE r.role = $1 AND u.disabled_at IS NULL AND u.id <> $2",
    )
    .bind(ROLE_ADMIN)
    .bind(user)
    .fetch_one(conn)
    .await)
}

async fn is_admin(tx: &mut Tx, user: Uuid) -> Result<bool, sqlx::Error> {
    let n: i64 = with_tx!(tx, conn => sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(user)
        .bind(ROLE_ADMIN)
        .fetch_one(conn)
        .await)?;
    Ok(n > 0)
}

impl Store {
    /// Accounts whose email starts with, or display name contains, `query`
    /// (case-insensitive), optionally holding `role`, after the id `after`.
    pub async fn list_accounts(
        &self,
        query: Option<&str>,
        role: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AccountRow>, StoreError> {
        let roles = self.role_list();
        let sql = format!(
            "SELECT u.id, u.email, u.display_name, u.email_verified, u.disabled_at, u.created_at, {roles} AS roles,
                    EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)
                      AS mfa_enabled
             FROM users u
             WHERE ($1 IS NULL OR u.email LIKE $2 ESCAPE '\\' OR LOWER(u.display_name) LIKE $3 ESCAPE '\\')
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = $4))
               AND ($5 IS NULL OR u.id > $5)
             ORDER BY u.id LIMIT $6"
        );
        let q = query.map(|q| like_escape(&q.to_lowercase()));
        let prefix = q.as_ref().map(|q| format!("{q}%"));
        let contains = q.as_ref().map(|q| format!("%{q}%"));
        let rows: Vec<Row> = kit::with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(q.as_deref())
            .bind(prefix.as_deref())
            .bind(contains.as_deref())
            .bind(role)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|r| AccountRow {
                id: r.id,
                email: r.email,
                display_name: r.display_name,
                email_verified: r.email_verified,
                disabled_at: r.disabled_at,
                created_at: r.created_at,
                roles: r.roles.unwrap_or_default().split_whitespace().map(str::to_owned).collect(),
                mfa_enabled: r.mfa_enabled,
            })
            .collect())
    }

    /// Replaces `user`'s roles (`roles` is validated and holds `user`).
    /// Removing a role ends the account's sessions, since their tokens carry
    /// the old roles.
    pub async fn set_roles(
        &self,
        user: Uuid,
        roles: &[String],
        by: Uuid,
        now: DateTime<Utc>,
    ) -> Result<RolesOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        lock_admins(&mut tx).await?;
        let current: Vec<String> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role",
        )
        .bind(user)
        .fetch_all(conn)
        .await)?;
        let exists: Option<Uuid> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await)?;
        if exists.is_none() {
            return Ok(RolesOutcome::NotFound);
        }
        let mut wanted: Vec<String> = roles.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted == current {
            return Ok(RolesOutcome::Unchanged);
        }
        let losing_admin = current.iter().any(|r| r == ROLE_ADMIN) && !wanted.iter().any(|r| r == ROLE_ADMIN);
        if losing_admin && enabled_admins_other_than(&mut tx, user).await? == 0 {
            return Ok(RolesOutcome::LastAdmin);
        }
        let removed_any = current.iter().any(|r| !wanted.contains(r));
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM user_roles WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))?;
        for role in &wanted {
            with_tx!(&mut tx, conn => sqlx::query("INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, $2, $3)")
                .bind(user)
                .bind(role)
                .bind(now)
                .execute(conn)
                .await.map(|_| ()))?;
        }
        with_tx!(&mut tx, conn => sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2").bind(now).bind(user).execute(conn).await.map(|_| ()))?;
        let event = RoleChanged { user_id: user, roles: wanted, changed_by: Some(by), changed_at: now };
        tx.record(&event).await?;
        if removed_any {
            revoke_in(&mut tx, user, Which::All, "roles_changed", now).await?;
        }
        tx.commit().await?;
        Ok(RolesOutcome::Changed { removed_any })
    }

    /// Disables (ending every session) or enables an account on an
    /// administrator's word. `Ok(None)`: no such account; `Err(LastAdmin)` is
    /// reported as `Some(false)` with nothing changed.
    pub async fn set_disabled(
        &self,
        user: Uuid,
        disabled: bool,
        by: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<RolesOutcome>, StoreError> {
        let mut tx = self.db.begin().await?;
        lock_admins(&mut tx).await?;
        let exists: Option<Uuid> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await)?;
        if exists.is_none() {
            return Ok(None);
        }
        if disabled {
            if is_admin(&mut tx, user).await? && enabled_admins_other_than(&mut tx, user).await? == 0 {
                return Ok(Some(RolesOutcome::LastAdmin));
            }
            let changed = Store::disable_account(&mut tx, user, "account_disabled", Some(by), now).await?;
            tx.commit().await?;
            return Ok(Some(if changed {
                RolesOutcome::Changed { removed_any: true }
            } else {
                RolesOutcome::Unchanged
            }));
        }
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE users SET disabled_at = NULL, updated_at = $1 WHERE id = $2 AND disabled_at IS NOT NULL",
        )
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed > 0 {
            let event = UserDisabled { user_id: user, disabled: false, by: Some(by), at: now };
            tx.record(&event).await?;
        }
        tx.commit().await?;
        Ok(Some(if changed > 0 { RolesOutcome::Changed { removed_any: false } } else { RolesOutcome::Unchanged }))
    }

    /// Stores a new password chosen by its owner: every other session ends
    /// (`keep`), unused reset links stop working, `password_changed` is sent.
    pub async fn change_password(
        &self,
        user: Uuid,
        hash: &str,
        keep: Option<Uuid>,
        how: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        password_changed_in(&mut tx, user, hash, keep, how, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses a password-reset token and sets the new password, ending every
    /// session, in one transaction. `None` if the token is unknown, used or
    /// expired.
    pub async fn reset_password(
        &self,
        token_hash: &[u8],
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some((user, _email)) = super::secrets::take_email_token(&mut tx, token_hash, PURPOSE_RESET, now).await?
        else {
            return Ok(None);
        };
        password_changed_in(&mut tx, user, hash, None, "reset", now).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Uses an email-verification token: the address it was sent to is now
    /// verified (if it is still the account's). `None` if the token is
    /// unknown, used or expired.
    pub async fn verify_email(&self, token_hash: &[u8], now: DateTime<Utc>) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some((user, email)) = super::secrets::take_email_token(&mut tx, token_hash, PURPOSE_VERIFY, now).await?
        else {
            return Ok(None);
        };
        let changed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE users SET email_verified = $1, updated_at = $2 WHERE id = $3 AND email = $4 AND email_verified = $5",
        )
        .bind(true)
        .bind(now)
        .bind(user)
        .bind(&email)
        .bind(false)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if changed > 0 {
            let event = EmailVerified { user_id: user, email, verified_at: now };
            tx.record(&event).await?;
        }
        tx.commit().await?;
        Ok(Some(user))
    }
}

pub const PURPOSE_VERIFY: &str = "verify_email";
pub const PURPOSE_RESET: &str = "reset_password";

async fn password_changed_in(
    tx: &mut Tx,
    user: Uuid,
    hash: &str,
    keep: Option<Uuid>,
    how: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now)
        .bind(user)
        .execute(conn)
        .await.map(|_| ()))?;
    with_tx!(tx, conn => sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user)
    .bind(PURPOSE_RESET)
    .execute(conn)
    .await.map(|_| ()))?;
    let which = keep.map_or(Which::All, Which::AllBut);
    let reason = if how == "reset" { "password_reset" } else { "password_changed" };
    revoke_in(tx, user, which, reason, now).await?;
    let event = PasswordChanged { user_id: user, how: how.to_owned(), changed_at: now };
    tx.record(&event).await
}
