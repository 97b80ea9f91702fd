-- Bots: players that are not people (the AI service's opponents). Auth
-- gives them ids of its own, so that a service allowed to act for bots can
-- never act for a person, and signs their tokens with the `bot` role, which
-- game trusts to mark a seat as a bot's.
CREATE TABLE bots (
    id          UUID PRIMARY KEY NOT NULL,
    -- The service client that created the bot and alone may act for it.
    client_id   TEXT NOT NULL REFERENCES service_clients (client_id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX bots_by_client ON bots (client_id, created_at);
