-- The people notify writes to: their address, name, language and time
-- zone, copied from auth's and users' events.
CREATE TABLE recipients (
    user_id       UUID PRIMARY KEY,
    email         TEXT,
    display_name  TEXT NOT NULL,
    locale        TEXT,
    timezone      TEXT,
    erased        BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A person's choice for one kind on one channel (absent: the kind's
-- default, which is on).
CREATE TABLE preferences (
    user_id     UUID NOT NULL,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, kind, channel)
);

-- One notification on one channel to one person, written before anything
-- is sent: the unique key makes a redelivered event or a retry harmless.
-- States only move forward: pending → sent → delivered, or failed.
CREATE TABLE deliveries (
    id          UUID PRIMARY KEY,
    event_id    UUID NOT NULL,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    user_id     UUID NOT NULL,
    vars        TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TIMESTAMPTZ NOT NULL,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (event_id, channel, user_id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_at);
CREATE INDEX deliveries_by_user ON deliveries (user_id, created_at);

-- The in-app inbox (`inbox` is the bus's: the events consumed).
CREATE TABLE inbox_items (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    link        TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    read_at     TIMESTAMPTZ
);
CREATE INDEX inbox_items_by_user ON inbox_items (user_id, id);
