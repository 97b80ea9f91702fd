-- A person's phone number for SMS: verified by a code sent to it (only a
-- verified number gets notifications). The code is kept hashed, for ten
-- minutes and five tries.
CREATE TABLE phones (
    user_id          BLOB PRIMARY KEY,
    number           TEXT NOT NULL,
    verified_at      TEXT,
    code_hash        BLOB,
    code_expires_at  TEXT,
    code_attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at       TEXT NOT NULL
);

-- The provider's id of a message (Twilio's Message SID): its status
-- callbacks name it.
ALTER TABLE deliveries ADD COLUMN provider_id TEXT;
CREATE INDEX deliveries_by_provider_id ON deliveries (provider_id);
