-- Conversations, members, messages, moderation, and the copies chat keeps of
-- users' data (names, avatars, blocks).

-- Names and avatars shown beside messages, from users' events.
CREATE TABLE people (
    user_id       UUID PRIMARY KEY,
    display_name  TEXT NOT NULL,
    avatar_url    TEXT,
    erased        BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Who blocked whom, from users' user_blocked / user_unblocked.
CREATE TABLE blocks (
    blocker  UUID NOT NULL,
    blocked  UUID NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);

CREATE TABLE conversations (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    -- Rooms: name (unique without regard to case), topic, who may join.
    name             TEXT,
    name_key         TEXT UNIQUE,
    topic            TEXT NOT NULL DEFAULT '',
    visibility       TEXT,
    password_hash    TEXT,
    slow_mode_secs   INTEGER NOT NULL DEFAULT 0,
    owner_id         UUID,
    -- Direct conversations: "<smaller id>:<larger id>".
    direct_key       TEXT UNIQUE,
    -- The last message's number; messages are numbered 1, 2, … per conversation.
    last_seq         BIGINT NOT NULL DEFAULT 0,
    last_message_at  TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner_id);

CREATE TABLE members (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          UUID NOT NULL,
    role             TEXT NOT NULL,
    joined_at        TIMESTAMPTZ NOT NULL,
    muted_until      TIMESTAMPTZ,
    -- The last message number the member has read.
    last_read_seq    BIGINT NOT NULL DEFAULT 0,
    last_posted_at   TIMESTAMPTZ,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE bans (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          UUID NOT NULL,
    banned_by        UUID NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    banned_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE invitations (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          UUID NOT NULL,
    invited_by       UUID NOT NULL,
    invited_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX invitations_user ON invitations (user_id);

CREATE TABLE messages (
    id               UUID PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    author_id        UUID,
    kind             TEXT NOT NULL,
    body             TEXT NOT NULL,
    -- Cards: the typed payload, JSON.
    card             TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    edited_at        TIMESTAMPTZ,
    -- A deleted message stays as a tombstone: numbered, body emptied.
    deleted_at       TIMESTAMPTZ,
    -- The words search finds it by (domain::search_text), and their vector:
    -- the 'simple' configuration neither stems nor drops stop words, like
    -- the SQLite index.
    search_text      TEXT NOT NULL DEFAULT '',
    search_vector    TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_author ON messages (author_id);
CREATE INDEX messages_search ON messages USING GIN (search_vector);

CREATE TABLE reports (
    id               UUID PRIMARY KEY,
    message_id       UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id  UUID NOT NULL,
    reporter_id      UUID,
    reason           TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    resolved_at      TIMESTAMPTZ,
    resolved_by      UUID,
    resolution       TEXT
);
CREATE INDEX reports_open ON reports (resolved_at, created_at);

-- Every moderation action, kept.
CREATE TABLE audit_log (
    id               UUID PRIMARY KEY,
    conversation_id  UUID,
    actor_id         UUID NOT NULL,
    action           TEXT NOT NULL,
    target_user      UUID,
    target_message   UUID,
    detail           TEXT NOT NULL DEFAULT '',
    at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_conversation ON audit_log (conversation_id, id);
