//! Stats' rules, with no I/O: what one finished match does to each
//! player's rating and counters. The store applies the result; a rebuild
//! applies the same function to the same matches in the same order, which
//! is why it arrives at the same numbers.

use contracts::game::MatchFinished;
use skillratings::Outcomes;
use skillratings::glicko2::{Glicko2Config, Glicko2Rating, glicko2_rating_period};
use uuid::Uuid;

/// A player's numbers in one mode, before or after a match.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub bot: bool,
    pub rating: Rating,
    pub rated_matches: u32,
    pub matches: u32,
    pub wins: u32,
    pub losses: u32,
    pub forfeits: u32,
    /// Positive: wins in a row; negative: losses in a row.
    pub streak: i32,
    pub best_streak: i32,
    pub scored: u32,
    pub conceded: u32,
}

impl Line {
    /// A player's line before their first match in a mode.
    pub fn new(bot: bool) -> Self {
        Self {
            bot,
            rating: Rating::START,
            rated_matches: 0,
            matches: 0,
            wins: 0,
            losses: 0,
            forfeits: 0,
            streak: 0,
            best_streak: 0,
            scored: 0,
            conceded: 0,
        }
    }
}

/// A Glicko-2 rating on the Glicko scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    pub rating: f64,
    pub deviation: f64,
    pub volatility: f64,
}

impl Rating {
    /// Glickman's starting values: 1500, deviation 350, volatility 0.06.
    pub const START: Rating = Rating { rating: 1500.0, deviation: 350.0, volatility: 0.06 };

    fn glicko(self) -> Glicko2Rating {
        Glicko2Rating { rating: self.rating, deviation: self.deviation, volatility: self.volatility }
    }
}

/// What one match did to one player.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub user_id: Uuid,
    pub before: Line,
    pub after: Line,
    pub won: bool,
    pub place: u8,
    pub forfeited: bool,
    pub scored: u8,
    pub conceded: u8,
}

/// Whether a match moves ratings: only matches between people. A match
/// with a bot in it counts in wins, losses and history, not in ratings —
/// a bot's level is chosen, not earned, and rating against it would let
/// anyone farm points from the easy one.
pub fn rated(result: &MatchFinished) -> bool {
    result.players.len() >= 2 && result.players.iter().all(|p| !p.bot)
}

/// Applies a finished match to its players' lines. `before` holds each
/// player's line in the match's mode (a new one for a first match), in the
/// order of `result.players`.
///
/// Ratings: each player's match is a Glicko-2 rating period against every
/// other player, at their ratings before the match (so the order of the
/// players does not matter), won against those placed behind, lost against
/// those ahead. In a duel that is exactly one game against the opponent;
/// four players give each three results.
pub fn apply(result: &MatchFinished, before: &[Line]) -> Vec<Applied> {
    let rated = rated(result);
    let config = Glicko2Config::new();
    result
        .players
        .iter()
        .zip(before)
        .map(|(p, line)| {
            let mut after = line.clone();
            after.bot = p.bot;
            if rated {
                let games: Vec<(Glicko2Rating, Outcomes)> = result
                    .players
                    .iter()
                    .zip(before)
                    .filter(|(o, _)| o.user_id != p.user_id)
                    .map(|(o, theirs)| (theirs.rating.glicko(), outcome(p.place, o.place)))
                    .collect();
                let r = glicko2_rating_period(&line.rating.glicko(), &games, &config);
                after.rating = Rating { rating: r.rating, deviation: r.deviation, volatility: r.volatility };
                after.rated_matches += 1;
            }
            let won = p.user_id == result.winner;
            after.matches += 1;
            if won {
                after.wins += 1;
                after.streak = if line.streak > 0 { line.streak + 1 } else { 1 };
            } else {
                after.losses += 1;
                after.streak = if line.streak < 0 { line.streak - 1 } else { -1 };
            }
            after.best_streak = after.best_streak.max(after.streak);
            if p.forfeited {
                after.forfeits += 1;
            }
            after.scored += u32::from(p.scored);
            after.conceded += u32::from(p.conceded);
            Applied {
                user_id: p.user_id,
                before: line.clone(),
                after,
                won,
                place: p.place,
                forfeited: p.forfeited,
                scored: p.scored,
                conceded: p.conceded,
            }
        })
        .collect()
}

/// From the first player's side: ahead wins, behind loses, same place draws.
fn outcome(mine: u8, theirs: u8) -> Outcomes {
    match mine.cmp(&theirs) {
        std::cmp::Ordering::Less => Outcomes::WIN,
        std::cmp::Ordering::Greater => Outcomes::LOSS,
        std::cmp::Ordering::Equal => Outcomes::DRAW,
    }
}

/// Why a finished match cannot be applied: the event contradicts itself.
/// Such an event is refused (it ends in the bus's dead letters) rather
/// than half-counted.
pub fn check(result: &MatchFinished) -> Result<(), &'static str> {
    if result.players.len() < 2 {
        return Err("a match needs at least two players");
    }
    let mut ids: Vec<Uuid> = result.players.iter().map(|p| p.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != result.players.len() {
        return Err("a player appears twice");
    }
    if !result.players.iter().any(|p| p.user_id == result.winner) {
        return Err("the winner is not one of the players");
    }
    if result.mode != "duel" && result.mode != "four_players" {
        return Err("unknown mode");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use contracts::game::PlayerResult;

    use super::*;

    fn result(places: &[(Uuid, u8, bool)]) -> MatchFinished {
        let winner = places.iter().find(|(_, place, _)| *place == 1).unwrap().0;
        MatchFinished {
            match_id: Uuid::now_v7(),
            mode: if places.len() == 2 { "duel" } else { "four_players" }.to_owned(),
            origin: "queue".to_owned(),
            winner,
            players: places
                .iter()
                .enumerate()
                .map(|(seat, &(user_id, place, bot))| PlayerResult {
                    user_id,
                    seat: u8::try_from(seat).unwrap(),
                    bot,
                    scored: if place == 1 { 11 } else { 3 },
                    conceded: if place == 1 { 3 } else { 11 },
                    place,
                    forfeited: false,
                })
                .collect(),
            forfeit: false,
            duration_ms: 60_000,
            started_at: Utc::now(),
            finished_at: Utc::now(),
        }
    }

    #[test]
    fn a_duel_between_new_players_matches_glickmans_numbers() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let applied = apply(&result(&[(a, 1, false), (b, 2, false)]), &[Line::new(false), Line::new(false)]);
        // Two fresh players, one game: ±162.3 with the deviation down to 290.3
        // (the textbook example's first step; the same from either side).
        assert!((applied[0].after.rating.rating - 1662.31).abs() < 0.01, "{:?}", applied[0].after.rating);
        assert!((applied[1].after.rating.rating - 1337.69).abs() < 0.01, "{:?}", applied[1].after.rating);
        assert!((applied[0].after.rating.deviation - 290.32).abs() < 0.01);
        assert_eq!((applied[0].after.wins, applied[0].after.streak), (1, 1));
        assert_eq!((applied[1].after.losses, applied[1].after.streak), (1, -1));
        assert_eq!(applied[0].after.rated_matches, 1);
    }

    #[test]
    fn the_order_of_the_players_in_the_event_does_not_change_the_ratings() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let lines: Vec<Line> = (0..4)
            .map(|i| Line {
                rating: Rating { rating: 1400.0 + 50.0 * f64::from(i), ..Rating::START },
                ..Line::new(false)
            })
            .collect();
        let forward =
            apply(&result(&[(ids[0], 1, false), (ids[1], 2, false), (ids[2], 3, false), (ids[3], 4, false)]), &lines);
        let mut reversed_lines = lines.clone();
        reversed_lines.reverse();
        let backward = apply(
            &result(&[(ids[3], 4, false), (ids[2], 3, false), (ids[1], 2, false), (ids[0], 1, false)]),
            &reversed_lines,
        );
        for f in &forward {
            let b = backward.iter().find(|b| b.user_id == f.user_id).unwrap();
            assert_eq!(f.after.rating, b.after.rating);
        }
        // First place gains, last place loses the most.
        assert!(forward[0].after.rating.rating > lines[0].rating.rating);
        assert!(forward[3].after.rating.rating < lines[3].rating.rating);
        assert!(
            forward[1].after.rating.rating - lines[1].rating.rating
                > forward[2].after.rating.rating - lines[2].rating.rating
        );
    }

    #[test]
    fn a_match_with_a_bot_counts_but_does_not_move_ratings() {
        let (a, bot) = (Uuid::now_v7(), Uuid::now_v7());
        let applied = apply(&result(&[(a, 1, false), (bot, 2, true)]), &[Line::new(false), Line::new(true)]);
        assert_eq!(applied[0].after.rating, Rating::START);
        assert_eq!(applied[0].after.rated_matches, 0);
        assert_eq!((applied[0].after.matches, applied[0].after.wins), (1, 1));
        assert!(applied[1].after.bot);
    }

    #[test]
    fn streaks_count_runs_and_remember_the_best() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut lines = [Line::new(false), Line::new(false)];
        for winner_is_a in [true, true, true, false, true] {
            let places = if winner_is_a { [(a, 1, false), (b, 2, false)] } else { [(a, 2, false), (b, 1, false)] };
            let applied = apply(&result(&places), &lines);
            lines = [applied[0].after.clone(), applied[1].after.clone()];
        }
        assert_eq!((lines[0].streak, lines[0].best_streak), (1, 3));
        assert_eq!((lines[1].streak, lines[1].best_streak), (-1, 1));
        assert_eq!((lines[0].wins, lines[0].losses, lines[0].matches), (4, 1, 5));
    }

    #[test]
    fn contradictory_results_are_refused() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut twice = result(&[(a, 1, false), (b, 2, false)]);
        twice.players[1].user_id = a;
        assert_eq!(check(&twice), Err("a player appears twice"));
        let mut stranger = result(&[(a, 1, false), (b, 2, false)]);
        stranger.winner = Uuid::now_v7();
        assert_eq!(check(&stranger), Err("the winner is not one of the players"));
        let mut alone = result(&[(a, 1, false), (b, 2, false)]);
        alone.players.pop();
        assert!(check(&alone).is_err());
        assert_eq!(check(&result(&[(a, 1, false), (b, 2, false)])), Ok(()));
    }
}
