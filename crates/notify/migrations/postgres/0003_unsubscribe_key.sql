-- The key that signs one-click unsubscribe links (RFC 8058), made at the
-- first start (protect the database: with it, links can be made).
CREATE TABLE unsubscribe_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    secret      BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
