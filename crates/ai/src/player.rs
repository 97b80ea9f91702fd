//! A bot playing one match, over the same socket a browser uses: it
//! connects to realtime with its own token, subscribes to `game:<match>`,
//! and sends `game.input` presses and releases and `game.heartbeat` over
//! `rpc`. Frames arrive 30 times a second; the bot looks at the latest one
//! once a second and plays the plan it makes from it ([`crate::domain`])
//! until it looks again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kit::peer::{Credentials, PeerClient};
use kit::socket::{Incoming, Socket};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{Action, Held, Key, Rng, Skill, TICK_HZ, View};
use crate::roster::Roster;
use crate::store::{Game, Store};

/// What a player needs besides its match.
pub struct Table {
    pub store: Arc<Store>,
    pub roster: Arc<Roster>,
    pub game: Arc<PeerClient>,
    /// realtime's socket, `ws://…/v1/ws`.
    pub socket_url: String,
    /// How long a bot waits for its match to start before it gives up.
    pub wait: Duration,
}

/// How a bot's match ended for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Won(bool),
    GaveUp,
    Stopped,
}

/// Plays `g` until it is over, then records how it went. Never fails: a
/// bot that cannot reach realtime retries with backoff, and one whose
/// match never starts gives up after [`Table::wait`].
pub async fn play(table: Arc<Table>, g: Game, stop: CancellationToken) {
    let end = match_loop(&table, &g, &stop).await;
    tracing::info!(match_id = %g.match_id, bot = %g.bot_id, ?end, "a bot's match ended");
    let won = match end {
        End::Won(won) => Some(won),
        End::GaveUp => None,
        // Stopping with the service: resumed at the next start.
        End::Stopped => return,
    };
    if let Err(e) = table.store.end(&g, won, Utc::now()).await {
        tracing::warn!(error = %e, match_id = %g.match_id, "a bot's result was not recorded");
    }
}

async fn match_loop(table: &Table, g: &Game, stop: &CancellationToken) -> End {
    let skill = g.level.skill();
    // Per match and bot, so that two bots never play alike.
    let mut rng = Rng(g.match_id.as_u64_pair().1 ^ g.bot_id.as_u64_pair().1);
    let mut seq: u32 = 0;
    let mut held = Held::default();
    let mut backoff = Duration::from_millis(250);
    let started_waiting = Instant::now();
    let mut seen_frame = false;
    loop {
        if stop.is_cancelled() {
            return End::Stopped;
        }
        if !seen_frame && started_waiting.elapsed() > table.wait {
            return End::GaveUp;
        }
        if let Some(end) = over(table, g).await {
            return end;
        }
        let socket = match table.roster.token(g.bot_id).await {
            Ok(token) => Socket::connect(&table.socket_url, &token, &[format!("game:{}", g.match_id)]).await,
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        let mut socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, match_id = %g.match_id, "a bot could not reach realtime; retrying");
                tokio::select! {
                    () = stop.cancelled() => return End::Stopped,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let session = Session { table, g, skill: &skill, rng: &mut rng, seq: &mut seq, held: &mut held };
        // `None`: the socket closed; connect again.
        if let Some(end) = session.run(&mut socket, stop, &mut seen_frame, started_waiting).await {
            return end;
        }
    }
}

/// Asks game whether the match is over (`GET /v1/game/matches/{id}`):
/// how it ended for the bot, or `None` while it is waiting or live (or game
/// cannot say).
async fn over(table: &Table, g: &Game) -> Option<End> {
    let token = table.roster.token(g.bot_id).await.ok()?;
    let r = table.game.get(&format!("/v1/game/matches/{}", g.match_id), Credentials::Bearer(&token)).await.ok()?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Some(End::GaveUp);
    }
    if !r.status().is_success() {
        return None;
    }
    let m: Value = r.json().await.ok()?;
    if m["status"] != "finished" {
        return None;
    }
    Some(End::Won(m["result"]["winner"] == json!(g.bot_id)))
}

struct Session<'a> {
    table: &'a Table,
    g: &'a Game,
    skill: &'a Skill,
    rng: &'a mut Rng,
    seq: &'a mut u32,
    held: &'a mut Held,
}

impl Session<'_> {
    /// Plays over one connection: `None` when it closed.
    async fn run(
        self,
        socket: &mut Socket,
        stop: &CancellationToken,
        seen_frame: &mut bool,
        started_waiting: Instant,
    ) -> Option<End> {
        let Session { table, g, skill, rng, seq, held } = self;
        let match_id = g.match_id;
        // The latest frame and when it came.
        let mut latest: Option<(View, Instant)> = None;
        let mut plan: VecDeque<(Instant, Action)> = VecDeque::new();
        let look_every = Duration::from_secs_f64(skill.look_every as f64 / TICK_HZ as f64);
        let mut look = tokio::time::interval(look_every);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // With no frame for this long, game is asked whether the match is
        // still on (a match that ended while the socket was away sends no
        // last frame).
        let quiet = Duration::from_secs(5);
        let mut last_frame = Instant::now();
        loop {
            let next_action = plan.front().map_or_else(|| Instant::now() + Duration::from_secs(3600), |(at, _)| *at);
            tokio::select! {
                () = stop.cancelled() => return Some(End::Stopped),
                incoming = socket.incoming.recv() => match incoming {
                    Some(Incoming::Push { data, .. }) if data["type"] == "frame" => {
                        let Ok(view) = serde_json::from_value::<View>(data) else { continue };
                        let Some(me) = view.seat_of(g.bot_id) else { continue };
                        if !*seen_frame {
                            *seen_frame = true;
                            tracing::info!(%match_id, bot = %g.bot_id, seat = me, "a bot's match started");
                        }
                        if latest.is_none() {
                            // A new connection (or a restart): carry on from
                            // the server's count, and let go of whatever key
                            // the server may still hold down for the bot.
                            *seq = (*seq).max(view.paddles[me].last_seq);
                            for key in [Key::Up, Key::Down] {
                                *seq += 1;
                                socket.rpc("game.input", json!({"match_id": match_id, "seq": *seq, "key": key, "pressed": false}));
                            }
                            *held = Held::default();
                            plan.clear();
                        }
                        if view.phase == "finished" {
                            let winner = view.winner.map(usize::from);
                            return Some(End::Won(winner == Some(me)));
                        }
                        last_frame = Instant::now();
                        latest = Some((view, last_frame));
                    }
                    Some(Incoming::Push { .. } | Incoming::Answered { .. }) => {}
                    Some(Incoming::Closed(why)) => {
                        tracing::info!(%match_id, bot = %g.bot_id, %why, "a bot's socket closed; reconnecting");
                        return None;
                    }
                    None => return None,
                },
                _ = look.tick() => {
                    if last_frame.elapsed() > quiet {
                        if let Some(end) = over(table, g).await {
                            return Some(end);
                        }
                        if !*seen_frame && started_waiting.elapsed() > table.wait {
                            return Some(End::GaveUp);
                        }
                        last_frame = Instant::now();
                    }
                    let Some((view, at)) = &latest else { continue };
                    let Some(me) = view.seat_of(g.bot_id) else { continue };
                    if view.paused {
                        // Waiting for someone: only say the bot is here.
                        socket.rpc("game.heartbeat", json!({"match_id": match_id}));
                        continue;
                    }
                    // What the plan's ticks are in time: the frame's tick
                    // was the server's when it came.
                    let when = |tick: u64| *at + Duration::from_secs_f64(tick.saturating_sub(view.tick) as f64 / TICK_HZ as f64);
                    plan = crate::domain::plan(view, me, *held, skill, rng).into_iter().map(|a| (when(a.tick), a)).collect();
                    socket.rpc("game.heartbeat", json!({"match_id": match_id}));
                }
                () = tokio::time::sleep_until(next_action) => {
                    let Some((_, action)) = plan.pop_front() else { continue };
                    let ack = latest.as_ref().map_or(0, |(v, _)| v.tick);
                    *seq += 1;
                    held.apply(&action);
                    socket.rpc("game.input", json!({
                        "match_id": match_id, "seq": *seq, "key": action.key,
                        "pressed": action.pressed, "tick": action.tick, "ack": ack,
                    }));
                }
            }
        }
    }
}
