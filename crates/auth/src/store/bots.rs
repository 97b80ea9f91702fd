//! Bots: players that are not people, created by a service client (the AI
//! service) that alone may act for them.

use chrono::{DateTime, Utc};
use kit::with_db;
use uuid::Uuid;

use super::{Store, StoreError};

/// A bot as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BotRow {
    pub id: Uuid,
    pub client_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    pub async fn insert_bot(&self, bot: &BotRow) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO bots (id, client_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(bot.id).bind(&bot.client_id).bind(&bot.name).bind(bot.created_at)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The bot `id` if `client_id` created it.
    pub async fn bot_of(&self, client_id: &str, id: Uuid) -> Result<Option<BotRow>, StoreError> {
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, client_id, name, created_at FROM bots WHERE id = $1 AND client_id = $2")
            .bind(id).bind(client_id).fetch_optional(pool).await)?)
    }
}
