//! Users' SQL, on SQLite and PostgreSQL. Reads go through `with_db!`; every
//! change is one transaction (`Tx`) that also records its event in the outbox,
//! and the events are built here, from what the transaction changed.
//!
//! - profiles, avatars, bans, erasure and search: [`profiles`]
//! - friendships and blocks: [`social`]

mod profiles;
mod social;

use chrono::{DateTime, Utc};
use kit::db::Db;
use uuid::Uuid;

use crate::domain::{Friendship, Profile};

pub use profiles::{Ban, ProfileChanges};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this display name is taken")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The columns of a [`Profile`] row, from `profiles p`.
const PROFILE_COLUMNS: &str = "p.user_id, p.display_name, p.bio, p.locale, p.timezone, p.profile_audience, p.status_audience, \
     p.requests_audience, p.avatar_etag, p.status, p.banned_reason, p.last_seen_at, p.created_at, p.updated_at";

/// One profile by its user id (`$1`); every read of a single profile.
static PROFILE_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {PROFILE_COLUMNS} FROM profiles p WHERE p.user_id = $1"));

/// A friendship or request, seen from one side, with the other side's profile.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Relation {
    #[sqlx(rename = "state")]
    pub friendship: Friendship,
    pub requested_by: Uuid,
    pub since: DateTime<Utc>,
    #[sqlx(flatten)]
    pub other: Profile,
}

/// A user someone blocked, with when.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BlockedUser {
    pub since: DateTime<Utc>,
    #[sqlx(flatten)]
    pub user: Profile,
}

/// A search hit and its sort key (the lower-cased name; the id breaks ties).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Hit {
    pub sort_name: String,
    #[sqlx(flatten)]
    pub profile: Profile,
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
}
