//! The levels against each other, on game's own rules (seeded: the same
//! matches every run). What the benchmark (`bench/ai.sh`) measures over many
//! more matches, held here as properties a change must keep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use ai::domain::{Level, Skill};
use game::domain::Options;

fn short() -> Options {
    Options { points_to_win: 5, ..Options::default() }
}

#[test]
fn a_bot_returns_the_ball_and_scores() {
    // A hard bot against one that never moves wins, 5–0 or close: it meets
    // the ball and gets it past.
    let still = Skill { error: 0, delay: u64::MAX / 4, look_every: 60, ..Level::Easy.skill() };
    let o = harness::duel([Level::Hard.skill(), still], 1, short());
    assert_eq!(o.winner, Some(0), "{o:?}");
}

#[test]
fn harder_levels_beat_easier_ones() {
    for (strong, weak) in [(Level::Hard, Level::Easy), (Level::Hard, Level::Medium), (Level::Medium, Level::Easy)] {
        let t = harness::series(strong.skill(), weak.skill(), 10, short());
        assert!(t.a_won > t.b_won, "{strong:?} against {weak:?}: {t:?}");
        // The weaker still scores: no level is a wall.
        assert!(t.b_goals > 0, "{strong:?} against {weak:?}: {t:?}");
    }
}

#[test]
fn a_perfect_player_beats_every_level() {
    let perfect = Skill::perfect();
    for level in Level::ALL {
        let t = harness::series(level.skill(), perfect, 6, short());
        assert!(t.b_won > t.a_won, "{level:?}: {t:?}");
    }
}

#[test]
fn the_same_seed_plays_the_same_match() {
    let a = harness::duel([Level::Medium.skill(), Level::Hard.skill()], 42, short());
    let b = harness::duel([Level::Medium.skill(), Level::Hard.skill()], 42, short());
    assert_eq!((a.winner, a.conceded, a.ticks), (b.winner, b.conceded, b.ticks));
}
