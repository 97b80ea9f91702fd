-- Players' ratings per mode, which matchmaking groups by: kept from the
-- stats service's rating events once it exists; 1500 for a player without.
CREATE TABLE ratings (
    user_id    BLOB NOT NULL,
    mode       TEXT NOT NULL,
    rating     REAL NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, mode)
);
