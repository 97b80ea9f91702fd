-- A match another service asked for (a tournament's) carries that
-- service's reference for it, unique: asking again for the same reference
-- gives the same match, so a retried request never makes two.
ALTER TABLE matches ADD COLUMN reference TEXT;
CREATE UNIQUE INDEX matches_by_reference ON matches (reference);
