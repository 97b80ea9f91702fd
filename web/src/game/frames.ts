// What the game page draws, from the server's 30 Hz frames (docs/game.md):
// the ball and the others' paddles about 100 ms in the past, interpolated
// between the two frames around that moment; one's own paddle predicted
// from the latest frame and the key held since; the ball extrapolated from
// its velocity when a frame is late. Pure functions of the frames and the
// clock, no DOM.

export type Side = "left" | "right" | "top" | "bottom";
export type Paddle = {
  seat: number;
  user_id: string;
  side: Side;
  pos: number;
  length: number;
  moving: number;
  last_seq: number;
  scored: number;
  conceded: number;
  out: boolean;
  away: boolean;
};
export type Frame = {
  tick: number;
  phase: "serving" | "playing" | "finished";
  paused: boolean;
  width: number;
  height: number;
  ball: { x: number; y: number; vx: number; vy: number };
  paddles: Paddle[];
  power_up?: { kind: string; x: number; y: number } | null;
  winner?: number;
  to?: number;
  at?: number;
};

export const TICKS_PER_MS = 60 / 1000;
export const PADDLE_SPEED = 12_000;
export const PADDLE_FACE = 40_000;
export const BALL_RADIUS = 10_000;
/** How far in the past the others are drawn: three frames' worth. */
export const DELAY_TICKS = 6;
/** A late frame's ball is extrapolated this far at most (200 ms). */
const MAX_EXTRAPOLATION = 12;

/** The server's clock as seen from here: tick ≈ now × 0.06 + offset,
 * smoothed over the frames' arrivals; a jump (a pause, a takeover) resets it. */
export class ServerClock {
  private offset: number | null = null;

  observe(tick: number, nowMs: number): void {
    const sample = tick - nowMs * TICKS_PER_MS;
    if (this.offset === null || Math.abs(sample - this.offset) > 30) this.offset = sample;
    else this.offset += (sample - this.offset) * 0.1;
  }

  now(nowMs: number): number | null {
    return this.offset === null ? null : nowMs * TICKS_PER_MS + this.offset;
  }
}

/** The frames kept for interpolation: the last second's, oldest first. */
export class FrameBuffer {
  frames: Frame[] = [];

  push(frame: Frame): void {
    const last = this.frames.at(-1);
    if (last && frame.tick <= last.tick) {
      // A restart or takeover replays ticks: start over from this frame.
      if (frame.tick < last.tick - 60) this.frames = [];
      else return;
    }
    this.frames.push(frame);
    while (this.frames.length > 30) this.frames.shift();
  }

  latest(): Frame | undefined {
    return this.frames.at(-1);
  }

  /** The scene at `tick`: interpolated between the frames around it,
   * extrapolated past the latest. */
  at(tick: number): Frame | undefined {
    const frames = this.frames;
    if (frames.length === 0) return undefined;
    const last = frames[frames.length - 1];
    if (tick >= last.tick) return extrapolate(last, tick - last.tick);
    if (tick <= frames[0].tick) return frames[0];
    let i = frames.length - 1;
    while (i > 0 && frames[i - 1].tick > tick) i--;
    return interpolate(frames[i - 1], frames[i], tick);
  }
}

function lerp(a: number, b: number, t: number): number {
  return a + (b - a) * t;
}

export function interpolate(a: Frame, b: Frame, tick: number): Frame {
  const t = (tick - a.tick) / (b.tick - a.tick);
  // A goal puts the ball back in the centre: no streak across the field.
  const jump = a.phase !== b.phase || Math.abs(b.ball.x - a.ball.x) > Math.abs(a.ball.vx) * (b.tick - a.tick) * 3 + BALL_RADIUS;
  const ball = jump ? (t < 0.5 ? a.ball : b.ball) : { ...b.ball, x: lerp(a.ball.x, b.ball.x, t), y: lerp(a.ball.y, b.ball.y, t) };
  const paddles = b.paddles.map((p) => {
    const before = a.paddles.find((q) => q.seat === p.seat);
    return before ? { ...p, pos: lerp(before.pos, p.pos, t) } : p;
  });
  return { ...(t < 0.5 ? a : b), ball, paddles };
}

export function extrapolate(f: Frame, ticks: number): Frame {
  if (f.phase !== "playing" || f.paused || ticks <= 0) return f;
  const n = Math.min(ticks, MAX_EXTRAPOLATION);
  const r = BALL_RADIUS;
  // Bounce off the walls as the server would; paddles are left to the next frame.
  const x = Math.min(Math.max(f.ball.x + f.ball.vx * n, r), f.width - r);
  const y = Math.min(Math.max(f.ball.y + f.ball.vy * n, r), f.height - r);
  return { ...f, ball: { ...f.ball, x, y } };
}

/** Along which axis a side's paddle moves, and how far it can go. */
export function extent(f: Frame, side: Side): number {
  return side === "left" || side === "right" ? f.height : f.width;
}

/** One's own paddle now: the latest frame's position, moved by the key
 * held since (the server applies the same inputs, credited for the lag). */
export function predictOwn(latest: Frame, seat: number, direction: number, nowTick: number): number | undefined {
  const p = latest.paddles.find((q) => q.seat === seat);
  if (!p) return undefined;
  if (latest.phase === "finished" || latest.paused || p.out) return p.pos;
  const ticks = Math.max(0, Math.min(nowTick - latest.tick, MAX_EXTRAPOLATION));
  const margin = latest.paddles.length > 2 ? PADDLE_FACE : 0;
  const half = p.length / 2;
  const pos = p.pos + direction * PADDLE_SPEED * ticks;
  return Math.min(Math.max(pos, margin + half), extent(latest, p.side) - margin - half);
}
