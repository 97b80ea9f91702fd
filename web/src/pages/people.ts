// Profiles (one's own and others', with stats and match history), friends
// with their online status, requests and blocks.

import { ApiError, call, words } from "../api";
import { ratingChart, type Day } from "../chart";
import { field, h, select } from "../dom";
import * as session from "../session";
import * as socket from "../socket";
import { action, avatar, botName, errorBox, form, go, link, loading, nameOf, type Person, rememberName, when } from "../ui";

type Audience = "everyone" | "friends" | "nobody";
type Profile = Person & {
  bio?: string | null;
  online?: boolean | null;
  last_seen_at?: string | null;
  privacy?: { profile: Audience; online_status: Audience; friend_requests: Audience };
  relationship?: string;
};

/** The caller's profile; a new account's is made from auth's event a
 * moment after sign-up: users answers 503 "profile pending" until then. */
async function myProfile(): Promise<Profile> {
  for (let i = 0; ; i++) {
    try {
      return await call<Profile>("GET", "/v1/users/me");
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 503 || i >= 40) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export async function home(root: HTMLElement): Promise<void> {
  root.append(h("h1", {}, "My profile"));
  const me = await loading(root, myProfile);
  if (!me) return;
  rememberName(me.id, me.display_name);
  const error = errorBox();
  const saved = h("p", { class: "notice", role: "status" });
  const picture = avatar(me.avatar_url, 96);
  const audiences: [string, string][] = [
    ["everyone", "Everyone"],
    ["friends", "Friends"],
    ["nobody", "Nobody"],
  ];
  root.append(
    h("div", { class: "who" }, picture, h("p", { class: "name" }, me.display_name)),
    form(
      error,
      async (data) => {
        saved.textContent = "";
        const updated = await call<Profile>("PUT", "/v1/users/me", {
          display_name: data.get("display_name"),
          bio: data.get("bio"),
          privacy: {
            profile: data.get("profile"),
            online_status: data.get("online_status"),
            friend_requests: data.get("friend_requests"),
          },
        });
        (root.querySelector(".name") as HTMLElement).textContent = updated.display_name;
        saved.textContent = "Saved.";
      },
      field("Display name", "display_name", "text", { value: me.display_name, maxlength: "32", required: true }),
      field("About me", "bio", "text", { value: me.bio ?? "", maxlength: "500" }),
      select("Who sees my profile", "profile", audiences, me.privacy?.profile),
      select("Who sees when I am online", "online_status", audiences, me.privacy?.online_status),
      select("Who may send me friend requests", "friend_requests", [["everyone", "Everyone"], ["nobody", "Nobody"]], me.privacy?.friend_requests),
      saved,
      error,
      h("button", { type: "submit" }, "Save"),
    ),
    avatarForm(me, picture),
    h("p", {}, link(`/players/${me.id}`, "My stats and match history")),
  );
}

function avatarForm(me: Profile, picture: HTMLElement): HTMLElement {
  const error = errorBox();
  return form(
    error,
    async (data, f) => {
      const file = data.get("avatar");
      if (!(file instanceof File) || file.size === 0) throw new Error("Choose a picture first.");
      const body = new FormData();
      body.append("avatar", file);
      const updated = await call<Profile>("PUT", "/v1/users/me/avatar", body);
      (picture as HTMLImageElement).src = updated.avatar_url ?? me.avatar_url ?? "";
      f.reset();
    },
    field("Picture (PNG, JPEG, WebP or GIF, up to 5 MiB)", "avatar", "file", { accept: "image/png,image/jpeg,image/webp,image/gif" }),
    error,
    h("button", { type: "submit" }, "Upload picture"),
  );
}

type ModeStats = {
  mode: string;
  rating: number;
  rank?: number | null;
  matches: number;
  wins: number;
  losses: number;
  win_rate: number;
  streak: number;
  best_streak: number;
  points_scored: number;
  points_conceded: number;
};
type HistoryEntry = {
  match_id: string;
  mode: string;
  origin: string;
  finished_at: string;
  won: boolean;
  forfeited: boolean;
  scored: number;
  conceded: number;
  place: number;
  opponents: { user_id: string; bot: boolean }[];
  rated: boolean;
  rating_before: number;
  rating_after: number;
};

export async function player(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const id = params.id;
  const profile = await loading(root, () => call<Profile>("GET", `/v1/users/${id}`));
  if (!profile) return;
  rememberName(profile.id, profile.display_name);
  const mine = id === session.userId();
  const status = profile.online === true ? "online" : profile.online === false ? "offline" : null;
  root.append(
    h("div", { class: "who" }, avatar(profile.avatar_url, 96), h("h1", { class: "name" }, profile.display_name)),
    status ? h("p", { class: `presence ${status}` }, status === "online" ? "Online now" : `Offline${profile.last_seen_at ? ` · last seen ${when(profile.last_seen_at)}` : ""}`) : "",
    profile.bio ? h("p", { class: "bio" }, profile.bio) : "",
  );
  if (!mine) root.append(playerActions(profile));
  await playerStats(root, id);
}

function playerActions(p: Profile): HTMLElement {
  const error = errorBox();
  const done = h("p", { class: "notice", role: "status" });
  return h(
    "div",
    { class: "actions" },
    action("Add friend", error, async () => {
      const r = await call<{ state: string }>("POST", "/v1/users/me/friends/requests", { user_id: p.id });
      done.textContent = r.state === "friends" ? "You are friends now." : "Friend request sent.";
    }),
    action("Message", error, async () => {
      const c = await call<{ id: string }>("POST", `/v1/chat/direct/${p.id}`);
      go(`/chat/${c.id}`);
    }),
    action("Block", error, async () => {
      await call("PUT", `/v1/users/me/blocks/${p.id}`);
      done.textContent = `${p.display_name} is blocked: no messages, requests or invitations from them.`;
    }),
    done,
    error,
  );
}

async function playerStats(root: HTMLElement, id: string): Promise<void> {
  const section = h("section", { "aria-labelledby": "stats-h" }, h("h2", { id: "stats-h" }, "Stats"));
  root.append(section);
  try {
    const stats = await call<{ modes: ModeStats[] }>("GET", `/v1/stats/players/${id}`);
    if (stats.modes.length === 0) section.append(h("p", { class: "muted" }, "No finished matches yet."));
    for (const m of stats.modes) {
      section.append(
        h("h3", {}, m.mode === "duel" ? "Duels" : "Four players"),
        h(
          "dl",
          { class: "figures" },
          ...figure("Rating", Math.round(m.rating).toString()),
          ...figure("Rank", m.rank ? `#${m.rank}` : "—"),
          ...figure("Won / lost", `${m.wins} / ${m.losses}`),
          ...figure("Win rate", `${Math.round(m.win_rate * 100)} %`),
          ...figure("Streak (best)", `${m.streak} (${m.best_streak})`),
          ...figure("Points for / against", `${m.points_scored} / ${m.points_conceded}`),
        ),
      );
      const series = await call<{ days: Day[] }>("GET", `/v1/stats/players/${id}/series?mode=${m.mode}&days=30`);
      if (series.days.length) section.append(ratingChart(series.days, `Rating over the last 30 days, with wins and losses each day`));
    }
  } catch (e) {
    section.append(h("p", { class: "error", role: "alert" }, words(e)));
  }
  const history = h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "Match history"));
  root.append(history);
  try {
    const page = await call<{ items: HistoryEntry[] }>("GET", `/v1/stats/players/${id}/matches?limit=20`);
    if (page.items.length === 0) history.append(h("p", { class: "muted" }, "No matches yet."));
    const list = h("ol", { class: "history" });
    for (const m of page.items) {
      const result = m.won ? "Won" : m.forfeited ? "Forfeited" : "Lost";
      const opponents = h("span", {});
      list.append(
        h(
          "li",
          { class: m.won ? "won" : "lost" },
          h("strong", {}, result),
          ` ${m.scored}–${m.conceded} · ${m.mode === "duel" ? "duel" : "four players"} · ${m.origin} · `,
          opponents,
          ` · ${when(m.finished_at)}`,
          m.rated ? ` · rating ${Math.round(m.rating_before)} → ${Math.round(m.rating_after)}` : "",
        ),
      );
      void names(m.opponents).then((n) => opponents.append(`against ${n}`));
    }
    history.append(list);
  } catch (e) {
    history.append(h("p", { class: "error", role: "alert" }, words(e)));
  }
}

async function names(people: { user_id: string; bot: boolean }[]): Promise<string> {
  const all = await Promise.all(people.map((p) => (p.bot ? botName(p.user_id, "a bot") : nameOf(p.user_id, "a player"))));
  return all.join(", ");
}

function figure(label: string, value: string): HTMLElement[] {
  return [h("dt", {}, label), h("dd", {}, value)];
}

type Friend = Profile & { since: string };
type Request = { user: Person; since: string };

export function friends(root: HTMLElement): () => void {
  root.append(h("h1", {}, "Friends"));
  const error = errorBox();
  const results = h("ul", { class: "people", "aria-label": "Search results" });
  const requests = h("section", { "aria-labelledby": "req-h" });
  const list = h("section", { "aria-labelledby": "friends-h" });
  const blocks = h("section", { "aria-labelledby": "blocks-h" });
  root.append(
    form(
      error,
      async (data) => {
        const page = await call<{ items: Person[] }>("GET", `/v1/users?q=${encodeURIComponent(String(data.get("q")))}&limit=20`);
        results.replaceChildren(
          ...(page.items.length ? page.items : []).map((p) => h("li", {}, avatar(p.avatar_url), link(`/players/${p.id}`, p.display_name))),
        );
        if (!page.items.length) results.append(h("li", { class: "muted" }, "Nobody by that name."));
      },
      field("Find players by name", "q", "search", { required: true }),
      error,
      h("button", { type: "submit" }, "Search"),
    ),
    results,
    requests,
    list,
    blocks,
  );
  const refresh = async () => {
    try {
      const [f, r, b] = await Promise.all([
        call<Friend[]>("GET", "/v1/users/me/friends"),
        call<{ incoming: Request[]; outgoing: Request[] }>("GET", "/v1/users/me/friends/requests"),
        call<Request[]>("GET", "/v1/users/me/blocks"),
      ]);
      drawRequests(requests, r, refresh);
      drawFriends(list, f, refresh);
      drawBlocks(blocks, b.map((x) => x.user), refresh);
    } catch (e) {
      error.textContent = words(e);
    }
  };
  void refresh();
  // Requests and answers arrive as notifications on the user's channel,
  // and users tells of a friend coming online or going offline
  // (`presence`). A realtime replica that dies says nothing (its word
  // expires in users): the list is also read again every 30 seconds.
  const stop = socket.onPush((push) => {
    if (push.type === "notification" || push.type === "presence") void refresh();
  });
  const timer = window.setInterval(() => void refresh(), 30_000);
  return () => {
    stop();
    window.clearInterval(timer);
  };
}

function drawRequests(box: HTMLElement, r: { incoming: Request[]; outgoing: Request[] }, refresh: () => Promise<void>): void {
  const error = errorBox();
  box.replaceChildren(h("h2", { id: "req-h" }, "Friend requests"), error);
  if (!r.incoming.length && !r.outgoing.length) box.append(h("p", { class: "muted" }, "No pending requests."));
  const list = h("ul", { class: "people" });
  for (const q of r.incoming) {
    list.append(
      h(
        "li",
        {},
        avatar(q.user.avatar_url),
        link(`/players/${q.user.id}`, q.user.display_name),
        " wants to be friends ",
        action("Accept", error, async () => {
          await call("POST", `/v1/users/me/friends/requests/${q.user.id}/accept`);
          await refresh();
        }, { "aria-label": `Accept ${q.user.display_name}'s request` }),
        action("Decline", error, async () => {
          await call("POST", `/v1/users/me/friends/requests/${q.user.id}/decline`);
          await refresh();
        }, { "aria-label": `Decline ${q.user.display_name}'s request` }),
      ),
    );
  }
  for (const q of r.outgoing) {
    list.append(
      h(
        "li",
        {},
        avatar(q.user.avatar_url),
        link(`/players/${q.user.id}`, q.user.display_name),
        " has not answered yet ",
        action("Withdraw", error, async () => {
          await call("DELETE", `/v1/users/me/friends/requests/${q.user.id}`);
          await refresh();
        }, { "aria-label": `Withdraw the request to ${q.user.display_name}` }),
      ),
    );
  }
  box.append(list);
}

function drawFriends(box: HTMLElement, friends: Friend[], refresh: () => Promise<void>): void {
  const error = errorBox();
  box.replaceChildren(h("h2", { id: "friends-h" }, "My friends"), error);
  if (!friends.length) box.append(h("p", { class: "muted" }, "No friends yet: find players above."));
  const list = h("ul", { class: "people" });
  for (const p of friends) {
    const state = p.online === true ? "online" : p.online === false ? "offline" : "unknown";
    list.append(
      h(
        "li",
        { "data-user": p.id },
        h("span", { class: `dot ${state}`, title: state }),
        avatar(p.avatar_url),
        link(`/players/${p.id}`, p.display_name),
        h("span", { class: "presence-text" }, state === "unknown" ? "" : ` ${state}`),
        " ",
        action("Message", error, async () => {
          const c = await call<{ id: string }>("POST", `/v1/chat/direct/${p.id}`);
          go(`/chat/${c.id}`);
        }, { "aria-label": `Message ${p.display_name}` }),
        action("Unfriend", error, async () => {
          await call("DELETE", `/v1/users/me/friends/${p.id}`);
          await refresh();
        }, { "aria-label": `End the friendship with ${p.display_name}` }),
      ),
    );
  }
  box.append(list);
}

function drawBlocks(box: HTMLElement, blocked: Person[], refresh: () => Promise<void>): void {
  const error = errorBox();
  box.replaceChildren(h("h2", { id: "blocks-h" }, "Blocked"), error);
  if (!blocked.length) {
    box.append(h("p", { class: "muted" }, "Nobody."));
    return;
  }
  const list = h("ul", { class: "people" });
  for (const p of blocked) {
    list.append(
      h(
        "li",
        {},
        p.display_name,
        " ",
        action("Unblock", error, async () => {
          await call("DELETE", `/v1/users/me/blocks/${p.id}`);
          await refresh();
        }, { "aria-label": `Unblock ${p.display_name}` }),
      ),
    );
  }
  box.append(list);
}
