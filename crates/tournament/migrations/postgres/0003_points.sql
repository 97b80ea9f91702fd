-- Goals to win each match (game's points_to_win), chosen at creation.
ALTER TABLE tournaments ADD COLUMN points_to_win INTEGER NOT NULL DEFAULT 11;
