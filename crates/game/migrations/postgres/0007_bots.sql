-- Players game has seen act with a bot's token (auth signs the `bot` role
-- only into tokens of bots it made): their seats are marked as bots', so
-- stats never rates them as people.
CREATE TABLE bots (
    user_id  UUID PRIMARY KEY,
    seen_at  TIMESTAMPTZ NOT NULL
);
