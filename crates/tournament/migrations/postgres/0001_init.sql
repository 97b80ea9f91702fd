-- Tournaments: registering, then running, then finished.
CREATE TABLE tournaments (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL,
    format         TEXT NOT NULL,
    seeding        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    capacity       INTEGER NOT NULL,
    organiser      UUID,
    status         TEXT NOT NULL,
    -- The random draw's seed, kept so a draw can be replayed.
    seed           BIGINT NOT NULL,
    rounds         INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    -- The final standings (JSON), once finished.
    standings      TEXT
);
CREATE INDEX tournaments_by_status ON tournaments (status, id);

-- Entrants: a player (online) or an alias a host entered (local; no
-- user). `seed` once the tournament started (1 first).
CREATE TABLE entrants (
    tournament_id  UUID NOT NULL REFERENCES tournaments (id),
    entrant_id     UUID NOT NULL,
    user_id        UUID,
    alias          TEXT NOT NULL,
    alias_key      TEXT NOT NULL,
    rating         DOUBLE PRECISION NOT NULL,
    seed           INTEGER,
    joined_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tournament_id, entrant_id),
    UNIQUE (tournament_id, alias_key),
    UNIQUE (tournament_id, user_id)
);
CREATE INDEX entrants_by_user ON entrants (user_id);

-- The matches as they become known: (round, idx) is the bracket's place
-- (elimination) or the pairing's number in its round (Swiss). `b` absent:
-- a bye, its winner `a`.
CREATE TABLE pairings (
    tournament_id  UUID NOT NULL REFERENCES tournaments (id),
    round          INTEGER NOT NULL,
    idx            INTEGER NOT NULL,
    a              UUID NOT NULL,
    b              UUID,
    winner         UUID,
    created_at     TIMESTAMPTZ NOT NULL,
    decided_at     TIMESTAMPTZ,
    PRIMARY KEY (tournament_id, round, idx)
);

-- Players' ratings from stats' rating_changed (duel), for seeding.
CREATE TABLE ratings (
    user_id     UUID PRIMARY KEY,
    rating      DOUBLE PRECISION NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
