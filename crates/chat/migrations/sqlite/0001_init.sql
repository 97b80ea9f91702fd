-- Conversations, members, messages, moderation, and the copies chat keeps of
-- users' data (names, avatars, blocks). Ids are UUIDs (16-byte blobs); times
-- are RFC 3339 text in UTC.

-- Names and avatars shown beside messages, from users' events.
CREATE TABLE people (
    user_id       BLOB PRIMARY KEY NOT NULL,
    display_name  TEXT NOT NULL,
    avatar_url    TEXT,
    erased        INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL
);

-- Who blocked whom, from users' user_blocked / user_unblocked.
CREATE TABLE blocks (
    blocker  BLOB NOT NULL,
    blocked  BLOB NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);

CREATE TABLE conversations (
    id               BLOB PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    -- Rooms: name (unique without regard to case), topic, who may join.
    name             TEXT,
    name_key         TEXT UNIQUE,
    topic            TEXT NOT NULL DEFAULT '',
    visibility       TEXT,
    password_hash    TEXT,
    slow_mode_secs   INTEGER NOT NULL DEFAULT 0,
    owner_id         BLOB,
    -- Direct conversations: "<smaller id>:<larger id>".
    direct_key       TEXT UNIQUE,
    -- The last message's number; messages are numbered 1, 2, … per conversation.
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_message_at  TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner_id);

CREATE TABLE members (
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          BLOB NOT NULL,
    role             TEXT NOT NULL,
    joined_at        TEXT NOT NULL,
    muted_until      TEXT,
    -- The last message number the member has read.
    last_read_seq    INTEGER NOT NULL DEFAULT 0,
    last_posted_at   TEXT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE bans (
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          BLOB NOT NULL,
    banned_by        BLOB NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    banned_at        TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE invitations (
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          BLOB NOT NULL,
    invited_by       BLOB NOT NULL,
    invited_at       TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX invitations_user ON invitations (user_id);

CREATE TABLE messages (
    id               BLOB PRIMARY KEY NOT NULL,
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    author_id        BLOB,
    kind             TEXT NOT NULL,
    body             TEXT NOT NULL,
    -- Cards: the typed payload, JSON.
    card             TEXT,
    created_at       TEXT NOT NULL,
    edited_at        TEXT,
    -- A deleted message stays as a tombstone: numbered, body emptied.
    deleted_at       TEXT,
    -- The words search finds it by (domain::search_text).
    search_text      TEXT NOT NULL DEFAULT '',
    UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_author ON messages (author_id);

-- Full-text search: an FTS5 index over search_text, kept by triggers. The
-- words are made by chat (lower-cased runs of letters and digits), so the
-- tokenizer only splits on spaces and folds nothing more.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    search_text, content = 'messages', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF search_text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
    INSERT INTO messages_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;

CREATE TABLE reports (
    id               BLOB PRIMARY KEY NOT NULL,
    message_id       BLOB NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id  BLOB NOT NULL,
    reporter_id      BLOB,
    reason           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    resolved_at      TEXT,
    resolved_by      BLOB,
    resolution       TEXT
);
CREATE INDEX reports_open ON reports (resolved_at, created_at);

-- Every moderation action, kept.
CREATE TABLE audit_log (
    id               BLOB PRIMARY KEY NOT NULL,
    conversation_id  BLOB,
    actor_id         BLOB NOT NULL,
    action           TEXT NOT NULL,
    target_user      BLOB,
    target_message   BLOB,
    detail           TEXT NOT NULL DEFAULT '',
    at               TEXT NOT NULL
);
CREATE INDEX audit_log_conversation ON audit_log (conversation_id, id);
