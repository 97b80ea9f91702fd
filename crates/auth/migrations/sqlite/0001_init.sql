-- Accounts, sessions (refresh-token families), refresh tokens, signing keys.
-- The outbox is kit's (the bus migrations).
-- Ids are UUIDs (16-byte blobs); times are RFC 3339 text in UTC.

CREATE TABLE users (
    id              BLOB PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    email_verified  INTEGER NOT NULL DEFAULT 0,
    disabled_at     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
-- Emails are stored lower-cased, so this is a case-insensitive uniqueness rule.
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE user_roles (
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    granted_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- A session is one sign-in on one device: one family of rotating refresh tokens.
CREATE TABLE sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    revoked_at      TEXT,
    revoked_reason  TEXT,
    user_agent      TEXT,
    ip              TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Only the SHA-256 of a refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    session_id  BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

-- Ed25519 signing keys. A key signs until retired_at and is published until
-- expires_at (after the last token it signed has expired).
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    algorithm    TEXT NOT NULL,
    private_key  BLOB NOT NULL,
    public_key   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    retired_at   TEXT,
    expires_at   TEXT
);
