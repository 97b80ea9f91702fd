//! Service clients, revoked access tokens and signing keys.

use chrono::{DateTime, Utc};
use kit::{with_db, with_tx};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::tokens::{KeyMaterial, SigningAlgorithm};

/// A service client as stored.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A signing key with its life: published from `created_at`, signs from
/// `signs_from` until `retired_at`, published until `expires_at`.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub material: KeyMaterial,
    pub created_at: DateTime<Utc>,
    pub signs_from: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    pub fn signs_at(&self, now: DateTime<Utc>) -> bool {
        self.signs_from <= now && self.retired_at.is_none_or(|r| r > now)
    }

    pub fn published_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

type ClientTuple = (String, String, Vec<u8>, String, DateTime<Utc>, Option<DateTime<Utc>>);

fn client_from((client_id, name, secret_hash, scopes, created_at, disabled_at): ClientTuple) -> ClientRow {
    ClientRow {
        client_id,
        name,
        secret_hash,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at,
        disabled_at,
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    algorithm: String,
    private_key: Vec<u8>,
    public_key: String,
    created_at: DateTime<Utc>,
    signs_from: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The client `client_id` with this name, secret and scopes, enabled:
    /// made if new, brought to these values if not (an operator's
    /// provisioning, run again at every deployment; a new client's id is
    /// fresh, so for it this is a plain insert).
    pub async fn upsert_client(
        &self,
        client_id: &str,
        name: &str,
        secret_hash: &[u8],
        scopes: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO service_clients (client_id, name, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id) DO UPDATE
             SET name = excluded.name, secret_hash = excluded.secret_hash, scopes = excluded.scopes, disabled_at = NULL",
        )
        .bind(client_id)
        .bind(name)
        .bind(secret_hash)
        .bind(scopes.join(" "))
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Gives the first client named `name` a new secret and these scopes,
    /// enabled again; false when there is none of that name.
    pub async fn reset_client(
        &self,
        name: &str,
        secret_hash: &[u8],
        scopes: &[String],
    ) -> Result<Option<String>, StoreError> {
        let id: Option<String> = with_db!(write &self.db, pool => sqlx::query_scalar(
            "UPDATE service_clients SET secret_hash = $2, scopes = $3, disabled_at = NULL
             WHERE client_id = (SELECT client_id FROM service_clients WHERE name = $1 ORDER BY created_at LIMIT 1)
             RETURNING client_id",
        )
        .bind(name)
        .bind(secret_hash)
        .bind(scopes.join(" "))
        .fetch_optional(pool)
        .await)?;
        Ok(id)
    }

    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row: Option<ClientTuple> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT client_id, name, secret_hash, scopes, created_at, disabled_at FROM service_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(client_from))
    }

    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let rows: Vec<ClientTuple> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT client_id, name, secret_hash, scopes, created_at, disabled_at FROM service_clients ORDER BY created_at",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(client_from).collect())
    }

    /// Disables a client; its tokens are refused by introspection at once and
    /// expire within the token lifetime elsewhere. Returns whether it changed.
    pub async fn disable_client(&self, client_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE service_clients SET disabled_at = $1 WHERE client_id = $2 AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Remembers a revoked access token until it would have expired.
    pub async fn revoke_token(
        &self,
        jti: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => async {
            sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1").bind(now).execute(pool).await?;
            sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                .bind(jti)
                .bind(expires_at)
                .execute(pool)
                .await
                .map(|_| ())
        }.await)?;
        Ok(())
    }

    pub async fn is_token_revoked(&self, jti: Uuid) -> Result<bool, StoreError> {
        let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_one(pool)
            .await)?;
        Ok(n > 0)
    }

    /// Every signing key, newest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows: Vec<KeyRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT kid, algorithm, private_key, public_key, created_at, signs_from, retired_at, expires_at
             FROM signing_keys ORDER BY created_at DESC",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                // Only auth writes this table; a key of an algorithm this build
                // does not know (a newer version's) is left out, not fatal.
                let Some(algorithm) = SigningAlgorithm::from_name(&row.algorithm) else {
                    tracing::warn!(kid = %row.kid, algorithm = %row.algorithm, "ignoring a signing key of an unknown algorithm");
                    return None;
                };
                Some(KeyRecord {
                    material: KeyMaterial {
                        kid: row.kid,
                        algorithm,
                        private_der: row.private_key,
                        public: row.public_key,
                    },
                    created_at: row.created_at,
                    signs_from: row.signs_from.unwrap_or(row.created_at),
                    retired_at: row.retired_at,
                    expires_at: row.expires_at,
                })
            })
            .collect())
    }

    /// Adds `key`, published now and signing from `signs_from`. Keys signing
    /// until then retire at `signs_from` and stay published `grace` longer,
    /// past the expiry of the last token they can sign.
    pub async fn add_key(
        &self,
        key: &KeyMaterial,
        now: DateTime<Utc>,
        signs_from: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE signing_keys SET retired_at = $1, expires_at = $2 WHERE retired_at IS NULL OR retired_at > $1",
        )
        .bind(signs_from)
        .bind(signs_from + grace)
        .execute(conn)
        .await.map(|_| ()))?;
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at, signs_from)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(key.algorithm.name())
        .bind(&key.private_der)
        .bind(&key.public)
        .bind(now)
        .bind(signs_from)
        .execute(conn)
        .await.map(|_| ()))?;
        // Keys nobody can hold a valid token from any more are deleted.
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM signing_keys WHERE expires_at < $1")
            .bind(now - chrono::Duration::days(1))
            .execute(conn)
            .await.map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }
}
