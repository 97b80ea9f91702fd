//! Short-lived and single-use secrets: email tokens, the TOTP factor and its
//! recovery codes, second-step challenges, OAuth states and pending links.
//! Every "use once" is one conditional UPDATE, so two concurrent uses cannot
//! both succeed.

use chrono::{DateTime, Utc};
use kit::db::Tx;
use kit::{with_db, with_tx};
use uuid::Uuid;

use super::{Store, StoreError};

/// A TOTP factor as stored.
#[derive(Debug, Clone)]
pub struct TotpFactor {
    pub secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: i64,
}

/// A second-step challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub failures: i64,
    pub used: bool,
}

/// An external identity waiting for its owner's confirmation.
#[derive(Debug, Clone)]
pub struct PendingLink {
    pub user_id: Uuid,
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
}

/// Uses an email token of `purpose`: `(user, email it was sent to)`.
pub(super) async fn take_email_token(
    tx: &mut Tx,
    hash: &[u8],
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    with_tx!(tx, conn => sqlx::query_as(
        "UPDATE email_tokens SET used_at = $1
         WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
         RETURNING user_id, email",
    )
    .bind(now)
    .bind(hash)
    .bind(purpose)
    .fetch_optional(conn)
    .await)
}

impl Store {
    pub async fn insert_email_token(
        &self,
        hash: &[u8],
        user: Uuid,
        purpose: &str,
        email: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash)
        .bind(user)
        .bind(purpose)
        .bind(email)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn totp(&self, user: Uuid) -> Result<Option<TotpFactor>, StoreError> {
        let row: Option<(Vec<u8>, Option<DateTime<Utc>>, i64)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT secret, confirmed_at, last_step FROM totp_factors WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(secret, confirmed_at, last_step)| TotpFactor {
            secret,
            confirmed: confirmed_at.is_some(),
            last_step,
        }))
    }

    /// Starts (or restarts) enrolment with a new secret, unless a confirmed
    /// factor exists. Returns whether it was stored.
    pub async fn begin_totp(&self, user: Uuid, secret: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NULL")
            .bind(user)
            .execute(conn)
            .await.map(|_| ()))?;
        let inserted = with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO totp_factors (user_id, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(secret)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(inserted > 0)
    }

    /// Confirms enrolment at time step `step` and stores the hashes of new
    /// recovery codes. Returns whether an unconfirmed factor was confirmed.
    pub async fn confirm_totp(
        &self,
        user: Uuid,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let confirmed = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE totp_factors SET confirmed_at = $1, last_step = $2 WHERE user_id = $3 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(user)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if confirmed == 0 {
            return Ok(false);
        }
        replace_recovery_codes(&mut tx, user, recovery_hashes, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Claims time step `step` for `user`: false if it, or a later step, was
    /// used already — a code works once.
    pub async fn use_totp_step(&self, user: Uuid, step: i64) -> Result<bool, StoreError> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE totp_factors SET last_step = $1 WHERE user_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
        )
        .bind(step)
        .bind(user)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Uses a recovery code: false if unknown or used before.
    pub async fn use_recovery_code(&self, user: Uuid, hash: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .bind(hash)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn recovery_codes_left(&self, user: Uuid) -> Result<i64, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user)
        .fetch_one(pool)
        .await)?)
    }

    /// New recovery codes, replacing the old ones.
    pub async fn set_recovery_codes(
        &self,
        user: Uuid,
        hashes: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        replace_recovery_codes(&mut tx, user, hashes, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the second factor and its recovery codes.
    pub async fn delete_totp(&self, user: Uuid) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM totp_factors WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_challenge(
        &self,
        hash: &[u8],
        user: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO mfa_challenges (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn challenge(&self, hash: &[u8]) -> Result<Option<Challenge>, StoreError> {
        type Row = (Uuid, DateTime<Utc>, i64, Option<DateTime<Utc>>);
        let row: Option<Row> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, expires_at, failures, used_at FROM mfa_challenges WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(user_id, expires_at, failures, used_at)| Challenge {
            user_id,
            expires_at,
            failures,
            used: used_at.is_some(),
        }))
    }

    /// Counts a wrong code against a challenge.
    pub async fn fail_challenge(&self, hash: &[u8]) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query("UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1")
            .bind(hash)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Uses a challenge: false if it was used already.
    pub async fn use_challenge(&self, hash: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE mfa_challenges SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(hash)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_oauth_state(
        &self,
        hash: &[u8],
        provider: &str,
        verifier: &str,
        nonce: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO oauth_states (state_hash, provider, pkce_verifier, nonce, redirect_uri, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(provider)
        .bind(verifier)
        .bind(nonce)
        .bind(redirect_uri)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Uses a state of `provider`: `(PKCE verifier, nonce, redirect URI)`.
    pub async fn take_oauth_state(
        &self,
        hash: &[u8],
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(with_db!(write &self.db, pool => sqlx::query_as(
            "UPDATE oauth_states SET used_at = $1
             WHERE state_hash = $2 AND provider = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING pkce_verifier, nonce, redirect_uri",
        )
        .bind(now)
        .bind(hash)
        .bind(provider)
        .fetch_optional(pool)
        .await)?)
    }

    /// The account an external identity is linked to.
    pub async fn identity(&self, provider: &str, subject: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT user_id FROM external_identities WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(pool)
        .await)?)
    }

    /// The providers an account is linked to.
    pub async fn identities_of(&self, user: Uuid) -> Result<Vec<(String, Option<String>, DateTime<Utc>)>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT provider, email, linked_at FROM external_identities WHERE user_id = $1 ORDER BY linked_at",
        )
        .bind(user)
        .fetch_all(pool)
        .await)?)
    }

    pub async fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user: Uuid,
        email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO external_identities (provider, subject, user_id, email, linked_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider, subject) DO NOTHING",
        )
        .bind(provider)
        .bind(subject)
        .bind(user)
        .bind(email)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_pending_link(
        &self,
        hash: &[u8],
        user: Uuid,
        provider: &str,
        subject: &str,
        email: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO pending_links (token_hash, user_id, provider, subject, email, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(user)
        .bind(provider)
        .bind(subject)
        .bind(email)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn pending_link(&self, hash: &[u8], now: DateTime<Utc>) -> Result<Option<PendingLink>, StoreError> {
        let row: Option<(Uuid, String, String, Option<String>)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, provider, subject, email FROM pending_links
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(user_id, provider, subject, email)| PendingLink { user_id, provider, subject, email }))
    }

    pub async fn use_pending_link(&self, hash: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE pending_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(hash)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

async fn replace_recovery_codes(
    tx: &mut Tx,
    user: Uuid,
    hashes: &[Vec<u8>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user).execute(conn).await.map(|_| ()))?;
    for hash in hashes {
        with_tx!(tx, conn => sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
            .bind(user)
            .bind(hash)
            .bind(now)
            .execute(conn)
            .await.map(|_| ()))?;
    }
    Ok(())
}

impl Store {
    /// An email token of `purpose` that is still good: `(user, email)`.
    pub async fn email_token(
        &self,
        hash: &[u8],
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, email FROM email_tokens
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(hash)
        .bind(purpose)
        .bind(now)
        .fetch_optional(pool)
        .await)?)
    }
}
