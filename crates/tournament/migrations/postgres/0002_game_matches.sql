-- An online tournament's match as game runs it: made by the scheduler
-- (POST /v1/game/service/matches), its result taken from match_finished.
ALTER TABLE pairings ADD COLUMN game_match_id UUID;
CREATE UNIQUE INDEX pairings_by_game_match ON pairings (game_match_id);
