// The match page: players play, everyone else watches. The canvas is drawn
// at the display's frame rate from the 30 Hz frames (frames.ts); inputs go
// over the socket's rpc with sequence numbers, the server tick and the last
// tick seen (for lag credit); a heartbeat keeps the seat while no key is
// pressed; a reconnect reads the state again and carries on.

import { call, words } from "../api";
import { h } from "../dom";
import * as session from "../session";
import * as socket from "../socket";
import { action, botName, errorBox, go, link, loading, nameOf } from "../ui";
import { BALL_RADIUS, DELAY_TICKS, type Frame, FrameBuffer, PADDLE_FACE, predictOwn, ServerClock } from "./frames";

type Player = { user_id: string; seat: number; bot: boolean };
type Match = {
  id: string;
  mode: "duel" | "four_players";
  status: "waiting" | "live" | "finished";
  options: { points_to_win: number };
  players: Player[];
  seats: number;
  channel: string;
  result?: { winner: string; forfeit: boolean; players: (Player & { scored: number; conceded: number; place: number })[] } | null;
};

const THICKNESS = 15_000;

export async function matchPage(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const id = params.id;
  let match = await loading(root, () => call<Match>("GET", `/v1/game/matches/${id}`));
  if (!match) return () => {};
  const me = session.userId();
  const names = new Map<number, string>();
  const heading = h("h1", {}, match.mode === "duel" ? "Duel" : "Four players");
  const error = errorBox();
  const status = h("p", { class: "phase", role: "status", "aria-live": "polite" });
  const score = h("ul", { class: "score", "aria-label": "Score" });
  const stats = h("p", { class: "netstats muted" });
  const canvas = h("canvas", { role: "img", "aria-label": "The field", class: "field" }) as HTMLCanvasElement;
  const after = h("div", { class: "after" });
  const touch = h("div", { class: "touch", "aria-hidden": "true" });
  root.append(heading, status, score, canvas, touch, stats, error, after);

  const buffer = new FrameBuffer();
  const clock = new ServerClock();
  let seat: number | undefined;
  let seq = 0;
  const held = { up: false, down: false };
  let rtt: number | null = null;
  let closed = false;
  let finishedShown = false;
  let frames = 0;
  let fps = 0;
  let fpsSince = performance.now();

  const learn = async (m: Match) => {
    match = m;
    seat = m.players.find((p) => p.user_id === me)?.seat;
    for (const p of m.players) {
      if (names.has(p.seat)) continue;
      names.set(p.seat, p.bot ? await botName(p.user_id, `Bot ${p.seat + 1}`) : await nameOf(p.user_id, `Player ${p.seat + 1}`));
    }
    if (seat !== undefined) names.set(seat, "You");
  };
  await learn(match);

  const reload = async () => {
    const m = await call<Match>("GET", `/v1/game/matches/${id}`);
    await learn(m);
    if (m.status === "live") {
      // 409 if it ended in between: the next reload shows the end.
      const state = await call<Frame>("GET", `/v1/game/matches/${id}/state`).catch(() => null);
      if (state) {
        clock.observe(state.tick, performance.now());
        buffer.push(state);
      }
    }
    if (m.status === "finished") showEnd();
    else if (m.status === "waiting") showWaiting();
  };
  // The last frame can arrive before the result is stored: ask until it is.
  let ending = false;
  const awaitEnd = async () => {
    if (ending) return;
    ending = true;
    for (let i = 0; i < 40 && !finishedShown && !closed; i++) {
      await reload().catch(() => {});
      if (!finishedShown) await new Promise((r) => setTimeout(r, 500));
    }
  };

  const stop = socket.subscribe(match.channel, {
    onSubscribed: () => void reload().catch((e) => (error.textContent = words(e))),
    onPublication: (data: Frame & { type: string }) => {
      if (data.type !== "frame") return;
      if (match && match.status === "waiting") {
        after.replaceChildren();
        void reload();
      }
      clock.observe(data.tick, performance.now());
      buffer.push(data);
      if (data.phase === "finished" && !finishedShown) void awaitEnd();
    },
  });

  // ---- input ------------------------------------------------------------
  const keyOf = (code: string): "up" | "down" | null => {
    const f = buffer.latest();
    const side = f?.paddles.find((p) => p.seat === seat)?.side ?? "left";
    const across = side === "top" || side === "bottom";
    if (code === (across ? "ArrowLeft" : "ArrowUp") || code === (across ? "KeyA" : "KeyW")) return "up";
    if (code === (across ? "ArrowRight" : "ArrowDown") || code === (across ? "KeyD" : "KeyS")) return "down";
    return null;
  };
  const press = (key: "up" | "down", pressed: boolean) => {
    // Sent whatever this page believes of the match: the server answers 409
    // unless it is live, and that costs nothing.
    if (seat === undefined || held[key] === pressed) return;
    held[key] = pressed;
    const latest = buffer.latest();
    const now = clock.now(performance.now());
    const body: Record<string, unknown> = { match_id: id, seq: ++seq, key, pressed };
    if (latest && now !== null) {
      body.tick = Math.round(now);
      body.ack = latest.tick;
    }
    const sent = performance.now();
    socket
      .rpc("game.input", body)
      .then(() => {
        const took = performance.now() - sent;
        rtt = rtt === null ? took : rtt * 0.8 + took * 0.2;
      })
      .catch(() => {}); // a reconnect: the next press or the state carries on
  };
  const down = (e: KeyboardEvent) => {
    const key = keyOf(e.code);
    if (!key || seat === undefined) return;
    e.preventDefault();
    if (!e.repeat) press(key, true);
  };
  const up = (e: KeyboardEvent) => {
    const key = keyOf(e.code);
    if (key) press(key, false);
  };
  window.addEventListener("keydown", down);
  window.addEventListener("keyup", up);
  const blur = () => {
    press("up", false);
    press("down", false);
  };
  window.addEventListener("blur", blur);
  for (const [key, label] of [["up", "▲"], ["down", "▼"]] as const) {
    const b = h("button", { type: "button", class: "pad" }, label);
    b.addEventListener("pointerdown", () => press(key, true));
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(end, () => press(key, false));
    touch.append(b);
  }

  const heartbeat = window.setInterval(() => {
    if (seat !== undefined && match?.status === "live") void socket.rpc("game.heartbeat", { match_id: id }).catch(() => {});
  }, 1500);

  // ---- drawing ----------------------------------------------------------
  const context = canvas.getContext("2d");
  const draw = () => {
    if (closed) return;
    requestAnimationFrame(draw);
    frames++;
    const t = performance.now();
    if (t - fpsSince >= 1000) {
      fps = Math.round((frames * 1000) / (t - fpsSince));
      frames = 0;
      fpsSince = t;
      canvas.dataset.fps = String(fps);
      stats.textContent = `${rtt === null ? "" : `Latency ${Math.round(rtt)} ms · `}${fps} frames a second`;
    }
    const latest = buffer.latest();
    const now = clock.now(t);
    if (!latest || now === null || !context) return;
    const scene = buffer.at(now - DELAY_TICKS) ?? latest;
    const direction = (held.down ? 1 : 0) - (held.up ? 1 : 0);
    const own = seat === undefined ? undefined : predictOwn(latest, seat, direction, now);
    paint(context, canvas, scene, seat, own);
    hud(latest);
  };
  requestAnimationFrame(draw);

  let lastHud = "";
  const hud = (f: Frame) => {
    const text = f.paddles.map((p) => `${p.seat}:${p.scored}:${p.conceded}:${p.out}:${p.away}`).join() + f.phase + f.paused;
    if (text === lastHud) return;
    lastHud = text;
    score.replaceChildren(
      ...f.paddles.map((p) => {
        const name = names.get(p.seat) ?? `Player ${p.seat + 1}`;
        const figure = match?.mode === "duel" ? `${p.scored}` : `${Math.max(0, (match?.options.points_to_win ?? 0) - p.conceded)} lives`;
        return h("li", { class: p.seat === seat ? "me" : "" }, `${name} (${p.side}): ${figure}${p.out ? " · out" : ""}${p.away ? " · away" : ""}`);
      }),
    );
    const away = f.paddles.filter((p) => p.away).map((p) => names.get(p.seat) ?? `Player ${p.seat + 1}`);
    status.textContent =
      f.phase === "finished"
        ? `${f.winner === seat ? "You won!" : `${names.get(f.winner ?? -1) ?? "Someone"} won.`}`
        : f.paused
          ? `Paused: waiting for ${away.join(", ") || "a player"} to come back.`
          : f.phase === "serving"
            ? seat === undefined
              ? "Serving…"
              : `Serving… ${seatKeys(f, seat)}`
            : seat === undefined
              ? "Watching."
              : "";
  };

  const showWaiting = () => {
    const taken = match?.players.length ?? 0;
    status.textContent = `Waiting for players: ${taken} of ${match?.seats} seats taken.`;
    if (seat === undefined || after.childElementCount) return;
    const err = errorBox();
    after.append(
      action("Add a bot (medium)", err, async () => {
        await call("POST", `/v1/ai/matches/${id}/bots`, { level: "medium" });
        await reload();
      }),
      action("Leave", err, async () => {
        await call("POST", `/v1/game/matches/${id}/leave`);
        go("/play");
      }),
      err,
    );
  };

  const showEnd = () => {
    if (finishedShown || !match?.result) return;
    finishedShown = true;
    const r = match.result;
    const won = r.winner === me;
    const winner = r.players.find((p) => p.user_id === r.winner);
    status.textContent = won ? "You won!" : `${names.get(winner?.seat ?? -1) ?? "Someone"} won.${r.forfeit ? " (by forfeit)" : ""}`;
    const err = errorBox();
    const asked = h("p", { class: "notice", role: "status" });
    after.replaceChildren(
      h("p", { class: "result" }, won ? "Well played: you won." : seat === undefined ? "The match is over." : "You lost this one."),
      seat === undefined
        ? ""
        : action("Rematch", err, async () => {
            const answer = await call<{ id?: string; waiting_for?: string[] }>("POST", `/v1/game/matches/${id}/rematch`);
            if (answer?.id) go(`/play/${answer.id}`);
            else asked.textContent = "Asked: the rematch starts when everyone has asked.";
          }),
      asked,
      link("/play", "Play again"),
      " · ",
      me ? link(`/players/${me}`, "My match history") : "",
      err,
    );
  };

  if (match.status === "waiting") showWaiting();
  if (match.status === "finished") showEnd();

  return () => {
    closed = true;
    stop();
    window.clearInterval(heartbeat);
    window.removeEventListener("keydown", down);
    window.removeEventListener("keyup", up);
    window.removeEventListener("blur", blur);
  };
}

function seatKeys(f: Frame, seat: number): string {
  const side = f.paddles.find((p) => p.seat === seat)?.side;
  return side === "top" || side === "bottom" ? "Your keys: ← → (or A D)." : "Your keys: ↑ ↓ (or W S).";
}

/** Draws one scene: the field scaled to the canvas, the walls of players
 * who are out, the paddles, the power-up and the ball. */
export function paint(ctx: CanvasRenderingContext2D, canvas: HTMLCanvasElement, f: Frame, seat: number | undefined, own: number | undefined): void {
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 600;
  const cssHeight = (cssWidth * f.height) / f.width;
  if (canvas.width !== Math.round(cssWidth * ratio)) {
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    canvas.style.height = `${cssHeight}px`;
  }
  const k = canvas.width / f.width;
  ctx.fillStyle = "#101820";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#ffffff33";
  ctx.setLineDash([8 * ratio, 8 * ratio]);
  ctx.beginPath();
  ctx.moveTo(canvas.width / 2, 0);
  ctx.lineTo(canvas.width / 2, canvas.height);
  ctx.stroke();
  ctx.setLineDash([]);
  for (const p of f.paddles) {
    const pos = p.seat === seat && own !== undefined ? own : p.pos;
    ctx.fillStyle = p.out ? "#ffffff55" : p.seat === seat ? "#ffd23f" : "#f4f4f4";
    const half = p.length / 2;
    if (p.out) {
      // A side whose player is out is a wall.
      if (p.side === "left") ctx.fillRect(0, 0, 4 * ratio, canvas.height);
      if (p.side === "right") ctx.fillRect(canvas.width - 4 * ratio, 0, 4 * ratio, canvas.height);
      if (p.side === "top") ctx.fillRect(0, 0, canvas.width, 4 * ratio);
      if (p.side === "bottom") ctx.fillRect(0, canvas.height - 4 * ratio, canvas.width, 4 * ratio);
      continue;
    }
    if (p.side === "left") ctx.fillRect((PADDLE_FACE - THICKNESS) * k, (pos - half) * k, THICKNESS * k, p.length * k);
    if (p.side === "right") ctx.fillRect((f.width - PADDLE_FACE) * k, (pos - half) * k, THICKNESS * k, p.length * k);
    if (p.side === "top") ctx.fillRect((pos - half) * k, (PADDLE_FACE - THICKNESS) * k, p.length * k, THICKNESS * k);
    if (p.side === "bottom") ctx.fillRect((pos - half) * k, (f.height - PADDLE_FACE) * k, p.length * k, THICKNESS * k);
  }
  if (f.power_up) {
    ctx.fillStyle = f.power_up.kind === "big_paddle" ? "#3fa7ff" : "#ff6b3f";
    ctx.beginPath();
    ctx.arc(f.power_up.x * k, f.power_up.y * k, 30_000 * k, 0, Math.PI * 2);
    ctx.fill();
  }
  if (f.phase !== "finished") {
    ctx.fillStyle = "#ffffff";
    ctx.beginPath();
    ctx.arc(f.ball.x * k, f.ball.y * k, Math.max(BALL_RADIUS * k, 2), 0, Math.PI * 2);
    ctx.fill();
  }
}
