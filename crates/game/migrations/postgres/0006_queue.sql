-- The matchmaking queue, shared by every game process: whichever process a
-- player queues through, one matchmaker (the holder of the 'matchmaker'
-- lease) groups them.
CREATE TABLE queue (
    user_id UUID PRIMARY KEY,
    mode    TEXT NOT NULL,
    rating  DOUBLE PRECISION NOT NULL,
    since   TIMESTAMPTZ NOT NULL
);
CREATE INDEX queue_mode ON queue (mode, rating);

-- Jobs exactly one game process does at a time, held by a lease like a
-- live match.
CREATE TABLE singletons (
    name        TEXT PRIMARY KEY,
    owner       TEXT,
    lease_until TIMESTAMPTZ
);
INSERT INTO singletons (name) VALUES ('matchmaker');
