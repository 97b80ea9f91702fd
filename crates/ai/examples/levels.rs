//! The benchmark of the bots' levels (`bench/ai.sh`): every level against
//! every other and against a scripted perfect player, over many seeded
//! duels on game's own rules; prints a Markdown table.
//!
//! `cargo run --release -p ai --example levels -- [matches] [points]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/levels/harness.rs"]
mod harness;

use ai::domain::{Level, Skill};
use game::domain::Options;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(200, |a| a.parse().expect("matches: a number"));
    let points: u8 = args.next().map_or(11, |a| a.parse().expect("points: a number"));
    let players: Vec<(&str, Skill)> =
        Level::ALL.into_iter().map(|l| (l.as_str(), l.skill())).chain([("perfect", Skill::perfect())]).collect();
    for power_ups in [false, true] {
        let options = Options { points_to_win: points, power_ups, ..Options::default() };
        println!("\n{n} duels per pairing, first to {points}, power-ups {}:\n", if power_ups { "on" } else { "off" });
        println!("| pairing | first won | second won | unfinished | goals (first–second) | mean length |");
        println!("|---|---|---|---|---|---|");
        for (i, (a_name, a)) in players.iter().enumerate() {
            for (b_name, b) in &players[i..] {
                let t = harness::series(*a, *b, n, options);
                let mean_secs = t.ticks as f64 / n as f64 / 60.0;
                println!(
                    "| {a_name} vs {b_name} | {} | {} | {} | {}–{} | {mean_secs:.0} s |",
                    t.a_won, t.b_won, t.unfinished, t.a_goals, t.b_goals
                );
            }
        }
    }
}
