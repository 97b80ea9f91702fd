-- The log's one row: every append and every checkpoint locks it, so entries
-- take consecutive positions and one process at a time signs and anchors.
CREATE TABLE log (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      BIGINT NOT NULL
);
INSERT INTO log (id, size) VALUES (1, 0);

-- The key that signs checkpoints, when no key file is configured: made at
-- the first start (protect the database, like auth's signing keys).
CREATE TABLE signing_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seed        BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Entries: one finished tournament each, at its position in the tree.
-- `data` is the exact bytes the leaf hashes (the entry's canonical JSON).
CREATE TABLE entries (
    position       BIGINT PRIMARY KEY,
    tournament_id  UUID NOT NULL UNIQUE,
    data           TEXT NOT NULL,
    leaf           BYTEA NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL
);

-- Signed checkpoints, and where each was anchored on the chain.
CREATE TABLE checkpoints (
    size          BIGINT PRIMARY KEY,
    root          BYTEA NOT NULL,
    note          TEXT NOT NULL,
    signed_at     TIMESTAMPTZ NOT NULL,
    anchor_block  BIGINT,
    anchor_tx     BYTEA,
    anchored_at   TIMESTAMPTZ
);
CREATE INDEX checkpoints_unanchored ON checkpoints (size) WHERE anchor_block IS NULL;

-- The embedded chain's blocks (one transaction each); its state is what
-- replaying them gives.
CREATE TABLE chain_blocks (
    number       BIGINT PRIMARY KEY,
    hash         BYTEA NOT NULL,
    parent_hash  BYTEA NOT NULL,
    timestamp    BIGINT NOT NULL,
    caller       BYTEA NOT NULL,
    nonce        BIGINT NOT NULL,
    recipient    BYTEA,
    input        BYTEA NOT NULL,
    success      BOOLEAN NOT NULL,
    gas_used     BIGINT NOT NULL,
    output       BYTEA NOT NULL
);
