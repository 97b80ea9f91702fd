// Play: the matchmaking queue, a match against the AI at each level, four
// players with bots, local matches on one keyboard, and live matches to
// watch.

import { call, words } from "../api";
import { field, h, select } from "../dom";
import { errorBox, form, go, link } from "../ui";

type Level = { level: string; description: string };
type Queued = { mode: string; rating: number; waited_secs: number; window: number };
type Listed = { id: string; mode: string; players: { user_id: string }[]; seats: number };

export function play(root: HTMLElement): () => void {
  const error = errorBox();
  const queueStatus = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  const levels = select("Level", "level", [["easy", "Easy"], ["medium", "Medium"], ["hard", "Hard"]], "medium");
  const live = h("ul", { class: "live", "aria-label": "Live matches" });
  let polling: number | undefined;

  const showQueue = async () => {
    try {
      const q = await call<Queued>("GET", "/v1/game/queue");
      queueStatus.textContent = `Looking for an opponent (${q.mode === "duel" ? "duel" : "four players"}) for ${q.waited_secs} s, within ${Math.round(q.window)} rating points of your ${Math.round(q.rating)}…`;
      leave.hidden = false;
    } catch {
      queueStatus.textContent = "";
      leave.hidden = true;
      window.clearInterval(polling);
      polling = undefined;
    }
  };
  const leave = h("button", { type: "button" }, "Leave the queue");
  leave.hidden = true;
  leave.addEventListener("click", async () => {
    await call("DELETE", "/v1/game/queue").catch(() => {});
    await showQueue();
  });

  const playBots = async (mode: "duel" | "four_players", level: string, points: number) => {
    const m = await call<{ id: string }>("POST", "/v1/game/matches", { mode, options: { points_to_win: points } });
    for (let i = 0; i < (mode === "duel" ? 1 : 3); i++) await call("POST", `/v1/ai/matches/${m.id}/bots`, { level });
    go(`/play/${m.id}`);
  };

  root.append(
    h("h1", {}, "Play"),
    error,
    h("h2", {}, "Find an opponent"),
    h("p", {}, "The queue matches you with someone of your level; after 20 seconds alone, bots fill the seats."),
    form(
      error,
      async (data) => {
        await call("POST", "/v1/game/queue", { mode: data.get("mode") });
        await showQueue();
        // match_ready arrives on the socket and opens the match.
        polling ??= window.setInterval(() => void showQueue(), 1000);
      },
      select("Mode", "mode", [["duel", "Duel"], ["four_players", "Four players"]], "duel"),
      h("button", { type: "submit" }, "Find a match"),
    ),
    queueStatus,
    leave,
    h("h2", {}, "Against the AI"),
    form(
      error,
      async (data) => playBots(data.get("mode") === "four_players" ? "four_players" : "duel", String(data.get("level")), Number(data.get("points_to_win"))),
      levels,
      select("Mode", "mode", [["duel", "Duel (you and one bot)"], ["four_players", "Four players (you and three bots)"]], "duel"),
      field("Points to win", "points_to_win", "number", { min: "1", max: "21", value: "5", required: true }),
      h("button", { type: "submit" }, "Play the AI"),
    ),
    h("p", { class: "muted", id: "levels" }),
    h("h2", {}, "On this keyboard"),
    h("p", {}, link("/play/local", "A local match for two players"), " — W/S against ↑/↓, on this screen, not recorded."),
    h("h2", {}, "Watch"),
    live,
  );
  void call<Level[]>("GET", "/v1/ai/levels")
    .then((all) => {
      const box = root.querySelector("#levels");
      if (box) box.textContent = all.map((l) => `${l.level}: ${l.description}`).join(" · ");
    })
    .catch(() => {});
  void call<{ items: Listed[] }>("GET", "/v1/game/matches?status=live&limit=20")
    .then((page) => {
      live.replaceChildren(...page.items.map((m) => h("li", {}, link(`/play/${m.id}`, `${m.mode === "duel" ? "Duel" : "Four players"} · ${m.players.length} players`))));
      if (!page.items.length) live.append(h("li", { class: "muted" }, "Nobody is playing right now."));
    })
    .catch((e) => (error.textContent = words(e)));
  void showQueue().then(() => {
    if (!leave.hidden) polling ??= window.setInterval(() => void showQueue(), 1000);
  });
  return () => window.clearInterval(polling);
}
