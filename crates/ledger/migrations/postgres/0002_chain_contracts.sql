-- The PanalLedger contract the ledger deployed on a JSON-RPC chain (by
-- chain id), when none was configured.
CREATE TABLE chain_contracts (
    chain_id     BIGINT PRIMARY KEY,
    address      BYTEA NOT NULL,
    deployed_at  TIMESTAMPTZ NOT NULL
);
