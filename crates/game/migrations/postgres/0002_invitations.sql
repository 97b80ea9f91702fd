-- Invitations to a match, sent as a card in the two users' direct
-- conversation in chat; accepted, the match is created with both seated.
CREATE TABLE invitations (
    id          UUID PRIMARY KEY,
    from_user   UUID NOT NULL,
    to_user     UUID NOT NULL,
    mode        TEXT NOT NULL,
    options     TEXT NOT NULL,
    -- pending, accepted, declined, withdrawn.
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    answered_at TIMESTAMPTZ,
    match_id    UUID
);
CREATE INDEX invitations_to ON invitations (to_user, created_at);
CREATE INDEX invitations_from ON invitations (from_user, created_at);
