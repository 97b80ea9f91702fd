-- Players' ratings per mode, which matchmaking groups by: kept from the
-- stats service's rating events once it exists; 1500 for a player without.
CREATE TABLE ratings (
    user_id    UUID NOT NULL,
    mode       TEXT NOT NULL,
    rating     DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, mode)
);
