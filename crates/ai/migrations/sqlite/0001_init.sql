-- The AI service's bots: players auth made for it (ids of auth's), one or
-- more per level. A bot may play several matches at once (never twice in
-- one).
CREATE TABLE bots (
    id          BLOB PRIMARY KEY,
    level       TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX bots_by_level ON bots (level, created_at);

-- The matches bots play: 'playing' until the result is known ('finished',
-- with won), or the bot gave up waiting for the match to start
-- ('abandoned'). Rows still 'playing' when the service starts are resumed.
CREATE TABLE games (
    match_id     BLOB NOT NULL,
    bot_id       BLOB NOT NULL REFERENCES bots (id),
    level        TEXT NOT NULL,
    status       TEXT NOT NULL,
    won          BOOLEAN,
    joined_at    TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (match_id, bot_id)
);
CREATE INDEX games_by_status ON games (status, joined_at);
