//! Bots against each other on game's own rules, as fast as the machine
//! goes: each player looks at the match every `look_every` ticks (a frame
//! built from the simulation, as game sends it) and its plan's presses and
//! releases are applied at their ticks, as game applies inputs.

use ai::domain::{self, Action, Held, Rng, Skill, View};
use game::domain::{Game, Input, Key, Mode, Options, Phase, Side};

/// How one match went.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The winner's seat, `None` when nobody won within the time limit.
    pub winner: Option<usize>,
    /// Goals conceded by each seat.
    pub conceded: [u8; 2],
    pub ticks: u64,
}

/// Ten minutes of play at most.
const LIMIT: u64 = 60 * 60 * 10;

pub fn view_of(g: &Game) -> View {
    let (phase, winner) = match g.phase {
        Phase::Serving { .. } => ("serving", None),
        Phase::Playing => ("playing", None),
        Phase::Finished { winner } => ("finished", Some(winner)),
    };
    View {
        tick: g.tick,
        phase: phase.to_owned(),
        winner,
        paused: false,
        width: g.width,
        height: g.height,
        ball: domain::Ball { x: g.ball.x, y: g.ball.y, vx: g.ball.vx, vy: g.ball.vy },
        paddles: g
            .seats
            .iter()
            .enumerate()
            .map(|(i, s)| domain::Paddle {
                seat: u8::try_from(i).unwrap(),
                user_id: uuid::Uuid::from_u128(i as u128 + 1),
                side: match s.side {
                    Side::Left => domain::Side::Left,
                    Side::Right => domain::Side::Right,
                    Side::Top => domain::Side::Top,
                    Side::Bottom => domain::Side::Bottom,
                },
                pos: s.pos,
                length: g.paddle_length(i),
                moving: i8::from(s.down) - i8::from(s.up),
                out: s.out,
                last_seq: s.last_seq,
            })
            .collect(),
        power_up: g.power_up.map(|p| domain::PowerUp { x: p.x, y: p.y }),
    }
}

/// One duel between `skills[0]` (left) and `skills[1]` (right).
pub fn duel(skills: [Skill; 2], seed: u64, options: Options) -> Outcome {
    let mut g = Game::new(Mode::Duel, options, seed);
    let mut rngs = [Rng(seed ^ 0x5EED_0001), Rng(seed ^ 0x5EED_0002)];
    let mut plans: [Vec<Action>; 2] = [Vec::new(), Vec::new()];
    let mut held = [Held::default(); 2];
    let mut seq = [0u32; 2];
    while g.finished().is_none() && g.tick < LIMIT {
        for seat in 0..2 {
            if g.tick.is_multiple_of(skills[seat].look_every) {
                plans[seat] = domain::plan(&view_of(&g), seat, held[seat], &skills[seat], &mut rngs[seat]);
            }
            let now = g.tick;
            let (due, later): (Vec<Action>, Vec<Action>) = plans[seat].iter().partition(|a| a.tick <= now);
            plans[seat] = later;
            for a in due {
                seq[seat] += 1;
                held[seat].apply(&a);
                let key = match a.key {
                    domain::Key::Up => Key::Up,
                    domain::Key::Down => Key::Down,
                };
                g.input(seat, Input { seq: seq[seat], key, pressed: a.pressed, lag: 0 });
            }
        }
        g.step();
    }
    Outcome {
        winner: g.finished().map(usize::from),
        conceded: [g.seats[0].conceded, g.seats[1].conceded],
        ticks: g.tick,
    }
}

/// A series' tally, from `a`'s side.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub a_won: u64,
    pub b_won: u64,
    /// Ran out of time.
    pub unfinished: u64,
    /// Goals each scored in all.
    pub a_goals: u64,
    pub b_goals: u64,
    /// Ticks played in all.
    pub ticks: u64,
}

/// `a` against `b` over `n` seeded matches, sides swapped every other one.
pub fn series(a: Skill, b: Skill, n: u64, options: Options) -> Tally {
    let mut t = Tally::default();
    for i in 0..n {
        let swapped = i % 2 == 1;
        let skills = if swapped { [b, a] } else { [a, b] };
        let o = duel(skills, 0xA1_0000 + i, options);
        // Goals a scored are those b's seat conceded.
        let (a_seat, b_seat) = if swapped { (1, 0) } else { (0, 1) };
        t.a_goals += u64::from(o.conceded[b_seat]);
        t.b_goals += u64::from(o.conceded[a_seat]);
        t.ticks += o.ticks;
        match o.winner {
            None => t.unfinished += 1,
            Some(w) if w == a_seat => t.a_won += 1,
            Some(_) => t.b_won += 1,
        }
    }
    t
}
