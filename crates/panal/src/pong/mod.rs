//! `panal pong`: play Pong in the terminal against anyone — a player on the
//! web client, another terminal, a script — over the same gateway API and
//! socket protocol every client uses (`docs/game.md`).
//!
//! Sign in (with the second factor when the account has one), then queue for
//! a match, accept an invitation or join a match by id; the match is drawn
//! from the server's 30 Hz frames, one's own paddle predicted between them,
//! with the score, the phase and the round trip of the last input.

mod net;
mod screen;

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ratatui::crossterm::event::{
    self, Event, KeyCode, KeyEventKind, KeyboardEnhancementFlags, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use net::{Api, Incoming, Socket};
use screen::{Held, View};

#[derive(Debug, Args)]
pub struct PongArgs {
    /// The gateway, as a browser reaches it.
    #[arg(long, default_value = "http://127.0.0.1:8000", env = "PANAL_GATEWAY")]
    gateway: String,
    /// Your account. The password is read from PANAL_PASSWORD, or asked for.
    #[arg(long)]
    email: String,
    /// A code from your authenticator app, when the account has a second
    /// factor (asked for when needed and not given).
    #[arg(long)]
    code: Option<String>,
    /// Join this match (its id, e.g. from an invitation someone shared).
    #[arg(long = "match", value_name = "ID", conflicts_with = "invitation")]
    match_id: Option<String>,
    /// Accept this invitation and play its match.
    #[arg(long, value_name = "ID")]
    invitation: Option<String>,
    /// The mode to queue for when neither --match nor --invitation is given.
    #[arg(long, default_value = "duel", value_parser = ["duel", "four_players"])]
    mode: String,
}

/// Reads one line from standard input (the password, a code), saying what
/// is asked when a person is typing.
pub(crate) fn prompt(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading standard input")?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        bail!("nothing on standard input for {}", what.trim_end_matches([':', ' ']));
    }
    Ok(line)
}

/// Without the keyboard's release events (most terminals, tmux), a held
/// key is known only from its repeats: released when none came for this long.
const RELEASE_AFTER: Duration = Duration::from_millis(180);
/// How often the player says they are still there.
const HEARTBEAT: Duration = Duration::from_secs(1);

pub async fn run(args: PongArgs) -> anyhow::Result<()> {
    let password = match std::env::var("PANAL_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => prompt("password: ")?,
    };
    let api = Api::sign_in(&args.gateway, &args.email, &password, args.code.clone()).await?;
    let mut socket = Socket::connect(&api.socket_url(), &api.token, &[format!("user:{}", api.user_id)]).await?;
    let match_id = find_match(&api, &mut socket, &args).await?;
    socket.subscribe(&format!("game:{match_id}"));
    play(&api, socket, &match_id).await
}

/// The match to play: joined, accepted, or made by the queue.
async fn find_match(api: &Api, socket: &mut Socket, args: &PongArgs) -> anyhow::Result<String> {
    if let Some(id) = &args.match_id {
        match api.post("joining the match", &format!("/v1/game/matches/{id}/join"), json!({})).await {
            Ok(_) => {}
            // A seat of one's own already (a rematch, a second device): play it.
            Err(e) if e.to_string().contains("already in this match") => {}
            Err(e) => return Err(e),
        }
        return Ok(id.clone());
    }
    if let Some(id) = &args.invitation {
        let m = api.post("accepting the invitation", &format!("/v1/game/invitations/{id}/accept"), json!({})).await?;
        return m["id"].as_str().map(str::to_owned).context("no match in the answer");
    }
    api.post("queueing", "/v1/game/queue", json!({"mode": args.mode})).await?;
    eprintln!("queued for a {} match; waiting for players (Ctrl-C to give up)…", args.mode);
    let waited = async {
        while let Some(incoming) = socket.incoming.recv().await {
            match incoming {
                Incoming::Push { data, .. } if data["type"] == "match_ready" => {
                    return data["match_id"].as_str().map(str::to_owned).context("a match_ready without a match");
                }
                Incoming::Closed(why) => bail!("the socket closed: {why}"),
                _ => {}
            }
        }
        bail!("the socket closed")
    };
    tokio::select! {
        found = waited => found,
        _ = tokio::signal::ctrl_c() => {
            let _ = api.post("leaving the queue", "/v1/game/queue", Value::Null).await;
            bail!("gave up waiting")
        }
    }
}

/// Keys from the terminal, read on a thread of their own (reading blocks).
fn keys() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(e) = event::read() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

#[allow(clippy::print_stdout)]
async fn play(api: &Api, mut socket: Socket, match_id: &str) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    // Release events where the terminal can report them (kitty, foot,
    // WezTerm…); elsewhere a key is released when its repeats stop.
    let releases = ratatui::crossterm::execute!(
        std::io::stdout(),
        PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::REPORT_EVENT_TYPES)
    )
    .is_ok()
        && matches!(ratatui::crossterm::terminal::supports_keyboard_enhancement(), Ok(true));
    let result = game_loop(api, &mut socket, match_id, &mut terminal, releases).await;
    let _ = ratatui::crossterm::execute!(std::io::stdout(), PopKeyboardEnhancementFlags);
    ratatui::restore();
    let outcome = result?;
    println!("{outcome}");
    Ok(())
}

async fn game_loop(
    api: &Api,
    socket: &mut Socket,
    match_id: &str,
    terminal: &mut ratatui::DefaultTerminal,
    releases: bool,
) -> anyhow::Result<String> {
    let mut view = View::new(api.user_id.clone());
    let mut keys = keys();
    let mut seq: u32 = 0;
    let mut held: Option<(Held, Instant)> = None;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut redraw = tokio::time::interval(Duration::from_millis(33));
    let input = |socket: &mut Socket, view: &View, key: Held, pressed: bool, seq: &mut u32| {
        *seq += 1;
        let key = if key == Held::Up { "up" } else { "down" };
        let mut data = json!({"match_id": match_id, "seq": *seq, "key": key, "pressed": pressed});
        if let Some(tick) = view.tick() {
            // The tick it was pressed at, as this client saw it; the server
            // credits it only up to the measured round trip.
            data["tick"] = json!(tick);
            data["ack"] = json!(tick);
        }
        socket.rpc("game.input", data);
    };
    loop {
        tokio::select! {
            incoming = socket.incoming.recv() => match incoming {
                Some(Incoming::Push { channel, data }) if channel.starts_with("game:") && data["type"] == "frame" => {
                    view.frame(data);
                }
                Some(Incoming::Answered { rtt, error }) => view.answered(rtt, error),
                Some(Incoming::Closed(why)) => bail!("the socket closed: {why}"),
                None => bail!("the socket closed"),
                _ => {}
            },
            Some(event) = keys.recv() => {
                let Event::Key(k) = event else { continue };
                let key = match k.code {
                    KeyCode::Up | KeyCode::Char('w') | KeyCode::Left | KeyCode::Char('a') => Held::Up,
                    KeyCode::Down | KeyCode::Char('s') | KeyCode::Right | KeyCode::Char('d') => Held::Down,
                    KeyCode::Char('q') | KeyCode::Esc if k.kind != KeyEventKind::Release => {
                        if view.finished().is_none() {
                            let _ = api.post("leaving", &format!("/v1/game/matches/{match_id}/leave"), json!({})).await;
                        }
                        return Ok(view.finished().unwrap_or_else(|| "you left the match (a forfeit)".to_owned()));
                    }
                    KeyCode::Char('c') if k.modifiers.contains(ratatui::crossterm::event::KeyModifiers::CONTROL) => {
                        return Ok("stopped".to_owned());
                    }
                    _ => continue,
                };
                match k.kind {
                    KeyEventKind::Release => {
                        if held.is_some_and(|(h, _)| h == key) {
                            input(socket, &view, key, false, &mut seq);
                            held = None;
                            view.hold(None);
                        }
                    }
                    _ => {
                        if let Some((other, _)) = held.filter(|(h, _)| *h != key) {
                            input(socket, &view, other, false, &mut seq);
                        }
                        if held.is_none_or(|(h, _)| h != key) {
                            input(socket, &view, key, true, &mut seq);
                        }
                        held = Some((key, Instant::now()));
                        view.hold(Some(key));
                    }
                }
            }
            _ = heartbeat.tick() => socket.rpc("game.heartbeat", json!({"match_id": match_id})),
            _ = redraw.tick() => {
                if !releases && let Some((key, at)) = held && at.elapsed() >= RELEASE_AFTER {
                    input(socket, &view, key, false, &mut seq);
                    held = None;
                    view.hold(None);
                }
                terminal.draw(|f| view.draw(f))?;
            }
        }
    }
}
