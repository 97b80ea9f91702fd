-- Addresses the e-mail provider reported: a hard bounce (nothing more is
-- sent to it) or a spam complaint (nothing but security mail). A new
-- address is a new row's business: a person who changes address is not
-- held to the old one's.
CREATE TABLE suppressions (
    address     TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    detail      TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
