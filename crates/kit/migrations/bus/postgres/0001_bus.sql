-- The event bus tables every service that publishes or consumes events has in
-- its own database. Versioned in `_panal_bus_migrations`.

-- Events written in the same transaction as the change that caused them, until
-- the relay has handed them to the broker.
CREATE TABLE outbox (
    seq           BIGSERIAL PRIMARY KEY,
    id            UUID NOT NULL UNIQUE,
    aggregate_id  TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    published_at  TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Events a consumer has applied, recorded in the same transaction as their
-- effect: a redelivered event finds its id here and changes nothing.
CREATE TABLE inbox (
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer gave up on after its retries, kept whole for inspection
-- and replay.
CREATE TABLE dead_letters (
    id              UUID PRIMARY KEY,
    consumer        TEXT NOT NULL,
    event_id        TEXT,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    first_failed_at TIMESTAMPTZ NOT NULL,
    last_failed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX dead_letters_consumer ON dead_letters (consumer, first_failed_at);
