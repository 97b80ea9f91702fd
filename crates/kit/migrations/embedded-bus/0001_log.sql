-- The embedded broker: an append-only log of events and a cursor per durable
-- consumer, in one SQLite file (`<data_dir>/bus.db`).

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    payload       BLOB NOT NULL,
    published_at  TEXT NOT NULL
);
CREATE INDEX events_type_seq ON events (type, seq);

-- Everything at or below `cursor` is acknowledged.
CREATE TABLE consumers (
    name        TEXT PRIMARY KEY NOT NULL,
    types       TEXT NOT NULL,
    cursor      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

-- How often each unacknowledged event was handed out, so a message that keeps
-- crashing its consumer can be recognised after a restart.
CREATE TABLE deliveries (
    consumer  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
);
