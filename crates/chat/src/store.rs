//! Chat's SQL, on SQLite and PostgreSQL. Reads go through `with_db!`; every
//! change is one transaction that also records what it announces: the
//! realtime publication (delivery to the conversation's sockets) and chat's
//! own events, so a message and its delivery are committed together or not
//! at all.

use chrono::{DateTime, Utc};
use contracts::chat::MessagePosted;
use contracts::realtime::Publication;
use kit::db::{Backend, Db, Tx};
use kit::{with_db, with_tx};
use uuid::Uuid;

use crate::domain::{self, Kind, MessageKind, Role, Visibility};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a room with this name exists")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A conversation row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Conversation {
    pub id: Uuid,
    pub kind: Kind,
    pub name: Option<String>,
    pub topic: String,
    pub visibility: Option<Visibility>,
    pub password_hash: Option<String>,
    pub slow_mode_secs: i32,
    pub owner_id: Option<Uuid>,
    pub direct_key: Option<String>,
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const CONVERSATION_COLUMNS: &str = "c.id, c.kind, c.name, c.topic, c.visibility, c.password_hash, c.slow_mode_secs, \
     c.owner_id, c.direct_key, c.last_seq, c.last_message_at, c.created_at";

/// A member of a conversation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub user_id: Uuid,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub muted_until: Option<DateTime<Utc>>,
    pub last_read_seq: i64,
    pub last_posted_at: Option<DateTime<Utc>>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

const MEMBER_COLUMNS: &str = "mb.user_id, mb.role, mb.joined_at, mb.muted_until, mb.last_read_seq, mb.last_posted_at, \
     p.display_name, p.avatar_url";

/// One of a user's conversations, with what they have not read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub conversation: Conversation,
    pub role: Role,
    pub last_read_seq: i64,
    pub unread: i64,
    /// Direct conversations: the other member.
    pub peer_id: Option<Uuid>,
    pub peer_name: Option<String>,
    pub peer_avatar: Option<String>,
}

/// A message with its author's name and avatar.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub author_id: Option<Uuid>,
    pub kind: MessageKind,
    pub body: String,
    pub card: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub author_name: Option<String>,
    pub author_avatar: Option<String>,
}

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.author_id, m.kind, m.body, m.card, m.created_at, \
     m.edited_at, m.deleted_at, p.display_name AS author_name, p.avatar_url AS author_avatar";

/// Messages written by someone `$1` blocked are not shown to `$1`.
const NOT_BLOCKED: &str = "NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = $1 AND b.blocked = m.author_id)";

/// A room in the directory.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomListing {
    #[sqlx(flatten)]
    pub conversation: Conversation,
    pub members: i64,
}

/// An invitation waiting for its answer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitation {
    pub conversation_id: Uuid,
    pub room_name: String,
    pub invited_by: Uuid,
    pub inviter_name: Option<String>,
    pub invited_at: DateTime<Utc>,
}

/// A ban in a room.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ban {
    pub user_id: Uuid,
    pub display_name: Option<String>,
    pub banned_by: Uuid,
    pub reason: String,
    pub banned_at: DateTime<Utc>,
}

/// A reported message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Report {
    pub id: Uuid,
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub reporter_id: Option<Uuid>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Uuid>,
    pub resolution: Option<String>,
}

/// A line of the moderation audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Audit {
    pub id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub actor_id: Uuid,
    pub action: String,
    pub target_user: Option<Uuid>,
    pub target_message: Option<Uuid>,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// What a moderation action records in the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub conversation: Option<Uuid>,
    pub actor: Uuid,
    pub action: &'a str,
    pub target_user: Option<Uuid>,
    pub target_message: Option<Uuid>,
    pub detail: &'a str,
}

/// A new message.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub conversation: &'a Conversation,
    pub author: Option<Uuid>,
    pub kind: MessageKind,
    pub body: &'a str,
    pub card: Option<&'a serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ---- users' data, from their events -------------------------------

    /// A user's name (and avatar) as of `at`; an older copy never
    /// overwrites a newer one (users' and auth's events may cross).
    pub async fn upsert_person(
        tx: &mut Tx,
        user: Uuid,
        name: &str,
        avatar: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO people (user_id, display_name, avatar_url, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
                 avatar_url = COALESCE(excluded.avatar_url, people.avatar_url), updated_at = excluded.updated_at
             WHERE people.updated_at <= excluded.updated_at AND NOT people.erased",
        )
        .bind(user)
        .bind(name)
        .bind(avatar)
        .bind(at)
        .execute(conn)
        .await
        .map(|_| ()))
    }

    /// A user's avatar changed.
    pub async fn set_avatar(tx: &mut Tx, user: Uuid, url: &str) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query("UPDATE people SET avatar_url = $2 WHERE user_id = $1 AND NOT erased")
            .bind(user)
            .bind(url)
            .execute(conn)
            .await
            .map(|_| ()))
    }

    pub async fn set_block(tx: &mut Tx, blocker: Uuid, blocked: Uuid, on: bool) -> Result<(), sqlx::Error> {
        let sql = if on {
            "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2"
        };
        with_tx!(tx, conn => sqlx::query(sql).bind(blocker).bind(blocked).execute(conn).await.map(|_| ()))
    }

    /// The `count(*)` that `sql` selects with `ids` bound in order.
    async fn count(&self, sql: &'static str, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
        with_db!(&self.db, pool => {
            let mut query = sqlx::query_scalar(sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_one(pool).await
        })
    }

    /// Whether `blocker` blocked `blocked`.
    pub async fn blocked(&self, blocker: Uuid, blocked: Uuid) -> Result<bool, sqlx::Error> {
        Ok(self.count("SELECT count(*) FROM blocks WHERE blocker = $1 AND blocked = $2", &[blocker, blocked]).await?
            > 0)
    }

    /// Whether chat has heard of this user (and they are not erased).
    pub async fn person_exists(&self, user: Uuid) -> Result<bool, sqlx::Error> {
        Ok(self.count("SELECT count(*) FROM people WHERE user_id = $1 AND NOT erased", &[user]).await? > 0)
    }

    // ---- conversations and members ---------------------------------------

    pub async fn conversation(&self, id: Uuid) -> Result<Option<Conversation>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await)
    }

    pub async fn member(&self, conversation: Uuid, user: Uuid) -> Result<Option<Member>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM members mb LEFT JOIN people p ON p.user_id = mb.user_id
             WHERE mb.conversation_id = $1 AND mb.user_id = $2")))
            .bind(conversation)
            .bind(user)
            .fetch_optional(pool)
            .await)
    }

    pub async fn members(&self, conversation: Uuid) -> Result<Vec<Member>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM members mb LEFT JOIN people p ON p.user_id = mb.user_id
             WHERE mb.conversation_id = $1 ORDER BY mb.joined_at, mb.user_id")))
            .bind(conversation)
            .fetch_all(pool)
            .await)
    }

    /// Rooms `user` owns.
    pub async fn rooms_owned(&self, user: Uuid) -> Result<i64, sqlx::Error> {
        self.count("SELECT count(*) FROM conversations WHERE owner_id = $1", &[user]).await
    }

    pub async fn member_count(&self, conversation: Uuid) -> Result<i64, sqlx::Error> {
        self.count("SELECT count(*) FROM members WHERE conversation_id = $1", &[conversation]).await
    }

    pub async fn banned(&self, conversation: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "SELECT count(*) FROM bans WHERE conversation_id = $1 AND user_id = $2";
        Ok(self.count(sql, &[conversation, user]).await? > 0)
    }

    pub async fn invited(&self, conversation: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "SELECT count(*) FROM invitations WHERE conversation_id = $1 AND user_id = $2";
        Ok(self.count(sql, &[conversation, user]).await? > 0)
    }

    /// A new room, its owner its first member.
    pub async fn create_room(
        &self,
        owner: Uuid,
        name: &str,
        topic: &str,
        visibility: Visibility,
        password_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Conversation, StoreError> {
        let id = Uuid::now_v7();
        let mut tx = self.db.begin().await?;
        let inserted = with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO conversations (id, kind, name, name_key, topic, visibility, password_hash, owner_id, created_at)
             VALUES ($1, 'room', $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(name)
        .bind(domain::room_name_key(name))
        .bind(topic)
        .bind(visibility)
        .bind(password_hash)
        .bind(owner)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ()));
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::NameTaken),
            other => other?,
        };
        add_member(&mut tx, id, owner, Role::Owner, now).await?;
        tx.commit().await?;
        Ok(self.conversation(id).await?.ok_or(sqlx::Error::RowNotFound)?)
    }

    /// The direct conversation between `a` and `b`, made if new (`true`).
    pub async fn direct(&self, a: Uuid, b: Uuid, now: DateTime<Utc>) -> Result<(Conversation, bool), sqlx::Error> {
        let key = domain::direct_key(a, b);
        let find = || async {
            with_db!(write &self.db, pool => sqlx::query_as::<_, Conversation>(sqlx::AssertSqlSafe(format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.direct_key = $1")))
                .bind(&key)
                .fetch_optional(pool)
                .await)
        };
        if let Some(found) = find().await? {
            return Ok((found, false));
        }
        let id = Uuid::now_v7();
        let mut tx = self.db.begin().await?;
        let inserted = with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO conversations (id, kind, direct_key, created_at) VALUES ($1, 'direct', $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&key)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if inserted == 1 {
            add_member(&mut tx, id, a, Role::Member, now).await?;
            add_member(&mut tx, id, b, Role::Member, now).await?;
        }
        tx.commit().await?;
        // Two first messages at once: one made it, both use it.
        let found = find().await?.ok_or(sqlx::Error::RowNotFound)?;
        Ok((found, inserted == 1))
    }

    /// `user`'s conversations, the most recently active first, with unread
    /// counts (messages after their read marker, not theirs, not deleted,
    /// not from someone they blocked).
    pub async fn conversations_of(&self, user: Uuid) -> Result<Vec<Listed>, sqlx::Error> {
        self.listed(user, None).await
    }

    /// One of `user`'s conversations, as [`Store::conversations_of`] lists it.
    pub async fn conversation_of(&self, user: Uuid, conversation: Uuid) -> Result<Option<Listed>, sqlx::Error> {
        Ok(self.listed(user, Some(conversation)).await?.pop())
    }

    async fn listed(&self, user: Uuid, only: Option<Uuid>) -> Result<Vec<Listed>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS}, mb.role, mb.last_read_seq,
               (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.seq > mb.last_read_seq
                  AND m.deleted_at IS NULL AND (m.author_id IS NULL OR (m.author_id <> $1 AND {NOT_BLOCKED}))) AS unread,
               o.user_id AS peer_id, p.display_name AS peer_name, p.avatar_url AS peer_avatar
             FROM members mb
             JOIN conversations c ON c.id = mb.conversation_id
             LEFT JOIN members o ON c.kind = 'direct' AND o.conversation_id = c.id AND o.user_id <> $1
             LEFT JOIN people p ON p.user_id = o.user_id
             WHERE mb.user_id = $1 AND ($2 IS NULL OR c.id = $2)
             ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC")))
            .bind(user)
            .bind(only)
            .fetch_all(pool)
            .await)
    }

    /// Public and password rooms whose name contains `q`, by name.
    pub async fn directory(&self, q: &str, after: Option<&str>, limit: i64) -> Result<Vec<RoomListing>, sqlx::Error> {
        let pattern = format!("%{}%", q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS}, (SELECT count(*) FROM members mb WHERE mb.conversation_id = c.id) AS members
             FROM conversations c
             WHERE c.kind = 'room' AND c.visibility IN ('public', 'password') AND c.name_key LIKE $1 ESCAPE '\\'
               AND ($2 IS NULL OR c.name_key > $2)
             ORDER BY c.name_key LIMIT $3")))
            .bind(pattern)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await)
    }

    /// `user` joins (or an owner's room is made): the invitation is used
    /// up, and the members are told.
    pub async fn join(&self, conversation: Uuid, user: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let joined = add_member(&mut tx, conversation, user, Role::Member, now).await?;
        exec(&mut tx, "DELETE FROM invitations WHERE conversation_id = $1 AND user_id = $2", &[conversation, user])
            .await?;
        if joined {
            publish(&mut tx, conversation, serde_json::json!({"type": "member_joined", "user_id": user}), Vec::new())
                .await?;
        }
        tx.commit().await?;
        Ok(joined)
    }

    /// `user` leaves, is kicked or banned (with `audit`): the membership
    /// ends, the room and the user are told. A room whose last member left
    /// is closed (deleted, with its messages).
    pub async fn remove_member(
        &self,
        conversation: Uuid,
        user: Uuid,
        why: &'static str,
        ban: Option<(&AuditEntry<'_>, DateTime<Utc>)>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        exec(&mut tx, "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2", &[conversation, user]).await?;
        if let Some((entry, at)) = ban {
            if entry.action == "ban" {
                with_tx!(&mut tx, conn => sqlx::query(
                    "INSERT INTO bans (conversation_id, user_id, banned_by, reason, banned_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (conversation_id, user_id) DO UPDATE SET reason = excluded.reason")
                    .bind(conversation)
                    .bind(user)
                    .bind(entry.actor)
                    .bind(entry.detail)
                    .bind(at)
                    .execute(conn)
                    .await
                    .map(|_| ()))?;
            }
            audit(&mut tx, entry, at).await?;
        }
        let left: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT count(*) FROM members WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_one(conn)
            .await)?;
        if left == 0 {
            exec(&mut tx, "DELETE FROM conversations WHERE id = $1 AND kind = 'room'", &[conversation]).await?;
        } else {
            publish(&mut tx, conversation, serde_json::json!({"type": why, "user_id": user}), Vec::new()).await?;
        }
        record_publication(
            &mut tx,
            domain::user_channel(user),
            serde_json::json!({"type": why, "conversation_id": conversation}),
            Vec::new(),
            false,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts a ban.
    pub async fn unban(&self, entry: &AuditEntry<'_>, user: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let conversation = entry.conversation.unwrap_or_default();
        let sql = "DELETE FROM bans WHERE conversation_id = $1 AND user_id = $2";
        let deleted = exec(&mut tx, sql, &[conversation, user]).await?;
        if deleted > 0 {
            audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    pub async fn bans(&self, conversation: Uuid) -> Result<Vec<Ban>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT b.user_id, p.display_name, b.banned_by, b.reason, b.banned_at FROM bans b
             LEFT JOIN people p ON p.user_id = b.user_id WHERE b.conversation_id = $1 ORDER BY b.banned_at DESC")
            .bind(conversation)
            .fetch_all(pool)
            .await)
    }

    /// Mutes `user` until `until` (`None` lifts it).
    pub async fn mute(
        &self,
        entry: &AuditEntry<'_>,
        user: Uuid,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let conversation = entry.conversation.unwrap_or_default();
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query("UPDATE members SET muted_until = $3 WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .bind(until)
            .execute(conn)
            .await
            .map(|_| ()))?;
        let data = serde_json::json!({"type": "member_muted", "user_id": user, "muted_until": until});
        moderated(tx, entry, now, conversation, data).await
    }

    /// Sets `user`'s role; handing the room over makes the old owner an admin.
    pub async fn set_role(
        &self,
        entry: &AuditEntry<'_>,
        user: Uuid,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let conversation = entry.conversation.unwrap_or_default();
        let mut tx = self.db.begin().await?;
        if role == Role::Owner {
            let demote = "UPDATE members SET role = 'admin' WHERE conversation_id = $1 AND role = 'owner'";
            exec(&mut tx, demote, &[conversation]).await?;
            exec(&mut tx, "UPDATE conversations SET owner_id = $2 WHERE id = $1", &[conversation, user]).await?;
        }
        with_tx!(&mut tx, conn => sqlx::query("UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .bind(role)
            .execute(conn)
            .await
            .map(|_| ()))?;
        let data = serde_json::json!({"type": "role_changed", "user_id": user, "role": role});
        moderated(tx, entry, now, conversation, data).await
    }

    /// Changes a room's settings; `None` leaves one as it is.
    #[allow(clippy::too_many_arguments)]
    pub async fn configure(
        &self,
        entry: &AuditEntry<'_>,
        topic: Option<&str>,
        slow_mode_secs: Option<i32>,
        access: Option<(Visibility, Option<&str>)>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let conversation = entry.conversation.unwrap_or_default();
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE conversations SET topic = COALESCE($2, topic), slow_mode_secs = COALESCE($3, slow_mode_secs),
                 visibility = COALESCE($4, visibility),
                 password_hash = CASE WHEN $4 IS NULL THEN password_hash ELSE $5 END
             WHERE id = $1")
            .bind(conversation)
            .bind(topic)
            .bind(slow_mode_secs)
            .bind(access.map(|a| a.0))
            .bind(access.and_then(|a| a.1))
            .execute(conn)
            .await
            .map(|_| ()))?;
        let data = serde_json::json!({"type": "room_updated", "topic": topic, "slow_mode_secs": slow_mode_secs,
            "visibility": access.map(|a| a.0)});
        moderated(tx, entry, now, conversation, data).await
    }

    /// Invites `user`, who is told on their own channel.
    pub async fn invite(
        &self,
        room: &Conversation,
        user: Uuid,
        by: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let inserted = with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO invitations (conversation_id, user_id, invited_by, invited_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING")
            .bind(room.id)
            .bind(user)
            .bind(by)
            .bind(now)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
        if inserted > 0 {
            record_publication(
                &mut tx,
                domain::user_channel(user),
                serde_json::json!({"type": "invitation", "conversation_id": room.id, "room_name": room.name,
                    "invited_by": by}),
                Vec::new(),
                false,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `user`'s invitations, newest first (those from people they blocked left out).
    pub async fn invitations(&self, user: Uuid) -> Result<Vec<Invitation>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT i.conversation_id, c.name AS room_name, i.invited_by, p.display_name AS inviter_name, i.invited_at
             FROM invitations i JOIN conversations c ON c.id = i.conversation_id
             LEFT JOIN people p ON p.user_id = i.invited_by
             WHERE i.user_id = $1
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = $1 AND b.blocked = i.invited_by)
             ORDER BY i.invited_at DESC")
            .bind(user)
            .fetch_all(pool)
            .await)
    }

    pub async fn decline(&self, conversation: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "DELETE FROM invitations WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    // ---- messages ---------------------------------------------------------

    /// Posts a message: numbered next in its conversation, the author's
    /// marker moved past it, delivered (live, to every member but those who
    /// blocked the author) and announced, in one transaction.
    pub async fn post(&self, new: NewMessage<'_>, now: DateTime<Utc>) -> Result<Message, sqlx::Error> {
        let conversation = new.conversation.id;
        let id = Uuid::now_v7();
        let mut tx = self.db.begin().await?;
        // Taking the number locks the conversation's row (PostgreSQL) or the
        // database (SQLite): messages of one conversation are numbered, and
        // their publications recorded, in one order.
        let seq: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, last_message_at = $2 WHERE id = $1 RETURNING last_seq")
            .bind(conversation)
            .bind(now)
            .fetch_one(conn)
            .await)?;
        let card = new.card.map(serde_json::Value::to_string);
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, author_id, kind, body, card, created_at, search_text)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(id)
            .bind(conversation)
            .bind(seq)
            .bind(new.author)
            .bind(new.kind)
            .bind(new.body)
            .bind(card.as_deref())
            .bind(now)
            .bind(domain::search_text(new.body))
            .execute(conn)
            .await
            .map(|_| ()))?;
        if let Some(author) = new.author {
            with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE members SET last_posted_at = $3, last_read_seq = $4 WHERE conversation_id = $1 AND user_id = $2")
                .bind(conversation)
                .bind(author)
                .bind(now)
                .bind(seq)
                .execute(conn)
                .await
                .map(|_| ()))?;
        }
        let message: Message = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN people p ON p.user_id = m.author_id WHERE m.id = $1")))
            .bind(id)
            .fetch_one(conn)
            .await)?;
        let (recipients, skip) = audience(&mut tx, conversation, new.author).await?;
        publish(&mut tx, conversation, crate::events::message_pushed("message", &message), skip).await?;
        tx.record(&MessagePosted {
            message_id: id,
            conversation_id: conversation,
            conversation_kind: if new.conversation.kind == Kind::Direct { "direct" } else { "room" }.to_owned(),
            seq,
            author_id: new.author,
            message_kind: crate::events::kind_name(new.kind).to_owned(),
            recipients,
            posted_at: now,
        })
        .await?;
        tx.commit().await?;
        Ok(message)
    }

    pub async fn message(&self, conversation: Uuid, id: Uuid) -> Result<Option<Message>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN people p ON p.user_id = m.author_id
             WHERE m.id = $1 AND m.conversation_id = $2")))
            .bind(id)
            .bind(conversation)
            .fetch_optional(pool)
            .await)
    }

    /// Edits a message's text (`Some`) or deletes it, leaving a tombstone
    /// (`None`); the conversation sees the change live. `audit` when a
    /// moderator removed someone else's message.
    pub async fn revise(
        &self,
        message: &Message,
        body: Option<&str>,
        audit_entry: Option<&AuditEntry<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Message, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        match body {
            Some(body) => with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE messages SET body = $2, search_text = $3, edited_at = $4 WHERE id = $1")
                .bind(message.id)
                .bind(body)
                .bind(domain::search_text(body))
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ()))?,
            None => with_tx!(&mut tx, conn => sqlx::query(
                "UPDATE messages SET body = '', card = NULL, search_text = '', deleted_at = $2 WHERE id = $1")
                .bind(message.id)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ()))?,
        }
        if let Some(entry) = audit_entry {
            audit(&mut tx, entry, now).await?;
        }
        let revised: Message = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN people p ON p.user_id = m.author_id WHERE m.id = $1")))
            .bind(message.id)
            .fetch_one(conn)
            .await)?;
        let (_, skip) = audience(&mut tx, message.conversation_id, message.author_id).await?;
        let what = if body.is_some() { "message_edited" } else { "message_deleted" };
        publish(&mut tx, message.conversation_id, crate::events::message_pushed(what, &revised), skip).await?;
        tx.commit().await?;
        Ok(revised)
    }

    /// A page of `viewer`'s view of a conversation: before `before` (newest
    /// first), or after `after` (oldest first); at most `limit`.
    pub async fn messages(
        &self,
        conversation: Uuid,
        viewer: Uuid,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>, sqlx::Error> {
        let (cmp, order, bound) = match (before, after) {
            (_, Some(after)) => (">", "ASC", after),
            (Some(before), None) => ("<", "DESC", before),
            (None, None) => ("<", "DESC", i64::MAX),
        };
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN people p ON p.user_id = m.author_id
             WHERE m.conversation_id = $2 AND m.seq {cmp} $3 AND (m.author_id IS NULL OR {NOT_BLOCKED})
             ORDER BY m.seq {order} LIMIT $4")))
            .bind(viewer)
            .bind(conversation)
            .bind(bound)
            .bind(limit)
            .fetch_all(pool)
            .await)
    }

    /// Moves `user`'s read marker forward to `seq` (never back, never past
    /// the last message); the new marker.
    pub async fn mark_read(&self, conversation: Uuid, user: Uuid, seq: i64) -> Result<i64, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE members SET last_read_seq = CASE
                 WHEN $3 > last_read_seq THEN
                   CASE WHEN $3 > (SELECT last_seq FROM conversations WHERE id = $1)
                        THEN (SELECT last_seq FROM conversations WHERE id = $1) ELSE $3 END
                 ELSE last_read_seq END
             WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .bind(seq)
            .execute(conn)
            .await
            .map(|_| ()))?;
        let marker: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT last_read_seq FROM members WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .fetch_one(conn)
            .await)?;
        // The user's other sockets clear the badge.
        record_publication(
            &mut tx,
            domain::user_channel(user),
            serde_json::json!({"type": "read", "conversation_id": conversation, "seq": marker}),
            Vec::new(),
            false,
        )
        .await?;
        tx.commit().await?;
        Ok(marker)
    }

    /// Tells the conversation that `user` is typing (not kept, not numbered).
    pub async fn typing(&self, conversation: Uuid, user: Uuid) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let (_, skip) = audience(&mut tx, conversation, Some(user)).await?;
        record_publication(
            &mut tx,
            domain::channel(conversation),
            serde_json::json!({"type": "typing", "user_id": user}),
            skip,
            true,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Messages in `viewer`'s conversations holding every one of `words`,
    /// newest first, after the message id `after` (a page's last).
    pub async fn search(
        &self,
        viewer: Uuid,
        words: &[String],
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, sqlx::Error> {
        // Words are letters and digits only (domain::search_words): nothing
        // in them is query syntax on either side.
        let (matcher, query) = match self.db.backend() {
            Backend::Sqlite => (
                "m.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH $2)",
                words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" "),
            ),
            Backend::Postgres => ("m.search_vector @@ to_tsquery('simple', $2)", words.join(" & ")),
        };
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = $1
             LEFT JOIN people p ON p.user_id = m.author_id
             WHERE {matcher} AND m.deleted_at IS NULL AND (m.author_id IS NULL OR {NOT_BLOCKED})
               AND ($3 IS NULL OR m.id < $3)
             ORDER BY m.id DESC LIMIT $4")))
            .bind(viewer)
            .bind(query)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await)
    }

    // ---- moderation -------------------------------------------------------

    pub async fn report(
        &self,
        message: &Message,
        reporter: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO reports (id, message_id, conversation_id, reporter_id, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(message.id)
            .bind(message.conversation_id)
            .bind(reporter)
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(id)
    }

    /// Reports, open ones first then newest, after the report id `after`.
    pub async fn reports(&self, open_only: bool, after: Option<Uuid>, limit: i64) -> Result<Vec<Report>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, message_id, conversation_id, reporter_id, reason, created_at, resolved_at, resolved_by, resolution
             FROM reports WHERE ($1 = FALSE OR resolved_at IS NULL) AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3")
            .bind(open_only)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await)
    }

    pub async fn resolve_report(
        &self,
        entry: &AuditEntry<'_>,
        report: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let n = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE reports SET resolved_at = $2, resolved_by = $3, resolution = $4 WHERE id = $1 AND resolved_at IS NULL")
            .bind(report)
            .bind(now)
            .bind(entry.actor)
            .bind(entry.detail)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
        if n > 0 {
            audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The audit log, newest first: one room's, or every room's (`None`).
    pub async fn audit_log(
        &self,
        conversation: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Audit>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, conversation_id, actor_id, action, target_user, target_message, detail, at FROM audit_log
             WHERE ($1 IS NULL OR conversation_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
            .bind(conversation)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await)
    }

    // ---- GDPR -------------------------------------------------------------

    /// What `user` wrote (text messages, not deleted), oldest first.
    pub async fn authored(&self, user: Uuid) -> Result<Vec<Message>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN people p ON p.user_id = m.author_id
             WHERE m.author_id = $1 AND m.deleted_at IS NULL ORDER BY m.id")))
            .bind(user)
            .fetch_all(pool)
            .await)
    }

    pub async fn reports_by(&self, user: Uuid) -> Result<Vec<Report>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, message_id, conversation_id, reporter_id, reason, created_at, resolved_at, resolved_by, resolution
             FROM reports WHERE reporter_id = $1 ORDER BY id")
            .bind(user)
            .fetch_all(pool)
            .await)
    }

    /// Erases what chat holds about `user` (GDPR art. 17): their name and
    /// avatar become "deleted user", their memberships, invitations, blocks,
    /// bans and reports' authorship go; rooms they owned pass to their
    /// longest-standing admin (or member), or close when empty. Messages
    /// stay — they are part of other people's conversations — under no name.
    pub async fn erase(tx: &mut Tx, user: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO people (user_id, display_name, avatar_url, erased, updated_at) VALUES ($1, 'deleted user', NULL, TRUE, $2)
             ON CONFLICT (user_id) DO UPDATE SET display_name = 'deleted user', avatar_url = NULL, erased = TRUE, updated_at = $2")
            .bind(user)
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ()))?;
        let owned: Vec<Uuid> = with_tx!(tx, conn => sqlx::query_scalar("SELECT id FROM conversations WHERE owner_id = $1")
            .bind(user)
            .fetch_all(conn)
            .await)?;
        for statement in [
            "DELETE FROM members WHERE user_id = $1 AND conversation_id IN (SELECT id FROM conversations WHERE kind = 'room')",
            "DELETE FROM invitations WHERE user_id = $1 OR invited_by = $1",
            "DELETE FROM blocks WHERE blocker = $1 OR blocked = $1",
            "DELETE FROM bans WHERE user_id = $1",
            "UPDATE reports SET reporter_id = NULL WHERE reporter_id = $1",
            "UPDATE conversations SET owner_id = NULL WHERE owner_id = $1",
        ] {
            exec(tx, statement, &[user]).await?;
        }
        for room in owned {
            let heir: Option<Uuid> = with_tx!(tx, conn => sqlx::query_scalar(
                "SELECT user_id FROM members WHERE conversation_id = $1
                 ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1")
                .bind(room)
                .fetch_optional(conn)
                .await)?;
            match heir {
                Some(heir) => {
                    let promote = "UPDATE members SET role = 'owner' WHERE conversation_id = $1 AND user_id = $2";
                    exec(tx, promote, &[room, heir]).await?;
                    exec(tx, "UPDATE conversations SET owner_id = $2 WHERE id = $1", &[room, heir]).await?;
                }
                None => {
                    exec(tx, "DELETE FROM conversations WHERE id = $1", &[room]).await?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `sql` with `ids` bound in order; the rows it changed.
async fn exec(tx: &mut Tx, sql: &'static str, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    with_tx!(tx, conn => {
        let mut query = sqlx::query(sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.execute(conn).await.map(|r| r.rows_affected())
    })
}

/// Records a moderation action in the audit log, tells the conversation
/// (`data`), and commits.
async fn moderated(
    mut tx: Tx,
    entry: &AuditEntry<'_>,
    at: DateTime<Utc>,
    conversation: Uuid,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit(&mut tx, entry, at).await?;
    publish(&mut tx, conversation, data, Vec::new()).await?;
    tx.commit().await
}

/// Adds a member (`false` when already one).
async fn add_member(
    tx: &mut Tx,
    conversation: Uuid,
    user: Uuid,
    role: Role,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // A newcomer has read what was said before they came.
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, last_read_seq)
         VALUES ($1, $2, $3, $4, (SELECT last_seq FROM conversations WHERE id = $1)) ON CONFLICT DO NOTHING")
        .bind(conversation)
        .bind(user)
        .bind(role)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Who a message of `author` reaches in `conversation` (every member but
/// the author and those who blocked the author), and who must not see it.
async fn audience(
    tx: &mut Tx,
    conversation: Uuid,
    author: Option<Uuid>,
) -> Result<(Vec<Uuid>, Vec<Uuid>), sqlx::Error> {
    let rows: Vec<(Uuid, bool)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT mb.user_id, EXISTS (SELECT 1 FROM blocks b WHERE b.blocker = mb.user_id AND b.blocked = $2)
         FROM members mb WHERE mb.conversation_id = $1")
        .bind(conversation)
        .bind(author)
        .fetch_all(conn)
        .await)?;
    let skip = rows.iter().filter(|(_, blocked)| *blocked).map(|(u, _)| *u).collect();
    let recipients = rows.into_iter().filter(|(u, blocked)| !blocked && Some(*u) != author).map(|(u, _)| u).collect();
    Ok((recipients, skip))
}

/// Records a publication on a conversation's channel.
async fn publish(tx: &mut Tx, conversation: Uuid, data: serde_json::Value, skip: Vec<Uuid>) -> Result<(), sqlx::Error> {
    record_publication(tx, domain::channel(conversation), data, skip, false).await
}

async fn record_publication(
    tx: &mut Tx,
    channel: String,
    data: serde_json::Value,
    skip_users: Vec<Uuid>,
    ephemeral: bool,
) -> Result<(), sqlx::Error> {
    tx.record(&Publication { channel, data, skip_users, ephemeral }).await
}

async fn audit(tx: &mut Tx, entry: &AuditEntry<'_>, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO audit_log (id, conversation_id, actor_id, action, target_user, target_message, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(Uuid::now_v7())
        .bind(entry.conversation)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target_user)
        .bind(entry.target_message)
        .bind(entry.detail)
        .bind(at)
        .execute(conn)
        .await
        .map(|_| ()))
}
