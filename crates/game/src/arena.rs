//! The live matches this process runs, and the clock that steps them.
//!
//! One task ticks every live match at [`TICK_HZ`] with a fixed-step
//! accumulator: each wake-up runs the ticks that are due by the monotonic
//! clock, at most [`MAX_CATCH_UP`] at once (after a stall the game slows
//! down rather than fast-forwarding through a rally). Every second tick
//! builds the match's frame — the state clients render — and keeps it for
//! readers. A player not heard from (an input or a heartbeat) for
//! `absent_after` pauses the match; back within `reconnect_grace` it
//! resumes after a serve delay, otherwise they forfeit. A goal or a pause
//! snapshots the simulation into the database, so a restarted process
//! resumes every live match from its last goal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contracts::game::{MatchFinished, PlayerResult};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Ball, Game, Happening, Input, Key, MAX_LAG_TICKS, Phase, PowerUp, Side, TICK_HZ};
use crate::metrics::Metrics;
use crate::store::{Match, Store};

/// Ticks run at once at most after the clock fell behind.
pub const MAX_CATCH_UP: u32 = 4;

/// What the clients render: sent at 30 Hz, and answered to `GET …/state`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = MatchFrame)]
pub struct Frame {
    pub tick: u64,
    #[serde(flatten)]
    pub phase: Phase,
    /// Frozen until every player is back.
    pub paused: bool,
    pub width: i64,
    pub height: i64,
    pub ball: Ball,
    pub paddles: Vec<PaddleView>,
    pub power_up: Option<PowerUp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaddleView {
    pub seat: u8,
    pub user_id: Uuid,
    pub side: Side,
    /// The paddle's centre along its side, and its length.
    pub pos: i64,
    pub length: i64,
    /// -1 up, 0 still, 1 down: what the server applies each tick.
    pub moving: i8,
    /// The last input sequence number the server applied: a client
    /// predicting its own paddle replays its inputs after this one.
    pub last_seq: u32,
    pub scored: u8,
    pub conceded: u8,
    pub out: bool,
    /// Not heard from: the match waits for them.
    pub away: bool,
}

/// A press or release as a client sends it.
#[derive(Debug, Clone, Copy)]
pub struct Press {
    pub seq: u32,
    pub key: Key,
    pub pressed: bool,
    /// The tick the client believes it pressed at.
    pub tick: Option<u64>,
    /// The last tick the client had seen.
    pub ack: Option<u64>,
}

/// Why an input was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    NotLive,
    NotPlayer,
}

struct Seat {
    user: Uuid,
    bot: bool,
    last_seen: Instant,
    away_since: Option<Instant>,
    forfeited: bool,
    /// The order they went out in (0 first), for places: several can go
    /// out within one tick.
    out_order: Option<u32>,
}

struct Live {
    id: Uuid,
    origin: String,
    game: Game,
    seats: Vec<Seat>,
    paused: bool,
    /// Players out so far.
    eliminated: u32,
    started_at: DateTime<Utc>,
    /// The latest frame, for readers.
    frame: Option<Arc<Frame>>,
}

/// What the arena needs to know of time and absence.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub absent_after: Duration,
    pub reconnect_grace: Duration,
}

pub struct Arena {
    matches: Mutex<HashMap<Uuid, Arc<Mutex<Live>>>>,
    /// Matches that ended here and whose result is being recorded: still
    /// `live` and held by this process in the database for a moment, but
    /// over (a request about one is answered as for a finished match, not
    /// as for one being taken over).
    ending: Mutex<std::collections::HashSet<Uuid>>,
    timing: Timing,
    metrics: Arc<Metrics>,
}

/// One broadcast: every match's frame of one 30 Hz step, numbered so the
/// publisher can count the ones it skipped.
#[derive(Debug, Default)]
pub struct Broadcast {
    pub seq: u64,
    pub frames: Vec<Published>,
}

impl Arena {
    pub fn new(timing: Timing, metrics: Arc<Metrics>) -> Self {
        Self { matches: Mutex::new(HashMap::new()), ending: Mutex::default(), timing, metrics }
    }

    fn get(&self, id: Uuid) -> Option<Arc<Mutex<Live>>> {
        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts running a live match: new, or resumed from its snapshot (then
    /// paused until its players are back).
    pub fn start(&self, m: &Match) {
        let resumed = m.snapshot.as_deref().and_then(|s| serde_json::from_str::<Game>(s).ok());
        let paused = resumed.is_some();
        let mut game = resumed.unwrap_or_else(|| Game::new(m.mode, m.options, m.seed));
        if paused {
            game.resume();
        }
        let now = Instant::now();
        let seats = m
            .players
            .iter()
            .map(|p| Seat {
                user: p.user_id,
                bot: p.bot,
                last_seen: now,
                away_since: paused.then_some(now),
                forfeited: false,
                out_order: None,
            })
            .collect();
        let live = Live {
            id: m.id,
            origin: m.origin.clone(),
            game,
            seats,
            paused,
            eliminated: 0,
            started_at: m.started_at.unwrap_or_else(Utc::now),
            frame: None,
        };
        let live = Arc::new(Mutex::new(live));
        {
            let mut l = lock(&live);
            l.frame = Some(Arc::new(l.frame()));
        }
        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(m.id, live);
    }

    /// Whether this process runs match `id`.
    pub fn runs(&self, id: Uuid) -> bool {
        self.get(id).is_some()
    }

    /// Whether match `id` ended here and its result is being recorded.
    pub fn ending(&self, id: Uuid) -> bool {
        lock(&self.ending).contains(&id)
    }

    /// The matches this process runs.
    pub fn ids(&self) -> Vec<Uuid> {
        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().copied().collect()
    }

    /// Stops running a match without finishing it: its lease was lost, and
    /// another process runs it now.
    pub fn drop_match(&self, id: Uuid) {
        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }

    /// Every running match's state as a snapshot, for a handover at shutdown.
    pub fn snapshots(&self) -> Vec<(Uuid, String)> {
        let matches: Vec<_> =
            self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        matches
            .iter()
            .filter_map(|live| {
                let live = lock(live);
                serde_json::to_string(&live.game).ok().map(|json| (live.id, json))
            })
            .collect()
    }

    /// The latest frame of a match this process runs.
    pub fn frame(&self, id: Uuid) -> Option<Arc<Frame>> {
        self.get(id).and_then(|l| lock(&l).frame.clone())
    }

    /// A player's press or release. `tick` is the tick the client believes
    /// it pressed at, `ack` the last tick it had seen: the lag credited is
    /// at most what the round trip (now − ack) and [`MAX_LAG_TICKS`] allow.
    pub fn input(&self, id: Uuid, user: Uuid, press: &Press) -> Result<(bool, u64), InputError> {
        let &Press { seq, key, pressed, tick, ack } = press;
        let live = self.get(id).ok_or(InputError::NotLive)?;
        let mut live = lock(&live);
        let seat = live.seat_of(user).ok_or(InputError::NotPlayer)?;
        live.seen(seat);
        let now = live.game.tick;
        let round_trip = ack.map_or(0, |a| now.saturating_sub(a.min(now)));
        let claimed = tick.map_or(0, |t| now.saturating_sub(t.min(now)));
        let lag = claimed.min(round_trip).min(u64::from(MAX_LAG_TICKS));
        let applied = live.game.input(seat, Input { seq, key, pressed, lag: u32::try_from(lag).unwrap_or(0) });
        Ok((applied, now))
    }

    /// A player says they are still there.
    pub fn heartbeat(&self, id: Uuid, user: Uuid) -> Result<u64, InputError> {
        let live = self.get(id).ok_or(InputError::NotLive)?;
        let mut live = lock(&live);
        let seat = live.seat_of(user).ok_or(InputError::NotPlayer)?;
        live.seen(seat);
        Ok(live.game.tick)
    }

    /// A player leaves: they forfeit.
    pub fn leave(&self, id: Uuid, user: Uuid) -> Result<(), InputError> {
        let live = self.get(id).ok_or(InputError::NotLive)?;
        let mut live = lock(&live);
        let seat = live.seat_of(user).ok_or(InputError::NotPlayer)?;
        live.seats[seat].forfeited = true;
        let happened = live.game.forfeit(seat);
        live.went_out(&happened);
        // Readers see a player leave at once, not at the next frame.
        live.frame = Some(Arc::new(live.frame()));
        Ok(())
    }

    /// Runs the clock until `stop` is cancelled. At every frame it sends
    /// every match's frame at once on `frames` (the publisher takes the
    /// latest: a frame replaces the one before).
    pub async fn run(
        self: Arc<Self>,
        store: Arc<Store>,
        frames: tokio::sync::watch::Sender<Arc<Broadcast>>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let period = Duration::from_nanos(1_000_000_000 / u64::from(TICK_HZ));
        let start = tokio::time::Instant::now();
        let mut done: u64 = 0;
        let mut broadcasts: u64 = 0;
        // When the clock last stepped, and how late that was.
        let mut last_lateness: Option<Duration> = None;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            let elapsed = start.elapsed();
            let due = u64::try_from(elapsed.as_nanos() / period.as_nanos()).unwrap_or(u64::MAX);
            let ticks = due.saturating_sub(done).min(u64::from(MAX_CATCH_UP));
            if ticks == 0 {
                continue;
            }
            // How long ago the latest due tick was due: the jitter.
            let due_at = period.saturating_mul(u32::try_from(due).unwrap_or(u32::MAX));
            let lateness = elapsed.saturating_sub(due_at);
            self.metrics.tick_lateness.observe(lateness.as_secs_f64());
            // Jitter: the change in lateness from one step to the next (the
            // time between them minus the ticks' worth of period).
            if let Some(last) = last_lateness {
                self.metrics.tick_jitter.observe(lateness.abs_diff(last).as_secs_f64());
            }
            last_lateness = Some(lateness);
            let before = done;
            // Behind by more than the catch-up: the rest is dropped.
            done = due.max(done + ticks);
            // A frame every second tick: whenever a 30 Hz step was crossed.
            let publish = done / 2 != before / 2;
            let stepping = std::time::Instant::now();
            let matches: Vec<_> =
                self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
            let mut batch = Vec::with_capacity(if publish { matches.len() } else { 0 });
            for live in matches {
                let outcome = {
                    let mut live = lock(&live);
                    let outcome = live.advance(ticks, self.timing, publish);
                    if publish || matches!(outcome, Outcome::Finished(_)) {
                        batch.extend(live.published());
                    }
                    outcome
                };
                match outcome {
                    Outcome::Running => {}
                    Outcome::Snapshot(id, snapshot) => {
                        let store = store.clone();
                        tokio::spawn(async move {
                            if let Err(e) = store.snapshot(id, &snapshot).await {
                                tracing::warn!(error = %e, match_id = %id, "a match's snapshot was not saved");
                            }
                        });
                    }
                    Outcome::Finished(result) => {
                        lock(&self.ending).insert(result.match_id);
                        self.matches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&result.match_id);
                        let (store, arena) = (store.clone(), self.clone());
                        tokio::spawn(async move {
                            if let Err(e) = store.finish(&result).await {
                                tracing::error!(error = %e, match_id = %result.match_id, "a finished match was not recorded");
                            }
                            lock(&arena.ending).remove(&result.match_id);
                        });
                    }
                }
            }
            self.metrics.step_duration.observe(stepping.elapsed().as_secs_f64());
            self.metrics.live_matches.set(i64::try_from(self.len()).unwrap_or(i64::MAX));
            if !batch.is_empty() {
                broadcasts += 1;
                self.metrics.frames.inc_by(batch.len() as u64);
                frames.send_replace(Arc::new(Broadcast { seq: broadcasts, frames: batch }));
            }
        }
    }
}

/// A frame as realtime publishes it on `game:<match>`.
#[derive(Debug, Serialize)]
pub struct Published {
    pub channel: String,
    pub data: Box<serde_json::value::RawValue>,
}

/// What a frame looks like on the channel: `{"type": "frame", …the frame}`.
#[derive(Serialize)]
struct Push<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    frame: &'a Frame,
}

enum Outcome {
    Running,
    Snapshot(Uuid, String),
    Finished(Box<MatchFinished>),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    fn published(&self) -> Option<Published> {
        let frame = self.frame.as_ref()?;
        let data = serde_json::value::to_raw_value(&Push { kind: "frame", frame }).ok()?;
        Some(Published { channel: format!("game:{}", self.id), data })
    }

    fn seat_of(&self, user: Uuid) -> Option<usize> {
        self.seats.iter().position(|s| s.user == user)
    }

    fn seen(&mut self, seat: usize) {
        self.seats[seat].last_seen = Instant::now();
        self.seats[seat].away_since = None;
    }

    fn advance(&mut self, ticks: u64, timing: Timing, publish: bool) -> Outcome {
        let now = Instant::now();
        // Who is away: not heard from for `absent_after`.
        let mut snapshot = false;
        for (i, seat) in self.seats.iter_mut().enumerate() {
            if self.game.seats[i].out {
                continue;
            }
            if seat.away_since.is_none() && now.duration_since(seat.last_seen) >= timing.absent_after {
                seat.away_since = Some(now);
            }
        }
        let mut happened = Vec::new();
        for i in 0..self.seats.len() {
            let expired = self.seats[i].away_since.is_some_and(|t| now.duration_since(t) >= timing.reconnect_grace);
            if expired && !self.game.seats[i].out {
                self.seats[i].forfeited = true;
                happened.extend(self.game.forfeit(i));
            }
        }
        let away = self.seats.iter().enumerate().any(|(i, s)| s.away_since.is_some() && !self.game.seats[i].out);
        if away && !self.paused && self.game.finished().is_none() {
            self.paused = true;
            snapshot = true;
        } else if !away && self.paused {
            self.paused = false;
            self.game.resume();
        }
        if !self.paused {
            for _ in 0..ticks {
                let step = self.game.step();
                if step.is_empty() {
                    continue;
                }
                snapshot |= step.iter().any(|h| matches!(h, Happening::Goal { .. }));
                happened.extend(step);
                if self.game.finished().is_some() {
                    break;
                }
            }
        }
        self.went_out(&happened);
        if publish || !happened.is_empty() {
            self.frame = Some(Arc::new(self.frame()));
        }
        if let Some(winner) = self.game.finished() {
            return Outcome::Finished(Box::new(self.result(winner)));
        }
        if snapshot && let Ok(json) = serde_json::to_string(&self.game) {
            return Outcome::Snapshot(self.id, json);
        }
        Outcome::Running
    }

    /// Notes the order of players going out.
    fn went_out(&mut self, happened: &[Happening]) {
        for h in happened {
            if let Happening::Out { seat } = h {
                let seat = &mut self.seats[usize::from(*seat)];
                if seat.out_order.is_none() {
                    seat.out_order = Some(self.eliminated);
                    self.eliminated += 1;
                }
            }
        }
    }

    fn frame(&self) -> Frame {
        let g = &self.game;
        Frame {
            tick: g.tick,
            phase: g.phase,
            paused: self.paused,
            width: g.width,
            height: g.height,
            ball: g.ball,
            power_up: g.power_up,
            paddles: g
                .seats
                .iter()
                .enumerate()
                .map(|(i, s)| PaddleView {
                    seat: u8::try_from(i).unwrap_or(0),
                    user_id: self.seats[i].user,
                    side: s.side,
                    pos: s.pos,
                    length: g.paddle_length(i),
                    moving: i8::from(s.down) - i8::from(s.up),
                    last_seq: s.last_seq,
                    scored: s.scored,
                    conceded: s.conceded,
                    out: s.out,
                    away: self.seats[i].away_since.is_some(),
                })
                .collect(),
        }
    }

    fn result(&self, winner: u8) -> MatchFinished {
        let finished_at = Utc::now();
        // Places: the winner first, then whoever went out last.
        let mut order: Vec<usize> = (0..self.seats.len()).collect();
        order.sort_by_key(|&i| {
            if i == usize::from(winner) { (0, 0) } else { (1, u32::MAX - self.seats[i].out_order.unwrap_or(0)) }
        });
        let players = order
            .iter()
            .enumerate()
            .map(|(place, &i)| PlayerResult {
                user_id: self.seats[i].user,
                seat: u8::try_from(i).unwrap_or(0),
                bot: self.seats[i].bot,
                scored: self.game.seats[i].scored,
                conceded: self.game.seats[i].conceded,
                place: u8::try_from(place + 1).unwrap_or(u8::MAX),
                forfeited: self.seats[i].forfeited,
            })
            .collect();
        MatchFinished {
            match_id: self.id,
            mode: self.game.mode.as_str().to_owned(),
            origin: self.origin.clone(),
            winner: self.seats[usize::from(winner)].user,
            players,
            forfeit: self.seats.iter().any(|s| s.forfeited),
            duration_ms: self.game.tick * 1000 / u64::from(TICK_HZ),
            started_at: self.started_at,
            finished_at,
        }
    }
}
