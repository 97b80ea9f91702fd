//! A tournament's rules, as pure functions: seeding, single-elimination
//! brackets with byes, Swiss pairings, standings. No I/O; the service keeps
//! the results and calls these to know what is to be played next.
//!
//! Entrants are ids: a player's, or — in a local tournament, where people
//! take turns on one keyboard — an alias's the host entered.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a bracket or a result was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BracketError {
    #[error("a tournament needs at least two entrants")]
    TooFew,
    #[error("an entrant is listed twice")]
    Duplicate,
    #[error("no such match in the bracket")]
    NoSuchMatch,
    #[error("the match cannot be played yet")]
    NotReady,
    #[error("the match has a result already")]
    AlreadyPlayed,
    #[error("the winner did not play this match")]
    NotInMatch,
    #[error("no pairing without a rematch is left")]
    NoPairing,
}

/// How entrants are seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seeding {
    /// The highest rating first (ties: in registration order).
    Rating,
    /// Shuffled with the tournament's seed.
    Random,
}

/// Entrants in seed order (seed 1 first): by rating, or shuffled with
/// `seed` (Fisher–Yates over SplitMix64, so a tournament's draw can be
/// replayed).
pub fn seed(entrants: &[(Uuid, f64)], seeding: Seeding, seed: u64) -> Vec<Uuid> {
    let mut order: Vec<(usize, Uuid, f64)> = entrants.iter().enumerate().map(|(i, (id, r))| (i, *id, *r)).collect();
    match seeding {
        Seeding::Rating => order.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0))),
        Seeding::Random => {
            let mut state = seed;
            for i in (1..order.len()).rev() {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let j = usize::try_from(z % (i as u64 + 1)).unwrap_or(0);
                order.swap(i, j);
            }
        }
    }
    order.into_iter().map(|(_, id, _)| id).collect()
}

fn check_entrants(ids: &[Uuid]) -> Result<(), BracketError> {
    if ids.len() < 2 {
        return Err(BracketError::TooFew);
    }
    let unique: HashSet<&Uuid> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(BracketError::Duplicate);
    }
    Ok(())
}

/// A match of a bracket: round 0 is the first, `index` counts from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MatchRef {
    pub round: u32,
    pub index: u32,
}

/// Where a bracket's match stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// One side or both are not known yet.
    Waiting {
        a: Option<Uuid>,
        b: Option<Uuid>,
    },
    /// Nobody to play: `a` goes through without a match.
    Bye {
        a: Uuid,
    },
    /// Both known, to be played.
    Ready {
        a: Uuid,
        b: Uuid,
    },
    Played {
        a: Uuid,
        b: Uuid,
        winner: Uuid,
    },
}

impl Slot {
    /// Who comes out of it, once known.
    pub fn winner(self) -> Option<Uuid> {
        match self {
            Slot::Bye { a } => Some(a),
            Slot::Played { winner, .. } => Some(winner),
            _ => None,
        }
    }
}

/// A single-elimination bracket for any number of entrants: the field is
/// padded to the next power of two with byes, which go to the top seeds
/// (seed s meets seed size + 1 − s in the first round, so seeds 1 and 2 can
/// only meet in the final). N entrants play N − 1 matches over ⌈log2 N⌉
/// rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elimination {
    /// The first round's lines, top to bottom (`None`: a bye).
    lines: Vec<Option<Uuid>>,
    results: BTreeMap<MatchRef, Uuid>,
}

/// The order of seeds down a bracket of `size` lines: 1, size, …: every
/// pair of lines is a first-round match, and each half holds one of the
/// two top seeds of the level above.
fn seed_lines(size: usize) -> Vec<usize> {
    let mut lines = vec![1usize];
    while lines.len() < size {
        let n = lines.len() * 2;
        lines = lines.iter().flat_map(|&s| [s, n + 1 - s]).collect();
    }
    lines
}

impl Elimination {
    /// A bracket of `seeded` (seed 1 first).
    pub fn new(seeded: &[Uuid]) -> Result<Self, BracketError> {
        check_entrants(seeded)?;
        let size = seeded.len().next_power_of_two();
        let lines = seed_lines(size).into_iter().map(|s| seeded.get(s - 1).copied()).collect();
        Ok(Self { lines, results: BTreeMap::new() })
    }

    pub fn entrants(&self) -> usize {
        self.lines.iter().flatten().count()
    }

    pub fn rounds(&self) -> u32 {
        self.lines.len().trailing_zeros()
    }

    /// Matches in `round`.
    pub fn width(&self, round: u32) -> u32 {
        u32::try_from(self.lines.len() >> (round + 1)).unwrap_or(0)
    }

    pub fn slot(&self, m: MatchRef) -> Result<Slot, BracketError> {
        if m.round >= self.rounds() || m.index >= self.width(m.round) {
            return Err(BracketError::NoSuchMatch);
        }
        let (a, b) = if m.round == 0 {
            let i = usize::try_from(m.index).unwrap_or(0) * 2;
            (self.lines[i], self.lines[i + 1])
        } else {
            let from = |index| self.slot(MatchRef { round: m.round - 1, index }).ok().and_then(Slot::winner);
            (from(m.index * 2), from(m.index * 2 + 1))
        };
        Ok(match (a, b) {
            // Byes exist only in the first round (top seeds get them).
            (Some(a), None) if m.round == 0 => Slot::Bye { a },
            (None, Some(b)) if m.round == 0 => Slot::Bye { a: b },
            (Some(a), Some(b)) => match self.results.get(&m) {
                Some(&winner) => Slot::Played { a, b, winner },
                None => Slot::Ready { a, b },
            },
            (a, b) => Slot::Waiting { a, b },
        })
    }

    /// Every match of the bracket, round by round.
    pub fn matches(&self) -> Vec<(MatchRef, Slot)> {
        (0..self.rounds())
            .flat_map(|round| (0..self.width(round)).map(move |index| MatchRef { round, index }))
            .filter_map(|m| self.slot(m).ok().map(|s| (m, s)))
            .collect()
    }

    /// The matches to be played now.
    pub fn ready(&self) -> Vec<(MatchRef, Uuid, Uuid)> {
        self.matches()
            .into_iter()
            .filter_map(|(m, s)| match s {
                Slot::Ready { a, b } => Some((m, a, b)),
                _ => None,
            })
            .collect()
    }

    /// Records a match's winner (a walkover too).
    pub fn record(&mut self, m: MatchRef, winner: Uuid) -> Result<(), BracketError> {
        match self.slot(m)? {
            Slot::Ready { a, b } if winner == a || winner == b => {
                self.results.insert(m, winner);
                Ok(())
            }
            Slot::Ready { .. } => Err(BracketError::NotInMatch),
            Slot::Played { .. } => Err(BracketError::AlreadyPlayed),
            Slot::Waiting { .. } | Slot::Bye { .. } => Err(BracketError::NotReady),
        }
    }

    pub fn champion(&self) -> Option<Uuid> {
        let last = self.rounds().checked_sub(1)?;
        self.slot(MatchRef { round: last, index: 0 }).ok().and_then(Slot::winner)
    }

    /// Final places once the bracket is complete: 1 the champion, 2 the
    /// finalist, then those out in the same round share a place (3 for
    /// both semi-final losers, 5 for the quarter-finals', …).
    pub fn standings(&self) -> Vec<(Uuid, u32)> {
        let mut places = Vec::new();
        let Some(champion) = self.champion() else { return places };
        places.push((champion, 1));
        for round in (0..self.rounds()).rev() {
            // Losers of this round: place = matches in later rounds' losers + 2.
            let place = (1u32 << (self.rounds() - 1 - round)) + 1;
            for index in 0..self.width(round) {
                if let Ok(Slot::Played { a, b, winner }) = self.slot(MatchRef { round, index }) {
                    places.push((if winner == a { b } else { a }, place));
                }
            }
        }
        places
    }
}

/// A Swiss entrant's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwissRecord {
    pub id: Uuid,
    /// Wins, a bye counting as one.
    pub points: u32,
    pub opponents: Vec<Uuid>,
    pub had_bye: bool,
}

/// One Swiss round's pairings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwissRound {
    pub pairs: Vec<(Uuid, Uuid)>,
    pub bye: Option<Uuid>,
}

/// The rounds a Swiss tournament of `n` plays: ⌈log2 n⌉, enough for one
/// player to win every match and be alone on top.
pub fn swiss_rounds(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros().max(1)
}

/// The next Swiss round of `records` (in seed order): players are ranked by
/// points, then seed; with an odd number, the lowest-ranked player who has
/// not had a bye gets one; the rest are paired top down, each with the
/// nearest-ranked player they have not met (backtracking when the end of
/// the list leaves only rematches). `NoPairing` when none exists.
pub fn swiss_round(records: &[SwissRecord]) -> Result<SwissRound, BracketError> {
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    check_entrants(&ids)?;
    let mut ranked: Vec<(usize, &SwissRecord)> = records.iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.points.cmp(&a.1.points).then(a.0.cmp(&b.0)));
    let mut ranked: Vec<&SwissRecord> = ranked.into_iter().map(|(_, r)| r).collect();
    let mut bye = None;
    if ranked.len() % 2 == 1 {
        let Some(at) = ranked.iter().rposition(|r| !r.had_bye) else { return Err(BracketError::NoPairing) };
        bye = Some(ranked.remove(at).id);
    }
    let mut pairs = Vec::new();
    if !pair(&ranked, &mut vec![false; ranked.len()], &mut pairs) {
        return Err(BracketError::NoPairing);
    }
    Ok(SwissRound { pairs, bye })
}

/// Pairs the unpaired players of `ranked`, the top one first with the
/// nearest below it they have not met; backtracks on a dead end.
fn pair(ranked: &[&SwissRecord], taken: &mut Vec<bool>, pairs: &mut Vec<(Uuid, Uuid)>) -> bool {
    let Some(top) = taken.iter().position(|t| !t) else { return true };
    taken[top] = true;
    for other in top + 1..ranked.len() {
        if taken[other] || ranked[top].opponents.contains(&ranked[other].id) {
            continue;
        }
        taken[other] = true;
        pairs.push((ranked[top].id, ranked[other].id));
        if pair(ranked, taken, pairs) {
            return true;
        }
        pairs.pop();
        taken[other] = false;
    }
    taken[top] = false;
    false
}

/// Swiss standings: points, then the sum of one's opponents' points
/// (Buchholz), then seed.
pub fn swiss_standings(records: &[SwissRecord]) -> Vec<(Uuid, u32)> {
    let points: BTreeMap<Uuid, u32> = records.iter().map(|r| (r.id, r.points)).collect();
    let mut order: Vec<(usize, &SwissRecord, u32)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r, r.opponents.iter().filter_map(|o| points.get(o)).sum()))
        .collect();
    order.sort_by(|a, b| b.1.points.cmp(&a.1.points).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    order.iter().enumerate().map(|(place, (_, r, _))| (r.id, u32::try_from(place + 1).unwrap_or(u32::MAX))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (1..=n).map(|i| Uuid::from_u128(i as u128)).collect()
    }

    /// A deterministic coin.
    fn coin(state: &mut u64) -> bool {
        *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (*state >> 33) & 1 == 1
    }

    #[test]
    fn brackets_for_2_to_33_entrants_give_byes_to_the_top_seeds_and_play_n_minus_1_matches() {
        let mut state = 7;
        for n in 2..=33usize {
            let seeded = ids(n);
            let mut b = Elimination::new(&seeded).unwrap();
            let size = n.next_power_of_two();
            assert_eq!(b.rounds(), size.trailing_zeros(), "{n}");
            assert_eq!(f64::from(b.rounds()), (n as f64).log2().ceil(), "⌈log2 {n}⌉ rounds");
            // Byes: exactly size − n, to seeds 1 … size − n.
            let byes: Vec<Uuid> = b
                .matches()
                .into_iter()
                .filter_map(|(_, s)| match s {
                    Slot::Bye { a } => Some(a),
                    _ => None,
                })
                .collect();
            assert_eq!(byes.len(), size - n, "{n}");
            let mut expected = seeded[..size - n].to_vec();
            let mut got = byes.clone();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "byes to the top seeds ({n})");
            // Play it out with random winners.
            let mut played = 0;
            loop {
                let ready = b.ready();
                if ready.is_empty() {
                    break;
                }
                for (m, a, bb) in ready {
                    b.record(m, if coin(&mut state) { a } else { bb }).unwrap();
                    played += 1;
                }
            }
            assert_eq!(played, n - 1, "{n} entrants play n − 1 matches");
            let champion = b.champion().unwrap();
            let standings = b.standings();
            assert_eq!(standings.len(), n, "everyone placed ({n})");
            assert_eq!(standings[0], (champion, 1));
            if n >= 4 {
                assert_eq!(standings.iter().filter(|(_, p)| *p == 3).count(), 2, "two share third ({n})");
            }
        }
    }

    #[test]
    fn the_top_two_seeds_can_only_meet_in_the_final() {
        for n in [4usize, 7, 8, 13, 16, 33] {
            let seeded = ids(n);
            let mut b = Elimination::new(&seeded).unwrap();
            // The better seed always wins.
            loop {
                let ready = b.ready();
                if ready.is_empty() {
                    break;
                }
                for (m, a, bb) in ready {
                    let better = seeded.iter().position(|x| *x == a) < seeded.iter().position(|x| *x == bb);
                    if (a == seeded[0] && bb == seeded[1]) || (a == seeded[1] && bb == seeded[0]) {
                        assert_eq!(m.round, b.rounds() - 1, "1 and 2 met before the final ({n})");
                    }
                    b.record(m, if better { a } else { bb }).unwrap();
                }
            }
            assert_eq!(b.champion(), Some(seeded[0]));
            assert_eq!(b.standings()[1], (seeded[1], 2), "{n}");
        }
    }

    #[test]
    fn results_that_do_not_fit_the_bracket_are_refused_and_change_nothing() {
        let seeded = ids(5);
        let mut b = Elimination::new(&seeded).unwrap();
        let before = b.clone();
        let stranger = Uuid::from_u128(99);
        let (m, a, _) = b.ready()[0];
        assert_eq!(b.record(m, stranger), Err(BracketError::NotInMatch));
        assert_eq!(b.record(MatchRef { round: 7, index: 0 }, a), Err(BracketError::NoSuchMatch));
        assert_eq!(b.record(MatchRef { round: 0, index: 99 }, a), Err(BracketError::NoSuchMatch));
        // The final is not ready; a bye is not a match.
        assert_eq!(b.record(MatchRef { round: 2, index: 0 }, a), Err(BracketError::NotReady));
        assert_eq!(b.record(MatchRef { round: 0, index: 0 }, seeded[0]), Err(BracketError::NotReady));
        assert_eq!(b, before);
        b.record(m, a).unwrap();
        assert_eq!(b.record(m, a), Err(BracketError::AlreadyPlayed));
        assert_eq!(Elimination::new(&ids(1)), Err(BracketError::TooFew));
        assert_eq!(Elimination::new(&[seeded[0], seeded[0]]), Err(BracketError::Duplicate));
    }

    #[test]
    fn seeding_by_rating_puts_the_best_first_and_random_seeding_replays() {
        let e = [(Uuid::from_u128(1), 1500.0), (Uuid::from_u128(2), 1800.0), (Uuid::from_u128(3), 1500.0)];
        assert_eq!(seed(&e, Seeding::Rating, 0), vec![Uuid::from_u128(2), Uuid::from_u128(1), Uuid::from_u128(3)]);
        let a = seed(&e, Seeding::Random, 42);
        assert_eq!(a, seed(&e, Seeding::Random, 42));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)]);
        let many: Vec<(Uuid, f64)> = ids(16).into_iter().map(|id| (id, 1500.0)).collect();
        assert_ne!(seed(&many, Seeding::Random, 1), seed(&many, Seeding::Random, 2), "the draw depends on the seed");
    }

    /// Plays Swiss rounds with random results, checking every round.
    fn play_swiss(n: usize, rounds: u32, state: &mut u64) -> Vec<SwissRecord> {
        let mut records: Vec<SwissRecord> =
            ids(n).into_iter().map(|id| SwissRecord { id, points: 0, opponents: Vec::new(), had_bye: false }).collect();
        for _ in 0..rounds {
            let round = swiss_round(&records).unwrap_or_else(|e| panic!("{n} players: {e}"));
            let mut seen = HashSet::new();
            for (a, b) in &round.pairs {
                assert!(seen.insert(*a) && seen.insert(*b), "a player twice in a round");
            }
            if let Some(bye) = round.bye {
                assert!(seen.insert(bye));
                // The lowest-ranked without a bye: nobody below it on points lacks one.
                let r = records.iter().find(|r| r.id == bye).unwrap();
                assert!(!r.had_bye, "a second bye");
                assert!(records.iter().all(|o| o.had_bye || o.points >= r.points), "the bye went to the lowest");
            }
            assert_eq!(seen.len(), n, "everyone plays or has the bye");
            for (a, b) in round.pairs {
                let a_won = coin(state);
                for (me, them, won) in [(a, b, a_won), (b, a, !a_won)] {
                    let r = records.iter_mut().find(|r| r.id == me).unwrap();
                    assert!(!r.opponents.contains(&them), "a rematch");
                    r.opponents.push(them);
                    r.points += u32::from(won);
                }
            }
            if let Some(bye) = round.bye {
                let r = records.iter_mut().find(|r| r.id == bye).unwrap();
                r.had_bye = true;
                r.points += 1;
            }
        }
        records
    }

    #[test]
    fn swiss_rounds_never_repeat_a_pairing_and_give_byes_to_the_lowest() {
        let mut state = 11;
        for n in 2..=33usize {
            let rounds = swiss_rounds(n);
            let records = play_swiss(n, rounds, &mut state);
            let standings = swiss_standings(&records);
            assert_eq!(standings.len(), n);
            let top = records.iter().find(|r| r.id == standings[0].0).unwrap();
            assert!(records.iter().all(|r| r.points <= top.points));
        }
    }

    #[test]
    fn swiss_says_when_no_pairing_without_a_rematch_is_left() {
        let mut state = 3;
        // Four players: three rounds meet everyone; a fourth has nobody new.
        let records = play_swiss(4, 3, &mut state);
        assert_eq!(swiss_round(&records), Err(BracketError::NoPairing));
    }
}

/// A tournament's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    SingleElimination,
    Swiss,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::SingleElimination => "single_elimination",
            Format::Swiss => "swiss",
        }
    }
}

/// Online: entrants play from their own devices. Local: people take turns
/// on one keyboard; the host entered their aliases and reports results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TournamentKind)]
pub enum Kind {
    Online,
    Local,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Online => "online",
            Kind::Local => "local",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TournamentStatus)]
pub enum Status {
    Registering,
    Running,
    Finished,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Registering => "registering",
            Status::Running => "running",
            Status::Finished => "finished",
        }
    }
}

/// A match as the tournament keeps it: `b` absent for a bye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing {
    pub round: u32,
    pub index: u32,
    pub a: Uuid,
    pub b: Option<Uuid>,
    pub winner: Option<Uuid>,
}

/// What a tournament needs next, from its seeded entrants and the matches
/// known so far: matches that have become known, or its final standings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// New matches (byes decided at once).
    Pairings(Vec<Pairing>),
    /// Over: places, 1 first (shared places for elimination rounds).
    Finished(Vec<(Uuid, u32)>),
    /// Waiting for results.
    Nothing,
}

/// The rounds a tournament of `n` entrants plays: ⌈log2 n⌉ in both formats
/// (an elimination bracket's depth; the Swiss rounds that can leave one
/// player alone on top).
pub fn rounds(format: Format, n: usize) -> u32 {
    match format {
        Format::SingleElimination => n.next_power_of_two().trailing_zeros(),
        Format::Swiss => swiss_rounds(n),
    }
}

/// The next step of a tournament of `seeded` entrants (seed 1 first) in
/// `format`, over `rounds` (Swiss), given the `known` matches.
pub fn next(format: Format, seeded: &[Uuid], rounds: u32, known: &[Pairing]) -> Result<Next, BracketError> {
    match format {
        Format::SingleElimination => {
            let mut bracket = Elimination::new(seeded)?;
            let mut decided: Vec<&Pairing> = known.iter().filter(|p| p.b.is_some() && p.winner.is_some()).collect();
            decided.sort_by_key(|p| (p.round, p.index));
            for p in decided {
                bracket.record(MatchRef { round: p.round, index: p.index }, p.winner.unwrap_or(p.a))?;
            }
            if bracket.champion().is_some() {
                return Ok(Next::Finished(bracket.standings()));
            }
            let new: Vec<Pairing> = bracket
                .matches()
                .into_iter()
                .filter(|(m, _)| !known.iter().any(|p| p.round == m.round && p.index == m.index))
                .filter_map(|(m, slot)| match slot {
                    Slot::Bye { a } => Some(Pairing { round: m.round, index: m.index, a, b: None, winner: Some(a) }),
                    Slot::Ready { a, b } => {
                        Some(Pairing { round: m.round, index: m.index, a, b: Some(b), winner: None })
                    }
                    _ => None,
                })
                .collect();
            Ok(if new.is_empty() { Next::Nothing } else { Next::Pairings(new) })
        }
        Format::Swiss => {
            check_entrants(seeded)?;
            let played = known.iter().map(|p| p.round + 1).max().unwrap_or(0);
            if known.iter().any(|p| p.winner.is_none()) {
                return Ok(Next::Nothing);
            }
            let records: Vec<SwissRecord> = seeded
                .iter()
                .map(|id| {
                    let mine = known.iter().filter(|p| p.a == *id || p.b == Some(*id));
                    let mut r = SwissRecord { id: *id, points: 0, opponents: Vec::new(), had_bye: false };
                    for p in mine {
                        match p.b {
                            None => r.had_bye = true,
                            Some(b) => r.opponents.push(if p.a == *id { b } else { p.a }),
                        }
                        r.points += u32::from(p.winner == Some(*id));
                    }
                    r
                })
                .collect();
            if played >= rounds {
                return Ok(Next::Finished(swiss_standings(&records)));
            }
            match swiss_round(&records) {
                Ok(round) => {
                    let mut new: Vec<Pairing> = round
                        .pairs
                        .iter()
                        .zip(0u32..)
                        .map(|(&(a, b), index)| Pairing { round: played, index, a, b: Some(b), winner: None })
                        .collect();
                    if let Some(bye) = round.bye {
                        let index = u32::try_from(new.len()).unwrap_or(0);
                        new.push(Pairing { round: played, index, a: bye, b: None, winner: Some(bye) });
                    }
                    Ok(Next::Pairings(new))
                }
                // Everyone has met everyone: it ends early.
                Err(BracketError::NoPairing) => Ok(Next::Finished(swiss_standings(&records))),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod next_tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (1..=n).map(|i| Uuid::from_u128(i as u128)).collect()
    }

    /// Plays a tournament through `next`, the better seed always winning.
    fn run(format: Format, n: usize) -> (Vec<Pairing>, Vec<(Uuid, u32)>) {
        let seeded = ids(n);
        let rounds = swiss_rounds(n);
        let mut known: Vec<Pairing> = Vec::new();
        loop {
            match next(format, &seeded, rounds, &known).unwrap() {
                Next::Pairings(new) => known.extend(new),
                Next::Finished(places) => return (known, places),
                Next::Nothing => {
                    for p in known.iter_mut().filter(|p| p.winner.is_none()) {
                        let b = p.b.unwrap();
                        p.winner =
                            Some(if seeded.iter().position(|x| *x == p.a) < seeded.iter().position(|x| *x == b) {
                                p.a
                            } else {
                                b
                            });
                    }
                }
            }
        }
    }

    #[test]
    fn an_elimination_runs_to_its_champion_through_next() {
        for n in 2..=33 {
            let (known, places) = run(Format::SingleElimination, n);
            assert_eq!(known.iter().filter(|p| p.b.is_some()).count(), n - 1, "{n}");
            assert_eq!(places[0], (Uuid::from_u128(1), 1), "the top seed wins when the better seed always does");
            assert_eq!(places.len(), n);
        }
    }

    #[test]
    fn a_swiss_runs_its_rounds_through_next() {
        for n in 2..=33 {
            let (known, places) = run(Format::Swiss, n);
            let rounds = known.iter().map(|p| p.round + 1).max().unwrap();
            assert!(rounds <= swiss_rounds(n), "{n}");
            assert_eq!(places[0].0, Uuid::from_u128(1), "{n}");
            assert_eq!(places.len(), n);
        }
    }
}
