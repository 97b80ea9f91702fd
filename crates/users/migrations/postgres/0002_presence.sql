-- Who is connected, per user and realtime replica, from realtime's
-- presence_changed and presence_snapshot. A user is online while a row
-- says so and has not expired (a replica that dies stops renewing its
-- rows). Times are Unix milliseconds; `at` orders the announcements (an
-- older snapshot never revives a newer "offline").
CREATE TABLE presence (
    user_id   UUID NOT NULL,
    replica   TEXT NOT NULL,
    online    BOOLEAN NOT NULL,
    at_ms     BIGINT NOT NULL,
    until_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, replica)
);
