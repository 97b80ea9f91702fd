-- Tournaments: registering, then running, then finished.
CREATE TABLE tournaments (
    id             BLOB PRIMARY KEY,
    name           TEXT NOT NULL,
    format         TEXT NOT NULL,
    seeding        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    capacity       INTEGER NOT NULL,
    organiser      BLOB,
    status         TEXT NOT NULL,
    -- The random draw's seed, kept so a draw can be replayed.
    seed           BIGINT NOT NULL,
    rounds         INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    -- The final standings (JSON), once finished.
    standings      TEXT
);
CREATE INDEX tournaments_by_status ON tournaments (status, id);

-- Entrants: a player (online) or an alias a host entered (local; no
-- user). `seed` once the tournament started (1 first).
CREATE TABLE entrants (
    tournament_id  BLOB NOT NULL REFERENCES tournaments (id),
    entrant_id     BLOB NOT NULL,
    user_id        BLOB,
    alias          TEXT NOT NULL,
    alias_key      TEXT NOT NULL,
    rating         REAL NOT NULL,
    seed           INTEGER,
    joined_at      TEXT NOT NULL,
    PRIMARY KEY (tournament_id, entrant_id),
    UNIQUE (tournament_id, alias_key),
    UNIQUE (tournament_id, user_id)
);
CREATE INDEX entrants_by_user ON entrants (user_id);

-- The matches as they become known: (round, idx) is the bracket's place
-- (elimination) or the pairing's number in its round (Swiss). `b` absent:
-- a bye, its winner `a`.
CREATE TABLE pairings (
    tournament_id  BLOB NOT NULL REFERENCES tournaments (id),
    round          INTEGER NOT NULL,
    idx            INTEGER NOT NULL,
    a              BLOB NOT NULL,
    b              BLOB,
    winner         BLOB,
    created_at     TEXT NOT NULL,
    decided_at     TEXT,
    PRIMARY KEY (tournament_id, round, idx)
);

-- Players' ratings from stats' rating_changed (duel), for seeding.
CREATE TABLE ratings (
    user_id     BLOB PRIMARY KEY,
    rating      REAL NOT NULL,
    updated_at  TEXT NOT NULL
);
