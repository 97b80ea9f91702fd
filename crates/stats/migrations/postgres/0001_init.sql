-- Stats: read models built only from game's match_finished, and the
-- journal of those events they are rebuilt from (`panal stats rebuild`).

-- Every match_finished applied, in the order it was applied: a rebuild
-- replays them in this order and gets the same numbers.
CREATE TABLE journal (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    match_id    UUID NOT NULL UNIQUE,
    -- The event's payload (JSON); an erased player's id is replaced by
    -- their pseudonym here too.
    body        TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

-- One row: rebuilds and event handlers take its lock first, so a rebuild
-- never interleaves with a match being applied.
CREATE TABLE projection_lock (
    id       INTEGER PRIMARY KEY,
    rebuilds BIGINT NOT NULL DEFAULT 0
);
INSERT INTO projection_lock (id) VALUES (1);

-- A player's numbers in one mode.
CREATE TABLE players (
    user_id       UUID NOT NULL,
    mode          TEXT NOT NULL,
    bot           BOOLEAN NOT NULL,
    rating        DOUBLE PRECISION NOT NULL,
    deviation     DOUBLE PRECISION NOT NULL,
    volatility    DOUBLE PRECISION NOT NULL,
    rated_matches INTEGER NOT NULL,
    matches       INTEGER NOT NULL,
    wins          INTEGER NOT NULL,
    losses        INTEGER NOT NULL,
    forfeits      INTEGER NOT NULL,
    -- Positive: wins in a row; negative: losses in a row.
    streak        INTEGER NOT NULL,
    best_streak   INTEGER NOT NULL,
    scored        INTEGER NOT NULL,
    conceded      INTEGER NOT NULL,
    last_match_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, mode)
);
CREATE INDEX players_board ON players (mode, rating DESC, user_id);

-- One line per player per match: a player's match history.
CREATE TABLE history (
    user_id       UUID NOT NULL,
    match_id      UUID NOT NULL,
    mode          TEXT NOT NULL,
    origin        TEXT NOT NULL,
    finished_at   TIMESTAMPTZ NOT NULL,
    duration_ms   BIGINT NOT NULL,
    place         INTEGER NOT NULL,
    won           BOOLEAN NOT NULL,
    forfeited     BOOLEAN NOT NULL,
    scored        INTEGER NOT NULL,
    conceded      INTEGER NOT NULL,
    -- The other players: [{"user_id", "bot", "place"}] (JSON).
    opponents     TEXT NOT NULL,
    rated         BOOLEAN NOT NULL,
    rating_before DOUBLE PRECISION NOT NULL,
    rating_after  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, match_id)
);
CREATE INDEX history_by_time ON history (user_id, finished_at DESC, match_id DESC);

-- Per player, mode and UTC day: the points of their charts.
CREATE TABLE daily (
    user_id UUID NOT NULL,
    mode    TEXT NOT NULL,
    day     DATE NOT NULL,
    matches INTEGER NOT NULL,
    wins    INTEGER NOT NULL,
    losses  INTEGER NOT NULL,
    -- The rating at the end of the day.
    rating  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, mode, day)
);

-- Pseudonyms of erased players: their matches stay (their opponents'
-- ratings were computed from them) under an id no one can link back;
-- they are on no leaderboard and have no public page.
CREATE TABLE erased (
    pseudonym UUID PRIMARY KEY,
    erased_at TIMESTAMPTZ NOT NULL
);

-- Display names, from auth's user_registered and users' profile_updated.
CREATE TABLE people (
    user_id      UUID PRIMARY KEY,
    display_name TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
