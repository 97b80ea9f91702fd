-- The matchmaking queue, shared by every game process: whichever process a
-- player queues through, one matchmaker (the holder of the 'matchmaker'
-- lease) groups them.
CREATE TABLE queue (
    user_id BLOB PRIMARY KEY,
    mode    TEXT NOT NULL,
    rating  REAL NOT NULL,
    since   TEXT NOT NULL
);
CREATE INDEX queue_mode ON queue (mode, rating);

-- Jobs exactly one game process does at a time, held by a lease like a
-- live match.
CREATE TABLE singletons (
    name        TEXT PRIMARY KEY,
    owner       TEXT,
    lease_until TEXT
);
INSERT INTO singletons (name) VALUES ('matchmaker');
