-- A person's quiet hours: no e-mail but security messages from `from_time`
-- to `to_time` (HH:MM, local), in `timezone` (IANA; absent: the profile's,
-- else UTC). Held e-mail goes at the window's end.
CREATE TABLE quiet_hours (
    user_id     UUID PRIMARY KEY,
    from_time   TEXT NOT NULL,
    to_time     TEXT NOT NULL,
    timezone    TEXT,
    updated_at  TIMESTAMPTZ NOT NULL
);
