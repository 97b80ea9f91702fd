-- Matches and their players; options, snapshots and results are JSON text.

CREATE TABLE matches (
    id          UUID PRIMARY KEY,
    mode        TEXT NOT NULL,
    origin      TEXT NOT NULL,
    options     TEXT NOT NULL,
    seed        BIGINT NOT NULL,
    seats       INTEGER NOT NULL,
    -- Seats taken so far; a join takes the next one with one UPDATE.
    joined      INTEGER NOT NULL DEFAULT 0,
    -- waiting (for players), live, finished.
    status      TEXT NOT NULL,
    created_by  UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    -- The simulation's state at the last goal or pause, while live: what a
    -- restarted process resumes from.
    snapshot    TEXT,
    -- The match_finished payload, once finished.
    result      TEXT
);
CREATE INDEX matches_status ON matches (status, id);

CREATE TABLE match_players (
    match_id   UUID NOT NULL REFERENCES matches (id),
    seat       INTEGER NOT NULL,
    user_id    UUID NOT NULL,
    bot        BOOLEAN NOT NULL DEFAULT FALSE,
    joined_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (match_id, seat),
    UNIQUE (match_id, user_id)
);
CREATE INDEX match_players_user ON match_players (user_id, match_id);
