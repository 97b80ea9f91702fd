-- Profiles, friendships and blocks. Ids are UUIDs (16-byte blobs); times are
-- RFC 3339 text in UTC.

CREATE TABLE profiles (
    user_id           BLOB PRIMARY KEY NOT NULL,
    display_name      TEXT NOT NULL,
    -- The name folded for comparison (case, compatibility forms, confusable
    -- characters): two names with the same key look the same to people.
    display_name_key  TEXT NOT NULL,
    bio               TEXT NOT NULL DEFAULT '',
    locale            TEXT,
    timezone          TEXT,
    -- who sees bio, locale and timezone / last seen / may send friend requests
    profile_audience  TEXT NOT NULL DEFAULT 'everyone',
    status_audience   TEXT NOT NULL DEFAULT 'friends',
    requests_audience TEXT NOT NULL DEFAULT 'everyone',
    avatar_etag       TEXT,
    status            TEXT NOT NULL DEFAULT 'active',
    banned_reason     TEXT,
    last_seen_at      TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX profiles_display_name_key ON profiles (display_name_key);

-- Search results and listings come in name order, page by page.
CREATE INDEX profiles_name_order ON profiles (lower(display_name), user_id);

-- One row per pair, the smaller id first.
CREATE TABLE friendships (
    user_low      BLOB NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    user_high     BLOB NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    requested_by  BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (user_low, user_high)
);
CREATE INDEX friendships_high ON friendships (user_high);

CREATE TABLE blocks (
    blocker     BLOB NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    blocked     BLOB NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);
