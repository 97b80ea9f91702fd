-- Web Push: the browsers a person subscribed (one row per push endpoint;
-- an endpoint belongs to one browser, so a second account signing in on
-- it takes it over).
CREATE TABLE push_subscriptions (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    endpoint    TEXT NOT NULL UNIQUE,
    p256dh      BYTEA NOT NULL,
    auth        BYTEA NOT NULL,
    device      TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);

-- The browsers a push delivery reached (or that refused it for good): a
-- retry goes only to the others, so no browser shows a message twice.
CREATE TABLE push_receipts (
    delivery_id      UUID NOT NULL,
    subscription_id  UUID NOT NULL,
    PRIMARY KEY (delivery_id, subscription_id)
);

-- Notify's VAPID key (RFC 8292, PKCS#8), made at the first start: browsers
-- subscribe with its public half, so it must not change.
CREATE TABLE vapid_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pkcs8       BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
