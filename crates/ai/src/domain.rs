//! How a bot plays, as pure functions: no clock, no I/O.
//!
//! A bot looks at the match once a second (the frame game sends, as any
//! client gets it), and plans the key presses and releases it will make
//! until it looks again — the way a person glances and commits. To plan it
//! predicts where the ball will reach its paddle by unfolding the wall
//! reflections (the ball's path mirrored at each wall is a straight line:
//! one division, no search), decides where on its paddle to take the ball
//! (which sets the return's angle: toward a power-up when one is on the
//! field, else away from the opponent), and then misses by an error and
//! reacts after a delay set by its level. Its paddle moves at the one speed
//! every player has.
//!
//! The geometry mirrors game's rules (`docs/game.md`); the constants below
//! are the ones game publishes there. A bot knows only what a frame says.

use serde::Deserialize;

/// Ticks per second of game's simulation.
pub const TICK_HZ: u64 = 60;
/// How far a paddle moves per tick while a key is held, for everyone.
pub const PADDLE_SPEED: i64 = 12_000;
/// The ball's radius.
pub const BALL_RADIUS: i64 = 10_000;
/// Distance from the field's edge to a paddle's face.
pub const PADDLE_FACE: i64 = 40_000;
/// After a hit, the ball's speed along the paddle is at most this share
/// (per mille) of its speed, at the paddle's very end.
const MAX_DEFLECTION: f64 = 0.7;

/// How strong a bot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BotLevel)]
pub enum Level {
    Easy,
    Medium,
    Hard,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Easy, Level::Medium, Level::Hard];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Easy => "easy",
            Level::Medium => "medium",
            Level::Hard => "hard",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The level for players of this rating (the queue's bots): easy
    /// below 1350, hard from 1650.
    pub fn for_rating(rating: f64) -> Self {
        if rating < 1350.0 {
            Level::Easy
        } else if rating < 1650.0 {
            Level::Medium
        } else {
            Level::Hard
        }
    }

    /// What the level means in play.
    pub fn skill(self) -> Skill {
        match self {
            // Late, off by up to a paddle's length, takes the ball wherever
            // it comes, waits where it is.
            Level::Easy => Skill {
                error: 110_000,
                delay: 24,
                look_every: TICK_HZ,
                aim: Aim::Centre,
                anticipate: false,
                power_ups: false,
            },
            Level::Medium => Skill {
                error: 55_000,
                delay: 12,
                look_every: TICK_HZ,
                aim: Aim::Random,
                anticipate: true,
                power_ups: true,
            },
            Level::Hard => Skill {
                error: 20_000,
                delay: 5,
                look_every: TICK_HZ,
                aim: Aim::Away,
                anticipate: true,
                power_ups: true,
            },
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Level::Easy => "reacts in 0.4 s, misjudges by up to 110,000 units, returns the ball as it comes",
            Level::Medium => "reacts in 0.2 s, misjudges by up to 55,000 units, varies its angles, takes power-ups",
            Level::Hard => "reacts in 0.08 s, misjudges by up to 20,000 units, aims away from you, takes power-ups",
        }
    }
}

/// How a player takes the ball on its paddle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// In the middle: the ball goes back as it came.
    Centre,
    /// Anywhere on the middle half: angles nobody can read.
    Random,
    /// At the angle that sends it where the opponent is not.
    Away,
}

/// The parameters of a player's play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skill {
    /// The most the player misjudges where the ball arrives, in units
    /// (uniform in ±error).
    pub error: i64,
    /// Ticks between looking and the first key press.
    pub delay: u64,
    /// Ticks between looks (a bot: a second).
    pub look_every: u64,
    pub aim: Aim,
    /// Whether it waits in the middle while the ball is away (or stays put).
    pub anticipate: bool,
    /// Whether it aims its returns through a power-up on the field.
    pub power_ups: bool,
}

impl Skill {
    /// A scripted player who sees every tick, misjudges nothing, reacts at
    /// once and aims away from its opponent: the benchmark's yardstick.
    pub fn perfect() -> Self {
        Skill { error: 0, delay: 0, look_every: 1, aim: Aim::Away, anticipate: true, power_ups: true }
    }
}

/// The side of the field a paddle defends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
    Top,
    Bottom,
}

impl Side {
    fn vertical(self) -> bool {
        matches!(self, Side::Left | Side::Right)
    }

    fn opposite(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
            Side::Top => Side::Bottom,
            Side::Bottom => Side::Top,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Ball {
    pub x: i64,
    pub y: i64,
    pub vx: i64,
    pub vy: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Paddle {
    pub seat: u8,
    pub user_id: uuid::Uuid,
    pub side: Side,
    pub pos: i64,
    pub length: i64,
    /// -1 up, 0 still, 1 down.
    pub moving: i8,
    #[serde(default)]
    pub out: bool,
    /// The last input of this player the server applied.
    #[serde(default)]
    pub last_seq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PowerUp {
    pub x: i64,
    pub y: i64,
}

/// What a frame from game tells (the fields a bot uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct View {
    pub tick: u64,
    /// `serving`, `playing` or `finished`.
    pub phase: String,
    /// The winner's seat, once finished.
    #[serde(default)]
    pub winner: Option<u8>,
    #[serde(default)]
    pub paused: bool,
    pub width: i64,
    pub height: i64,
    pub ball: Ball,
    pub paddles: Vec<Paddle>,
    pub power_up: Option<PowerUp>,
}

impl View {
    pub fn seat_of(&self, user: uuid::Uuid) -> Option<usize> {
        self.paddles.iter().position(|p| p.user_id == user)
    }

    fn extent(&self, side: Side) -> i64 {
        if side.vertical() { self.height } else { self.width }
    }

    /// Whether a player still in the match defends `side`.
    fn defended(&self, side: Side) -> bool {
        self.paddles.iter().any(|p| p.side == side && !p.out)
    }

    fn four_players(&self) -> bool {
        self.paddles.len() == 4
    }
}

/// A key as game names them: `up` toward the lower coordinate along the
/// paddle's side, `down` toward the higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    Up,
    Down,
}

/// A press or release at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub tick: u64,
    pub key: Key,
    pub pressed: bool,
}

/// The keys a player holds (what its last actions left pressed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub up: bool,
    pub down: bool,
}

impl Held {
    pub fn apply(&mut self, a: &Action) {
        match a.key {
            Key::Up => self.up = a.pressed,
            Key::Down => self.down = a.pressed,
        }
    }

    fn direction(self) -> i64 {
        i64::from(self.down) - i64::from(self.up)
    }
}

/// Where the ball will reach `side`'s paddle, along the paddle's axis, and
/// in how many ticks: `None` when it is not coming (moving away, or another
/// player's paddle is in its way first).
pub fn arrival(view: &View, side: Side) -> Option<(i64, u64)> {
    let b = view.ball;
    let r = BALL_RADIUS;
    // The ball's centre where it touches the paddle's face, and its speed
    // toward that face.
    let (pos, speed, contact) = match side {
        Side::Left => (b.x, -b.vx, PADDLE_FACE + r),
        Side::Right => (b.x, b.vx, view.width - PADDLE_FACE - r),
        Side::Top => (b.y, -b.vy, PADDLE_FACE + r),
        Side::Bottom => (b.y, b.vy, view.height - PADDLE_FACE - r),
    };
    if speed <= 0 {
        return None;
    }
    let distance = match side {
        Side::Left | Side::Top => pos - contact,
        Side::Right | Side::Bottom => contact - pos,
    };
    if distance < 0 {
        return None;
    }
    let ticks = distance.div_euclid(speed) + i64::from(distance.rem_euclid(speed) != 0);
    let (a0, va) = if side.vertical() { (b.y, b.vy) } else { (b.x, b.vx) };
    let extent = view.extent(side);
    // Unfold: between the walls at r and extent − r, the mirrored path is
    // straight; fold the straight end point back into the field.
    let span = extent - 2 * r;
    let unfolded = a0 - r + va * ticks;
    let bounces = unfolded.div_euclid(span);
    // Each crossing of a boundary is a bounce off that side: a wall only
    // if nobody defends it.
    let (low, high) = if side.vertical() { (Side::Top, Side::Bottom) } else { (Side::Left, Side::Right) };
    // Unfolded in [0, span): no bounce; below: off the low side first,
    // then alternating; above: off the high side first.
    let crossed_low = !(0..2).contains(&bounces);
    let crossed_high = bounces > 0 || bounces <= -2;
    if (crossed_low && view.defended(low)) || (crossed_high && view.defended(high)) {
        return None;
    }
    let m = unfolded.rem_euclid(2 * span);
    let folded = if m <= span { m } else { 2 * span - m };
    Some((folded + r, u64::try_from(ticks).unwrap_or(u64::MAX)))
}

/// A small deterministic random source (SplitMix64), so that a bot's play
/// can be replayed in tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in −n..=n.
    pub fn within(&mut self, n: i64) -> i64 {
        if n <= 0 {
            return 0;
        }
        let width = u64::try_from(2 * n + 1).unwrap_or(u64::MAX);
        i64::try_from(self.next_u64() % width).unwrap_or(0) - n
    }

    /// Uniform in −1.0..1.0.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Where on its paddle the player takes the ball (the offset of the ball
/// from the paddle's centre), to send it toward `goal` along the axis on
/// the way back, `across` units away.
fn offset_toward(at: i64, goal: i64, across: i64, half: i64) -> i64 {
    if across <= 0 {
        return 0;
    }
    // The return's slope (along per across) is along/normal speed; the
    // along share of the speed is MAX_DEFLECTION × offset / half.
    let k = (goal - at) as f64 / across as f64;
    let share = k / (1.0 + k * k).sqrt();
    let deflection = (share / MAX_DEFLECTION).clamp(-0.9, 0.9);
    (deflection * half as f64) as i64
}

/// The plan of a player in seat `me` who has just looked at `view`,
/// holding `held`: the presses and releases until it looks again.
pub fn plan(view: &View, me: usize, held: Held, skill: &Skill, rng: &mut Rng) -> Vec<Action> {
    let Some(paddle) = view.paddles.get(me) else { return Vec::new() };
    if view.phase == "finished" || paddle.out {
        return release_all(view.tick, held);
    }
    let side = paddle.side;
    let extent = view.extent(side);
    let half_reach = paddle.length / 2 + BALL_RADIUS;
    let centre = extent / 2;
    let coming = if view.phase == "playing" { arrival(view, side) } else { None };
    let target = match coming {
        Some((at, _)) => {
            let across = view.extent(side.opposite()) - 2 * PADDLE_FACE;
            let goal = aim_goal(view, side, at, skill, rng);
            let offset = match goal {
                Some(goal) => offset_toward(at, goal, across, half_reach),
                None => 0,
            };
            at - offset + rng.within(skill.error)
        }
        // Serving, or the ball is going away: the middle is nearest to
        // wherever it comes back; a weak player stays where it is.
        None if skill.anticipate || view.phase == "serving" => centre,
        None => paddle.pos,
    };
    // The paddle cannot go past the field's ends (nor, with four players,
    // into the corners).
    let margin = if view.four_players() { PADDLE_FACE } else { 0 };
    let target = target.clamp(margin + paddle.length / 2, extent - margin - paddle.length / 2);
    // It keeps moving as the keys are held until the reaction.
    let start = view.tick + skill.delay;
    let drift = held.direction() * PADDLE_SPEED * i64::try_from(skill.delay).unwrap_or(0);
    let from = (paddle.pos + drift).clamp(margin + paddle.length / 2, extent - margin - paddle.length / 2);
    let distance = target - from;
    let mut actions = Vec::new();
    let mut now = held;
    let mut set = |key: Key, pressed: bool, tick: u64, actions: &mut Vec<Action>| {
        let on = match key {
            Key::Up => &mut now.up,
            Key::Down => &mut now.down,
        };
        if *on != pressed {
            *on = pressed;
            actions.push(Action { tick, key, pressed });
        }
    };
    if distance.abs() < PADDLE_SPEED / 2 {
        set(Key::Up, false, start, &mut actions);
        set(Key::Down, false, start, &mut actions);
        return actions;
    }
    let (key, other) = if distance < 0 { (Key::Up, Key::Down) } else { (Key::Down, Key::Up) };
    let ticks = u64::try_from((distance.abs() + PADDLE_SPEED / 2) / PADDLE_SPEED).unwrap_or(0).max(1);
    set(other, false, start, &mut actions);
    set(key, true, start, &mut actions);
    set(key, false, start + ticks, &mut actions);
    actions
}

/// Where along the opponent's side to send the ball, by the player's aim.
fn aim_goal(view: &View, side: Side, at: i64, skill: &Skill, rng: &mut Rng) -> Option<i64> {
    let vertical = side.vertical();
    if skill.power_ups
        && let Some(p) = view.power_up
    {
        return Some(if vertical { p.y } else { p.x });
    }
    let extent = view.extent(side);
    match skill.aim {
        Aim::Centre => None,
        Aim::Random => Some(at + (rng.unit() * extent as f64 / 2.0) as i64),
        Aim::Away => {
            // The far end from where the opponent's paddle is.
            let opponent = view.paddles.iter().find(|p| p.side == side.opposite() && !p.out);
            let theirs = opponent.map_or(extent / 2, |p| p.pos);
            Some(if theirs > extent / 2 { BALL_RADIUS * 3 } else { extent - BALL_RADIUS * 3 })
        }
    }
}

fn release_all(tick: u64, held: Held) -> Vec<Action> {
    let mut actions = Vec::new();
    if held.up {
        actions.push(Action { tick, key: Key::Up, pressed: false });
    }
    if held.down {
        actions.push(Action { tick, key: Key::Down, pressed: false });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duel(ball: Ball, me_pos: i64) -> View {
        View {
            tick: 100,
            phase: "playing".into(),
            winner: None,
            paused: false,
            width: 1_200_000,
            height: 900_000,
            ball,
            paddles: vec![
                Paddle {
                    seat: 0,
                    user_id: uuid::Uuid::nil(),
                    side: Side::Left,
                    pos: me_pos,
                    length: 140_000,
                    moving: 0,
                    out: false,
                    last_seq: 0,
                },
                Paddle {
                    seat: 1,
                    user_id: uuid::Uuid::max(),
                    side: Side::Right,
                    pos: 450_000,
                    length: 140_000,
                    moving: 0,
                    out: false,
                    last_seq: 0,
                },
            ],
            power_up: None,
        }
    }

    #[test]
    fn a_straight_ball_arrives_where_it_is_aimed() {
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: 0 }, 450_000);
        // From x 600,000 to the contact at 50,000: 55 ticks.
        assert_eq!(arrival(&v, Side::Left), Some((300_000, 55)));
        assert_eq!(arrival(&v, Side::Right), None, "going away");
    }

    #[test]
    fn reflections_off_the_walls_are_unfolded() {
        // Up at 45°: 55 ticks × 10,000 = 550,000 up from 300,000 hits the
        // top wall (at 10,000) after 290,000 and comes back down 260,000.
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: -10_000 }, 450_000);
        assert_eq!(arrival(&v, Side::Left), Some((270_000, 55)));
        // Down: 300,000 + 550,000 = 850,000 folds at 890,000: unchanged.
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: 10_000 }, 450_000);
        assert_eq!(arrival(&v, Side::Left), Some((850_000, 55)));
        // Twice: 300,000 + 2,000,000 unfolded.
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: 36_364 }, 450_000);
        let (at, _) = arrival(&v, Side::Left).unwrap();
        assert!((BALL_RADIUS..=900_000 - BALL_RADIUS).contains(&at), "{at}");
    }

    #[test]
    fn the_prediction_matches_games_own_physics() {
        // Game's rules, stepped tick by tick, land the ball where the
        // unfolding says (a wall bounce at r, no paddle in the way).
        let (mut x, mut y, vx, mut vy, r, h) = (600_000i64, 200_000i64, -9_000i64, -17_000i64, BALL_RADIUS, 900_000i64);
        let v = duel(Ball { x, y, vx, vy }, 450_000);
        let (at, ticks) = arrival(&v, Side::Left).unwrap();
        for _ in 0..ticks {
            x += vx;
            y += vy;
            if y - r < 0 {
                (y, vy) = (2 * r - y, vy.abs());
            }
            if y + r > h {
                (y, vy) = (2 * (h - r) - y, -vy.abs());
            }
        }
        assert!(x <= PADDLE_FACE + r && x > PADDLE_FACE + r + vx, "{x}");
        assert_eq!(y, at);
    }

    #[test]
    fn with_four_players_a_defended_side_in_the_way_stops_the_prediction() {
        let mut v = duel(Ball { x: 450_000, y: 450_000, vx: -10_000, vy: -30_000 }, 450_000);
        v.width = 900_000;
        v.paddles.push(Paddle {
            seat: 2,
            user_id: uuid::Uuid::from_u128(2),
            side: Side::Top,
            pos: 450_000,
            length: 140_000,
            moving: 0,
            out: false,
            last_seq: 0,
        });
        v.paddles.push(Paddle {
            seat: 3,
            user_id: uuid::Uuid::from_u128(3),
            side: Side::Bottom,
            pos: 450_000,
            length: 140_000,
            moving: 0,
            out: false,
            last_seq: 0,
        });
        assert_eq!(arrival(&v, Side::Left), None, "the top player takes it first");
        v.paddles[2].out = true;
        assert!(arrival(&v, Side::Left).is_some(), "the top is a wall once its player is out");
    }

    #[test]
    fn a_plan_moves_the_paddle_to_the_ball_after_the_delay_and_stops() {
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: 0 }, 450_000);
        let skill = Skill { error: 0, aim: Aim::Centre, ..Level::Hard.skill() };
        let plan = plan(&v, 0, Held::default(), &skill, &mut Rng(1));
        // 150,000 up: 13 ticks from tick 105.
        assert_eq!(
            plan,
            vec![Action { tick: 105, key: Key::Up, pressed: true }, Action { tick: 118, key: Key::Up, pressed: false },]
        );
        // Already there: nothing to press; a held key is let go.
        let v = duel(Ball { x: 600_000, y: 450_000, vx: -10_000, vy: 0 }, 450_000);
        assert!(super::plan(&v, 0, Held::default(), &skill, &mut Rng(1)).is_empty());
        let held = Held { up: true, down: false };
        let v = duel(Ball { x: 600_000, y: 450_000 - 5 * PADDLE_SPEED, vx: -10_000, vy: 0 }, 450_000);
        assert_eq!(
            super::plan(&v, 0, held, &skill, &mut Rng(1)),
            vec![Action { tick: 105, key: Key::Up, pressed: false }]
        );
    }

    #[test]
    fn aiming_away_takes_the_ball_off_centre_toward_the_open_end() {
        let v = duel(Ball { x: 600_000, y: 300_000, vx: -10_000, vy: 0 }, 300_000);
        let mut v2 = v.clone();
        // The opponent low: aim high (up, a negative along speed), so the
        // ball must hit above the centre (negative offset).
        v2.paddles[1].pos = 800_000;
        let skill = Skill { error: 0, delay: 0, ..Level::Hard.skill() };
        let p = plan(&v2, 0, Held::default(), &skill, &mut Rng(1));
        // The paddle goes below the ball: moves down.
        assert_eq!(p[0].key, Key::Down, "{p:?}");
    }

    #[test]
    fn errors_stay_within_the_level() {
        let mut rng = Rng(7);
        for _ in 0..1_000 {
            let e = rng.within(55_000);
            assert!((-55_000..=55_000).contains(&e));
        }
    }
}
