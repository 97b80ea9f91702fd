//! The rules of Pong, as a pure simulation: no clock, no I/O, no floating
//! point. The server steps it at [`TICK_HZ`]; given the same options, seed
//! and inputs at the same ticks, it ends in the same state on every machine
//! (integer arithmetic only, and its own seeded random numbers), which is
//! what lets a match be replayed, tested, and taken over from a snapshot by
//! another process.
//!
//! Geometry: the field is `width × height` units (1,000 units to a pixel of
//! a 1200×900 canvas), x to the right, y down. Two players hold the left and
//! right sides; in the four-player mode the field is square and the top and
//! bottom sides are players too. A side whose player is out is a wall.
//!
//! One rule covers both modes: a player who concedes `points_to_win` goals
//! is out, and the last player standing wins. With two players that is
//! "first to N".

use serde::{Deserialize, Serialize};

/// Simulation steps per second.
pub const TICK_HZ: u32 = 60;
/// The ball's radius.
pub const BALL_RADIUS: i64 = 10_000;
/// How far a paddle moves in one tick while a key is held: the same for
/// every player, human or bot (the full height of the field in 1.25 s).
pub const PADDLE_SPEED: i64 = 12_000;
/// Distance from the field's edge to a paddle's face.
pub const PADDLE_FACE: i64 = 40_000;
/// Each hit speeds the ball up by this many percent…
const SPEEDUP_PERCENT: i64 = 6;
/// …up to this multiple of its serve speed (in percent)…
const SPEED_CAP_PERCENT: i64 = 250;
/// …and never beyond this many units per tick (a power-up included).
const HARD_MAX_SPEED: i64 = 30_000;
/// After a paddle hit, the ball's speed along the paddle is at most this
/// share (per mille) of its speed: about 44° off the normal at the edge.
const MAX_DEFLECTION: i64 = 700;
/// Ticks between a goal (or the start, or a resume) and the next serve.
pub const SERVE_DELAY: u64 = 60;
/// Power-ups: one on the field at most, every so often, gone if untaken.
const POWER_UP_EVERY: u64 = 8 * TICK_HZ as u64;
const POWER_UP_LIFETIME: u64 = 12 * TICK_HZ as u64;
pub const POWER_UP_RADIUS: i64 = 30_000;
/// How long a larger paddle lasts.
const BIG_PADDLE_TICKS: u64 = 10 * TICK_HZ as u64;
/// The most lag a press or release may be credited with (200 ms).
pub const MAX_LAG_TICKS: u32 = 12;

/// Two players, or four (one per side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = GameMode)]
pub enum Mode {
    Duel,
    FourPlayers,
}

impl Mode {
    pub fn seats(self) -> usize {
        match self {
            Mode::Duel => 2,
            Mode::FourPlayers => 4,
        }
    }

    pub fn sides(self) -> &'static [Side] {
        match self {
            Mode::Duel => &[Side::Left, Side::Right],
            Mode::FourPlayers => &[Side::Left, Side::Right, Side::Top, Side::Bottom],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Duel => "duel",
            Mode::FourPlayers => "four_players",
        }
    }
}

/// The side of the field a seat defends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PaddleSide)]
pub enum Side {
    Left,
    Right,
    Top,
    Bottom,
}

impl Side {
    /// Paddles on the left and right move along y; the others along x.
    fn vertical(self) -> bool {
        matches!(self, Side::Left | Side::Right)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BallSpeed {
    Slow,
    Normal,
    Fast,
}

impl BallSpeed {
    /// Units per tick at the serve.
    fn serve(self) -> i64 {
        match self {
            BallSpeed::Slow => 8_000,
            BallSpeed::Normal => 10_000,
            BallSpeed::Fast => 13_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaddleSize {
    Small,
    Normal,
    Large,
}

impl PaddleSize {
    fn length(self) -> i64 {
        match self {
            PaddleSize::Small => 100_000,
            PaddleSize::Normal => 140_000,
            PaddleSize::Large => 190_000,
        }
    }
}

/// What a match is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = MatchOptions)]
pub struct Options {
    /// Goals a player may concede before they are out (with two players:
    /// first to this many wins). 1–21.
    #[schema(minimum = 1, maximum = 21, example = 11)]
    pub points_to_win: u8,
    pub ball_speed: BallSpeed,
    pub paddle_size: PaddleSize,
    /// Power-ups spawned by the server: a larger paddle, a faster ball.
    pub power_ups: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { points_to_win: 11, ball_speed: BallSpeed::Normal, paddle_size: PaddleSize::Normal, power_ups: false }
    }
}

impl Options {
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(1..=21).contains(&self.points_to_win) {
            return Err("points_to_win must be between 1 and 21");
        }
        Ok(())
    }
}

/// A key a player presses or releases: `up` moves the paddle toward the
/// lower coordinate along its side (up on the left and right, left on the
/// top and bottom), `down` toward the higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = GameKey)]
pub enum Key {
    Up,
    Down,
}

/// One press or release, as the server applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// The sender's sequence number: an input at or below the last one
    /// applied for the seat is a duplicate or arrived late, and is ignored.
    pub seq: u32,
    pub key: Key,
    pub pressed: bool,
    /// How many ticks ago it happened, already clamped by the server to the
    /// sender's measured round trip and [`MAX_LAG_TICKS`]: the paddle moves
    /// (or stops) as if the input had arrived then.
    pub lag: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerUpKind {
    /// The taker's paddle is half as long again for ten seconds.
    BigPaddle,
    /// The ball goes 30 % faster until the next goal.
    FastBall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PowerUp {
    pub kind: PowerUpKind,
    pub x: i64,
    pub y: i64,
    /// The tick it disappears at if nobody takes it.
    pub until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ball {
    pub x: i64,
    pub y: i64,
    /// Units per tick.
    pub vx: i64,
    pub vy: i64,
}

/// One player's place in the match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub side: Side,
    /// The paddle's centre along its side.
    pub pos: i64,
    pub up: bool,
    pub down: bool,
    /// The last input sequence number applied.
    pub last_seq: u32,
    pub conceded: u8,
    /// Goals credited to this seat: the last paddle to touch the ball
    /// before it went into someone else's goal.
    pub scored: u8,
    pub out: bool,
    /// A larger paddle until this tick.
    pub big_until: u64,
}

/// Where the match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "phase")]
#[schema(as = MatchPhase)]
pub enum Phase {
    /// The ball waits at the centre; served at `at`, toward `to`.
    Serving {
        at: u64,
        to: u8,
    },
    Playing,
    /// Over: the last player standing.
    Finished {
        winner: u8,
    },
}

/// Something the server tells players and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Happening {
    Goal { conceded_by: u8, scored_by: Option<u8> },
    Out { seat: u8 },
    PowerUpTaken { seat: u8, kind: PowerUpKind },
    Finished { winner: u8 },
}

/// A match's whole state: what is stepped, snapshotted and restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    pub mode: Mode,
    pub options: Options,
    pub width: i64,
    pub height: i64,
    pub tick: u64,
    pub phase: Phase,
    pub ball: Ball,
    pub seats: Vec<Seat>,
    /// The seat that touched the ball last, credited with goals and power-ups.
    pub last_touch: Option<u8>,
    /// The ball's speed (units per tick) without the power-up's boost.
    pub speed: i64,
    pub fast_ball: bool,
    pub power_up: Option<PowerUp>,
    pub next_power_up: u64,
    /// Who the next serve goes to (it rotates among the players still in).
    pub serve_to: u8,
    rng: Rng,
}

impl Game {
    pub fn new(mode: Mode, options: Options, seed: u64) -> Self {
        let (width, height) = match mode {
            Mode::Duel => (1_200_000, 900_000),
            Mode::FourPlayers => (900_000, 900_000),
        };
        let seats = mode
            .sides()
            .iter()
            .map(|&side| Seat {
                side,
                pos: if side.vertical() { height / 2 } else { width / 2 },
                up: false,
                down: false,
                last_seq: 0,
                conceded: 0,
                scored: 0,
                out: false,
                big_until: 0,
            })
            .collect();
        let mut rng = Rng(seed);
        let serve_to = u8::try_from(rng.below(mode.seats() as u64)).unwrap_or(0);
        Self {
            mode,
            options,
            width,
            height,
            tick: 0,
            phase: Phase::Serving { at: SERVE_DELAY, to: serve_to },
            ball: Ball { x: width / 2, y: height / 2, vx: 0, vy: 0 },
            seats,
            last_touch: None,
            speed: options.ball_speed.serve(),
            fast_ball: false,
            power_up: None,
            next_power_up: POWER_UP_EVERY,
            serve_to,
            rng,
        }
    }

    pub fn finished(&self) -> Option<u8> {
        match self.phase {
            Phase::Finished { winner } => Some(winner),
            _ => None,
        }
    }

    /// The paddle's length now (a power-up may have grown it).
    pub fn paddle_length(&self, seat: usize) -> i64 {
        let base = self.options.paddle_size.length();
        if self.seats[seat].big_until > self.tick { base * 3 / 2 } else { base }
    }

    /// Applies a press or release. Duplicates and inputs older than the
    /// last applied are ignored (false); so are inputs for a player out.
    pub fn input(&mut self, seat: usize, input: Input) -> bool {
        let Some(s) = self.seats.get(seat) else { return false };
        if s.out || input.seq <= s.last_seq || self.finished().is_some() {
            return false;
        }
        let was = self.direction(seat);
        let s = &mut self.seats[seat];
        s.last_seq = input.seq;
        match input.key {
            Key::Up => s.up = input.pressed,
            Key::Down => s.down = input.pressed,
        }
        let now = self.direction(seat);
        // Lag compensation: the paddle is where it would be had the input
        // arrived `lag` ticks ago — only while the ball is in play, and
        // only the paddle (a ball already bounced is not rewound).
        if input.lag > 0 && matches!(self.phase, Phase::Playing) {
            let lag = i64::from(input.lag.min(MAX_LAG_TICKS));
            self.move_paddle(seat, (now - was) * PADDLE_SPEED * lag);
        }
        true
    }

    /// Takes a seat out of the match (forfeit); the match ends if one player is left.
    pub fn forfeit(&mut self, seat: usize) -> Vec<Happening> {
        let mut happened = Vec::new();
        if seat < self.seats.len() && !self.seats[seat].out && self.finished().is_none() {
            self.eliminate(seat, &mut happened);
            if matches!(self.phase, Phase::Serving { to, .. } if usize::from(to) == seat) {
                self.serve_to = self.next_alive(seat);
                self.phase = Phase::Serving { at: self.tick + SERVE_DELAY, to: self.serve_to };
            }
            self.check_finished(&mut happened);
        }
        happened
    }

    /// After a pause, the ball waits a serve delay before it moves again.
    pub fn resume(&mut self) {
        if self.finished().is_none() {
            self.phase = match self.phase {
                Phase::Serving { to, .. } => Phase::Serving { at: self.tick + SERVE_DELAY, to },
                _ => {
                    self.ball.x = self.width / 2;
                    self.ball.y = self.height / 2;
                    Phase::Serving { at: self.tick + SERVE_DELAY, to: self.serve_to }
                }
            };
        }
    }

    /// One tick of the simulation.
    pub fn step(&mut self) -> Vec<Happening> {
        let mut happened = Vec::new();
        if self.finished().is_some() {
            return happened;
        }
        self.tick += 1;
        for seat in 0..self.seats.len() {
            if !self.seats[seat].out {
                let d = self.direction(seat);
                self.move_paddle(seat, d * PADDLE_SPEED);
            }
        }
        match self.phase {
            Phase::Serving { at, to } if self.tick >= at => self.serve(to),
            Phase::Playing => self.move_ball(&mut happened),
            _ => {}
        }
        if self.options.power_ups && matches!(self.phase, Phase::Playing) {
            self.power_ups(&mut happened);
        }
        happened
    }

    fn direction(&self, seat: usize) -> i64 {
        let s = &self.seats[seat];
        i64::from(s.down) - i64::from(s.up)
    }

    fn extent(&self, side: Side) -> i64 {
        if side.vertical() { self.height } else { self.width }
    }

    fn move_paddle(&mut self, seat: usize, by: i64) {
        let half = self.paddle_length(seat) / 2;
        let side = self.seats[seat].side;
        // In the four-player field the corners belong to nobody.
        let margin = if self.mode == Mode::FourPlayers { PADDLE_FACE } else { 0 };
        let (low, high) = (margin + half, self.extent(side) - margin - half);
        let s = &mut self.seats[seat];
        s.pos = (s.pos + by).clamp(low, high);
    }

    fn serve(&mut self, to: u8) {
        self.phase = Phase::Playing;
        self.ball.x = self.width / 2;
        self.ball.y = self.height / 2;
        self.speed = self.options.ball_speed.serve();
        self.fast_ball = false;
        self.last_touch = None;
        // Toward the receiver, up to about 24° off straight.
        let along = i64::try_from(self.rng.below(801)).unwrap_or(400) - 400;
        let side = self.seats[usize::from(to)].side;
        self.aim(side, self.speed * along / 1000, true);
    }

    /// Sets the ball's velocity: `along` the given side's axis, the rest of
    /// the speed toward (`toward`) or away from that side.
    fn aim(&mut self, side: Side, along: i64, toward: bool) {
        let speed = if self.fast_ball { (self.speed * 13 / 10).min(HARD_MAX_SPEED) } else { self.speed };
        let along = along.clamp(-speed, speed);
        let normal = (speed * speed - along * along).isqrt().max(speed / 4);
        // The direction that leads to the side.
        let into = match side {
            Side::Left | Side::Top => -normal,
            Side::Right | Side::Bottom => normal,
        };
        let n = if toward { into } else { -into };
        (self.ball.vx, self.ball.vy) = if side.vertical() { (n, along) } else { (along, n) };
    }

    fn seat_on(&self, side: Side) -> Option<usize> {
        self.seats.iter().position(|s| s.side == side && !s.out)
    }

    fn move_ball(&mut self, happened: &mut Vec<Happening>) {
        let (x, y) = (self.ball.x, self.ball.y);
        let (mut nx, mut ny) = (x + self.ball.vx, y + self.ball.vy);
        let r = BALL_RADIUS;
        // Paddles: the ball crossing a paddle's face plane this tick, within
        // the paddle's span at the crossing point (swept, so a fast ball
        // cannot pass through).
        for seat in 0..self.seats.len() {
            if self.seats[seat].out {
                continue;
            }
            let side = self.seats[seat].side;
            let (from, to, face, moving_in) = match side {
                Side::Left => (x - r, nx - r, PADDLE_FACE, self.ball.vx < 0),
                Side::Right => (x + r, nx + r, self.width - PADDLE_FACE, self.ball.vx > 0),
                Side::Top => (y - r, ny - r, PADDLE_FACE, self.ball.vy < 0),
                Side::Bottom => (y + r, ny + r, self.height - PADDLE_FACE, self.ball.vy > 0),
            };
            let crosses = moving_in && ((from >= face && to < face) || (from <= face && to > face));
            if !crosses {
                continue;
            }
            // Where along the paddle's axis the ball is when it reaches the face.
            let (a0, da) = if side.vertical() { (y, self.ball.vy) } else { (x, self.ball.vx) };
            let at = a0 + da * (face - from) / (to - from);
            let half = self.paddle_length(seat) / 2 + r;
            let offset = at - self.seats[seat].pos;
            if offset.abs() > half {
                continue;
            }
            // A hit: back off the face, faster, deflected by where it hit.
            self.speed = (self.speed * (100 + SPEEDUP_PERCENT) / 100)
                .min(self.options.ball_speed.serve() * SPEED_CAP_PERCENT / 100)
                .min(HARD_MAX_SPEED);
            let deflection = offset * 1000 / half;
            let speed = self.speed;
            self.aim(side, speed * deflection * MAX_DEFLECTION / 1_000_000, false);
            match side {
                Side::Left => nx = face + r,
                Side::Right => nx = face - r,
                Side::Top => ny = face + r,
                Side::Bottom => ny = face - r,
            }
            if side.vertical() {
                ny = at;
            } else {
                nx = at;
            }
            self.last_touch = u8::try_from(seat).ok();
            break;
        }
        // Walls: the sides nobody defends.
        for side in [Side::Left, Side::Right, Side::Top, Side::Bottom] {
            let defended = self.mode.sides().contains(&side) && self.seat_on(side).is_some();
            if defended {
                continue;
            }
            match side {
                Side::Left if nx - r < 0 => (nx, self.ball.vx) = (2 * r - nx, self.ball.vx.abs()),
                Side::Right if nx + r > self.width => {
                    (nx, self.ball.vx) = (2 * (self.width - r) - nx, -self.ball.vx.abs());
                }
                Side::Top if ny - r < 0 => (ny, self.ball.vy) = (2 * r - ny, self.ball.vy.abs()),
                Side::Bottom if ny + r > self.height => {
                    (ny, self.ball.vy) = (2 * (self.height - r) - ny, -self.ball.vy.abs());
                }
                _ => {}
            }
        }
        self.ball.x = nx;
        self.ball.y = ny;
        // Goals: the ball's centre past a defended edge.
        let gone = if nx < 0 {
            Some(Side::Left)
        } else if nx > self.width {
            Some(Side::Right)
        } else if ny < 0 {
            Some(Side::Top)
        } else if ny > self.height {
            Some(Side::Bottom)
        } else {
            None
        };
        if let Some(seat) = gone.and_then(|side| self.seat_on(side)) {
            self.goal(seat, happened);
        }
    }

    fn goal(&mut self, seat: usize, happened: &mut Vec<Happening>) {
        let scored_by = match (self.mode, self.last_touch) {
            // With two players the goal is the other player's, touched or not.
            (Mode::Duel, _) => Some(1 - seat),
            (_, Some(t)) if usize::from(t) != seat => Some(usize::from(t)),
            _ => None,
        };
        if let Some(by) = scored_by {
            self.seats[by].scored = self.seats[by].scored.saturating_add(1);
        }
        self.seats[seat].conceded = self.seats[seat].conceded.saturating_add(1);
        happened.push(Happening::Goal {
            conceded_by: u8::try_from(seat).unwrap_or(0),
            scored_by: scored_by.and_then(|s| u8::try_from(s).ok()),
        });
        if self.seats[seat].conceded >= self.options.points_to_win {
            self.eliminate(seat, happened);
        }
        if self.check_finished(happened) {
            return;
        }
        // The serve goes round the players still in.
        self.serve_to = self.next_alive(usize::from(self.serve_to));
        self.ball = Ball { x: self.width / 2, y: self.height / 2, vx: 0, vy: 0 };
        self.phase = Phase::Serving { at: self.tick + SERVE_DELAY, to: self.serve_to };
    }

    fn eliminate(&mut self, seat: usize, happened: &mut Vec<Happening>) {
        let s = &mut self.seats[seat];
        s.out = true;
        s.up = false;
        s.down = false;
        happened.push(Happening::Out { seat: u8::try_from(seat).unwrap_or(0) });
    }

    fn check_finished(&mut self, happened: &mut Vec<Happening>) -> bool {
        let mut alive = self.seats.iter().enumerate().filter(|(_, s)| !s.out);
        if let (Some((winner, _)), None) = (alive.next(), alive.next()) {
            let winner = u8::try_from(winner).unwrap_or(0);
            self.phase = Phase::Finished { winner };
            self.power_up = None;
            happened.push(Happening::Finished { winner });
            return true;
        }
        false
    }

    /// The next seat after `seat` still in the match (`seat` itself if alone).
    fn next_alive(&self, seat: usize) -> u8 {
        let n = self.seats.len();
        (1..=n).map(|i| (seat + i) % n).find(|&i| !self.seats[i].out).and_then(|i| u8::try_from(i).ok()).unwrap_or(0)
    }

    fn power_ups(&mut self, happened: &mut Vec<Happening>) {
        if let Some(p) = self.power_up {
            let (dx, dy) = (self.ball.x - p.x, self.ball.y - p.y);
            let reach = BALL_RADIUS + POWER_UP_RADIUS;
            if dx * dx + dy * dy <= reach * reach {
                self.power_up = None;
                // Untouched balls take power-ups for nobody.
                if let Some(seat) = self.last_touch {
                    match p.kind {
                        PowerUpKind::BigPaddle => {
                            self.seats[usize::from(seat)].big_until = self.tick + BIG_PADDLE_TICKS
                        }
                        PowerUpKind::FastBall => {
                            self.fast_ball = true;
                            let scale = |v: i64| v * 13 / 10;
                            self.ball.vx = scale(self.ball.vx).clamp(-HARD_MAX_SPEED, HARD_MAX_SPEED);
                            self.ball.vy = scale(self.ball.vy).clamp(-HARD_MAX_SPEED, HARD_MAX_SPEED);
                        }
                    }
                    happened.push(Happening::PowerUpTaken { seat, kind: p.kind });
                }
            } else if self.tick >= p.until {
                self.power_up = None;
            }
        } else if self.tick >= self.next_power_up {
            // Somewhere in the middle of the field, clear of the paddles.
            let margin = PADDLE_FACE * 4;
            let x = margin
                + i64::try_from(self.rng.below(u64::try_from(self.width - 2 * margin).unwrap_or(1))).unwrap_or(0);
            let y = margin
                + i64::try_from(self.rng.below(u64::try_from(self.height - 2 * margin).unwrap_or(1))).unwrap_or(0);
            let kind = if self.rng.below(2) == 0 { PowerUpKind::BigPaddle } else { PowerUpKind::FastBall };
            self.power_up = Some(PowerUp { kind, x, y, until: self.tick + POWER_UP_LIFETIME });
            self.next_power_up = self.tick + POWER_UP_EVERY;
        }
    }
}

/// SplitMix64: small, fast, and the same numbers everywhere for a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (the modulo bias is < 2⁻⁴⁰ for these n).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[cfg(test)]
mod tests;
