-- Key rotation, e-mail tokens, two-factor, external identities, service
-- clients and revoked tokens. 

-- A key is published from created_at and signs from signs_from, so verifiers
-- have fetched it before the first token it signs reaches them.
ALTER TABLE signing_keys ADD COLUMN signs_from TIMESTAMPTZ;
UPDATE signing_keys SET signs_from = created_at;

-- Single-use tokens sent by e-mail (verify_email, reset_password). Only the
-- SHA-256 of a token is stored; `email` is the address the token was sent to.
CREATE TABLE email_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX email_tokens_user_id ON email_tokens (user_id);

-- A TOTP factor (RFC 6238). `last_step` is the last time step whose code was
-- accepted: a code is good once.
CREATE TABLE totp_factors (
    user_id       UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret        BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    confirmed_at  TIMESTAMPTZ,
    last_step     BIGINT NOT NULL DEFAULT 0
);

-- Recovery codes, SHA-256 only (they carry 80 random bits), single-use.
CREATE TABLE recovery_codes (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

-- The second step of a sign-in: the password was right, a code is awaited.
CREATE TABLE mfa_challenges (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0,
    used_at     TIMESTAMPTZ
);
CREATE INDEX mfa_challenges_user_id ON mfa_challenges (user_id);

-- Accounts at external identity providers linked to Panal accounts.
CREATE TABLE external_identities (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT,
    linked_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX external_identities_user_id ON external_identities (user_id);

-- Authorization requests sent to a provider, awaiting their callback.
CREATE TABLE oauth_states (
    state_hash     BYTEA PRIMARY KEY,
    provider       TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    used_at        TIMESTAMPTZ
);

-- An external identity whose email matches an account: linked only when the
-- account's owner confirms by signing in.
CREATE TABLE pending_links (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    email       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);

-- OAuth2 clients of the client-credentials grant (services calling services).
-- Secrets are 256 random bits, so their SHA-256 is stored.
CREATE TABLE service_clients (
    client_id    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    disabled_at  TIMESTAMPTZ
);

-- Access tokens revoked before expiry that have no session to end (service
-- clients' tokens, RFC 7009). Rows go once the token would have expired.
CREATE TABLE revoked_tokens (
    jti         UUID PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
