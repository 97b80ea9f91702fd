-- Rematch requests of finished matches, and the match each one made.
CREATE TABLE rematch_requests (
    match_id  UUID NOT NULL REFERENCES matches (id),
    user_id   UUID NOT NULL,
    asked_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (match_id, user_id)
);
CREATE TABLE rematches (
    match_id     UUID PRIMARY KEY REFERENCES matches (id),
    new_match_id UUID NOT NULL REFERENCES matches (id)
);
