//! What the terminal shows: the field from the latest frame, one's own
//! paddle predicted since that frame (the client algorithm of
//! `docs/game.md`, simplified: the held key moves it 12,000 units a tick),
//! the score, the phase and the round trip of the inputs.

use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::canvas::{Canvas, Rectangle};
use ratatui::widgets::{Block, Paragraph};
use serde_json::Value;

/// The key held down: toward the lower coordinate of one's side (up on the
/// left and right, left on the top and bottom), or the higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Up,
    Down,
}

fn rect(x: f64, y: f64, width: f64, height: f64, color: Color) -> Rectangle {
    Rectangle { x, y, width, height, color }
}

/// Paddles move this far a tick (the server's rule).
const PADDLE_SPEED: f64 = 12_000.0;
const TICK_HZ: f64 = 60.0;

pub struct View {
    me: String,
    frame: Option<(Value, Instant)>,
    held: Option<Held>,
    rtt: Option<Duration>,
    error: Option<String>,
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

impl View {
    pub fn new(me: String) -> Self {
        Self { me, frame: None, held: None, rtt: None, error: None }
    }

    pub fn frame(&mut self, frame: Value) {
        self.frame = Some((frame, Instant::now()));
    }

    pub fn hold(&mut self, held: Option<Held>) {
        self.held = held;
    }

    /// An input's or heartbeat's answer: its round trip, smoothed.
    pub fn answered(&mut self, rtt: Duration, error: Option<String>) {
        self.rtt = Some(match self.rtt {
            Some(before) => (before * 3 + rtt) / 4,
            None => rtt,
        });
        if error.is_some() {
            self.error = error;
        }
    }

    /// The latest frame's tick.
    pub fn tick(&self) -> Option<u64> {
        self.frame.as_ref().and_then(|(f, _)| f["tick"].as_u64())
    }

    /// How the match ended, once it has.
    pub fn finished(&self) -> Option<String> {
        let (f, _) = self.frame.as_ref()?;
        if f["phase"] != "finished" {
            return None;
        }
        let paddles = f["paddles"].as_array()?;
        let winner = paddles.get(usize::try_from(f["winner"].as_u64()?).ok()?)?;
        let mine = paddles.iter().find(|p| p["user_id"] == self.me.as_str())?;
        let score = paddles.iter().map(|p| p["scored"].to_string()).collect::<Vec<_>>().join("–");
        Some(if winner["user_id"] == self.me.as_str() {
            format!("you won {score}")
        } else if mine["out"] == true || mine["conceded"].as_u64().is_some() {
            format!("you lost {score}")
        } else {
            format!("the match is over {score}")
        })
    }

    pub fn draw(&self, f: &mut Frame) {
        let [top, field, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(5), Constraint::Length(1)]).areas(f.area());
        let Some((frame, at)) = &self.frame else {
            f.render_widget(Paragraph::new("waiting for the match to start…"), top);
            return;
        };
        f.render_widget(Paragraph::new(self.header(frame)), top);
        let (width, height) = (num(&frame["width"]), num(&frame["height"]));
        let since = at.elapsed().as_secs_f64();
        let canvas =
            Canvas::default().block(Block::bordered()).x_bounds([0.0, width]).y_bounds([0.0, height]).paint(|ctx| {
                let thick = width / 80.0;
                for p in frame["paddles"].as_array().into_iter().flatten() {
                    if p["out"] == true {
                        continue;
                    }
                    let mine = p["user_id"] == self.me.as_str();
                    let side = p["side"].as_str().unwrap_or("left");
                    let along = if side == "left" || side == "right" { height } else { width };
                    let length = num(&p["length"]);
                    let mut pos = num(&p["pos"]);
                    if mine && frame["phase"] != "finished" && frame["paused"] == false {
                        // Predicted: where the held key has taken it since the frame.
                        let direction = match self.held {
                            Some(Held::Up) => -1.0,
                            Some(Held::Down) => 1.0,
                            None => 0.0,
                        };
                        pos = (pos + direction * PADDLE_SPEED * TICK_HZ * since.min(0.25))
                            .clamp(length / 2.0, along - length / 2.0);
                    }
                    let color = if mine { Color::Yellow } else { Color::White };
                    // The game's y grows downward, the canvas's upward.
                    let rect = match side {
                        "left" => rect(0.0, height - pos - length / 2.0, thick, length, color),
                        "right" => rect(width - thick, height - pos - length / 2.0, thick, length, color),
                        "top" => rect(pos - length / 2.0, height - thick, length, thick, color),
                        _ => rect(pos - length / 2.0, 0.0, length, thick, color),
                    };
                    ctx.draw(&rect);
                }
                let ball = &frame["ball"];
                let r = width / 120.0;
                ctx.draw(&rect(num(&ball["x"]) - r, height - num(&ball["y"]) - r, 2.0 * r, 2.0 * r, Color::Cyan));
                if let Some(power) = frame["power_up"].as_object() {
                    let (x, y) = (num(&power["x"]), num(&power["y"]));
                    ctx.draw(&rect(x - r, height - y - r, 2.0 * r, 2.0 * r, Color::Magenta));
                }
            });
        f.render_widget(canvas, field);
        let help = match self.finished() {
            Some(outcome) => format!("{outcome} — q to quit"),
            None => "↑/w ↓/s move · q leave (a forfeit)".to_owned(),
        };
        f.render_widget(Paragraph::new(help).style(Style::new().dim()), bottom);
    }

    fn header(&self, frame: &Value) -> Line<'static> {
        let mut parts: Vec<String> = Vec::new();
        for p in frame["paddles"].as_array().into_iter().flatten() {
            let who = if p["user_id"] == self.me.as_str() { "you".to_owned() } else { format!("seat {}", p["seat"]) };
            let away = if p["away"] == true { " (away)" } else { "" };
            parts.push(format!("{who} {}{away}", p["scored"]));
        }
        let phase = if frame["paused"] == true {
            "paused: waiting for players".to_owned()
        } else {
            frame["phase"].as_str().unwrap_or("").to_owned()
        };
        let rtt = self.rtt.map_or("–".to_owned(), |d| format!("{} ms", d.as_millis()));
        let mut line = format!("{} · {phase} · latency {rtt}", parts.join(" : "));
        if let Some(e) = &self.error {
            line.push_str(&format!(" · {e}"));
        }
        Line::from(line).bold()
    }
}
