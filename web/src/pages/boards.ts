// Leaderboards, tournaments (online with bots, local with aliases, the
// live bracket, the ledger's "verified" badge), and the notification inbox.

import { call, words } from "../api";
import { field, h, select } from "../dom";
import * as session from "../session";
import * as socket from "../socket";
import { action, errorBox, form, go, link, loading, when } from "../ui";

type Entry = { rank: number; user_id: string; display_name?: string | null; rating: number; wins: number; losses: number };

export async function leaderboard(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const mode = params.mode === "four_players" ? "four_players" : "duel";
  root.append(
    h("h1", {}, "Leaderboard"),
    h("p", {}, link("/leaderboard", "Duels"), " · ", link("/leaderboard/four_players", "Four players")),
  );
  const page = await loading(root, () => call<{ items: Entry[] }>("GET", `/v1/stats/leaderboards/${mode}?limit=50`));
  if (!page) return;
  if (!page.items.length) {
    root.append(h("p", { class: "muted" }, "Nobody is ranked yet: finish a match."));
    return;
  }
  root.append(
    h(
      "div",
      { class: "scroll" },
      h(
      "table",
      { class: "board" },
      h("caption", {}, mode === "duel" ? "Duels, best rating first" : "Four players, best rating first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "Player"), h("th", { scope: "col" }, "Rating"), h("th", { scope: "col" }, "Won"), h("th", { scope: "col" }, "Lost"))),
      h(
        "tbody",
        {},
        ...page.items.map((e) =>
          h(
            "tr",
            {},
            h("td", {}, String(e.rank)),
            h("td", {}, link(`/players/${e.user_id}`, e.display_name ?? "A player")),
            h("td", {}, String(Math.round(e.rating))),
            h("td", {}, String(e.wins)),
            h("td", {}, String(e.losses)),
          ),
        ),
      ),
      ),
    ),
  );
}

type Tournament = {
  id: string;
  name: string;
  format: string;
  kind: "online" | "local";
  status: "registering" | "running" | "finished";
  capacity: number;
  organiser?: string | null;
  rounds: number;
  points_to_win: number;
  channel: string;
  entrants?: { entrant_id: string; alias: string; user_id?: string | null; seed?: number | null }[];
  matches?: { round: number; index: number; a: string; b?: string | null; winner?: string | null; game_match_id?: string | null }[];
  standings?: { place: number; alias: string; entrant_id: string }[];
};

export async function tournaments(root: HTMLElement): Promise<void> {
  const error = errorBox();
  root.append(
    h("h1", {}, "Tournaments"),
    h("h2", {}, "New tournament"),
    form(
      error,
      async (data) => {
        const t = await call<Tournament>("POST", "/v1/tournament/tournaments", {
          name: data.get("name"),
          format: data.get("format"),
          kind: data.get("kind"),
          capacity: Number(data.get("capacity")),
          points_to_win: Number(data.get("points_to_win")),
        });
        go(`/tournaments/${t.id}`);
      },
      field("Name", "name", "text", { required: true, maxlength: "64" }),
      select("Format", "format", [["single_elimination", "Single elimination"], ["swiss", "Swiss"]], "single_elimination"),
      select("Where", "kind", [["online", "Online: everyone on their own device"], ["local", "Local: taking turns on one keyboard"]], "online"),
      field("Places", "capacity", "number", { min: "2", max: "64", value: "4", required: true }),
      field("Points to win each match", "points_to_win", "number", { min: "1", max: "21", value: "5", required: true }),
      error,
      h("button", { type: "submit" }, "Create"),
    ),
  );
  for (const status of ["registering", "running", "finished"] as const) {
    const list = h("ul", { "aria-label": status });
    root.append(h("h2", {}, status === "registering" ? "Open for entries" : status === "running" ? "Being played" : "Finished"), list);
    try {
      const page = await call<{ items: Tournament[] }>("GET", `/v1/tournament/tournaments?status=${status}&limit=20`);
      list.append(...page.items.map((t) => h("li", {}, link(`/tournaments/${t.id}`, t.name), ` · ${t.kind} · ${t.format.replace("_", " ")}`)));
      if (!page.items.length) list.append(h("li", { class: "muted" }, "None."));
    } catch (e) {
      list.append(h("li", { class: "error" }, words(e)));
    }
  }
}

export async function tournament(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const id = params.id;
  const box = h("div", {});
  root.append(box);
  const me = session.userId();
  const draw = async () => {
    const t = await call<Tournament>("GET", `/v1/tournament/tournaments/${id}`);
    const alias = new Map((t.entrants ?? []).map((e) => [e.entrant_id, e.alias]));
    const error = errorBox();
    const organiser = t.organiser === me;
    const parts: (HTMLElement | string)[] = [
      h("h1", {}, t.name),
      h("p", {}, `${t.kind === "online" ? "Online" : "Local"} · ${t.format.replace("_", " ")} · ${t.entrants?.length ?? 0} of ${t.capacity} entrants · first to ${t.points_to_win} · ${t.status}`),
      error,
    ];
    if (t.status === "registering") {
      if (t.kind === "online" && !(t.entrants ?? []).some((e) => e.user_id === me)) {
        parts.push(form(error, async (data) => {
          await call("POST", `/v1/tournament/tournaments/${id}/entrants`, { alias: data.get("alias") });
          await draw();
        }, field("My alias in this tournament", "alias", "text", { required: true, maxlength: "32" }), h("button", { type: "submit" }, "Enter")));
      }
      if (organiser && t.kind === "local") {
        parts.push(form(error, async (data, f) => {
          await call("POST", `/v1/tournament/tournaments/${id}/entrants`, { alias: data.get("alias") });
          f.reset();
          await draw();
        }, field("Add a player by alias", "alias", "text", { required: true, maxlength: "32" }), h("button", { type: "submit" }, "Add")));
      }
      if (organiser && t.kind === "online") {
        parts.push(form(error, async (data) => {
          await call("POST", `/v1/tournament/tournaments/${id}/bots`, { level: data.get("level") });
          await draw();
        }, select("Bot level", "level", [["easy", "Easy"], ["medium", "Medium"], ["hard", "Hard"]], "medium"), h("button", { type: "submit" }, "Add a bot")));
      }
      if (organiser) {
        parts.push(action("Start the tournament", error, async () => {
          await call("POST", `/v1/tournament/tournaments/${id}/start`);
          await draw();
        }));
      }
    }
    parts.push(h("h2", {}, "Entrants"), h("ol", {}, ...(t.entrants ?? []).map((e) => h("li", {}, e.alias, e.user_id === me ? " (you)" : ""))));
    if (t.matches?.length) parts.push(h("h2", {}, "Bracket"), bracket(t, alias, me, organiser, error, draw));
    if (t.status === "finished") {
      parts.push(
        h("h2", {}, "Standings"),
        h("ol", { class: "standings" }, ...(t.standings ?? []).map((s) => h("li", {}, `${s.alias}`))),
      );
      const badge = h("p", { class: "ledger", role: "status" }, "Checking the ledger…");
      parts.push(badge);
      void verify(id, badge);
    }
    box.replaceChildren(...parts);
  };
  await draw().catch((e) => box.append(h("p", { class: "error", role: "alert" }, words(e))));
  // Every change is announced on the tournament's channel; read it again then.
  const stop = socket.subscribe(`tournament:${id}`, {
    onSubscribed: (caughtUp) => {
      if (!caughtUp) void draw().catch(() => {});
    },
    onPublication: () => void draw().catch(() => {}),
  });
  return stop;
}

function bracket(
  t: Tournament,
  alias: Map<string, string>,
  me: string | null,
  organiser: boolean,
  error: HTMLElement,
  redraw: () => Promise<void>,
): HTMLElement {
  const rounds = h("div", { class: "bracket" });
  for (let r = 0; r < t.rounds; r++) {
    const matches = (t.matches ?? []).filter((m) => m.round === r);
    if (!matches.length) continue;
    rounds.append(
      h(
        "section",
        { class: "round", "aria-label": `Round ${r + 1}` },
        h("h3", {}, `Round ${r + 1}`),
        h(
          "ul",
          {},
          ...matches.map((m) => {
            const a = alias.get(m.a) ?? "?";
            const b = m.b ? (alias.get(m.b) ?? "?") : "bye";
            const item = h("li", { class: m.winner ? "decided" : "" }, `${a} vs ${b}`, m.winner ? ` → ${alias.get(m.winner)} won` : "");
            if (!m.winner && m.game_match_id) {
              const mine = t.entrants?.some((e) => e.user_id === me && (e.entrant_id === m.a || e.entrant_id === m.b));
              item.append(" ", link(`/play/${m.game_match_id}`, mine ? "Play your match" : "Watch"));
            }
            if (!m.winner && m.b && t.kind === "local" && organiser) {
              for (const who of [m.a, m.b]) {
                item.append(" ", action(`${alias.get(who)} won`, error, async () => {
                  await call("POST", `/v1/tournament/tournaments/${t.id}/results`, { round: m.round, index: m.index, winner: who });
                  await redraw();
                }));
              }
            }
            return item;
          }),
        ),
      ),
    );
  }
  return rounds;
}

type Verification = { verified: boolean; checks: { check: string; ok?: boolean | null; detail: string }[] };

/** The "verified on the ledger" badge: the ledger's five checks of the
 * tournament's entry (signed checkpoint, inclusion, chain anchor…). The
 * entry is anchored within about a second of the end: ask again until then. */
async function verify(id: string, badge: HTMLElement): Promise<void> {
  for (let i = 0; i < 30; i++) {
    try {
      const v = await call<Verification>("GET", `/v1/ledger/entries/${id}/verification`);
      if (v.verified) {
        badge.className = "ledger verified";
        badge.textContent = "✔ Verified on the ledger";
        badge.title = v.checks.map((c) => `${c.check}: ${c.detail}`).join("\n");
        return;
      }
    } catch {
      // 404/409 until the entry is written and anchored
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  badge.textContent = "Not verified on the ledger yet.";
}

type Item = { id: string; kind: string; title: string; body: string; link?: string | null; created_at: string; read_at?: string | null };

export async function inbox(root: HTMLElement): Promise<() => void> {
  const error = errorBox();
  const list = h("ul", { class: "inbox", "aria-label": "Notifications" });
  const draw = async () => {
    const page = await call<{ items: Item[]; unread: number }>("GET", "/v1/notify/inbox?limit=50");
    list.replaceChildren(
      ...page.items.map((i) =>
        h(
          "li",
          { class: i.read_at ? "read" : "unread" },
          h("strong", {}, i.title),
          " ",
          h("span", {}, i.body),
          " ",
          h("time", { datetime: i.created_at }, when(i.created_at)),
          localLink(i.link),
        ),
      ),
    );
    if (!page.items.length) list.append(h("li", { class: "muted" }, "Nothing yet."));
    document.dispatchEvent(new CustomEvent("panal:unread", { detail: page.unread }));
  };
  root.append(
    h("h1", {}, "Notifications"),
    action("Mark all as read", error, async () => {
      await call("POST", "/v1/notify/inbox/read");
      await draw();
    }),
    error,
    list,
  );
  await draw().catch((e) => (error.textContent = words(e)));
  return socket.onPush((push) => {
    if (push.type === "notification") void draw();
  });
}

/** A notification's link, if it points into this app (notify makes them
 * absolute, from the public URL). */
function localLink(target: string | null | undefined): HTMLElement | null {
  if (!target) return null;
  try {
    const url = new URL(target, location.origin);
    if (url.origin !== location.origin) return null;
    return h("span", {}, " ", link(url.pathname + url.search + url.hash, "Open"));
  } catch {
    return null;
  }
}
