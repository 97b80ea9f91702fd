-- Matches and their players. Ids are UUIDs (16-byte blobs); times are
-- RFC 3339 text in UTC; options, snapshots and results are JSON text.

CREATE TABLE matches (
    id          BLOB PRIMARY KEY NOT NULL,
    mode        TEXT NOT NULL,
    origin      TEXT NOT NULL,
    options     TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    seats       INTEGER NOT NULL,
    -- Seats taken so far; a join takes the next one with one UPDATE.
    joined      INTEGER NOT NULL DEFAULT 0,
    -- waiting (for players), live, finished.
    status      TEXT NOT NULL,
    created_by  BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    -- The simulation's state at the last goal or pause, while live: what a
    -- restarted process resumes from.
    snapshot    TEXT,
    -- The match_finished payload, once finished.
    result      TEXT
);
CREATE INDEX matches_status ON matches (status, id);

CREATE TABLE match_players (
    match_id   BLOB NOT NULL REFERENCES matches (id),
    seat       INTEGER NOT NULL,
    user_id    BLOB NOT NULL,
    bot        INTEGER NOT NULL DEFAULT 0,
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (match_id, seat),
    UNIQUE (match_id, user_id)
);
CREATE INDEX match_players_user ON match_players (user_id, match_id);
