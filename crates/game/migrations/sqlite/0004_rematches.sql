-- Rematch requests of finished matches, and the match each one made.
CREATE TABLE rematch_requests (
    match_id  BLOB NOT NULL REFERENCES matches (id),
    user_id   BLOB NOT NULL,
    asked_at  TEXT NOT NULL,
    PRIMARY KEY (match_id, user_id)
);
CREATE TABLE rematches (
    match_id     BLOB PRIMARY KEY NOT NULL REFERENCES matches (id),
    new_match_id BLOB NOT NULL REFERENCES matches (id)
);
