// Two people on one keyboard: W/S and ↑/↓. The match runs here, in the
// page, with the server's rules of motion (docs/game.md: 60 ticks a second,
// the same paddle speed, speed-up on hits up to a cap, deflection by where
// the ball hits); nothing is sent or recorded.

import { field, h } from "../dom";
import { paint } from "./page";
import { BALL_RADIUS, type Frame, PADDLE_FACE, PADDLE_SPEED } from "./frames";

const W = 1_200_000;
const H = 900_000;
const LENGTH = 140_000;

export function localMatch(root: HTMLElement): () => void {
  const status = h("p", { class: "phase", role: "status", "aria-live": "polite" });
  const canvas = h("canvas", { role: "img", "aria-label": "The field", class: "field" }) as HTMLCanvasElement;
  const names = [h("input", { id: "local-a", value: "Left", maxlength: "20" }), h("input", { id: "local-b", value: "Right", maxlength: "20" })] as HTMLInputElement[];
  const target = field("Points to win", "points", "number", { min: "1", max: "21", value: "5" });
  root.append(
    h("h1", {}, "Local match"),
    h("p", { class: "field" }, h("label", { for: "local-a" }, "Left player (W / S)"), names[0]),
    h("p", { class: "field" }, h("label", { for: "local-b" }, "Right player (↑ / ↓)"), names[1]),
    target,
    status,
    canvas,
  );
  const keys = new Set<string>();
  const down = (e: KeyboardEvent) => {
    if (["KeyW", "KeyS", "ArrowUp", "ArrowDown"].includes(e.code) && (e.target as HTMLElement).tagName !== "INPUT") {
      e.preventDefault();
      keys.add(e.code);
    }
  };
  const up = (e: KeyboardEvent) => keys.delete(e.code);
  window.addEventListener("keydown", down);
  window.addEventListener("keyup", up);

  const pos = [H / 2, H / 2];
  const score = [0, 0];
  const ball = { x: W / 2, y: H / 2, vx: 0, vy: 0 };
  let serveAt = 60;
  let receiver = 0;
  let tick = 0;
  let winner: number | undefined;
  let closed = false;
  let last = performance.now();
  let carry = 0;
  const context = canvas.getContext("2d");

  const serve = () => {
    ball.x = W / 2;
    ball.y = H / 2;
    const angle = (Math.random() - 0.5) * 0.8;
    ball.vx = 10_000 * Math.cos(angle) * (receiver === 0 ? -1 : 1);
    ball.vy = 10_000 * Math.sin(angle);
  };
  const step = () => {
    tick++;
    const move = (i: number, upKey: string, downKey: string) => {
      const d = (keys.has(downKey) ? 1 : 0) - (keys.has(upKey) ? 1 : 0);
      pos[i] = Math.min(Math.max(pos[i] + d * PADDLE_SPEED, LENGTH / 2), H - LENGTH / 2);
    };
    move(0, "KeyW", "KeyS");
    move(1, "ArrowUp", "ArrowDown");
    if (winner !== undefined) return;
    if (tick === serveAt) serve();
    if (tick < serveAt) return;
    ball.x += ball.vx;
    ball.y += ball.vy;
    if (ball.y < BALL_RADIUS || ball.y > H - BALL_RADIUS) {
      ball.vy = -ball.vy;
      ball.y = Math.min(Math.max(ball.y, BALL_RADIUS), H - BALL_RADIUS);
    }
    for (const [i, face, dir] of [[0, PADDLE_FACE, -1], [1, W - PADDLE_FACE, 1]] as const) {
      const crossing = dir < 0 ? ball.x - BALL_RADIUS <= face && ball.vx < 0 : ball.x + BALL_RADIUS >= face && ball.vx > 0;
      if (crossing && Math.abs(ball.y - pos[i]) <= LENGTH / 2 + BALL_RADIUS) {
        const speed = Math.min(Math.hypot(ball.vx, ball.vy) * 1.06, 25_000);
        const angle = ((ball.y - pos[i]) / (LENGTH / 2)) * 0.77;
        ball.vx = -dir * speed * Math.cos(angle);
        ball.vy = speed * Math.sin(angle);
      }
    }
    const out = ball.x < 0 ? 1 : ball.x > W ? 0 : -1;
    if (out >= 0) {
      score[out]++;
      receiver = 1 - receiver;
      serveAt = tick + 60;
      ball.x = W / 2;
      ball.y = H / 2;
      ball.vx = ball.vy = 0;
      const needed = Number((target.querySelector("input") as HTMLInputElement).value) || 5;
      if (score[out] >= needed) winner = out;
    }
  };
  const frame = (): Frame => ({
    tick,
    phase: winner !== undefined ? "finished" : tick < serveAt ? "serving" : "playing",
    paused: false,
    width: W,
    height: H,
    ball: { ...ball },
    paddles: [0, 1].map((i) => ({
      seat: i,
      user_id: "",
      side: i === 0 ? "left" : "right",
      pos: pos[i],
      length: LENGTH,
      moving: 0,
      last_seq: 0,
      scored: score[i],
      conceded: score[1 - i],
      out: false,
      away: false,
    })),
    winner,
  });
  const loop = (now: number) => {
    if (closed) return;
    requestAnimationFrame(loop);
    carry += Math.min(now - last, 250);
    last = now;
    while (carry >= 1000 / 60) {
      step();
      carry -= 1000 / 60;
    }
    if (context) paint(context, canvas, frame(), undefined, undefined);
    const text =
      winner !== undefined
        ? `${names[winner].value} won ${score[winner]}–${score[1 - winner]}. Reload the page for another.`
        : `${names[0].value} ${score[0]} – ${score[1]} ${names[1].value}`;
    if (status.textContent !== text) status.textContent = text;
  };
  requestAnimationFrame(loop);
  return () => {
    closed = true;
    window.removeEventListener("keydown", down);
    window.removeEventListener("keyup", up);
  };
}
