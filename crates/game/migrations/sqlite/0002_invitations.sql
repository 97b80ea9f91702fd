-- Invitations to a match, sent as a card in the two users' direct
-- conversation in chat; accepted, the match is created with both seated.
CREATE TABLE invitations (
    id          BLOB PRIMARY KEY NOT NULL,
    from_user   BLOB NOT NULL,
    to_user     BLOB NOT NULL,
    mode        TEXT NOT NULL,
    options     TEXT NOT NULL,
    -- pending, accepted, declined, withdrawn.
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    answered_at TEXT,
    match_id    BLOB
);
CREATE INDEX invitations_to ON invitations (to_user, created_at);
CREATE INDEX invitations_from ON invitations (from_user, created_at);
