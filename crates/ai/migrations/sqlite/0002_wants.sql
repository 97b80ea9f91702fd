-- Matches game made for players the queue found nobody for
-- (`bots_wanted`): written by the consumer in its transaction, then
-- served by the seater (a worker), retried with backoff until the seats are
-- filled ('done'), taken by someone else ('done'), or tried too often
-- ('failed').
CREATE TABLE wants (
    match_id    BLOB PRIMARY KEY,
    level       TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX wants_pending ON wants (status, next_at);
